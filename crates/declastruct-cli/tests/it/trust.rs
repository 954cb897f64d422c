//! "Never lose a tunnel, never touch a foreign process": damaged records, killed processes, signals and
//! permissions, each driven through the real binary against moto, PostgreSQL and the session stand-in. Every test
//! ends on the invariant: after `apply` of a manifest that says CLOSED exits 0, no process of ours serves the
//! port, now or seconds later, and no process of the tunnel is alive.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use declastruct_aws::TunnelMeta;
use declastruct_test_support::{Postgres, free_port};
use declastruct_tunnel::{all_pids, is_port_in_use, is_process_alive, read_process};

use crate::apply::{World, assert_success};
use crate::support::{REGION, children_of, manifest_with_ports, stderr, stdout, wait_for};

/// pids of live processes whose environment marks them as a tunnel of this state folder
fn marked_processes(home: &Path) -> Vec<u32> {
    let tunnels = home.join("tunnels");
    all_pids()
        .into_iter()
        .filter_map(read_process)
        .filter(|process| {
            process
                .tunnel
                .as_deref()
                .is_some_and(|marker| marker.parent() == Some(tunnels.as_path()))
        })
        .map(|process| process.pid)
        .collect()
}

/// the invariant: for three seconds, nothing serves any of `ports` and no process of ours is alive
fn assert_closed_for_good(world: &World, ports: &[u16]) {
    let home = world.sandbox.home();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let alive = marked_processes(&home);
        assert!(alive.is_empty(), "processes of ours still alive: {alive:?}");
        for port in ports {
            assert!(!is_port_in_use(*port), "local port {port} still serves");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// every record in the tunnels folder, by local port, with its hash
fn records_by_port(world: &World) -> BTreeMap<u16, (String, TunnelMeta)> {
    let tunnels = world.sandbox.home().join("tunnels");
    std::fs::read_dir(&tunnels)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            if path.extension()?.to_str()? != "meta" {
                return None;
            }
            let meta: TunnelMeta = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            let hash = path.file_stem()?.to_str()?.to_string();
            Some((meta.local_port, (hash, meta)))
        })
        .collect()
}

fn status_rows(world: &World) -> Vec<serde_json::Value> {
    let status = world.sandbox.run(&["status", "--json"]);
    assert_success(&status);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    rows.as_array().cloned().unwrap_or_default()
}

fn tunnel_row(rows: &[serde_json::Value], port: u16) -> serde_json::Value {
    rows.iter()
        .find(|row| row["class"] == "DeclaredAwsVpcTunnel" && row["port"] == port)
        .cloned()
        .unwrap_or_else(|| panic!("no status row for port {port}: {rows:?}"))
}

/// a process the test starts in a session of its own, that declastruct must never signal
struct Foreign(Child);

