//! "One tunnel, many users": holders, environment identity, ordering, close by record, a supervisor that proves it
//! works, and `exec` that says what it starts; through the real binary against moto, PostgreSQL and the session
//! stand-in.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use declastruct_test_support::{Postgres, free_port};
use declastruct_tunnel::{find_port_holder, is_port_in_use, is_process_alive};

use crate::apply::{World, assert_success};
use crate::assert_shown;
use crate::support::{REGION, children_of, manifest, stderr, stdout, wait_for};

/// a child process killed (with its children) when the test ends, whatever its outcome
pub(crate) struct Running(pub(crate) Child);

impl Running {
    pub(crate) fn spawn(mut command: Command) -> Self {
        Self(
            command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
        )
    }

    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// waits at most `limit` for it to end, then returns what it printed
    pub(crate) fn finish(mut self, limit: Duration) -> Output {
        assert!(
            wait_for(limit, || matches!(self.0.try_wait(), Ok(Some(_)))),
            "pid {} did not end within {limit:?}",
            self.0.id()
        );
        let child = std::mem::replace(
            &mut self.0,
            Command::new("true").spawn().expect("a placeholder"),
        );
        child.wait_with_output().expect("output")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in children_of(self.0.id()) {
            kill(child, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

/// the contract's manifest, its tunnel logging in as the test PostgreSQL's superuser
fn declare_with_login(world: &World, status: &str) {
    let text = manifest("running", status, world.port);
    world.sandbox.write(
        "declastruct.yml",
        &format!("{text}    connect:\n      user: postgres\n      database: postgres\n"),
    );
}

/// a shell line that waits (at most 60 s) until `file` exists, and fails if it never does
fn wait_for_file(file: &str) -> String {
    format!(
        "i=0; while [ ! -e {file} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; [ -e {file} ]"
    )
}

fn address(world: &World) -> String {
    format!("vpc-main-bastion.ahbodedb.{}", world.port)
}

/// the supervisor pid of the only tunnel, or none
fn supervisor(world: &World) -> Option<u32> {
    world.metas().first().map(|meta| meta.pid)
}

pub(crate) fn status_json(world: &World, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    let output = world.sandbox.run(&all);
    assert_success(&output);
    serde_json::from_slice(&output.stdout).expect("status --json")
}

/// must-show 1, item 1: `exec B` starts while `exec A` holds the tunnel A opened; A ends; B's query still runs.
/// The tunnel closes when B, its last holder, ends
#[test]
fn two_overlapping_execs_both_finish_their_queries() {
    let world = World::new(true);
    declare_with_login(&world, "CLOSED");
    let mark = |name: &str| world.sandbox.path(name).display().to_string();
    let (a_ready, a_done, b_ready) = (mark("a.ready"), mark("a.done"), mark("b.ready"));
    let first = Running::spawn(world.sandbox.command(&[
        "exec",
        "--",
        "sh",
        "-c",
        &format!(
            "psql -tAc 'select 1' && touch {a_ready} && {}",
            wait_for_file(&b_ready)
        ),
    ]));
    assert!(
        wait_for(Duration::from_secs(60), || std::path::Path::new(&a_ready)
            .exists()),
        "exec A ran its first query"
    );
    let second = Running::spawn(world.sandbox.command(&[
        "exec",
        "--",
        "sh",
        "-c",
        &format!(
            "touch {b_ready} && {} && psql -tAc 'select 2'",
            wait_for_file(&a_done)
        ),
    ]));
    let first = first.finish(Duration::from_secs(60));
    assert_success(&first);
    assert_eq!(stdout(&first).trim(), "1");
    // A is gone: only now does B query
    std::fs::write(&a_done, "").expect("a.done");
    let second = second.finish(Duration::from_secs(60));
    assert_success(&second);
    assert_eq!(stdout(&second).trim(), "2", "B's query ran after A ended");
    assert!(
        wait_for(Duration::from_secs(10), || !is_port_in_use(world.port)
            && world.metas().is_empty()),
        "the last holder let go: closed"
    );
}

/// must-show 1, item 1: an apply of an OPEN manifest while an `exec` holds the tunnel takes its own hold (an
/// UPDATE, never "Nothing to apply"); a reopen by `--replace` keeps the exec's hold; when the exec ends the tunnel
/// stays open for the manifest, and `status` and `status --all` show who holds it
#[test]
fn an_applys_hold_survives_an_exec() {
    let world = World::new(true);
    declare_with_login(&world, "OPEN");
    let (ready, done) = (
        world.sandbox.path("ready").display().to_string(),
        world.sandbox.path("done").display().to_string(),
    );
    let exec = Running::spawn(world.sandbox.command(&[
        "exec",
        "--",
        "sh",
        "-c",
        &format!("touch {ready} && {}", wait_for_file(&done)),
    ]));
    assert!(
        wait_for(Duration::from_secs(60), || std::path::Path::new(&ready)
            .exists()),
        "exec opened the tunnel"
    );
    let exec_pid = exec.pid();
    let plan = world.sandbox.run(&["plan"]);
    assert_shown!("holders_plan_takes_a_hold", plan, &[world.port]);

    assert_success(&world.apply());
    let holders = &status_json(&world, &["--all"])[0]["holders"];
    assert_eq!(
        holders,
        &serde_json::json!([
            format!("pid {exec_pid} (exec sh)"),
            format!(
                "manifest {} (region={REGION})",
                world.sandbox.path("declastruct.yml").display()
            )
        ]),
        "status --all names both holders"
    );
    let rows = status_json(&world, &[]);
    assert_eq!(
        rows[2]["holders"].as_array().map(Vec::len),
        Some(2),
        "{rows}"
    );

    // reopened under the exec's feet: its hold is kept
    let before = supervisor(&world);
    assert_success(
        &world
            .sandbox
            .run(&["apply", "--auto-approve", "--replace", &address(&world)]),
    );
    let reopened = supervisor(&world);
    assert_ne!(before, reopened, "a new session");
    assert_eq!(status_json(&world, &["--all"])[0]["holders"], *holders);

    std::fs::write(&done, "").expect("done");
    assert_success(&exec.finish(Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(supervisor(&world), reopened, "the manifest's tunnel stays");
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let plan = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
}

/// must-show 1, item 2: a SIGKILLed `exec`'s tunnel closes within 15 s, by its supervisor
#[test]
fn a_killed_execs_tunnel_closes_within_15_seconds() {
    let world = World::new(true);
    declare_with_login(&world, "CLOSED");
    let ready = world.sandbox.path("ready").display().to_string();
    let exec = Running::spawn(world.sandbox.command(&[
        "exec",
        "--",
        "sh",
        "-c",
        &format!("touch {ready} && sleep 120"),
    ]));
    assert!(
        wait_for(Duration::from_secs(60), || std::path::Path::new(&ready)
            .exists()),
        "exec opened the tunnel"
    );
    assert!(is_port_in_use(world.port));
    kill(exec.pid(), nix::sys::signal::Signal::SIGKILL);
    assert!(
        wait_for(Duration::from_secs(15), || !is_port_in_use(world.port)
            && world.metas().is_empty()),
        "the dead exec's hold was dropped and the tunnel closed within 15 s"
    );
    drop(exec);
}

/// must-show 1, item 3: manifest B declaring manifest A's tunnel CLOSED leaves it serving, and B's plan names A
#[test]
fn another_manifests_closed_leaves_the_tunnel_serving_and_names_its_holder() {
    let world = World::new(true);
    for (folder, status) in [("a", "OPEN"), ("b", "CLOSED")] {
        std::fs::create_dir(world.sandbox.path(folder)).expect("folder");
        world.sandbox.write(
            &format!("{folder}/declastruct.yml"),
            &manifest("running", status, world.port),
        );
    }
    assert_success(
        &world
            .sandbox
            .run(&["apply", "-f", "a/declastruct.yml", "--auto-approve"]),
    );
    let opened = supervisor(&world);

    let plan = world.sandbox.run(&["plan", "-f", "b/declastruct.yml"]);
    assert_shown!("holders_other_manifest_closed", plan, &[world.port]);
    let document: serde_json::Value = serde_json::from_slice(
        &world
            .sandbox
            .run(&["plan", "-f", "b/declastruct.yml", "--json"])
            .stdout,
    )
    .expect("plan --json");
    let tunnel = &document["changes"][2];
    assert_eq!(tunnel["action"], "KEEP");
    assert_eq!(
        tunnel["note"],
        format!(
            "released; stays open for manifest {} (region={REGION})",
            world.sandbox.path("a/declastruct.yml").display()
        )
    );

    assert_success(
        &world
            .sandbox
            .run(&["apply", "-f", "b/declastruct.yml", "--auto-approve"]),
    );
    assert_eq!(supervisor(&world), opened, "A's tunnel is untouched");
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));

    // the named, explicit way closes it for everyone, and its plan names whom
    let forced = world.sandbox.run(&[
        "plan",
        "-f",
        "b/declastruct.yml",
        "--target",
        &address(&world),
        "--force-close",
    ]);
    assert_shown!("holders_force_close_plan", forced, &[world.port]);
    assert_success(&world.sandbox.run(&[
        "apply",
        "-f",
        "b/declastruct.yml",
        "--auto-approve",
        "--target",
        &address(&world),
        "--force-close",
    ]));
    assert!(!is_port_in_use(world.port));
    assert!(world.metas().is_empty());
}

/// must-show 1, item 4: one manifest, dev and prod by a variable: planning prod plans nothing for dev's tunnel;
/// `--var-file` gives the same plan as `--var`, records the file, and yields to `--var`
#[test]
fn environments_of_one_manifest_never_plan_each_others_tunnels() {
    let world = World::new(true);
    let prod_port = free_port();
    let text = manifest("running", "OPEN", world.port)
        .replace(&format!("port: {}\n", world.port), "port: ${port}\n");
    world.sandbox.write("declastruct.yml", &text);
    let dev = format!("port={}", world.port);
    assert_success(
        &world
            .sandbox
            .run(&["apply", "--auto-approve", "--var", &dev]),
    );

    let prod = world
        .sandbox
        .run(&["plan", "--var", &format!("port={prod_port}")]);
    assert_shown!(
        "holders_prod_plan_leaves_dev",
        prod,
        &[world.port, prod_port]
    );

    world.sandbox.write(
        "prod.env",
        &format!("# prod\n\nport={prod_port} # the prod port\n"),
    );
    let from_file = world
        .sandbox
        .run(&["plan", "--var-file", "prod.env", "--json"]);
    assert_success(&from_file);
    let document: serde_json::Value = serde_json::from_slice(&from_file.stdout).expect("json");
    assert_eq!(
        document["wish"]["varFiles"],
        serde_json::json!(["prod.env"])
    );
    assert_eq!(
        document["wish"]["vars"]["port"],
        prod_port.to_string(),
        "the file's value"
    );
    assert_eq!(document["changes"].as_array().map(Vec::len), Some(3));
    let var_wins = world.sandbox.run(&[
        "plan",
        "--var-file",
        "prod.env",
        "--var",
        &dev,
        "--detailed-exitcode",
    ]);
    assert_eq!(
        var_wins.status.code(),
        Some(0),
        "--var wins over --var-file: dev, already applied\n{}",
        stdout(&var_wins)
    );
    world.sandbox.write("bad.env", "port 7775\n");
    let refused = world.sandbox.run(&["plan", "--var-file", "bad.env"]);
    assert_shown!("holders_bad_var_file", refused);
}

/// the contract's manifest with the tunnel through the bastion tagged `bastion`
fn manifest_through(bastion: &str, port: u16) -> String {
    manifest("running", "OPEN", port).replace(
        "bastion: { exid: vpc-main-bastion }",
        &format!("bastion: {{ exid: {bastion} }}"),
    )
}

/// must-show 1, item 5: moving a tunnel to another bastion while keeping its port closes the old one first; it
/// ends serving, in both directions
#[test]
fn a_move_that_keeps_the_port_ends_with_the_tunnel_serving() {
    let world = World::new(true);
    let other = world
        .moto
        .seed_bastion(REGION, "other-bastion", true)
        .instance_id;
    world.sandbox.write(
        "declastruct.yml",
        &manifest_through("vpc-main-bastion", world.port),
    );
    assert_success(&world.apply());
    for (bastion, instance) in [
        ("other-bastion", &other),
        ("vpc-main-bastion", &world.instance_id),
    ] {
        world
            .sandbox
            .write("declastruct.yml", &manifest_through(bastion, world.port));
        let moved = world.apply();
        assert_success(&moved);
        assert_eq!(
            &world.only_meta().instance_id,
            instance,
            "through {bastion}"
        );
        assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    }
}

/// must-show 1, item 6: a tunnel declared CLOSED whose bastion was terminated, or whose cluster was deleted, is
/// closed by its record (an UPDATE with the reason), and the missing bastion or cluster is a warning
#[test]
fn closed_closes_a_tunnel_whose_bastion_or_cluster_is_gone() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    world.moto.terminate_instance(REGION, &world.instance_id);
    // the bastion declared without a status: nothing asks it to run
    world.sandbox.write(
        "declastruct.yml",
        &manifest("running", "CLOSED", world.port).replace("    status: running\n", ""),
    );
    let plan = world.sandbox.run(&["plan"]);
    assert_shown!("holders_plan_bastion_gone", plan, &[world.port]);
    assert_success(&world.apply());
    assert!(!is_port_in_use(world.port), "closed by its record");
    assert!(world.metas().is_empty());

    // a new bastion of that exid; then the cluster goes
    world.moto.seed_bastion(REGION, "vpc-main-bastion", true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    world.moto.delete_cluster(REGION, "ahbodedb");
    world.declare("running", "CLOSED");
    let closed = world.apply();
    assert_success(&closed);
    assert!(!is_port_in_use(world.port), "closed by its record");
    assert!(world.metas().is_empty());
}

/// must-show 1, item 7: a supervisor that is alive but stopped (SIGSTOP) proves nothing: it is unhealthy, and an
/// OPEN apply replaces it
#[test]
fn a_stopped_supervisor_is_unhealthy_and_healed() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let stopped = supervisor(&world).expect("a supervisor");
    kill(stopped, nix::sys::signal::Signal::SIGSTOP);
    assert!(
        wait_for(Duration::from_secs(20), || {
            let rows = status_json(&world, &[]);
            rows[2]["healthy"] == serde_json::json!(false)
                && rows[2]["healthReason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("has not renewed its heartbeat"))
        }),
        "a stopped supervisor is unhealthy within 20 s: {}",
        status_json(&world, &[])
    );
    let plan = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stdout(&plan));
    assert_success(&world.apply());
    let healed = supervisor(&world).expect("a supervisor");
    assert_ne!(healed, stopped);
    assert!(!is_process_alive(stopped), "the stopped one is gone");
    assert_eq!(status_json(&world, &[])[2]["healthy"], true);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// must-show 1, item 7: a session that left its group and dropped the marker keeps the port after a close: the
/// close fails naming it (never exit 0 while the port we closed still serves), and it is never signalled
#[test]
fn a_close_that_leaves_the_port_served_fails_naming_the_holder() {
    let mut world = World::new(true);
    // a session that leaves its process group is a fault only the stand-in makes
    world.use_fake_aws_cli();
    world.sandbox.set_env("DECLASTRUCT_FAKE_SSM_ESCAPE", "1");
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let escaped = find_port_holder(world.port).expect("the plugin serves").pid;
    struct KillAtEnd(u32);
    impl Drop for KillAtEnd {
        fn drop(&mut self) {
            kill(self.0, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _escaped = KillAtEnd(escaped);
    world.sandbox.remove_env("DECLASTRUCT_FAKE_SSM_ESCAPE");
    world.declare("running", "CLOSED");
    let closed = world.apply();
    assert_eq!(closed.status.code(), Some(1), "{}", stderr(&closed));
    let text = stderr(&closed);
    assert!(
        text.contains("declastruct::tunnel::still_served")
            && text.contains(&format!("pid {escaped} ")),
        "{text}"
    );
    assert!(
        is_process_alive(escaped),
        "never signalled: it is not proven ours"
    );
    drop(world);
}

/// must-show 1, item 8: `exec` says in one line which bastion it starts; `--no-start` refuses instead
#[test]
fn exec_names_the_bastion_it_starts_and_no_start_refuses() {
    let world = World::new(false);
    // the tunnel alone names the bastion: only exec would start it
    let text = manifest("running", "CLOSED", world.port);
    let tunnel_only = &text[text
        .find("  - kind: DeclaredAwsRdsCluster")
        .expect("cluster")..];
    world
        .sandbox
        .write("declastruct.yml", &format!("resources:\n{tunnel_only}"));
    let refused = world.sandbox.run(&["exec", "--no-start", "--", "true"]);
    assert_shown!("holders_exec_no_start", refused, &[world.port]);
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "stopped"
    );
    let started = world.sandbox.run(&["exec", "--", "true"]);
    assert_success(&started);
    let said = stderr(&started);
    let lines: Vec<&str> = said
        .lines()
        .filter(|line| line.starts_with("exec: "))
        .collect();
    assert_eq!(
        lines,
        vec![format!(
            "exec: starting the bastion {{ exid: vpc-main-bastion }} ({}), which is stopped, for {}",
            world.instance_id,
            address(&world)
        )
        .as_str()],
        "{}",
        stderr(&started)
    );
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "running"
    );
}

/// issue "Bastions and tunnels that go away when nobody needs them", must-show 1 (tunnels): a tunnel with
/// `idleClose: 5s` stays while a query runs, closes 5-10 s after its last connection, says why in `status --all`
/// and `plan`, and the next apply opens it again
#[test]
fn an_idle_tunnel_closes_by_itself_and_never_during_a_query() {
    let world = World::new(true);
    let text = manifest("running", "OPEN", world.port);
    world
        .sandbox
        .write("declastruct.yml", &format!("{text}    idleClose: 5s\n"));
    assert_success(&world.apply());
    // a query longer than the idle limit keeps its connection: the tunnel stays
    assert_eq!(
        Postgres::psql(world.port, "select pg_sleep(8), 1").as_deref(),
        Ok("|1")
    );
    let ended = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    assert!(is_port_in_use(world.port), "3 s after the last connection");
    assert!(
        wait_for(Duration::from_secs(9), || !is_port_in_use(world.port)),
        "closed within 12 s of the last connection"
    );
    assert!(ended.elapsed() >= Duration::from_secs(5));

    // the supervisor ends right after its session
    assert!(
        wait_for(Duration::from_secs(10), || status_json(&world, &["--all"])
            [0]["status"]
            == "CLOSED"),
        "{}",
        status_json(&world, &["--all"])
    );
    let rows = status_json(&world, &["--all"]);
    assert!(
        rows[0]["healthReason"].as_str().is_some_and(|reason| reason
            .starts_with("closed after 5 s without a client connection (idleClose) at ")),
        "{rows}"
    );
    let plan = world.sandbox.run(&["plan"]);
    assert_shown!("holders_plan_reopens_an_idle_tunnel", plan, &[world.port]);
    assert_success(&world.apply());
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// `connect ADDRESS` opens the tunnel as a hold, says how to connect, holds it until Ctrl-C, then lets go: the
/// tunnel closes when it was the only holder, and stays for the manifest that also holds it
#[test]
fn connect_holds_a_tunnel_until_ctrl_c() {
    use std::io::BufRead;
    let world = World::new(false);
    declare_with_login(&world, "CLOSED");
    let mut connect = Running::spawn(world.sandbox.command(&["connect", &address(&world)]));
    let stdout = connect.0.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "Connected: localhost:{} -> ahbodedb (writer) via i-",
            world.port
        )),
        "{first}"
    );
    assert_eq!(
        lines.next().and_then(Result::ok).unwrap_or_default(),
        format!("  psql -h 127.0.0.1 -p {} -U postgres postgres", world.port)
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let holders = &status_json(&world, &["--all"])[0]["holders"];
    assert_eq!(
        holders,
        &serde_json::json!([format!(
            "pid {} (connect {})",
            connect.pid(),
            address(&world)
        )])
    );
    kill(connect.pid(), nix::sys::signal::Signal::SIGINT);
    let ended = connect.finish(Duration::from_secs(30));
    assert_eq!(ended.status.code(), Some(0), "{}", stderr(&ended));
    let said = stderr(&ended);
    assert!(
        said.lines().any(|line| line
            == format!(
                "connect: starting the bastion {{ exid: vpc-main-bastion }} ({}), which is stopped, for {}",
                world.instance_id,
                address(&world)
            )),
        "{said}"
    );
    assert!(!is_port_in_use(world.port), "it was the only holder");
    assert!(world.metas().is_empty());
}
