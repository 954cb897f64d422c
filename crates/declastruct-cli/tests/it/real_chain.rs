//! The real chain (issue 22): declastruct → the real `aws` CLI (.venv) → the SSM simulator's StartSession → the
//! real session-manager-plugin (`../shared/bin`) → the simulator's data channel → PostgreSQL. What only the
//! real programs can show: who serves the port, concurrent clients in mux mode, an agent that registers late, a
//! resumed websocket, Ctrl-C during the wait, and DescribeSessions.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use declastruct_test_support::Postgres;
use declastruct_test_support::ssm_sim::SessionStatus;
use declastruct_tunnel::{find_port_holder, is_port_in_use, read_process};

use crate::apply::{World, assert_success};
use crate::support::{real_plugin_folder, stderr, stdout, venv_bin, wait_for};

/// the tunnel's log, through `declastruct logs`
fn log_of(world: &World) -> String {
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    stdout(&world.sandbox.run(&["logs", &address]))
}

/// the restart count `status --json` shows for the tunnel
fn restarts(world: &World) -> u64 {
    let status = world.sandbox.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    rows[2]["restarts"].as_u64().unwrap_or_default()
}

/// must-show 1: the process that serves the tunnel's port is the real session-manager-plugin from
/// `../shared/bin`, and its parent is the real AWS CLI running `ssm start-session`
#[test]
fn the_port_is_served_by_the_real_plugin_started_by_the_real_aws_cli() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));

    let holder = find_port_holder(world.port).expect("a process serves the port");
    let executable =
        std::fs::read_link(format!("/proc/{}/exe", holder.pid)).expect("its executable");
    let plugin = real_plugin_folder().join("session-manager-plugin");
    assert_eq!(
        executable,
        plugin.canonicalize().unwrap_or(plugin),
        "{holder}"
    );
    let parent = read_process(holder.pid)
        .and_then(|process| read_process(process.stat.parent))
        .expect("the plugin's parent");
    let parent_command = parent.command_line();
    let cli: PathBuf = venv_bin().join("aws");
    assert!(
        parent_command.contains(&cli.display().to_string())
            && parent_command.contains("ssm start-session")
            && parent_command.contains(&world.instance_id),
        "the plugin's parent is the real AWS CLI: {parent_command}"
    );
    // the session the simulator holds is the one StartSession opened for this tunnel
    let sessions = world.sim.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0].target, world.instance_id);
    assert_eq!(
        sessions[0].document_name,
        "AWS-StartPortForwardingSessionToRemoteHost"
    );
    assert!(sessions[0].status.is_active());
    let log = log_of(&world);
    assert!(
        log.contains(&format!("Port {} opened for sessionId ", world.port))
            && log.contains("Waiting for connections..."),
        "readiness is read from the real plugin's lines:\n{log}"
    );

    // closing ends the session: the plugin sends the TerminateSession flag on SIGINT or the service sees it end
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
    assert!(!is_port_in_use(world.port));
    assert!(
        wait_for(Duration::from_secs(10), || world
            .sim
            .sessions()
            .iter()
            .all(|session| !session.status.is_active())),
        "the session ended: {:?}",
        world.sim.sessions()
    );
}

/// must-show 2: six clients at once through one mux-mode session, each answered
#[test]
fn six_concurrent_connections_in_mux_mode() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let port = world.port;
    let clients: Vec<_> = (0..6)
        .map(|client| {
            std::thread::spawn(move || {
                Postgres::psql(port, &format!("select {client} from pg_sleep(1)"))
            })
        })
        .collect();
    let answers: Vec<_> = clients
        .into_iter()
        .map(|client| client.join().expect("a client"))
        .collect();
    for (client, answer) in answers.iter().enumerate() {
        assert_eq!(answer.as_deref(), Ok(client.to_string().as_str()));
    }
    assert_eq!(world.sim.sessions().len(), 1, "one session served them all");
    assert!(
        world.sim.sessions()[0].destination_connections >= 6,
        "{:?}",
        world.sim.sessions()
    );
    assert_eq!(restarts(&world), 0);
}

/// must-show 2: a stopped bastion that `apply` starts answers TargetNotConnected until its agent registers (the
/// simulator registers it a few seconds after it first sees it running); the open waits and succeeds, and the
/// tries before it are not restarts
#[test]
fn a_started_bastion_is_target_not_connected_until_its_agent_registers() {
    let world = World::with_sim(false, Postgres::start(), |config| {
        config.registration_delay = Duration::from_secs(4);
    });
    world.declare("running", "OPEN");
    let applied = world.apply();
    assert_success(&applied);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let log = log_of(&world);
    assert!(
        log.contains(
            "An error occurred (TargetNotConnected) when calling the StartSession operation"
        ),
        "the real AWS CLI's refusal is in the log:\n{log}"
    );
    assert!(world.sim.counts().target_not_connected >= 1);
    assert_eq!(
        restarts(&world),
        0,
        "tries before the first open are not restarts"
    );
}

/// must-show 2: the websocket drops without a close frame; the real plugin resumes the session (ResumeSession)
/// and the tunnel keeps serving: same supervisor, no restart, the client's connection still works
#[test]
fn an_aborted_websocket_is_resumed_and_the_tunnel_keeps_serving() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = world.only_meta();
    // a client connected through the session before the drop
    let client = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &world.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tA",
            "-c",
            "select pg_sleep(3)",
            "-c",
            "select 'still here'",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    std::thread::sleep(Duration::from_millis(700));
    world.sim.abort_websockets();
    assert!(
        wait_for(Duration::from_secs(15), || world
            .sim
            .sessions()
            .first()
            .is_some_and(|session| session.resumes >= 1)),
        "the plugin called ResumeSession: {:?}",
        world.sim.sessions()
    );
    let output = client.wait_with_output().expect("psql ends");
    assert!(
        stdout(&output).contains("still here"),
        "the connection survived the drop: {}{}",
        stdout(&output),
        stderr(&output)
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    assert_eq!(world.only_meta().pid, meta.pid, "the same supervisor");
    assert_eq!(restarts(&world), 0, "a resume is no restart");
    assert_eq!(world.sim.sessions().len(), 1, "the same session, resumed");
}

