//! The SSM simulator driven by the REAL session-manager-plugin (`../shared/bin`, built from
//! aws/session-manager-plugin 61cf1288) and the real AWS CLI, no declastruct: the plugin is run as the AWS CLI
//! runs it, with the StartSession response and request as arguments and the simulator as its endpoint.
//!
//! With `DECLASTRUCT_RECORD_TRANSCRIPTS=DIR` each case writes what the plugin printed to `DIR/<case>.txt`
//! (`scripts/record-plugin-transcripts`): the session id becomes `SESSION`, the local port 7775.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use declastruct_test_support::ssm_sim::{
    EndedBy, Faults, IDLE_TIMEOUT_MESSAGE, Mode, SessionStatus, SimConfig, SsmSimulator,
};
use declastruct_test_support::{Moto, free_port};
use serde_json::{Value, json};

const DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
const DESTINATION: &str = "db.cluster-abc.us-east-1.rds.amazonaws.com:5432";
const LIMIT: Duration = Duration::from_secs(20);

/// the workspace's root
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// the real plugin, `../shared/bin/session-manager-plugin` beside the workspace's checkout
fn shared_bin() -> PathBuf {
    for candidate in [
        workspace().join("../shared/bin"),
        PathBuf::from("/work/shared/bin"),
    ] {
        if candidate.join("session-manager-plugin").is_file() {
            return candidate;
        }
    }
    panic!("the real session-manager-plugin is not in ../shared/bin")
}

/// an echo server of the test's own on a free loopback port
struct Echo {
    address: SocketAddr,
}

impl Echo {
    fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the echo server");
        let address = listener.local_addr().expect("its address");
        std::thread::spawn(move || {
            for connection in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = connection;
                    let Ok(mut writer) = reader.try_clone() else {
                        return;
                    };
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        Self { address }
    }
}

/// a loopback address nothing listens on
fn closed_address() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

fn simulator(mode: Mode, destination: SocketAddr, faults: Faults) -> SsmSimulator {
    SsmSimulator::start(SimConfig {
        mode,
        routes: vec![(DESTINATION.to_string(), destination)],
        faults,
        ..SimConfig::default()
    })
}

/// one JSON 1.1 call, as botocore makes it (signature not checked by the simulator)
fn call(endpoint: &str, operation: &str, input: &Value) -> (u16, Value) {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect to the simulator");
    let body = input.to_string();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {address}\r\nX-Amz-Target: AmazonSSM.{operation}\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn request(target: &str, local_port: u16) -> Value {
    let (host, port) = DESTINATION.split_once(':').expect("HOST:PORT");
    json!({
        "Target": target,
        "DocumentName": DOCUMENT,
        "Parameters": {"host": [host], "portNumber": [port], "localPortNumber": [local_port.to_string()]},
    })
}

/// the plugin's process group, killed when the test ends, pass or fail; its output, collected
struct Plugin {
    child: Child,
    output: Arc<Mutex<String>>,
    errors: Arc<Mutex<String>>,
    session_id: String,
    local_port: u16,
    _home: tempfile::TempDir,
}

fn collect(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader
            .read_until(b'\n', &mut line)
            .is_ok_and(|read| read > 0)
        {
            into.lock()
                .expect("output")
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
}

fn fake_credentials(command: &mut Command, home: &Path) {
    command
        .env("HOME", home)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
}

impl Plugin {
    /// StartSession on the simulator, then the plugin as the AWS CLI runs it:
    /// `session-manager-plugin RESPONSE REGION StartSession PROFILE REQUEST ENDPOINT`
    fn start(simulator: &SsmSimulator) -> Self {
        let local_port = free_port();
        let request = request("i-0123456789abcdef0", local_port);
        let (status, response) = call(&simulator.endpoint(), "StartSession", &request);
        assert_eq!(status, 200, "{response}");
        let session_id = response["SessionId"]
            .as_str()
            .expect("SessionId")
            .to_string();
        let home = tempfile::tempdir().expect("a HOME for the plugin");
        let mut command = Command::new(shared_bin().join("session-manager-plugin"));
        command.args([
            response.to_string(),
            "us-east-1".into(),
            "StartSession".into(),
            String::new(),
            request.to_string(),
            simulator.endpoint(),
        ]);
        fake_credentials(&mut command, home.path());
        Self::spawn(command, session_id, local_port, home)
    }

    fn spawn(
        mut command: Command,
        session_id: String,
        local_port: u16,
        home: tempfile::TempDir,
    ) -> Self {
        use std::os::unix::process::CommandExt;
        command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the real plugin");
        let output = Arc::new(Mutex::new(String::new()));
        let errors = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout"), Arc::clone(&output));
        collect(child.stderr.take().expect("stderr"), Arc::clone(&errors));
        Self {
            child,
            output,
            errors,
            session_id,
            local_port,
            _home: home,
        }
    }

    fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the plugin did not print {text:?}; stdout:\n{}\nstderr:\n{}",
            self.output(),
            self.errors.lock().expect("errors")
        );
    }

    fn wait_for_port(&self) {
        self.wait_for(&format!(
            "Port {} opened for sessionId {}.",
            self.local_port, self.session_id
        ));
    }

    fn exit_status(&mut self) -> Option<i32> {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the plugin did not exit; stdout:\n{}", self.output());
    }

    fn interrupt(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.local_port))
            .expect("connect to the plugin's port");
        stream.set_read_timeout(Some(LIMIT)).expect("read timeout");
        stream
    }

    /// what it printed, normalised, with its exit status, into the transcripts folder when recording
    fn record(&self, case: &str, exit: Option<i32>) {
        let Some(folder) = std::env::var_os("DECLASTRUCT_RECORD_TRANSCRIPTS") else {
            return;
        };
        let normalise = |text: &str| {
            text.replace(&self.session_id, "SESSION")
                .replace(&self.local_port.to_string(), "7775")
        };
        let text = format!(
            "# the real session-manager-plugin 1.2.650.0 against the SSM simulator: {case}\n# exit status: {}\n# stdout:\n{}# stderr:\n{}",
            exit.map_or_else(|| "still running".to_string(), |code| code.to_string()),
            normalise(&self.output()),
            normalise(&self.errors.lock().expect("errors")),
        );
        let folder = PathBuf::from(folder);
        std::fs::create_dir_all(&folder).expect("transcripts folder");
        std::fs::write(folder.join(format!("{case}.txt")), text).expect("write the transcript");
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.wait();
    }
}

