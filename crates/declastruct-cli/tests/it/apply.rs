use std::time::Duration;

use declastruct_aws::TunnelMeta;
use declastruct_test_support::ssm_sim::{SimConfig, SsmSimulator};
use declastruct_test_support::{Moto, Postgres, free_port};
use declastruct_tunnel::{is_port_in_use, is_process_alive, process_group_members};

use crate::support::{REGION, Sandbox, fake_aws_cli, hold_port, manifest, stderr, stdout};

/// moto with a stopped bastion and a cluster, a PostgreSQL behind the cluster's endpoint, the SSM simulator whose
/// agent dials that PostgreSQL for the cluster's endpoint, and a sandbox that opens tunnels through the real chain:
/// declastruct → the real `aws` CLI (.venv) → the simulator's StartSession → the real session-manager-plugin
/// (`../shared/bin`) → the simulator's data channel → PostgreSQL
pub struct World {
    pub moto: Moto,
    pub postgres: Postgres,
    pub instance_id: String,
    pub sandbox: Sandbox,
    pub port: u16,
    /// the SSM service and agent the real plugin talks to
    pub sim: SsmSimulator,
    /// the cluster endpoint's `host:port`, as StartSession's destination
    pub destination: String,
}

impl World {
    pub fn new(bastion_running: bool) -> Self {
        Self::with_postgres(bastion_running, Postgres::start())
    }

    /// a world whose database is `postgres` (e.g. one that asks for passwords)
    pub fn with_postgres(bastion_running: bool, postgres: Postgres) -> Self {
        Self::with_sim(bastion_running, postgres, |_| {})
    }

    /// a world whose simulator is configured by `configure` (its mode, a registration delay, faults)
    pub fn with_sim(
        bastion_running: bool,
        postgres: Postgres,
        configure: impl FnOnce(&mut SimConfig),
    ) -> Self {
        let moto = Moto::start();
        let instance_id = moto
            .seed_bastion(REGION, "vpc-main-bastion", bastion_running)
            .instance_id;
        let (writer, remote_port) = moto.seed_cluster(REGION, "ahbodedb");
        let destination = format!("{writer}:{remote_port}");
        let mut config = SimConfig {
            routes: vec![(
                destination.clone(),
                std::net::SocketAddr::from(([127, 0, 0, 1], postgres.port)),
            )],
            ec2_endpoint: Some(moto.endpoint()),
            ..SimConfig::default()
        };
        configure(&mut config);
        let sim = SsmSimulator::start(config);
        let mut sandbox = Sandbox::new(Some(&moto));
        sandbox.use_real_chain(&sim.endpoint());
        let port = free_port();
        Self {
            moto,
            postgres,
            instance_id,
            sandbox,
            port,
            sim,
            destination,
        }
    }

    /// .what = the simulated agent's connection to the database is refused (its route leads to a closed port)
    /// .why = a database the bastion cannot reach, as the real agent reports it
    pub fn refuse_destination(&self) {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        self.sim.set_route(&self.destination, closed);
    }

    /// .what = opens this world's tunnels through `fake-aws-cli` instead of the real chain
    /// .why = for the faults the real chain cannot produce (docs/architecture.md lists them)
    pub fn use_fake_aws_cli(&mut self) {
        self.sandbox
            .set_env("DECLASTRUCT_AWS_CLI", &fake_aws_cli().display().to_string());
        self.sandbox.set_env(
            "DECLASTRUCT_FAKE_SSM_HOSTS",
            &format!("{}=127.0.0.1:{}", self.destination, self.postgres.port),
        );
    }

    /// the session stand-in answers TargetNotConnected to the first `count` sessions; returns the file that
    /// counts sessions. A count of refusals is a fault only the stand-in makes (the simulator refuses by time,
    /// as an agent registers): this world uses `fake-aws-cli` from here on
    pub fn refuse_first_sessions(&mut self, count: u32) -> std::path::PathBuf {
        self.use_fake_aws_cli();
        let counter = self.sandbox.path("sessions.count");
        self.sandbox.set_env(
            "DECLASTRUCT_FAKE_SSM_NOT_CONNECTED_TIMES",
            &count.to_string(),
        );
        self.sandbox.set_env(
            "DECLASTRUCT_FAKE_SSM_COUNTER",
            &counter.display().to_string(),
        );
        counter
    }

