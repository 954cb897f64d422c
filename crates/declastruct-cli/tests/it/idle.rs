//! Issue 25 end to end: `idleStop` on a bastion, through the real binary, moto (EC2 and its tags), the SSM
//! simulator (DescribeSessions from the sessions it holds; a colleague's session is a real second session of the
//! real AWS CLI and plugin) and PostgreSQL. (`idleClose` on a tunnel is `holders.rs`'s
//! `an_idle_tunnel_closes_by_itself_and_never_during_a_query`.)

use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use declastruct_test_support::{Postgres, free_port};

use crate::apply::{World, assert_success};
use crate::support::{REGION, manifest, stderr, stdout, venv_bin, wait_for};

/// the contract's manifest whose bastion has `idleStop: {idle_stop}`
fn idle_manifest(tunnel_status: &str, port: u16, idle_stop: &str) -> String {
    manifest("running", tunnel_status, port).replace(
        "    exid: vpc-main-bastion\n    status: running\n",
        &format!("    exid: vpc-main-bastion\n    status: running\n    idleStop: {idle_stop}\n"),
    )
}

/// the plan's change of the bastion, as the JSON plan document has it
fn bastion_change(world: &World) -> serde_json::Value {
    let output = world.sandbox.run(&["plan", "--json"]);
    let document: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr(&output)));
    document["changes"]
        .as_array()
        .and_then(|changes| {
            changes
                .iter()
                .find(|change| change["forResource"]["slug"] == "vpc-main-bastion")
                .cloned()
        })
        .unwrap_or_else(|| panic!("no change for the bastion: {document}"))
}

