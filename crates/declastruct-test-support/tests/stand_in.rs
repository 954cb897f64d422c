//! The stand-in for `aws ssm start-session` behaves as the real CLI and plugin do where declastruct looks:
//! its arguments, its messages, TargetNotConnected for an instance that is not running, and the bytes it
//! forwards. Having these tests here also makes `cargo test --workspace` build the binary that the CLI's
//! integration tests run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use declastruct_test_support::{Moto, free_port};

const STAND_IN: &str = env!("CARGO_BIN_EXE_fake-aws-cli");
const DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";

fn parameters(host: &str, port: u16, local_port: u16) -> String {
    format!(r#"{{"host":["{host}"],"portNumber":["{port}"],"localPortNumber":["{local_port}"]}}"#)
}

fn session(target: &str, parameters: &str) -> Command {
    let mut command = Command::new(STAND_IN);
    command.args([
        "ssm",
        "start-session",
        "--target",
        target,
        "--document-name",
        DOCUMENT,
        "--parameters",
        parameters,
        "--region",
        "us-east-1",
    ]);
    command
}

/// kills the session's whole process group when a test ends, pass or fail
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.wait();
    }
}

fn spawn_in_own_group(mut command: Command) -> Running {
    use std::os::unix::process::CommandExt;
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Running(command.spawn().expect("start the stand-in"))
}

#[test]
fn arguments_the_aws_cli_would_refuse_are_refused_with_its_exit_code() {
    let output = Command::new(STAND_IN)
        .args(["ssm", "start-session", "--target"])
        .output()
        .expect("run the stand-in");
    assert_eq!(output.status.code(), Some(252));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("aws: error: argument --target: expected one argument"),
        "{stderr}"
    );

    let output = session("i-0123", "{not json")
        .output()
        .expect("run the stand-in");
    assert_eq!(output.status.code(), Some(252));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Invalid JSON"));
}

#[test]
fn a_stopped_instance_is_not_connected_and_a_running_one_forwards_bytes() {
    let moto = Moto::start();
    let stopped = moto.seed_bastion("us-east-1", "stopped-bastion", false);
    let running = moto.seed_bastion("us-east-1", "running-bastion", true);

    let output = session(
        &stopped.instance_id,
        &parameters("db.internal", 5432, free_port()),
    )
    .envs(moto.env("us-east-1"))
    .output()
    .expect("run the stand-in");
    assert_eq!(output.status.code(), Some(254));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        format!(
            "An error occurred (TargetNotConnected) when calling the StartSession operation: {} is not connected.",
            stopped.instance_id
        )
    );

    // an echo server plays the database behind the bastion
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the echo server");
    let server_port = server.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut stream in server.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            });
        }
    });

    let local_port = free_port();
    let mut command = session(
        &running.instance_id,
        &parameters("db.internal", 5432, local_port),
    );
    command.envs(moto.env("us-east-1")).env(
        "DECLASTRUCT_FAKE_SSM_HOSTS",
        format!("db.internal:5432=127.0.0.1:{server_port}"),
    );
    let mut child = spawn_in_own_group(command);
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a line of output");
        let done = line == "Waiting for connections...";
        seen.push(line);
        if done {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|line| line.starts_with("Starting session with SessionId: ")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|line| line.starts_with(&format!("Port {local_port} opened for sessionId "))),
        "{seen:?}"
    );

    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, local_port)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    client.write_all(b"select 1").expect("write");
    let mut answer = [0u8; 8];
    client.read_exact(&mut answer).expect("the echo");
    assert_eq!(&answer, b"select 1");
    // mux mode serves several clients at once
    let mut second = TcpStream::connect((Ipv4Addr::LOCALHOST, local_port)).expect("connect");
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    second.write_all(b"select 2").expect("write");
    second.read_exact(&mut answer).expect("the echo");
    assert_eq!(&answer, b"select 2");

    // SIGINT to the group: the plugin ends its session and both processes exit 0
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal the session");
    let status = child.0.wait().expect("the session ends");
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    // the first client only is announced: a sync.Once in muxportforwarding.go
    assert_eq!(
        rest.iter()
            .filter(|line| line.starts_with("Connection accepted for session ["))
            .count(),
        1,
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|line| line == "Terminate signal received, exiting."),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|line| line.starts_with("Exiting session with sessionId: ")),
        "{rest:?}"
    );
}

/// an echo server for the database behind the bastion; returns its port
fn echo_server() -> u16 {
    let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the echo server");
    let port = server.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut stream in server.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while let Ok(read) = stream.read(&mut buffer) {
                    if read == 0 || stream.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// reads lines until one satisfies `done`, returning them all
fn lines_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    done: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("a line of output");
        let stop = done(&line);
        seen.push(line);
        if stop {
            break;
        }
    }
    seen
}

