//! Inputs and output streams that must not be turned against the user (issue 21): files that never end, a plan
//! written over a manifest, secrets without a password or out of reach, output to a full disk or a closed stream,
//! progress on a dumb terminal and in a CI log, an endpoint without a scheme, and saved plans made with
//! `--target`. Each through the real binary.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use declastruct_test_support::{Moto, free_port};

use crate::apply::{World, assert_success};
use crate::assert_shown;
use crate::support::{REGION, Sandbox, manifest, shown, stderr, stdout};

/// the memory limit the issue observed the failures under (`ulimit -v 2000000`, in KiB)
const MEMORY_LIMIT_KIB: &str = "2000000";

/// runs the binary with `args` under the address-space limit, with stdout and stderr captured; the time it took
fn run_under_memory_limit(sandbox: &Sandbox, args: &[&str]) -> (Output, Duration) {
    let command = sandbox.command(&[]);
    let program = command.get_program().to_owned();
    let mut limited = Command::new("bash");
    limited
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(program)
        .args(args)
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .stdin(Stdio::null());
    let started = Instant::now();
    let output = limited.output().expect("bash");
    (output, started.elapsed())
}

/// item 2: a manifest or a saved plan that never ends (`/dev/zero`), or a saved plan that is a 2 GB sparse file,
/// is refused with the file and the limit named, in well under a second and under a 2 GB memory limit
#[test]
fn a_manifest_or_saved_plan_that_never_ends_is_refused_at_its_limit() {
    let sandbox = Sandbox::new(None);
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));
    let sparse = std::fs::File::create(sandbox.path("sparse-plan.json")).expect("create");
    sparse
        .set_len(2 * 1024 * 1024 * 1024)
        .expect("a sparse 2 GB file");
    let cases: [&[&str]; 5] = [
        &["validate", "-f", "/dev/zero"],
        &["plan", "-f", "/dev/zero"],
        &["show", "/dev/zero"],
        &["show", "sparse-plan.json"],
        &["apply", "--plan", "sparse-plan.json"],
    ];
    let mut everything = String::new();
    for args in cases {
        let (output, took) = run_under_memory_limit(&sandbox, args);
        assert!(
            took < Duration::from_secs(1),
            "{args:?} took {took:?}:\n{}",
            shown(&output)
        );
        everything.push_str(&format!(
            "$ declastruct {}\n{}\n",
            args.join(" "),
            shown(&output)
        ));
    }
    crate::support::stable_settings().bind(|| {
        insta::assert_snapshot!("refused_at_their_limit", everything);
    });
}

/// item 6: stdout on a full disk is exit 1 with a message on stderr for every command that prints; a closed
/// stdout is quiet with the command's own status; a full stderr is never a panic
#[test]
fn output_that_cannot_be_written() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    assert_success(&world.sandbox.run(&["plan", "--out", "plan.json"]));
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let commands: [&[&str]; 6] = [
        &["validate"],
        &["plan"],
        &["show", "plan.json"],
        &["env", &address],
        &["logs", &address],
        &["status"],
    ];
    let mut everything = String::new();
    for args in commands {
        let output = world
            .sandbox
            .command(args)
            .stdout(dev_full())
            .output()
            .expect("run");
        everything.push_str(&format!(
            "$ declastruct {} > /dev/full\n{}\n",
            args.join(" "),
            shown(&output)
        ));
        let closed = closed_stdout(&world.sandbox, args);
        everything.push_str(&format!(
            "$ declastruct {} >&-\n{}\n",
            args.join(" "),
            shown(&closed)
        ));
    }
    world
        .sandbox
        .write("broken.yml", "resources:\n  - kind: Nothing\n");
    let full_stderr = world
        .sandbox
        .command(&["validate", "-f", "broken.yml"])
        .stderr(dev_full())
        .output()
        .expect("run");
    everything.push_str(&format!(
        "$ declastruct validate -f broken.yml 2> /dev/full\n{}\n",
        shown(&full_stderr)
    ));
    crate::support::settings_for_ports(&[world.port]).bind(|| {
        insta::assert_snapshot!("output_that_cannot_be_written", everything);
    });
}

/// /dev/full, opened for writing: every write fails with "No space left on device"
fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
}

/// the binary run with its stdout closed (`>&-`), through bash
fn closed_stdout(sandbox: &Sandbox, args: &[&str]) -> Output {
    let command = sandbox.command(&[]);
    Command::new("bash")
        .arg("-c")
        .arg("exec >&-; exec \"$0\" \"$@\"")
        .arg(command.get_program())
        .args(args)
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .expect("bash")
}