/// a colleague's session on the bastion: the real `aws ssm start-session` with the real plugin, run as another
/// user would (no declastruct, no tag), forwarding `port` to the database
fn colleague_session(world: &World, port: u16) -> Child {
    let parameters = serde_json::json!({
        "host": [world.destination.split(':').next().unwrap_or_default()],
        "portNumber": [world.destination.rsplit(':').next().unwrap_or_default()],
        "localPortNumber": [port.to_string()],
    });
    std::process::Command::new(venv_bin().join("aws"))
        .args([
            "ssm",
            "start-session",
            "--target",
            &world.instance_id,
            "--document-name",
            "AWS-StartPortForwardingSessionToRemoteHost",
            "--parameters",
            &parameters.to_string(),
            "--region",
            REGION,
        ])
        .env_clear()
        .envs(
            world
                .sandbox
                .command(&[])
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("aws ssm start-session")
}

/// ends the colleague's session as Ctrl-C would: the plugin sends the TerminateSession flag
fn end_session(child: &mut Child) {
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT);
    let ended = wait_for(Duration::from_secs(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
    }
}

/// must-show: a colleague's active session keeps the bastion running (the timer started by our last close does
/// not stop it, and `plan` says what keeps it busy); once it ends, `plan` shows the idle stop with its reason,
/// `apply` performs it, and the next `apply` of an OPEN tunnel starts the bastion again
#[test]
fn a_colleagues_session_keeps_the_bastion_and_plan_then_apply_stop_it_when_idle() {
    let world = World::new(true);
    world
        .sandbox
        .write("declastruct.yml", &idle_manifest("OPEN", world.port, "3s"));
    assert_success(&world.apply());
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    // an OPEN tunnel needs the bastion: never planned to stop
    assert_eq!(bastion_change(&world)["action"], "KEEP");

    let colleague_port = free_port();
    let mut colleague = colleague_session(&world, colleague_port);
    assert!(
        wait_for(Duration::from_secs(20), || Postgres::psql(
            colleague_port,
            "select 1"
        )
        .as_deref()
            == Ok("1")),
        "the colleague's session serves"
    );
    world.sandbox.write(
        "declastruct.yml",
        &idle_manifest("CLOSED", world.port, "3s"),
    );
    assert_success(&world.apply());
    // our last tunnel closed: the timer looks after 3 s and sees the colleague's session
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "running"
    );
    let busy = bastion_change(&world);
    assert_eq!(busy["action"], "KEEP", "{busy}");
    let status = stdout(&world.sandbox.run(&["status", "--json"]));
    assert!(
        status.contains("in use: 1 active SSM session target it"),
        "status says what keeps it busy: {status}"
    );

    end_session(&mut colleague);
    assert!(
        wait_for(Duration::from_secs(10), || bastion_change(&world)["action"]
            == "UPDATE"),
        "idle once the colleague is gone: {}",
        bastion_change(&world)
    );
    let idle = bastion_change(&world);
    assert_eq!(idle["state"]["desired"]["status"], "stopped", "{idle}");
    let note = idle["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("idleStop: idle since ") && note.ends_with("sessions seen: none"),
        "{idle}"
    );
    let plan = world.sandbox.run(&["plan"]);
    assert!(
        stdout(&plan).contains("idleStop: idle since "),
        "{}",
        stdout(&plan)
    );
    assert_success(&world.apply());
    let stopped = world.moto.instance_state(REGION, &world.instance_id);
    assert!(
        stopped == "stopped" || stopped == "stopping",
        "apply stopped the idle bastion: {stopped}"
    );

    // the next apply of an OPEN tunnel starts it again
    world
        .sandbox
        .write("declastruct.yml", &idle_manifest("OPEN", world.port, "3s"));
    assert_success(&world.apply());
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "running"
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// must-show: when the last tunnel through an `idleStop` bastion closes here, a recorded timer (listed by
/// `status --all`) stops the bastion after the duration with nobody running `apply`; the next `exec` of a tunnel
/// through it starts it again and says so
#[test]
fn the_idle_timer_stops_the_bastion_after_the_last_tunnel_closes_and_exec_starts_it_again() {
    let world = World::new(true);
    world
        .sandbox
        .write("declastruct.yml", &idle_manifest("OPEN", world.port, "5s"));
    assert_success(&world.apply());
    world.sandbox.write(
        "declastruct.yml",
        &idle_manifest("CLOSED", world.port, "5s"),
    );
    assert_success(&world.apply());
    let all = stdout(&world.sandbox.run(&["status", "--all", "--json"]));
    assert!(
        all.contains(&world.instance_id) && all.to_lowercase().contains("timer"),
        "status --all lists the timer: {all}"
    );
    assert!(
        wait_for(Duration::from_secs(40), || {
            let state = world.moto.instance_state(REGION, &world.instance_id);
            state == "stopped" || state == "stopping"
        }),
        "the timer stopped the idle bastion: {}",
        world.moto.instance_state(REGION, &world.instance_id)
    );

    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let exec = world.sandbox.run(&[
        "exec",
        &address,
        "--",
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        &world.port.to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-tAc",
        "select 1",
    ]);
    assert_success(&exec);
    assert_eq!(stdout(&exec).trim(), "1");
    assert!(
        stderr(&exec).contains("starting") || stderr(&exec).contains("start"),
        "exec says it starts the bastion: {}",
        stderr(&exec)
    );
}

/// must-show: a fresh `declastruct:in-use` tag (another machine's supervisor renewing it) keeps the bastion
/// running; once it is older than the duration, the bastion is planned to stop
#[test]
fn a_fresh_in_use_tag_keeps_the_bastion_running() {
    let world = World::new(true);
    world.sandbox.write(
        "declastruct.yml",
        &idle_manifest("CLOSED", world.port, "4s"),
    );
    let tag = |at: chrono::DateTime<chrono::Utc>| {
        world.moto.tag_instance(
            REGION,
            &world.instance_id,
            declastruct_aws::IN_USE_TAG,
            &at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    };
    tag(chrono::Utc::now());
    let busy = bastion_change(&world);
    assert_eq!(busy["action"], "KEEP", "{busy}");
    assert!(
        stdout(&world.sandbox.run(&["status", "--json"])).contains("idle "),
        "status says how long it has been idle"
    );
    tag(chrono::Utc::now() - chrono::Duration::seconds(60));
    let idle = bastion_change(&world);
    assert_eq!(idle["action"], "UPDATE", "{idle}");
    assert!(
        idle["note"]
            .as_str()
            .is_some_and(|note| note.starts_with("idleStop: idle since ")),
        "{idle}"
    );
}

/// must-show: without `ssm:DescribeSessions` a colleague's session cannot be seen: the bastion is not stopped and
/// the plan names the missing permission
#[test]
fn describe_sessions_denied_keeps_the_bastion_and_the_plan_names_the_permission() {
    let world = World::new(true);
    world
        .sim
        .set_faults(|faults| faults.denied_operations = vec!["DescribeSessions".into()]);
    world.sandbox.write(
        "declastruct.yml",
        &idle_manifest("CLOSED", world.port, "3s"),
    );
    let change = bastion_change(&world);
    assert_eq!(change["action"], "KEEP", "{change}");
    let note = change["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("not stopped") && note.contains("ssm:DescribeSessions"),
        "{change}"
    );
    let plan = world.sandbox.run(&["plan"]);
    assert!(
        stdout(&plan).contains("ssm:DescribeSessions"),
        "{}",
        stdout(&plan)
    );
    assert_success(&world.apply());
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "running"
    );
}