fn echo_round_trip(stream: &mut TcpStream, data: &[u8]) {
    stream.write_all(data).expect("write through the tunnel");
    let mut back = vec![0u8; data.len()];
    stream
        .read_exact(&mut back)
        .expect("read the echo through the tunnel");
    assert_eq!(back, data);
}

#[test]
fn mux_mode_handshakes_opens_the_port_and_carries_data() {
    let echo = Echo::start();
    let simulator = simulator(Mode::Mux, echo.address, Faults::default());
    let plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    plugin.wait_for("Waiting for connections...");
    let mut stream = plugin.connect();
    echo_round_trip(&mut stream, b"hello through smux");
    let large: Vec<u8> = (0..100_000u32).map(|index| (index % 251) as u8).collect();
    echo_round_trip(&mut stream, &large);
    plugin.wait_for(&format!(
        "Connection accepted for session [{}]",
        plugin.session_id
    ));
    let record = simulator.sessions().pop().expect("the session");
    assert_eq!(record.status, SessionStatus::Connected);
    assert_eq!(record.target, "i-0123456789abcdef0");
    let response = record
        .handshake_response
        .expect("the plugin's HandshakeResponse");
    assert_eq!(response["ClientVersion"], "1.2.650.0");
    assert_eq!(
        response["ProcessedClientActions"][0]["ActionType"],
        "SessionType"
    );
    assert_eq!(response["ProcessedClientActions"][0]["ActionStatus"], 1);
    assert_eq!(record.destination_connections, 1);
    plugin.record("mux-open", None);
}

#[test]
fn basic_mode_handshakes_opens_the_port_and_serves_one_client_after_another() {
    let echo = Echo::start();
    let simulator = simulator(Mode::Basic, echo.address, Faults::default());
    let plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    let mut first = plugin.connect();
    echo_round_trip(&mut first, b"first client");
    plugin.wait_for(&format!(
        "Connection accepted for session {}.",
        plugin.session_id
    ));
    drop(first);
    // the plugin sends DisconnectToPort, the agent closes its connection and dials again on the next data
    let mut second = plugin.connect();
    echo_round_trip(&mut second, b"second client");
    assert!(
        !plugin.output().contains("Waiting for connections"),
        "basic mode has no waiting line"
    );
    assert!(
        simulator.wait_for(LIMIT, |sessions, _| sessions[0].destination_connections
            == 2)
    );
    plugin.record("basic-open", None);
}