impl Foreign {
    fn start() -> Self {
        let mut command = Command::new("sleep");
        command.arg("300").stdin(Stdio::null());
        // a process group of its own is not enough: the child leads a session of its own, as a daemon would
        #[allow(unsafe_code)]
        // SAFETY: setsid is async-signal-safe and the only call made between fork and exec
        unsafe {
            command.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        Self(command.spawn().expect("sleep"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// the ways a record is found damaged, each with what it does to the files of tunnel `hash`
const DAMAGES: [(&str, &str, Option<&str>); 8] = [
    ("garbage pid", "pid", Some("not a pid\n")),
    ("empty pid", "pid", Some("")),
    ("huge pid", "pid", Some("99999999999999999999999\n")),
    ("negative pid", "pid", Some("-42\n")),
    ("garbage meta", "meta", Some("}{ not json")),
    ("truncated meta", "meta", Some("{\"tunnel\": {\"via\": ")),
    (
        "wrong-shape meta",
        "meta",
        Some("{\"pid\": \"many\", \"ports\": [1, 2]}"),
    ),
    ("deleted meta", "meta", None),
];

fn damage(tunnels: &Path, hash: &str, extension: &str, contents: Option<&str>) {
    let path = tunnels.join(format!("{hash}.{extension}"));
    match contents {
        Some(contents) => std::fs::write(&path, contents).expect("damage"),
        None => std::fs::remove_file(&path).expect("delete"),
    }
}

/// 1 and 2: a damaged record never hides a tunnel: `status` shows it OPEN (unhealthy, with its pid and the
/// cause), an OPEN apply heals it, a CLOSED plan shows the change and a CLOSED apply closes it for good
#[test]
fn a_damaged_record_never_hides_a_tunnel() {
    let world = World::new(true);
    let ports: Vec<u16> = DAMAGES.iter().map(|_| free_port()).collect();
    let write = |status: &str| {
        world.sandbox.write(
            "declastruct.yml",
            &manifest_with_ports("running", status, &ports),
        );
    };
    write("OPEN");
    assert_success(&world.apply());
    let tunnels = world.sandbox.home().join("tunnels");
    let damage_all = || {
        let records = records_by_port(&world);
        for ((_, extension, contents), port) in DAMAGES.iter().zip(&ports) {
            let (hash, _) = &records[port];
            damage(&tunnels, hash, extension, *contents);
        }
    };

    damage_all();
    let rows = status_rows(&world);
    for ((case, ..), port) in DAMAGES.iter().zip(&ports) {
        let row = tunnel_row(&rows, *port);
        assert_eq!(row["status"], "OPEN (unhealthy)", "{case}: {row}");
        assert!(row["pid"].is_u64(), "{case}: {row}");
        assert!(
            row["healthReason"].as_str().is_some_and(
                |reason| reason.contains("its record") || reason.contains("its pid file")
            ),
            "{case}: {row}"
        );
    }
    let plan = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stdout(&plan));

    // an OPEN apply heals every one: whole records, one supervisor each, the database answers
    let healed = world.apply();
    assert_success(&healed);
    let records = records_by_port(&world);
    for ((case, ..), port) in DAMAGES.iter().zip(&ports) {
        let (_, meta) = records
            .get(port)
            .unwrap_or_else(|| panic!("{case}: no record after healing"));
        assert!(meta.ready && is_process_alive(meta.pid), "{case}");
        assert_eq!(
            Postgres::psql(*port, "select 1").as_deref(),
            Ok("1"),
            "{case}"
        );
    }
    let in_sync = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(in_sync.status.code(), Some(0), "{}", stdout(&in_sync));

    // damaged again, then declared CLOSED: the plan shows the close, the apply does it
    damage_all();
    write("CLOSED");
    let plan = world
        .sandbox
        .run(&["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    let document: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON");
    let updates = document["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|change| change["action"] == "UPDATE")
        .count();
    assert_eq!(updates, ports.len());
    assert_success(&world.apply());
    assert_closed_for_good(&world, &ports);
    assert_eq!(
        std::fs::read_dir(&tunnels).map_or(0, std::iter::Iterator::count),
        0,
        "no files left"
    );
}

/// 1: a killed supervisor leaves its session serving: the tunnel is OPEN and unhealthy (nothing restarts
/// it), and a CLOSED apply ends the session too
#[test]
fn a_session_whose_supervisor_was_killed_is_found_and_closed() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = world.only_meta();
    let session = children_of(meta.pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(meta.pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the supervisor");
    assert!(wait_for(Duration::from_secs(5), || !is_process_alive(
        meta.pid
    )));
    assert!(is_process_alive(session[0]), "its session lives on");
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));

    let row = tunnel_row(&status_rows(&world), world.port);
    assert_eq!(row["status"], "OPEN (unhealthy)", "{row}");
    assert!(
        row["healthReason"]
            .as_str()
            .is_some_and(|reason| reason.contains("its supervisor is gone")),
        "{row}"
    );
    world.declare("running", "CLOSED");
    let plan = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stdout(&plan));
    assert_success(&world.apply());
    assert_closed_for_good(&world, &[world.port]);
}

/// 1: a tunnels folder replaced under a running tunnel: the tunnel is still found, and closed
#[test]
fn a_replaced_tunnels_folder_hides_nothing() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let tunnels = world.sandbox.home().join("tunnels");
    std::fs::rename(&tunnels, world.sandbox.path("old-tunnels")).expect("move away");
    std::fs::create_dir(&tunnels).expect("a new folder");

    let row = tunnel_row(&status_rows(&world), world.port);
    assert_eq!(row["status"], "OPEN (unhealthy)", "{row}");
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
    assert_closed_for_good(&world, &[world.port]);
}

/// 2: a session alive whose database does not answer is OPEN and unhealthy, never CLOSED: the plan shows the
/// change and a CLOSED apply closes it, so it cannot serve again later
#[test]
fn an_open_tunnel_whose_database_stopped_is_closed_by_a_closed_apply() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    world.postgres.stop();

    let row = tunnel_row(&status_rows(&world), world.port);
    assert_eq!(row["status"], "OPEN (unhealthy)", "{row}");
    assert!(row["pid"].is_u64(), "{row}");
    let plan = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "the OPEN manifest heals it: {}",
        stdout(&plan)
    );
    assert!(
        stdout(&plan).contains("+health: healthy"),
        "{}",
        stdout(&plan)
    );

    world.declare("running", "CLOSED");
    let plan = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stdout(&plan));
    assert!(
        stdout(&plan).contains("+status: CLOSED"),
        "{}",
        stdout(&plan)
    );
    assert_success(&world.apply());
    assert_closed_for_good(&world, &[world.port]);
}

