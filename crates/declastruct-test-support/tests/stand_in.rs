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
    let accepted = lines
        .find(|line| {
            line.as_ref()
                .is_ok_and(|line| line.starts_with("Connection accepted for session ["))
        })
        .is_some();
    assert!(accepted, "the plugin announces every client");

    // SIGINT to the group: the plugin ends its session and both processes exit 0
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("signal the session");
    let status = child.0.wait().expect("the session ends");
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|line| line.starts_with("Exiting session with sessionId: ")),
        "{rest:?}"
    );
}