/// an endpoint that answers every request after `delay` with an error AWS would not retry
fn slow_failing_endpoint(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0_u8; 65536];
                let _ = stream.read(&mut request);
                std::thread::sleep(delay);
                let body = "<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>the test endpoint refuses every request</Message></Error></Errors><RequestID>test</RequestID></Response>";
                let _ = write!(
                    stream,
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// item 7: on a terminal whose `TERM` is `dumb`, a wait shows no spinner and moves no cursor (no escape code, no
/// carriage return that is not the terminal's own line end), and a wait of more than 5 s gets the plain line a CI
/// log gets
#[test]
fn a_dumb_terminal_gets_no_spinner_and_plain_lines() {
    let mut sandbox = Sandbox::new(None);
    let port = slow_failing_endpoint(Duration::from_millis(6000));
    sandbox.set_env("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{port}"));
    sandbox.set_env("AWS_REGION", REGION);
    sandbox.set_env("AWS_ACCESS_KEY_ID", "testing");
    sandbox.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));
    let command = sandbox.command(&[]);
    let output = Command::new("python3")
        .arg("-c")
        .arg(
            "import os, pty, sys; status = pty.spawn(sys.argv[1:]); \
             sys.exit(os.waitstatus_to_exitcode(status))",
        )
        .arg(command.get_program())
        .arg("plan")
        .current_dir(sandbox.dir.path())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned()))),
        )
        .env("TERM", "dumb")
        .stdin(Stdio::null())
        .output()
        .expect("python3 pty");
    let screen = output.stdout;
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&screen)
    );
    let text = String::from_utf8_lossy(&screen).into_owned();
    assert!(
        !text.contains('\u{1b}'),
        "an escape code on a dumb terminal:\n{text:?}"
    );
    assert!(
        !text.replace("\r\n", "\n").contains('\r'),
        "a carriage return that redraws a line on a dumb terminal:\n{text:?}"
    );
    assert!(
        text.contains("InvalidParameterValue"),
        "the error is shown:\n{text}"
    );
    let waiting: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with('…'))
        .map(|line| line.trim_end_matches('\r'))
        .collect();
    assert_eq!(
        waiting,
        [format!(
            "… reading live state: ec2:DescribeInstances, rds:DescribeDBClusters at http://127.0.0.1:{port}: still waiting after 5 s"
        )],
        "{text}"
    );
}

/// a far end that answers PostgreSQL's SSLRequest with `N`, or, once `silent` is set, answers nothing
fn database_that_can_fall_silent(silent: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let silent = Arc::clone(&silent);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut request = [0_u8; 8];
                if stream.read_exact(&mut request).is_err() {
                    return;
                }
                if silent.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_secs(30));
                    return;
                }
                let _ = stream.write_all(b"N");
                let _ = stream.read(&mut request);
            });
        }
    });
    port
}

/// a loopback port that forwards every connection to `target`, once `delay` has passed since it was accepted
fn delaying_proxy(target: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    return;
                };
                let (Ok(mut client_reader), Ok(mut server_writer)) =
                    (client.try_clone(), server.try_clone())
                else {
                    return;
                };
                let upstream = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_reader, &mut server_writer);
                    let _ = server_writer.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_reader, mut client_writer) = (server, client);
                let _ = std::io::copy(&mut server_reader, &mut client_writer);
                let _ = client_writer.shutdown(std::net::Shutdown::Write);
                let _ = upstream.join();
            });
        }
    });
    port
}

/// item 7: with stderr in a file (a CI log) and a health probe that waits its whole limit, the waiting line names
/// the probe, not the AWS calls that have already answered
#[test]
fn a_waiting_line_names_what_is_waited_for() {
    let moto = Moto::start();
    moto.seed_bastion(REGION, "vpc-main-bastion", true);
    let (writer, remote_port) = moto.seed_cluster(REGION, "ahbodedb");
    let silent = Arc::new(AtomicBool::new(false));
    let database = database_that_can_fall_silent(Arc::clone(&silent));
    let mut sandbox = Sandbox::new(Some(&moto));
    let sim = crate::support::simulator(&moto, &[(&format!("{writer}:{remote_port}"), database)]);
    sandbox.use_real_chain(&sim.endpoint());
    let port = free_port();
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", port));
    assert_success(&sandbox.run(&["apply", "--auto-approve"]));

    silent.store(true, Ordering::SeqCst);
    // AWS answers after a second and a half, then the probe waits its whole 5 s: at 5 s, the probe is waited for
    let moto_port: u16 = moto
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("moto's port");
    let proxy = delaying_proxy(moto_port, Duration::from_millis(1500));
    sandbox.set_env("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{proxy}"));
    let status = sandbox.run(&["status"]);
    let waiting: Vec<String> = stderr(&status)
        .lines()
        .filter(|line| line.starts_with('…'))
        .map(str::to_string)
        .collect();
    // not a snapshot: the snapshots' filters drop these lines, which come or not with the machine's speed
    assert_eq!(
        waiting,
        [format!(
            "… reading live state: checking the tunnels on this machine: their processes, and a health probe through local port {port}: still waiting after 5 s"
        )],
        "{}",
        shown(&status)
    );
}