/// 2: a supervisor between restarts (its session refused, backing off) is OPEN and unhealthy; an OPEN apply
/// heals it at once
#[test]
fn a_supervisor_between_restarts_is_healed_by_an_open_apply() {
    let mut world = World::new(true);
    let counter = world.refuse_first_sessions(1000);
    // the first session succeeds (it is number 1001), later ones are refused until the counter is put back
    std::fs::write(&counter, "1000").expect("counter");
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    std::fs::write(&counter, "0").expect("counter");
    let meta = world.only_meta();
    let session = children_of(meta.pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(session[0]).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the session");
    let log = world.sandbox.home().join("tunnels").join(
        PathBuf::from(&meta.command[3])
            .file_name()
            .expect("log name"),
    );
    assert!(
        wait_for(Duration::from_secs(10), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Z] restart 2 in")),
        "the supervisor backs off: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let row = tunnel_row(&status_rows(&world), world.port);
    assert_eq!(row["status"], "OPEN (unhealthy)", "{row}");
    assert!(
        row["healthReason"]
            .as_str()
            .is_some_and(|reason| reason.contains("restarting after")),
        "{row}"
    );

    std::fs::write(&counter, "1000").expect("counter");
    let healed = world.apply();
    assert_success(&healed);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    assert!(
        !is_process_alive(meta.pid),
        "the old supervisor was replaced"
    );
    let in_sync = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(in_sync.status.code(), Some(0), "{}", stdout(&in_sync));
}

/// starts `apply --auto-approve` of an OPEN tunnel whose sessions are all refused (TargetNotConnected), and
/// returns it once its supervisor is recorded and waiting for the agent
fn apply_waiting_for_the_agent(world: &mut World) -> Child {
    world.refuse_first_sessions(100_000);
    world.declare("running", "OPEN");
    let child = world
        .sandbox
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("apply");
    let home = world.sandbox.home();
    assert!(
        wait_for(Duration::from_secs(20), || {
            !marked_processes(&home).is_empty() && !records_by_port(world).is_empty()
        }),
        "the apply started and recorded a supervisor"
    );
    // inside the agent wait: the supervisor has logged the refused session's restart
    assert!(
        wait_for(Duration::from_secs(20), || {
            std::fs::read_dir(home.join("tunnels"))
                .into_iter()
                .flatten()
                .flatten()
                .filter(|entry| {
                    entry
                        .path()
                        .extension()
                        .is_some_and(|extension| extension == "log")
                })
                .any(|entry| {
                    std::fs::read(entry.path()).is_ok_and(|log| {
                        String::from_utf8_lossy(&log).contains("] attempt 1 ended")
                    })
                })
        }),
        "the supervisor retried a refused session: apply waits for the agent"
    );
    child
}

/// 3 and 4: SIGINT, SIGTERM and SIGHUP to `apply` during the agent wait end it within seconds, stopping what
/// it started; nothing is left running or recorded
#[test]
fn an_interrupted_apply_stops_what_it_started() {
    for signal in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let mut world = World::new(true);
        let child = apply_waiting_for_the_agent(&mut world);
        let interrupted = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
            signal,
        )
        .expect("signal");
        let output = child.wait_with_output().expect("wait");
        let took = interrupted.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "{signal}: the 180 s agent wait ended on the signal, after {took:?}"
        );
        assert_eq!(
            output.status.code(),
            Some(1),
            "{signal}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(message.contains("Interrupted"), "{signal}: {message}");
        assert_closed_for_good(&world, &[world.port]);
        assert!(
            records_by_port(&world).is_empty(),
            "{signal}: no record left"
        );
    }
}