    pub fn declare(&self, bastion_status: &str, tunnel_status: &str) {
        self.sandbox.write(
            "declastruct.yml",
            &manifest(bastion_status, tunnel_status, self.port),
        );
    }

    pub fn metas(&self) -> Vec<TunnelMeta> {
        std::fs::read_dir(self.sandbox.home().join("tunnels"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| {
                entry
                    .path()
                    .extension()
                    .and_then(|extension| extension.to_str())
                    == Some("meta")
            })
            .filter_map(|entry| serde_json::from_slice(&std::fs::read(entry.path()).ok()?).ok())
            .collect()
    }

    pub fn only_meta(&self) -> TunnelMeta {
        let metas = self.metas();
        assert_eq!(metas.len(), 1, "exactly one tunnel recorded");
        metas.into_iter().next().expect("one")
    }

    pub fn apply(&self) -> std::process::Output {
        self.sandbox.run(&["apply", "--auto-approve"])
    }
}

pub fn assert_success(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

#[test]
fn apply_opens_a_tunnel_that_outlives_the_cli_then_closes_it() {
    let world = World::new(false);
    world.declare("running", "OPEN");

    let opened = world.apply();
    assert_success(&opened);
    assert!(
        stdout(&opened).contains("Apply complete: 2 applied, 1 unchanged, 0 failed, 0 skipped.")
    );
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "running"
    );

    // the CLI has exited; the tunnel answers, in a new connection each time
    for _ in 0..3 {
        assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    }
    let meta = world.only_meta();
    assert_eq!(meta.instance_id, world.instance_id);
    assert_eq!(meta.local_port, world.port);
    // the supervisor leads a session and a process group of its own, outside those a terminal's Ctrl-C reaches
    let supervisor = nix::unistd::Pid::from_raw(i32::try_from(meta.pid).expect("pid"));
    assert_eq!(
        nix::unistd::getsid(Some(supervisor)).expect("its session"),
        supervisor
    );
    assert_eq!(
        nix::unistd::getpgid(Some(supervisor)).expect("its group"),
        supervisor
    );
    assert_ne!(nix::unistd::getpgrp(), supervisor);
    assert_eq!(meta.process_group, meta.pid);
    assert!(
        meta.command
            .iter()
            .any(|word| word == "AWS-StartPortForwardingSessionToRemoteHost")
    );
    let tunnels = world.sandbox.home().join("tunnels");
    let mode = |path: std::path::PathBuf| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(tunnels.clone()), 0o700);
    for extension in ["pid", "meta", "log"] {
        let hash = tunnels
            .read_dir()
            .expect("list")
            .flatten()
            .find_map(|entry| {
                let path = entry.path();
                (path.extension().and_then(|found| found.to_str()) == Some("pid")).then_some(path)
            });
        let file = hash.expect("pid file").with_extension(extension);
        assert_eq!(mode(file), 0o600, "{extension} file mode");
    }

    let in_sync = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        in_sync.status.code(),
        Some(0),
        "{}{}",
        stdout(&in_sync),
        stderr(&in_sync)
    );

    // idempotence: a second apply changes nothing and keeps the same process
    let again = world.apply();
    assert_success(&again);
    assert!(
        stdout(&again).contains("Nothing to apply."),
        "{}",
        stdout(&again)
    );
    assert_eq!(world.only_meta().pid, meta.pid);

    let status = world.sandbox.run(&["status", "--json"]);
    assert_success(&status);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let tunnel = &rows[2];
    assert_eq!(tunnel["status"], "OPEN");
    assert_eq!(tunnel["pid"], meta.pid);
    assert_eq!(tunnel["port"], world.port);
    assert_eq!(tunnel["healthy"], true);

    let logs = world
        .sandbox
        .run(&["logs", &format!("vpc-main-bastion.ahbodedb.{}", world.port)]);
    assert_success(&logs);
    assert!(stdout(&logs).contains("Waiting for connections..."));
    assert!(stdout(&logs).contains("Connection accepted for session"));

    // closing: the port is freed, no process of the tunnel is left (parent or plugin child), files are gone
    world.declare("running", "CLOSED");
    let closed = world.apply();
    assert_success(&closed);
    assert!(!is_port_in_use(world.port));
    assert!(!is_process_alive(meta.pid));
    assert_eq!(process_group_members(meta.process_group), Vec::<u32>::new());
    assert_eq!(
        std::fs::read_dir(&tunnels).expect("list").count(),
        0,
        "no tunnel files left"
    );
    let after = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(after.status.code(), Some(0));
}