#[test]
fn mux_mode_serves_six_connections_at_once() {
    let echo = Echo::start();
    let simulator = simulator(Mode::Mux, echo.address, Faults::default());
    let plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    let clients: Vec<_> = (0..6u8)
        .map(|client| {
            let mut stream = plugin.connect();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..20_000u32).map(|index| (index as u8) ^ client).collect();
                for _ in 0..3 {
                    echo_round_trip(&mut stream, &data);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every client got its own bytes back");
    }
    assert_eq!(simulator.sessions()[0].destination_connections, 6);
}

#[test]
fn mux_mode_a_refusing_destination_prints_the_plugins_line_and_the_session_stays() {
    let simulator = simulator(Mode::Mux, closed_address(), Faults::default());
    let plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    let mut stream = plugin.connect();
    let _ = stream.write_all(b"hello");
    plugin.wait_for("Connection to destination port failed, check SSM Agent logs.");
    let mut buffer = [0u8; 1];
    assert_eq!(
        stream.read(&mut buffer).unwrap_or(0),
        0,
        "the stream is closed"
    );
    let record = &simulator.sessions()[0];
    assert_eq!(record.destination_failures, 1);
    assert!(record.status.is_active(), "the session stays up");
    plugin.record("mux-destination-refused", None);
}

#[test]
fn basic_mode_a_refusing_destination_ends_the_session_with_the_agents_message() {
    let refused = closed_address();
    let simulator = simulator(Mode::Basic, refused, Faults::default());
    let mut plugin = Plugin::start(&simulator);
    plugin.wait_for(&format!(
        "SessionId: {} : Unable to connect to specified port: dial tcp {refused}: connect: connection refused",
        plugin.session_id
    ));
    let exit = plugin.exit_status();
    assert_eq!(exit, Some(0));
    assert!(matches!(
        simulator.sessions()[0].ended_by,
        Some(EndedBy::AgentEnded(_))
    ));
    plugin.record("basic-destination-refused", exit);
}

fn interrupt_case(mode: Mode, case: &str) {
    let echo = Echo::start();
    let simulator = simulator(mode, echo.address, Faults::default());
    let mut plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    let mut stream = plugin.connect();
    echo_round_trip(&mut stream, b"before the signal");
    plugin.interrupt();
    plugin.wait_for("Terminate signal received, exiting.");
    plugin.wait_for(&format!(
        "Exiting session with sessionId: {}.",
        plugin.session_id
    ));
    let exit = plugin.exit_status();
    assert_eq!(exit, Some(0));
    assert!(simulator.wait_for(LIMIT, |_, counts| counts.terminations_by_flag == 1));
    let record = &simulator.sessions()[0];
    assert_eq!(record.ended_by, Some(EndedBy::TerminateSessionFlag));
    assert_eq!(
        simulator.counts().terminations_by_api,
        0,
        "a flag, not the API"
    );
    plugin.record(case, exit);
}

#[test]
fn mux_mode_sigint_sends_the_terminate_session_flag() {
    interrupt_case(Mode::Mux, "mux-sigint");
}

#[test]
fn basic_mode_sigint_sends_the_terminate_session_flag() {
    interrupt_case(Mode::Basic, "basic-sigint");
}

fn resume_case(mode: Mode, case: &str) {
    let echo = Echo::start();
    let simulator = simulator(mode, echo.address, Faults::default());
    let plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    let mut stream = plugin.connect();
    echo_round_trip(&mut stream, b"before the abort");
    simulator.abort_websockets();
    assert!(
        simulator.wait_for(LIMIT, |sessions, counts| counts.resumes == 1
            && sessions[0].websocket_connections == 2
            && sessions[0].status == SessionStatus::Connected),
        "the plugin resumed: {:?}",
        simulator.sessions()
    );
    for round in 0..5u8 {
        echo_round_trip(&mut stream, &[round; 3000]);
    }
    assert_eq!(simulator.counts().resumes, 1);
    plugin.record(case, None);
}

#[test]
fn mux_mode_an_aborted_websocket_is_resumed_and_data_keeps_flowing() {
    resume_case(Mode::Mux, "mux-resumed");
}

#[test]
fn basic_mode_an_aborted_websocket_is_resumed_and_data_keeps_flowing() {
    resume_case(Mode::Basic, "basic-resumed");
}

#[test]
fn a_websocket_aborted_after_some_seconds_is_resumed() {
    let echo = Echo::start();
    let faults = Faults {
        abort_websocket_after: Some(Duration::from_secs(1)),
        ..Faults::default()
    };
    let simulator = simulator(Mode::Mux, echo.address, faults);
    let plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    assert!(
        simulator.wait_for(LIMIT, |sessions, counts| counts.resumes == 1
            && sessions[0].status == SessionStatus::Connected)
    );
    let mut stream = plugin.connect();
    echo_round_trip(&mut stream, b"after the resume");
}

#[test]
fn a_refused_resume_makes_the_plugin_say_timed_out_and_exit_0() {
    let echo = Echo::start();
    let faults = Faults {
        refuse_resume: true,
        ..Faults::default()
    };
    let simulator = simulator(Mode::Mux, echo.address, faults);
    let mut plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    simulator.abort_websockets();
    plugin.wait_for(&format!("Session: {} timed out.", plugin.session_id));
    let exit = plugin.exit_status();
    assert_eq!(exit, Some(0));
    assert_eq!(simulator.counts().refused_resumes, 1);
    assert_eq!(simulator.sessions()[0].status, SessionStatus::Terminated);
    plugin.record("resume-refused", exit);
}

#[test]
fn a_channel_closed_with_a_message_is_printed_and_the_plugin_exits_0() {
    let echo = Echo::start();
    let simulator = simulator(Mode::Mux, echo.address, Faults::default());
    let mut plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    simulator.close_channel(Some(&plugin.session_id), "The agent is shutting down.");
    plugin.wait_for(&format!(
        "SessionId: {} : The agent is shutting down.",
        plugin.session_id
    ));
    let exit = plugin.exit_status();
    assert_eq!(exit, Some(0));
    plugin.record("channel-closed", exit);
}

#[test]
fn an_idle_session_is_closed_by_the_service() {
    let echo = Echo::start();
    let faults = Faults {
        idle_timeout: Some(Duration::from_secs(2)),
        ..Faults::default()
    };
    let simulator = simulator(Mode::Mux, echo.address, faults);
    let mut plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    plugin.wait_for(&format!(
        "SessionId: {} : {IDLE_TIMEOUT_MESSAGE}",
        plugin.session_id
    ));
    let exit = plugin.exit_status();
    assert_eq!(exit, Some(0));
    assert_eq!(simulator.sessions()[0].ended_by, Some(EndedBy::IdleTimeout));
    plugin.record("idle-timeout", exit);
}

#[test]
fn terminate_session_by_api_closes_the_plugins_channel() {
    let echo = Echo::start();
    let simulator = simulator(Mode::Mux, echo.address, Faults::default());
    let mut plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    let (status, _) = call(
        &simulator.endpoint(),
        "TerminateSession",
        &json!({"SessionId": plugin.session_id}),
    );
    assert_eq!(status, 200);
    plugin.wait_for(&format!(
        "Exiting session with sessionId: {}.",
        plugin.session_id
    ));
    let exit = plugin.exit_status();
    assert_eq!(exit, Some(0));
    let counts = simulator.counts();
    assert_eq!(
        (counts.terminations_by_api, counts.terminations_by_flag),
        (1, 0)
    );
    let (_, history) = call(
        &simulator.endpoint(),
        "DescribeSessions",
        &json!({"State": "History"}),
    );
    assert_eq!(history["Sessions"][0]["Status"], "Terminated");
    plugin.record("terminated-by-api", exit);
}

#[test]
fn a_delayed_handshake_still_opens_and_a_silent_agent_never_does() {
    let echo = Echo::start();
    let delayed = simulator(
        Mode::Mux,
        echo.address,
        Faults {
            handshake_delay: Some(Duration::from_secs(2)),
            ..Faults::default()
        },
    );
    let plugin = Plugin::start(&delayed);
    let started = Instant::now();
    plugin.wait_for_port();
    assert!(started.elapsed() >= Duration::from_millis(1500));

    let silent = simulator(
        Mode::Mux,
        echo.address,
        Faults {
            agent_silent: true,
            ..Faults::default()
        },
    );
    let plugin = Plugin::start(&silent);
    plugin.wait_for(&format!(
        "Starting session with SessionId: {}",
        plugin.session_id
    ));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !plugin.output().contains("opened for sessionId"),
        "{}",
        plugin.output()
    );
    plugin.record("agent-silent", None);
}