/// 3: an `apply` killed outright (SIGKILL, a cancelled CI job) leaves its supervisor recorded; the supervisor
/// sees that nobody waits for it any more, gives up and removes its own record
#[test]
fn a_killed_apply_leaves_nothing_unrecorded_and_its_supervisor_gives_up() {
    let mut world = World::new(true);
    let mut child = apply_waiting_for_the_agent(&mut world);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    // right after: every live process of ours belongs to a recorded tunnel
    let home = world.sandbox.home();
    let records = records_by_port(&world);
    for pid in marked_processes(&home) {
        let marker = read_process(pid).and_then(|process| process.tunnel);
        assert!(
            records.values().any(|(hash, _)| marker
                .as_deref()
                .and_then(Path::file_name)
                .is_some_and(|name| name == hash.as_str())),
            "pid {pid} is recorded"
        );
    }
    assert!(
        wait_for(Duration::from_secs(10), || marked_processes(&home)
            .is_empty()),
        "the supervisor gave up"
    );
    assert_closed_for_good(&world, &[world.port]);
    assert!(records_by_port(&world).is_empty(), "it removed its record");
    let plan = world.sandbox.run(&["plan", "--json"]);
    let document: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON");
    assert_eq!(
        document["changes"][2]["state"]["remote"]["status"],
        "CLOSED"
    );
}

/// 5 and must-show 2: a foreign process named in a damaged record (as the pid, the process group, with or
/// without a start time) survives every command, while the real tunnel beside it is closed
#[test]
fn a_foreign_process_named_in_a_record_survives_every_command() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let mut foreign = Foreign::start();
    let foreign_pid = foreign.pid();
    let (hash, _) = records_by_port(&world)
        .remove(&world.port)
        .expect("the tunnel's record");
    let tunnels = world.sandbox.home().join("tunnels");
    let plant = |start_time: serde_json::Value| {
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(tunnels.join(format!("{hash}.meta"))).unwrap_or_default(),
        )
        .unwrap_or_default();
        let mut meta = if meta.is_object() {
            meta
        } else {
            serde_json::json!({
                "tunnel": {"via": {"mechanism": "aws.ssm", "bastion": {"exid": "vpc-main-bastion"}},
                           "into": {"cluster": {"name": "ahbodedb"}},
                           "from": {"host": "localhost", "port": world.port}, "status": "OPEN"},
                "instanceId": world.instance_id, "remoteHost": "x", "remotePort": 5432,
                "localPort": world.port, "command": ["aws"], "openedAt": "2026-01-01T00:00:00Z"
            })
        };
        meta["pid"] = foreign_pid.into();
        meta["processGroup"] = foreign_pid.into();
        meta["processStartTime"] = start_time;
        std::fs::write(tunnels.join(format!("{hash}.meta")), meta.to_string()).expect("meta");
        std::fs::write(tunnels.join(format!("{hash}.pid")), foreign_pid.to_string()).expect("pid");
    };
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let start_time = read_process(foreign_pid)
        .map(|process| process.stat.start_time)
        .expect("start time");
    for recorded_start in [serde_json::json!(start_time), serde_json::Value::Null] {
        plant(recorded_start.clone());
        for args in [
            vec!["validate"],
            vec!["plan"],
            vec!["status"],
            vec!["logs", address.as_str()],
        ] {
            let _ = world.sandbox.run(&args);
            assert!(foreign.alive(), "{args:?} with start time {recorded_start}");
        }
        // OPEN: the tunnel is ours and serves, its record is repaired by reopening it; the foreign lives
        assert_success(&world.apply());
        assert!(
            foreign.alive(),
            "apply OPEN with start time {recorded_start}"
        );
        assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
        plant(recorded_start.clone());
    }
    // CLOSED: the close reaches the code that signals, with the foreign process named in the record
    world.declare("running", "CLOSED");
    let closed = world.apply();
    assert_success(&closed);
    assert!(stdout(&closed).contains("1 applied"), "{}", stdout(&closed));
    assert!(foreign.alive(), "apply CLOSED never signals it");
    assert_closed_for_good(&world, &[world.port]);
    // and a record of a dead pid whose group the foreign process now leads
    std::fs::create_dir_all(&tunnels).expect("tunnels");
    plant(serde_json::Value::Null);
    std::fs::write(tunnels.join(format!("{hash}.pid")), "4194300").expect("pid");
    assert_success(&world.apply());
    assert!(
        foreign.alive(),
        "a recorded group is never signalled on its own"
    );
}