#[test]
fn apply_without_a_terminal_refuses_and_changes_nothing() {
    let world = World::new(false);
    world.declare("running", "OPEN");
    let output = world.sandbox.run(&["apply"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--auto-approve"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "stopped"
    );
    assert!(world.metas().is_empty());
}

#[test]
fn a_stale_saved_plan_is_refused_and_a_fresh_one_applies() {
    let world = World::new(false);
    world.declare("running", "CLOSED");
    let saved = world.sandbox.run(&["plan", "--out", "plan.json"]);
    assert_success(&saved);

    // the world changes behind the saved plan's back
    let ec2 = world.moto.ec2(REGION);
    world.moto.block_on(async {
        ec2.start_instances()
            .instance_ids(&world.instance_id)
            .send()
            .await
            .expect("start");
    });
    let stale = world.sandbox.run(&["apply", "--plan", "plan.json"]);
    assert_eq!(stale.status.code(), Some(1));
    let message = stderr(&stale);
    assert!(message.contains("plan is stale"), "{message}");
    assert!(
        message.contains("vpc-main-bastion: was UPDATE, now KEEP"),
        "{message}"
    );

    world.declare("running", "OPEN");
    assert_success(&world.sandbox.run(&["plan", "--out", "plan.json"]));
    let fresh = world.sandbox.run(&["apply", "--plan", "plan.json"]);
    assert_success(&fresh);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

#[test]
fn a_port_held_by_another_program_is_reported_and_left_alone() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let mut holder = hold_port(world.port);

    let output = world.apply();
    let still_running = holder.try_wait().expect("try_wait").is_none();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains(&format!(
            "local port {} is already in use by pid {}",
            world.port,
            holder.id()
        )),
        "{message}"
    );
    assert!(message.contains("http.server"), "{message}");
    assert!(
        message.contains("declastruct never stops a program it did not start: stop it yourself if it is yours, or give this tunnel another `from.port`"),
        "{message}"
    );
    assert!(still_running, "the holder must never be killed");
    assert!(world.metas().is_empty(), "no tunnel files");
}

#[test]
fn a_dead_tunnel_shows_closed_and_apply_reopens_it() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = world.only_meta();
    let group = nix::unistd::Pid::from_raw(i32::try_from(meta.process_group).expect("pgid"));
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).expect("kill the tunnel");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while is_port_in_use(world.port) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }

    let plan = world.sandbox.run(&["plan", "--json"]);
    assert_success(&plan);
    let document: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON");
    assert_eq!(document["changes"][2]["action"], "UPDATE");
    assert_eq!(
        document["changes"][2]["state"]["remote"]["status"],
        "CLOSED"
    );
    let status = world.sandbox.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(rows[2]["status"], "CLOSED");

    assert_success(&world.apply());
    assert_ne!(world.only_meta().pid, meta.pid);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

#[test]
fn a_database_that_does_not_answer_fails_the_apply_and_leaves_nothing_running() {
    let world = World::new(true);
    world.refuse_destination();
    world.declare("running", "OPEN");
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("the database does not answer through it"),
        "{message}"
    );
    assert!(message.contains("security group"), "{message}");
    assert!(!is_port_in_use(world.port), "nothing listens");
    assert!(world.metas().is_empty());
    assert_eq!(
        std::fs::read_dir(world.sandbox.home().join("tunnels"))
            .expect("list")
            .count(),
        0
    );
    drop(world.postgres);
}

#[test]
fn a_missing_aws_cli_says_how_to_install_it() {
    let mut world = World::new(true);
    world
        .sandbox
        .set_env("DECLASTRUCT_AWS_CLI", "/nonexistent/aws");
    world.declare("running", "OPEN");
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("the AWS CLI `/nonexistent/aws` was not found"),
        "{message}"
    );
    assert!(message.contains("Session Manager plugin"), "{message}");
}
