use std::time::Duration;

use declastruct_test_support::{Moto, Postgres, free_port};
use declastruct_tunnel::is_port_in_use;

use crate::apply::{World, assert_success};
use crate::support::{
    Sandbox, children_of, fake_aws_cli, manifest, processes_mentioning, stderr, stdout, wait_for,
};

fn supervisors(world: &World) -> Vec<u32> {
    let home = world.sandbox.home().display().to_string();
    processes_mentioning(&home)
        .into_iter()
        .filter(|(_, command)| command.contains("__declastruct_supervise"))
        .map(|(pid, _)| pid)
        .collect()
}

fn log_text(world: &World) -> String {
    let tunnels = world.sandbox.home().join("tunnels");
    std::fs::read_dir(tunnels)
        .into_iter()
        .flatten()
        .flatten()
        .find(|entry| {
            entry
                .path()
                .extension()
                .and_then(|extension| extension.to_str())
                == Some("log")
        })
        .and_then(|entry| std::fs::read_to_string(entry.path()).ok())
        .unwrap_or_default()
}

fn restarts_in_status(world: &World) -> u64 {
    let status = world.sandbox.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    rows[2]["restarts"].as_u64().unwrap_or_default()
}

#[test]
fn a_killed_session_is_restarted_and_the_port_answers_again() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = world.only_meta();
    let session = children_of(meta.pid);
    assert_eq!(session.len(), 1, "the supervisor runs one session");

    // kill only the CLI process: its plugin child is left holding the port, as with the real CLI
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(session[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the session");
    assert!(
        wait_for(Duration::from_secs(5), || log_text(&world)
            .contains("Z] restart 1 in")),
        "a restart is logged:\n{}",
        log_text(&world)
    );
    assert!(
        wait_for(Duration::from_secs(5), || Postgres::psql(
            world.port, "select 1"
        )
        .as_deref()
            == Ok("1")),
        "the port answers again within 5 s"
    );
    assert_eq!(world.only_meta().pid, meta.pid, "same pid file");
    assert!(!children_of(meta.pid).contains(&session[0]));
    assert_eq!(restarts_in_status(&world), 1);
    // status shows the last restart's cause with the count (below the narrow table)
    let table = stdout(&world.sandbox.run(&["status"]));
    assert!(
        table.contains("1 (last: the session ended"),
        "the cause beside the count:\n{table}"
    );
}

#[test]
fn a_timed_out_session_is_restarted() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = world.only_meta();
    // the websocket drops and the service will not resume the session: the real plugin says `Session: S timed
    // out.` and exits 0 (`sessionhandler.go` `ResumeSessionHandler`)
    world.sim.set_faults(|faults| faults.refuse_resume = true);
    world.sim.abort_websockets();
    assert!(
        wait_for(Duration::from_secs(10), || log_text(&world)
            .contains("timed out.")),
        "the session times out:\n{}",
        log_text(&world)
    );
    world.sim.set_faults(|faults| faults.refuse_resume = false);
    assert!(wait_for(Duration::from_secs(10), || log_text(&world)
        .contains("Z] restart 1 in")));
    let log = log_text(&world);
    assert!(
        log.contains("the session ended (exit status: 0): Session: "),
        "{log}"
    );
    assert!(
        wait_for(Duration::from_secs(15), || Postgres::psql(
            world.port, "select 1"
        )
        .as_deref()
            == Ok("1")),
        "the port answers again"
    );
    assert_eq!(world.only_meta().pid, meta.pid);
}

#[test]
fn target_not_connected_twice_then_success_opens_the_tunnel() {
    let mut world = World::new(false);
    let counter = world.refuse_first_sessions(2);
    world.declare("running", "OPEN");
    let output = world.apply();
    assert_success(&output);
    assert_eq!(
        std::fs::read_to_string(&counter).expect("counter").trim(),
        "3"
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let log = log_text(&world);
    let refusals = log
        .lines()
        .filter(|line| line.starts_with("An error occurred (TargetNotConnected)"))
        .count();
    assert_eq!(refusals, 2, "{log}");
    // tries before the tunnel was ever ready are not restarts of it
    assert_eq!(restarts_in_status(&world), 0);
}

#[test]
fn an_agent_that_never_connects_fails_clearly_and_leaves_nothing() {
    let mut world = World::new(true);
    world.refuse_first_sessions(1000);
    world
        .sandbox
        .set_env("DECLASTRUCT_AGENT_TIMEOUT_SECONDS", "3");
    world.declare("running", "OPEN");
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("the bastion's SSM agent did not connect within 3 s"),
        "{message}"
    );
    assert!(
        message.contains("AmazonSSMManagedInstanceCore"),
        "{message}"
    );
    assert!(supervisors(&world).is_empty(), "no supervisor left");
    assert!(world.metas().is_empty());
}