/// item 4: `plan --out` never writes over the manifest, nor over any other file that is not a plan; a new file,
/// an empty one and an older plan are written
#[test]
fn plan_out_writes_only_a_new_file_or_over_a_plan() {
    let moto = Moto::start();
    moto.seed_bastion(REGION, "vpc-main-bastion", true);
    moto.seed_cluster(REGION, "ahbodedb");
    let sandbox = Sandbox::new(Some(&moto));
    let text = manifest("running", "CLOSED", 7775);
    sandbox.write("declastruct.yml", &text);
    sandbox.write("notes.txt", "not a plan: keep me\n");

    let over_manifest = sandbox.run(&["plan", "-f", "declastruct.yml", "--out", "declastruct.yml"]);
    assert_shown!("plan_out_over_the_manifest", over_manifest);
    assert_eq!(
        std::fs::read_to_string(sandbox.path("declastruct.yml")).expect("manifest"),
        text,
        "the manifest is untouched, byte for byte"
    );
    let over_notes = sandbox.run(&["plan", "--out", "notes.txt"]);
    assert_shown!("plan_out_over_another_file", over_notes);
    assert_eq!(
        std::fs::read_to_string(sandbox.path("notes.txt")).expect("notes"),
        "not a plan: keep me\n"
    );

    assert_success(&sandbox.run(&["plan", "--out", "plan.json"]));
    assert_success(&sandbox.run(&["plan", "--out", "plan.json"]));
    sandbox.write("empty.json", "");
    assert_success(&sandbox.run(&["plan", "--out", "empty.json"]));
    for written in ["plan.json", "empty.json"] {
        let shown = sandbox.run(&["show", written]);
        assert_success(&shown);
    }
}

/// item 11: `plan --target X --out P` records its targets; the command its hint prints applies that plan
#[test]
fn a_plan_saved_with_target_is_applied_by_the_command_its_hint_prints() {
    let moto = Moto::start();
    let bastion = moto.seed_bastion(REGION, "vpc-main-bastion", false);
    moto.seed_cluster(REGION, "ahbodedb");
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &manifest("running", "CLOSED", 7775));

    let plan = sandbox.run(&[
        "plan",
        "-f",
        "declastruct.yml",
        "--target",
        "vpc-main-bastion",
        "--out",
        "plan.json",
    ]);
    assert_shown!("plan_with_target_saved", plan);
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sandbox.path("plan.json")).expect("plan.json"))
            .expect("a plan document");
    assert_eq!(
        document["wish"]["targets"],
        serde_json::json!(["vpc-main-bastion"])
    );

    // the hint, as printed: `declastruct apply -f declastruct.yml --plan plan.json`
    let printed = stdout(&plan);
    let hint = printed
        .split('`')
        .find(|part| part.starts_with("declastruct apply "))
        .expect("a hint");
    let words: Vec<&str> = hint.split_whitespace().skip(1).collect();
    let apply = sandbox.run(&words);
    assert_shown!("apply_of_the_hint", apply);
    assert_eq!(moto.instance_state(REGION, &bastion.instance_id), "running");

    // other targets than the plan's are refused before anything changes
    let other = sandbox.run(&["apply", "--plan", "plan.json", "--target", "ahbodedb"]);
    assert_shown!("apply_plan_with_other_targets", other);
}

/// item 5: a secret without `password` names the secret and its keys, never their values; a missing secret and
/// an ARN in another region name the secret, the region and the tunnel
#[test]
fn a_secret_without_a_password_or_out_of_reach_is_named() {
    let world = World::new(true);
    world.moto.seed_secret(
        REGION,
        "prod/no-password",
        &serde_json::json!({"username": "app", "pass": "hunter2-value", "engine": "postgres"})
            .to_string(),
    );
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let mut everything = String::new();
    for secret in [
        "prod/no-password",
        "prod/nowhere",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app-db-AbCdEf",
    ] {
        let text = manifest("running", "OPEN", world.port);
        world.sandbox.write(
            "declastruct.yml",
            &format!("{text}    connect:\n      password: {{ secret: \"{secret}\" }}\n"),
        );
        let output = world.sandbox.run(&["env", &address]);
        assert!(
            !shown(&output).contains("hunter2-value"),
            "a secret's value is never shown"
        );
        everything.push_str(&format!(
            "$ declastruct env ADDRESS   # {secret}\n{}\n",
            shown(&output)
        ));
    }
    crate::support::settings_for_ports(&[world.port]).bind(|| {
        insta::assert_snapshot!("secrets_out_of_reach", everything);
    });
}

/// item 10: an endpoint without a scheme is named as the user gave it, with the variable, before any call and
/// without pointing at a manifest line
#[test]
fn an_endpoint_without_a_scheme_is_named_as_given() {
    let mut sandbox = Sandbox::new(None);
    let port = free_port();
    sandbox.set_env("AWS_ENDPOINT_URL", &format!("127.0.0.1:{port}"));
    sandbox.set_env("AWS_REGION", REGION);
    sandbox.set_env("AWS_ACCESS_KEY_ID", "testing");
    sandbox.set_env("AWS_SECRET_ACCESS_KEY", "testing");
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));
    let output = sandbox.run(&["plan"]);
    assert_shown!("endpoint_without_a_scheme", output, &[port]);
}