/// must-show 2: Ctrl-C while `apply` waits for an agent that has not registered ends it within seconds, and
/// leaves no process, record or session behind
#[test]
fn ctrl_c_during_the_agent_wait_leaves_nothing() {
    let world = World::with_sim(true, Postgres::start(), |config| {
        config.registration_delay = Duration::from_secs(600);
    });
    world.declare("running", "OPEN");
    let child = world
        .sandbox
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    assert!(
        wait_for(Duration::from_secs(30), || world
            .sim
            .counts()
            .target_not_connected
            >= 1),
        "the real AWS CLI was refused at least once"
    );
    let interrupted = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let output = child.wait_with_output().expect("apply ends");
    assert!(
        interrupted.elapsed() < Duration::from_secs(15),
        "the wait ended on Ctrl-C"
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Interrupted"),
        "{}",
        stderr(&output)
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            crate::support::processes_mentioning(&world.sandbox.home().display().to_string())
                .is_empty()
        }),
        "no process of this sandbox is left"
    );
    assert!(world.metas().is_empty(), "no record left");
    assert!(!is_port_in_use(world.port));
    assert!(
        world
            .sim
            .sessions()
            .iter()
            .all(|session| !session.status.is_active()),
        "no session left active: {:?}",
        world.sim.sessions()
    );
}

/// must-show 2: the real `aws ssm describe-sessions --state Active` lists the sessions of the open tunnels, and
/// not the ones closed
#[test]
fn describe_sessions_lists_the_open_sessions() {
    let world = World::new(true);
    let second = declastruct_test_support::free_port();
    world.sandbox.write(
        "declastruct.yml",
        &crate::support::manifest_with_ports("running", "OPEN", &[world.port, second]),
    );
    assert_success(&world.apply());
    let describe = |state: &str| -> serde_json::Value {
        let mut command = std::process::Command::new(venv_bin().join("aws"));
        command
            .args([
                "ssm",
                "describe-sessions",
                "--state",
                state,
                "--output",
                "json",
            ])
            .args(["--region", crate::support::REGION])
            .env_clear()
            .envs(
                world
                    .sandbox
                    .command(&[])
                    .get_envs()
                    .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
            );
        let output = command.output().expect("aws ssm describe-sessions");
        assert!(output.status.success(), "{}", stderr(&output));
        serde_json::from_slice(&output.stdout).expect("JSON")
    };
    let active = describe("Active");
    let listed = active["Sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 2, "{active}");
    for session in &listed {
        assert_eq!(session["Target"], world.instance_id.as_str(), "{session}");
        assert_eq!(session["Status"], "Connected", "{session}");
    }

    world.sandbox.write(
        "declastruct.yml",
        &crate::support::manifest_with_ports("running", "CLOSED", &[world.port, second]),
    );
    assert_success(&world.apply());
    assert!(
        wait_for(Duration::from_secs(10), || describe("Active")["Sessions"]
            .as_array()
            .is_some_and(Vec::is_empty)),
        "no active session after the close"
    );
    let history = describe("History");
    assert_eq!(
        history["Sessions"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
    assert!(
        world
            .sim
            .sessions()
            .iter()
            .all(|session| session.status != SessionStatus::Connected)
    );
}

/// issue 22, part 3: the service closes the channel with a message (the real plugin prints `SessionId: S : …`
/// and exits 0); the supervisor opens a new session and the port answers again
#[test]
fn a_channel_closed_by_the_service_is_healed() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = world.only_meta();
    world
        .sim
        .close_channel(None, "The session was closed by the service.");
    assert!(
        wait_for(Duration::from_secs(15), || log_of(&world)
            .contains("The session was closed by the service.")),
        "the plugin printed the channel's message:\n{}",
        log_of(&world)
    );
    assert!(
        wait_for(Duration::from_secs(20), || world.sim.sessions().len() == 2
            && Postgres::psql(world.port, "select 1").as_deref() == Ok("1")),
        "a new session serves the port: {:?}\n{}",
        world.sim.sessions(),
        log_of(&world)
    );
    let log = log_of(&world);
    assert!(
        log.contains("the session ended (exit status: 0)"),
        "the plugin ended with status 0:\n{log}"
    );
    assert_eq!(world.only_meta().pid, meta.pid, "the same supervisor");
    assert_eq!(restarts(&world), 1);
}

/// issue 22, part 3: in basic mode the agent dials the database once after the handshake; when it is refused the
/// agent ends the session with `Unable to connect to specified port: …`, which the open reports as the bastion
/// not reaching the database, and nothing is left running
#[test]
fn a_refused_destination_in_basic_mode_is_named() {
    let world = World::with_sim(true, Postgres::start(), |config| {
        config.mode = declastruct_test_support::ssm_sim::Mode::Basic;
    });
    world.refuse_destination();
    world.declare("running", "OPEN");
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "the bastion could not reach the database: Unable to connect to specified port"
        ) && message.contains("security group"),
        "{message}"
    );
    assert!(world.metas().is_empty(), "no record left");
    assert!(!is_port_in_use(world.port));
}