#[test]
fn basic_mode_prints_no_waiting_line_and_serves_one_client_at_a_time() {
    let moto = Moto::start();
    let running = moto.seed_bastion("us-east-1", "running-bastion", true);
    let echo = echo_server();
    let local_port = free_port();
    let mut command = session(
        &running.instance_id,
        &parameters("db.internal", 5432, local_port),
    );
    command
        .envs(moto.env("us-east-1"))
        .env("DECLASTRUCT_FAKE_SSM_MODE", "basic")
        .env(
            "DECLASTRUCT_FAKE_SSM_HOSTS",
            format!("db.internal:5432=127.0.0.1:{echo}"),
        );
    let mut child = spawn_in_own_group(command);
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let seen = lines_until(&mut lines, |line| line.starts_with("Port "));
    assert_eq!(
        seen.last().map(String::as_str),
        Some(
            format!(
                "Port {local_port} opened for sessionId {}.",
                session_id(&seen)
            )
            .as_str()
        )
    );

    let mut first = TcpStream::connect((Ipv4Addr::LOCALHOST, local_port)).expect("connect");
    first.write_all(b"one").expect("write");
    let mut answer = [0u8; 3];
    first.read_exact(&mut answer).expect("the echo");
    let accepted = lines_until(&mut lines, |line| line.starts_with("Connection accepted"));
    assert_eq!(
        accepted.last().map(String::as_str),
        Some(format!("Connection accepted for session {}.", session_id(&seen)).as_str()),
        "basic mode's wording: no brackets, a period"
    );

    // a second client waits in the listen queue while the first is served
    let mut second = TcpStream::connect((Ipv4Addr::LOCALHOST, local_port)).expect("connect");
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    second.write_all(b"two").expect("write");
    assert!(
        second.read_exact(&mut answer).is_err(),
        "not served while the first is connected"
    );
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    second
        .read_exact(&mut answer)
        .expect("served once the first is gone");
    assert_eq!(&answer, b"two");
}

fn session_id(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|line| line.strip_prefix("Starting session with SessionId: "))
        .expect("a session id")
        .to_string()
}

#[test]
fn a_refused_destination_is_reported_and_sigterm_kills_the_plugin_silently() {
    let moto = Moto::start();
    let running = moto.seed_bastion("us-east-1", "running-bastion", true);
    let local_port = free_port();
    let mut command = session(
        &running.instance_id,
        &parameters("db.internal", 5432, local_port),
    );
    command.envs(moto.env("us-east-1"));
    let mut child = spawn_in_own_group(command);
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    lines_until(&mut lines, |line| line == "Waiting for connections...");
    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, local_port)).expect("connect");
    let mut nothing = Vec::new();
    let _ = client.read_to_end(&mut nothing);
    let seen = lines_until(&mut lines, |line| {
        line.starts_with("Connection to destination")
    });
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Connection to destination port failed, check SSM Agent logs.")
    );

    // SIGTERM is not one of the plugin's control signals: it dies at once, printing nothing more
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the session");
    let status = child.0.wait().expect("the session ends");
    assert!(!status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        !rest
            .iter()
            .any(|line| line.contains("Terminate signal received")),
        "{rest:?}"
    );
}

#[test]
fn credentials_of_a_profile_are_used_only_with_profile() {
    let moto = Moto::start();
    let stopped = moto.seed_bastion("us-east-1", "stopped-bastion", false);
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join(".aws")).expect("~/.aws");
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[dev]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .expect("credentials");
    let without_keys = |command: &mut Command| {
        command
            .env_clear()
            .env("HOME", home.path())
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env("AWS_EC2_METADATA_DISABLED", "true");
    };
    let mut plain = session(
        &stopped.instance_id,
        &parameters("db.internal", 5432, free_port()),
    );
    without_keys(&mut plain);
    let output = plain.output().expect("run");
    assert_eq!(output.status.code(), Some(253));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Unable to locate credentials"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut with_profile = session(
        &stopped.instance_id,
        &parameters("db.internal", 5432, free_port()),
    );
    with_profile.args(["--profile", "dev"]);
    without_keys(&mut with_profile);
    let output = with_profile.output().expect("run");
    assert_eq!(
        output.status.code(),
        Some(254),
        "the lookup ran with dev's keys"
    );
}

#[test]
fn a_missing_plugin_is_reported_as_the_cli_does() {
    let moto = Moto::start();
    let running = moto.seed_bastion("us-east-1", "running-bastion", true);
    let output = session(
        &running.instance_id,
        &parameters("db.internal", 5432, free_port()),
    )
    .envs(moto.env("us-east-1"))
    .env("DECLASTRUCT_FAKE_SSM_NO_PLUGIN", "1")
    .output()
    .expect("run");
    assert_eq!(output.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("SessionManagerPlugin is not found."),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