/// KMS encryption in the account's preferences: the agent asks no port session for it (`sessionplugin.go`
/// `isEncryptionEnabled`), so the plugin opens as usual and says nothing of encryption
#[test]
fn kms_preferences_leave_a_port_session_unencrypted() {
    let echo = Echo::start();
    let faults = Faults {
        preferences_kms_key_id: Some("alias/session-key".to_string()),
        ..Faults::default()
    };
    let simulator = simulator(Mode::Mux, echo.address, faults);
    let plugin = Plugin::start(&simulator);
    plugin.wait_for_port();
    let mut stream = plugin.connect();
    echo_round_trip(&mut stream, b"unencrypted, as in AWS");
    let response = simulator.sessions()[0]
        .handshake_response
        .clone()
        .expect("the plugin's HandshakeResponse");
    assert_eq!(
        response["ProcessedClientActions"].as_array().map(Vec::len),
        Some(1),
        "{response}"
    );
    assert!(
        !plugin
            .output()
            .contains("This session is encrypted using AWS KMS."),
        "{}",
        plugin.output()
    );
}

#[test]
fn the_api_answers_with_the_real_error_shapes() {
    let moto = Moto::start();
    let running = moto.seed_bastion("us-east-1", "running-bastion", true);
    let stopped = moto.seed_bastion("us-east-1", "stopped-bastion", false);
    let simulator = SsmSimulator::start(SimConfig {
        ec2_endpoint: Some(moto.endpoint()),
        registration_delay: Duration::from_secs(2),
        ..SimConfig::default()
    });
    let endpoint = simulator.endpoint();
    let (status, body) = call(
        &endpoint,
        "StartSession",
        &request(&stopped.instance_id, 7775),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"__type": "TargetNotConnected", "message": format!("{} is not connected.", stopped.instance_id)})
    );
    let (_, body) = call(
        &endpoint,
        "StartSession",
        &request("i-00000000000000000", 7775),
    );
    assert_eq!(body["__type"], "InvalidTarget");
    // running, but its agent registers 2 s after the simulator first sees it running
    let (_, body) = call(
        &endpoint,
        "StartSession",
        &request(&running.instance_id, 7775),
    );
    assert_eq!(body["__type"], "TargetNotConnected");
    std::thread::sleep(Duration::from_millis(2100));
    let (status, body) = call(
        &endpoint,
        "StartSession",
        &request(&running.instance_id, 7775),
    );
    assert_eq!(status, 200, "{body}");
    let session_id = body["SessionId"].as_str().expect("SessionId");
    assert_eq!(
        body["StreamUrl"],
        format!(
            "ws://127.0.0.1:{}/v1/data-channel/{session_id}?role=publish_subscribe",
            simulator.port()
        )
    );
    assert!(
        body["TokenValue"]
            .as_str()
            .is_some_and(|token| !token.is_empty())
    );
    let (_, active) = call(
        &endpoint,
        "DescribeSessions",
        &json!({"State": "Active", "Filters": [{"key": "Target", "value": running.instance_id}]}),
    );
    assert_eq!(active["Sessions"][0]["SessionId"], session_id);
    assert_eq!(active["Sessions"][0]["Status"], "Connecting");
    let (status, body) = call(
        &endpoint,
        "DescribeSessions",
        &json!({"State": "Active", "Filters": [{"key": "Colour", "value": "x"}]}),
    );
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidFilterKey"))
    );
    let (status, body) = call(
        &endpoint,
        "ResumeSession",
        &json!({"SessionId": "nobody-0"}),
    );
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("DoesNotExistException"))
    );
    let counts = simulator.counts();
    assert_eq!(
        (
            counts.target_not_connected,
            counts.invalid_target,
            counts.sessions_started
        ),
        (2, 1, 1)
    );
}