#[test]
fn an_unreachable_database_leaves_no_process() {
    let world = World::new(true);
    world.refuse_destination();
    world.declare("running", "OPEN");
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("the tunnel is up but the database does not answer through it")
    );
    assert!(supervisors(&world).is_empty());
    let port_argument = format!("\"localPortNumber\":[\"{}\"]", world.port);
    assert!(
        processes_mentioning("session-manager-plugin")
            .iter()
            .chain(processes_mentioning("start-session").iter())
            .all(|(_, command)| !command.contains(&port_argument)
                && !command.contains(&format!(" {} ", world.port))),
        "no session or plugin left"
    );
    assert!(!is_port_in_use(world.port));
}

#[test]
fn five_concurrent_applies_leave_exactly_one_tunnel() {
    let world = World::new(false);
    world.declare("running", "OPEN");
    let children: Vec<_> = (0..5)
        .map(|_| {
            world
                .sandbox
                .command(&["apply", "--auto-approve"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn apply")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert_success(&output);
    }
    assert_eq!(supervisors(&world).len(), 1, "exactly one tunnel process");
    assert_eq!(world.metas().len(), 1);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

#[test]
fn a_tunnel_to_dev_never_passes_for_prod() {
    let moto = Moto::start();
    let postgres = Postgres::start();
    let dev = moto
        .seed_bastion("us-east-1", "vpc-main-bastion", true)
        .instance_id;
    moto.seed_bastion("eu-west-1", "vpc-main-bastion", true);
    let (writer, remote_port) = moto.seed_cluster("us-east-1", "ahbodedb");
    moto.seed_cluster("eu-west-1", "ahbodedb");

    let mut sandbox = Sandbox::in_region(Some(&moto), "us-east-1");
    let sim = crate::support::simulator(
        &moto,
        &[(&format!("{writer}:{remote_port}"), postgres.port)],
    );
    sandbox.use_real_chain(&sim.endpoint());
    let port = free_port();
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", port));
    let opened = sandbox.run(&["apply", "--auto-approve"]);
    assert_success(&opened);
    let in_dev = sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(in_dev.status.code(), Some(0), "{}", stdout(&in_dev));

    // the same manifest against prod: the tunnel is not open there
    sandbox.set_env("AWS_REGION", "eu-west-1");
    let in_prod = sandbox.run(&["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(in_prod.status.code(), Some(2));
    let document: serde_json::Value = serde_json::from_slice(&in_prod.stdout).expect("JSON");
    assert_eq!(document["changes"][2]["action"], "UPDATE");
    assert_eq!(
        document["changes"][2]["state"]["remote"]["status"],
        "CLOSED"
    );

    let refused = sandbox.run(&["apply", "--auto-approve"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(message.contains("another declastruct tunnel"), "{message}");
    assert!(
        message.contains(&dev) && message.contains("us-east-1"),
        "{message}"
    );
    // which manifest holds it, and that the tunnel is closed from there, not by stopping "that program"
    let manifest = sandbox.path("declastruct.yml");
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    assert!(
        message.contains(&format!("opened by the manifest {}", manifest.display())),
        "{message}"
    );
    assert!(
        message.contains("close that tunnel from its manifest: declare it CLOSED"),
        "{message}"
    );
    assert!(!message.contains("never stops a program"), "{message}");
    assert_eq!(
        Postgres::psql(port, "select 1").as_deref(),
        Ok("1"),
        "the dev tunnel is untouched"
    );
}

#[test]
fn an_aws_error_mid_apply_names_the_call_and_leaves_no_tunnel() {
    // moto accepts the seeding (3 requests), the plan's reads (2) and the bastion's fresh lookup (1),
    // then rejects unknown credentials: StartInstances fails mid-apply
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "6")]);
    moto.seed_bastion(crate::support::REGION, "vpc-main-bastion", false);
    moto.seed_cluster(crate::support::REGION, "ahbodedb");
    let mut sandbox = Sandbox::new(Some(&moto));
    sandbox.set_env("DECLASTRUCT_AWS_CLI", &fake_aws_cli().display().to_string());
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", free_port()));

    let output = sandbox.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("AWS ec2:StartInstances failed: AuthFailure"),
        "{message}"
    );
    assert!(
        message.contains("AWS did not accept your credentials"),
        "{message}"
    );
    assert!(
        message.contains("skipped: it depends on vpc-main-bastion"),
        "{message}"
    );
    assert!(
        stdout(&output).contains("0 applied, 1 unchanged, 1 failed, 1 skipped"),
        "{}",
        stdout(&output)
    );
    let tunnels = sandbox.home().join("tunnels");
    assert_eq!(
        std::fs::read_dir(&tunnels).map_or(0, std::iter::Iterator::count),
        0,
        "no tunnel files"
    );
    assert!(processes_mentioning(&sandbox.home().display().to_string()).is_empty());
}