/// 5 through the SDK: `set_vpc_tunnel` CLOSED with a record naming a foreign process closes the tunnel and
/// never signals the foreign process
#[test]
fn the_sdk_never_signals_a_process_named_in_a_damaged_record() {
    use declastruct_aws::{
        ContextAwsApi, DeclaredAwsVpcTunnel, Ec2InstanceRef, LoopbackHost, RdsClusterRef,
        TunnelMechanism, VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia,
        set_vpc_tunnel,
    };
    let mut world = World::new(true);
    // a program's own AWS CLI (a context's `aws_cli`): the stand-in, with the environment it needs, behind a script
    // (the test process's own environment stays as it is)
    world.use_fake_aws_cli();
    let wrapper = world.sandbox.path("aws");
    let env: String = world
        .sandbox
        .command(&[])
        .get_envs()
        .filter_map(|(key, value)| {
            let key = key.to_str()?;
            let value = value?.to_str()?;
            (key.starts_with("AWS_") || key.starts_with("DECLASTRUCT_FAKE_"))
                .then(|| format!("export {key}='{value}'\n"))
        })
        .collect();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{env}exec '{}' \"$@\"\n",
            crate::support::fake_aws_cli().display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut context = ContextAwsApi::from_sdk_config(&world.moto.sdk_config(REGION));
    context.state_dir = world.sandbox.home();
    context.aws_cli = wrapper.into_os_string();
    context.supervisor = Some(PathBuf::from(env!("CARGO_BIN_EXE_declastruct")));
    let tunnel = DeclaredAwsVpcTunnel {
        name: None,
        via: VpcTunnelVia {
            mechanism: TunnelMechanism::AwsSsm,
            bastion: Ec2InstanceRef::by_exid("vpc-main-bastion"),
            transport: None,
        },
        into: VpcTunnelInto::cluster(RdsClusterRef::by_name("ahbodedb")),
        from: VpcTunnelFrom {
            host: LoopbackHost::Localhost,
            port: world.port,
            expose: false,
        },
        status: None,
        pid: None,
        health: None,
        connect: None,
        idle_close: None,
    };
    let opened = runtime
        .block_on(set_vpc_tunnel(
            &tunnel.with_status(VpcTunnelStatus::Open, None),
            &context,
        ))
        .expect("opened");
    assert_eq!(opened.status, Some(VpcTunnelStatus::Open));
    let mut foreign = Foreign::start();
    let (hash, meta) = records_by_port(&world).remove(&world.port).expect("record");
    let mut planted = serde_json::to_value(&meta).expect("meta");
    planted["pid"] = foreign.pid().into();
    planted["processGroup"] = foreign.pid().into();
    let tunnels = world.sandbox.home().join("tunnels");
    std::fs::write(tunnels.join(format!("{hash}.meta")), planted.to_string()).expect("meta");
    std::fs::write(
        tunnels.join(format!("{hash}.pid")),
        foreign.pid().to_string(),
    )
    .expect("pid");
    let closed = runtime
        .block_on(set_vpc_tunnel(
            &tunnel.with_status(VpcTunnelStatus::Closed, None),
            &context,
        ))
        .expect("closed");
    assert_eq!(closed.status, Some(VpcTunnelStatus::Closed));
    assert!(foreign.alive(), "the foreign process was never signalled");
    assert!(!is_process_alive(meta.pid), "our supervisor is gone");
    assert_closed_for_good(&world, &[world.port]);
}