/// the real AWS CLI (awscli 1.x, installed into .venv by scripts/setup)
fn aws_cli() -> PathBuf {
    let aws = workspace().join(".venv/bin/aws");
    assert!(
        aws.is_file(),
        "no {}: run scripts/setup, which installs awscli into .venv",
        aws.display()
    );
    aws
}

/// `ssm-sim` the binary, with its one ready line read
struct SimProcess {
    child: Child,
    endpoint: String,
}

impl SimProcess {
    fn start(arguments: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssm-sim"))
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ssm-sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("its ready line");
        let endpoint = line
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("ssm-sim said {line:?}"))
            .trim()
            .to_string();
        Self { child, endpoint }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aws(home: &Path, arguments: &[&str]) -> Command {
    let mut command = Command::new(aws_cli());
    command.args(arguments);
    fake_credentials(&mut command, home);
    let path = std::env::var("PATH").unwrap_or_default();
    command.env("PATH", format!("{}:{path}", shared_bin().display()));
    command
}

#[test]
fn the_real_aws_cli_forwards_a_port_through_ssm_sim_and_describe_sessions_lists_it() {
    let echo = Echo::start();
    let moto = Moto::start();
    let bastion = moto.seed_bastion("us-east-1", "bastion", true);
    let stopped = moto.seed_bastion("us-east-1", "stopped", false);
    let port = free_port();
    let simulator = SimProcess::start(&[
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--route".into(),
        format!("*={}", echo.address),
        "--ec2-endpoint".into(),
        moto.endpoint(),
    ]);
    assert_eq!(simulator.endpoint, format!("http://127.0.0.1:{port}"));
    let home = tempfile::tempdir().expect("HOME");
    let local_port = free_port();
    let parameters = json!({"host": ["db.internal"], "portNumber": ["5432"], "localPortNumber": [local_port.to_string()]}).to_string();
    let start = |target: &str| {
        aws(
            home.path(),
            &[
                "ssm",
                "start-session",
                "--target",
                target,
                "--document-name",
                DOCUMENT,
                "--parameters",
                &parameters,
                "--endpoint-url",
                &simulator.endpoint,
                "--region",
                "us-east-1",
            ],
        )
    };

    let refused = start(&stopped.instance_id).output().expect("run aws");
    let refused_text = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        refused_text.contains(&format!(
            "An error occurred (TargetNotConnected) when calling the StartSession operation: {} is not connected.",
            stopped.instance_id
        )),
        "{refused_text}"
    );
    // awscli 1.x ends every error with 255 (`awscli/clidriver.py` `main`); v2 uses 254 for service errors
    assert_eq!(refused.status.code(), Some(255));
    record_cli(
        "cli-target-not-connected",
        &refused_text.replace(&stopped.instance_id, "i-0123456789abcdef0"),
        refused.status.code(),
    );

    let home_for_plugin = tempfile::tempdir().expect("HOME");
    let mut plugin = Plugin::spawn(
        start(&bastion.instance_id),
        String::new(),
        local_port,
        home_for_plugin,
    );
    plugin.wait_for(&format!("Port {local_port} opened for sessionId "));
    let session_id = plugin
        .output()
        .lines()
        .find_map(|line| line.strip_prefix("Starting session with SessionId: "))
        .expect("the session id line")
        .trim()
        .to_string();
    plugin.session_id = session_id.clone();
    let mut stream = plugin.connect();
    echo_round_trip(&mut stream, b"through the real aws cli");

    let listed = aws(
        home.path(),
        &[
            "ssm",
            "describe-sessions",
            "--state",
            "Active",
            "--endpoint-url",
            &simulator.endpoint,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ],
    )
    .output()
    .expect("run aws describe-sessions");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    assert_eq!(listed["Sessions"][0]["SessionId"], session_id.as_str());
    assert_eq!(
        listed["Sessions"][0]["Target"],
        bastion.instance_id.as_str()
    );
    assert_eq!(listed["Sessions"][0]["Status"], "Connected");

    // Ctrl-C goes to the plugin (the CLI ignores it while the plugin runs); both exit 0
    let group = nix::unistd::Pid::from_raw(i32::try_from(plugin.child.id()).expect("pid"));
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    plugin.wait_for(&format!("Exiting session with sessionId: {session_id}."));
    let exit = plugin.exit_status();
    assert_eq!(exit, Some(0));
    plugin.record("cli-mux-open-and-sigint", exit);
}

fn record_cli(case: &str, text: &str, exit: Option<i32>) {
    let Some(folder) = std::env::var_os("DECLASTRUCT_RECORD_TRANSCRIPTS") else {
        return;
    };
    let text = format!(
        "# the real aws CLI (awscli 1.x) against ssm-sim: {case}\n# exit status: {}\n# stderr:\n{text}",
        exit.map_or_else(|| "none".to_string(), |code| code.to_string())
    );
    let folder = PathBuf::from(folder);
    std::fs::create_dir_all(&folder).expect("transcripts folder");
    std::fs::write(folder.join(format!("{case}.txt")), text).expect("write the transcript");
}