/// 6: a tunnels folder the user cannot read is an error naming it, never "no tunnels" and "No changes"
#[test]
fn an_unreadable_tunnels_folder_is_an_error_naming_it() {
    let world = World::new(true);
    world.declare("running", "CLOSED");
    let tunnels = world.sandbox.home().join("tunnels");
    std::fs::create_dir_all(&tunnels).expect("tunnels");
    let root = nix::unistd::geteuid().is_root();
    let run_as_user = |args: &[&str]| {
        let mut command = world.sandbox.command(args);
        if root {
            // root reads any folder: run as an ordinary user who owns the sandbox but not the tunnels folder
            let nobody = nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .expect("a `nobody` user");
            command.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        }
        command.output().expect("run")
    };
    if root {
        use std::os::unix::fs::PermissionsExt;
        let nobody = nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .expect("a `nobody` user");
        for path in [world.sandbox.dir.path(), &world.sandbox.home()] {
            nix::unistd::chown(path, Some(nobody.uid), Some(nobody.gid)).expect("chown");
        }
        std::fs::set_permissions(
            world.sandbox.dir.path(),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::set_permissions(&tunnels, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tunnels, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    }
    for args in [
        vec!["plan"],
        vec!["status"],
        vec!["apply", "--auto-approve"],
    ] {
        let output = run_as_user(&args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stdout(&output)
        );
        let message = stderr(&output);
        // a folder of another user is refused for that (state folders must be the user's own); one of the user's
        // own that cannot be read, for that
        assert!(
            (message.contains("cannot read the tunnels folder")
                || message.contains("belongs to another user"))
                && message.contains(&tunnels.display().to_string()),
            "{args:?}: {message}"
        );
        assert!(!stdout(&output).contains("No changes"), "{args:?}");
    }
}

/// 7: with HOME and DECLASTRUCT_HOME both unset, state goes to the passwd entry's home, never to a folder
/// relative to wherever the command runs
#[test]
fn without_home_the_state_folder_is_the_users_home_from_passwd() {
    let mut world = World::new(true);
    world.sandbox.remove_env("HOME");
    world.sandbox.remove_env("DECLASTRUCT_HOME");
    let output = world.sandbox.run(&["logs", "nothing.here.1"]);
    assert_eq!(output.status.code(), Some(1));
    let home = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .expect("a passwd entry")
        .dir;
    let message = stderr(&output);
    assert!(
        message.contains(&home.join(".declastruct").display().to_string())
            || message.contains("open tunnels:"),
        "{message}"
    );
    assert!(!message.contains("./.declastruct"), "{message}");
    assert!(!world.sandbox.path(".declastruct").exists());
}

/// 8: every line declastruct writes into a tunnel's log is stamped with a UTC time, and a log that grew
/// beyond its limit is cut back to its tail at the next restart
#[test]
fn the_log_is_stamped_and_kept_within_bounds() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = world.only_meta();
    let log = world
        .sandbox
        .home()
        .join("tunnels")
        .join(PathBuf::from(&meta.command[3]).file_name().expect("log"));
    // a log that grew large while the session restarted many times
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("log");
        let line = "An error occurred (TargetNotConnected) when calling the StartSession operation: i-0 is not connected.\n";
        for _ in 0..(3 * 1024 * 1024 / line.len()) {
            file.write_all(line.as_bytes()).expect("fill");
        }
    }
    let session = children_of(meta.pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(session[0]).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the session");
    // cut back in place (the session keeps appending to the same file), then marked as cut
    assert!(
        wait_for(Duration::from_secs(10), || {
            std::fs::metadata(&log).is_ok_and(|metadata| metadata.len() < 1024 * 1024)
                && std::fs::read_to_string(&log)
                    .is_ok_and(|text| text.contains("earlier lines were dropped"))
        }),
        "the log was cut back"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("[declastruct"))
        .collect();
    assert!(!ours.is_empty(), "{text}");
    for line in ours {
        let stamp = line
            .strip_prefix("[declastruct ")
            .and_then(|rest| rest.split_once("] "))
            .map(|(stamp, _)| stamp)
            .unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.ends_with('Z'),
            "{line}"
        );
    }
    assert!(
        wait_for(Duration::from_secs(5), || Postgres::psql(
            world.port, "select 1"
        )
        .as_deref()
            == Ok("1")),
        "the tunnel serves again"
    );
    let status = tunnel_row(&status_rows(&world), world.port);
    assert_eq!(status["restarts"], 1, "{status}");
}
