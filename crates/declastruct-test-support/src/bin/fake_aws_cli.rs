//! A stand-in for `aws ssm start-session` port forwarding, for tests: the same arguments, the session manager
//! plugin's messages, and the same failures. Every behaviour cites where the real program has it:
//! aws/aws-cli v2 (2.36.7, `awscli/customizations/sessionmanager.py`, `awscli/errorhandler.py`) and
//! aws/session-manager-plugin (61cf1288, `src/sessionmanagerplugin/...`). It imitates the CLI's legacy error
//! format (before 2.34 added the `aws: [ERROR]: ` prefix; declastruct reads both).
//!
//! - Arguments: `ssm start-session --target ID --document-name AWS-StartPortForwardingSessionToRemoteHost
//!   --parameters JSON [--region R] [--profile P]`; anything else is refused as the AWS CLI refuses it (exit 252).
//! - Credentials come from the standard chain, or from `--profile`'s profile alone when given; with none:
//!   `Unable to locate credentials...` and exit 253 (`NoCredentialsErrorHandler`, `CONFIGURATION_ERROR_RC`).
//! - The target is looked up in moto (AWS_ENDPOINT_URL) with those credentials; unless it is running:
//!   `An error occurred (TargetNotConnected) when calling the StartSession operation: ID is not connected.`
//!   (exit 254).
//! - Like the real CLI, it runs the plugin as a child process with the plugin's argv
//!   (`[plugin, AWS_SSM_START_SESSION_RESPONSE, region, "StartSession", profile, request JSON, endpoint]`) and
//!   waits for it, ignoring SIGINT, SIGQUIT and SIGTSTP itself meanwhile (`ignore_user_entered_signals`):
//!   a SIGTERM kills only this parent and leaves the plugin holding the port.
//! - `DECLASTRUCT_FAKE_SSM_NO_PLUGIN=1`: no plugin installed: `SessionManagerPlugin is not found. ...`, exit 255.
//! - The plugin prints `\nStarting session with SessionId: ID\n` (`session/session.go` `Execute`), then, by
//!   `DECLASTRUCT_FAKE_SSM_MODE`:
//!   - `mux` (default; agents newer than 3.0.196.0, `muxportforwarding.go` `handleClientConnections`):
//!     `Port N opened for sessionId ID.` (no newline) and `\nWaiting for connections...\n`; serves many clients
//!     at once; `\nConnection accepted for session [ID]\n` for the first client only (a `sync.Once`);
//!     `\nConnection to destination port failed, check SSM Agent logs.\n` each time the remote refuses
//!     (`WriteStream`, `ConnectToPortError`).
//!   - `basic` (older agents, `basicportforwarding.go`): `Port N opened for sessionId ID.` with a newline
//!     (`startLocalListener`, `fmt.Println`), no waiting line; one client at a time, later ones wait in the
//!     listen queue; `Connection accepted for session ID.` for the first client only (`startLocalConn`; the
//!     next ones are accepted silently by `reconnect`).
//! - A local port the plugin cannot listen on: in basic mode `Cannot perform start session: listen tcp ...` and
//!   exit 0 (`session/session.go`); in mux mode nothing at all, until a control signal ends it
//!   (`muxportforwarding.go`: the listen error waits in `ReadStream`'s errgroup behind a blocked read).
//! - SIGINT, SIGQUIT, SIGTSTP (the plugin's control signals, `sessionutil/control_signals_unix.go`):
//!   `Terminate signal received, exiting.` then `\n\nExiting session with sessionId: ID.\n\n`, exit 0. SIGTERM is
//!   not among them: it kills the plugin at once, silently.
//! - The plugin writes everything to stdout; it dies when a write finds its pipe closed (the real one dies of
//!   SIGPIPE: Go's `epipecheck`), and ignores any other failed write (`fmt.Println`'s error is not checked).
//! - `DECLASTRUCT_FAKE_SSM_HOSTS=host:port=127.0.0.1:port,...` maps remote hosts to local servers; an unmapped
//!   or unreachable remote refuses, as when the bastion cannot reach the database.
//!
//! `DECLASTRUCT_FAKE_SSM_SKIP_LOOKUP=1` skips the moto lookup, for benchmarks that measure declastruct alone.
//!
//! Failure simulation, for tests of healing and readiness:
//! - `DECLASTRUCT_FAKE_SSM_NOT_CONNECTED_TIMES=N` with `DECLASTRUCT_FAKE_SSM_COUNTER=FILE`: the first N sessions
//!   fail with TargetNotConnected even when the instance runs.
//! - `DECLASTRUCT_FAKE_SSM_TIMEOUT_SECONDS=S`: the session ends after S seconds with `Session: ID timed out.` and
//!   exit 0, as a session does whose connection dropped and could not be resumed (`session/sessionhandler.go`,
//!   `ResumeSession`). A session the service ends for idleness prints `Exiting session with sessionId: ID.`
//!   instead (the agent's channel_closed); both end the session, which is what the healing tests need.
//! - `DECLASTRUCT_FAKE_SSM_RECORD=FILE`: each session appends its arguments (one JSON line) to FILE, so tests
//!   can check what the CLI was asked.
//! - `DECLASTRUCT_FAKE_SSM_ESCAPE=1`: the plugin is started in a process group of its own and without the
//!   tunnel's marker in its environment, as a wrapper that daemonizes it would; no real program does this on its
//!   own. It is the fault behind "a close that leaves the port served": declastruct cannot prove that process
//!   its own, so it must never signal it, and must fail the close naming it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

const DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// the variable the CLI passes the StartSession response in, to plugins newer than 1.2.497.0
const RESPONSE_VARIABLE: &str = "AWS_SSM_START_SESSION_RESPONSE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__plugin") {
        return plugin(&args[1..]);
    }
    match parse(&args) {
        Ok(session) => start_session(&session),
        Err(message) => {
            eprintln!(
                "usage: aws [options] <command> <subcommand> [<subcommand> ...] [parameters]\nTo see help text, you can run:\n\n  aws help\n  aws <command> help\n  aws <command> <subcommand> help\n\naws: error: {message}"
            );
            ExitCode::from(252)
        }
    }
}

struct Session {
    target: String,
    parameters: serde_json::Value,
    region: Option<String>,
    profile: Option<String>,
}

fn parse(args: &[String]) -> Result<Session, String> {
    if args.len() < 2 || args[0] != "ssm" || args[1] != "start-session" {
        return Err(format!(
            "argument command: Invalid choice: {}",
            args.join(" ")
        ));
    }
    let mut target = None;
    let mut document = None;
    let mut parameters = None;
    let mut region = None;
    let mut profile = None;
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .ok_or_else(|| format!("argument {flag}: expected one argument"))?
            .clone();
        match flag.as_str() {
            "--target" => target = Some(value),
            "--document-name" => document = Some(value),
            "--parameters" => parameters = Some(value),
            "--region" => region = Some(value),
            "--profile" => profile = Some(value),
            other => return Err(format!("Unknown options: {other}")),
        }
    }
    let target = target.ok_or("the following arguments are required: --target")?;
    if document.as_deref() != Some(DOCUMENT) {
        return Err(format!("this stand-in only runs {DOCUMENT}"));
    }
    let parameters: serde_json::Value =
        serde_json::from_str(&parameters.ok_or("--parameters is required")?).map_err(|error| {
            format!("Error parsing parameter '--parameters': Invalid JSON: {error}")
        })?;
    let first = |key: &str| {
        parameters[key][0]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("--parameters needs {key} as a list of one string"))
    };
    let number = |key: &str| {
        first(key).and_then(|text| {
            text.parse::<u16>()
                .map_err(|error| format!("{key}: {error}"))
        })
    };
    // these parameters are what every caller of this stand-in must send; the real CLI passes them to StartSession
    // unchecked (`sessionmanager.py`) and the service refuses a bad one: a test-only check, kept strict so that a
    // malformed request from declastruct fails loudly here
    first("host")?;
    number("portNumber")?;
    number("localPortNumber")?;
    Ok(Session {
        target,
        parameters,
        region,
        profile,
    })
}

enum Lookup {
    Running(bool),
    NoCredentials,
    Failed(String),
}

fn look_up_target(session: &Session) -> Lookup {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Lookup::Failed("no runtime".into());
    };
    runtime.block_on(async {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &session.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        // `--profile` selects the credentials, as the CLI's `set_config_variable('profile', ...)` does, and then
        // only that profile's: botocore drops the environment's keys for an explicit profile ("An explicitly
        // provided profile will negate an EnvProvider.", `botocore/credentials.py`, `create_credential_resolver`)
        if let Some(profile) = &session.profile {
            loader = loader.profile_name(profile).credentials_provider(
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_name(profile)
                    .build(),
            );
        }
        let config = loader.load().await;
        let credentials = match config.credentials_provider() {
            Some(provider) => {
                use aws_credential_types::provider::ProvideCredentials;
                provider.provide_credentials().await.is_ok()
            }
            None => false,
        };
        if !credentials {
            return Lookup::NoCredentials;
        }
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let response = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-id")
                    .values(&session.target)
                    .build(),
            )
            .send()
            .await;
        match response {
            Err(error) => {
                Lookup::Failed(aws_sdk_ec2::error::DisplayErrorContext(error).to_string())
            }
            Ok(response) => Lookup::Running(
                response
                    .reservations()
                    .iter()
                    .flat_map(aws_sdk_ec2::types::Reservation::instances)
                    .any(|instance| {
                        instance
                            .state()
                            .and_then(|state| state.name())
                            .map(aws_sdk_ec2::types::InstanceStateName::as_str)
                            == Some("running")
                    }),
            ),
        }
    })
}

/// counts sessions in a file, for "fail the first N times"
fn next_session_number() -> u64 {
    let Some(path) = std::env::var_os("DECLASTRUCT_FAKE_SSM_COUNTER") else {
        return 1;
    };
    let count = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let _ = std::fs::write(&path, count.to_string());
    count
}

fn record(session: &Session) {
    let Some(path) = std::env::var_os("DECLASTRUCT_FAKE_SSM_RECORD") else {
        return;
    };
    let line = serde_json::json!({
        "target": session.target,
        "parameters": session.parameters,
        "region": session.region,
        "profile": session.profile,
    });
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // one write of the whole line: sessions started together append to the same file
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

fn start_session(session: &Session) -> ExitCode {
    record(session);
    let not_connected = || {
        eprintln!(
            "\nAn error occurred (TargetNotConnected) when calling the StartSession operation: {} is not connected.\n",
            session.target
        );
        ExitCode::from(254)
    };
    // benchmarks measure declastruct, not moto: the session may skip its lookup and be ready at once
    let skip_lookup = std::env::var_os("DECLASTRUCT_FAKE_SSM_SKIP_LOOKUP").is_some();
    let lookup = if skip_lookup {
        Lookup::Running(true)
    } else {
        look_up_target(session)
    };
    match lookup {
        Lookup::Running(true) => {}
        Lookup::Running(false) => return not_connected(),
        Lookup::NoCredentials => {
            eprintln!(
                "\nUnable to locate credentials. You can configure credentials by running \"aws configure\".\n"
            );
            return ExitCode::from(253);
        }
        Lookup::Failed(error) => {
            eprintln!("\nCould not connect to the endpoint URL: {error}\n");
            return ExitCode::from(255);
        }
    }
    let fail_times: u64 = std::env::var("DECLASTRUCT_FAKE_SSM_NOT_CONNECTED_TIMES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    if fail_times > 0 && next_session_number() <= fail_times {
        return not_connected();
    }
    if std::env::var_os("DECLASTRUCT_FAKE_SSM_NO_PLUGIN").is_some() {
        // the CLI terminates the session it started, then reports (`StartSessionCaller.invoke`)
        eprintln!(
            "\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: http://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found\n"
        );
        return ExitCode::from(255);
    }

    // the CLI leaves the user's signals to the plugin, which ends the session on them
    ignore_user_entered_signals();
    let session_id = format!(
        "declastruct-test-{:016x}",
        u64::from(std::process::id()) * 2_654_435_761
    );
    let response = serde_json::json!({
        "SessionId": session_id,
        "TokenValue": "stand-in-token",
        "StreamUrl": format!("wss://ssmmessages.stand-in/v1/data-channel/{session_id}"),
    });
    let request = serde_json::json!({
        "Target": session.target,
        "DocumentName": DOCUMENT,
        "Parameters": session.parameters,
    });
    let mut plugin =
        Command::new(std::env::current_exe().unwrap_or_else(|_| "fake-aws-cli".into()));
    if std::env::var_os("DECLASTRUCT_FAKE_SSM_ESCAPE").is_some() {
        use std::os::unix::process::CommandExt;
        plugin
            .process_group(0)
            .env_remove("DECLASTRUCT_TUNNEL")
            .env_remove("DECLASTRUCT_FAKE_SSM_ESCAPE");
    }
    let status = plugin
        .arg("__plugin")
        .args([
            RESPONSE_VARIABLE,
            session.region.as_deref().unwrap_or(""),
            "StartSession",
            session.profile.as_deref().unwrap_or(""),
            &request.to_string(),
            &std::env::var("AWS_ENDPOINT_URL").unwrap_or_default(),
        ])
        .env(RESPONSE_VARIABLE, response.to_string())
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(255)).unwrap_or(255)),
        Err(error) => {
            eprintln!("\ncannot start the plugin: {error}\n");
            ExitCode::from(255)
        }
    }
}

#[allow(unsafe_code)]
fn ignore_user_entered_signals() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    for user_signal in [Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTSTP] {
        // SAFETY: SIG_IGN runs no code in the signal context
        let _ = unsafe { signal(user_signal, SigHandler::SigIgn) };
    }
}

/// stdout, shared by the plugin's threads; a failed write ends the plugin as SIGPIPE would
struct Out(Mutex<std::io::Stdout>);

impl Out {
    /// a write to a closed pipe kills the plugin as SIGPIPE would (Go's `os/file_unix.go` `epipecheck` raises
    /// SIGPIPE for EPIPE on stdout); any other failed write (a full disk, EFBIG past a file size limit) is ignored,
    /// as the plugin ignores `fmt.Println`'s error
    fn print(&self, text: &str) {
        let written = self
            .0
            .lock()
            .map(|mut out| out.write_all(text.as_bytes()).and_then(|()| out.flush()));
        if let Ok(Err(error)) = written
            && error.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(141);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Mux,
    Basic,
}

fn plugin(args: &[String]) -> ExitCode {
    let [
        response_variable,
        _region,
        _operation,
        _profile,
        request,
        _endpoint,
    ] = args
    else {
        return ExitCode::from(2);
    };
    let response: serde_json::Value =
        serde_json::from_str(&std::env::var(response_variable).unwrap_or_default())
            .unwrap_or_default();
    let request: serde_json::Value = serde_json::from_str(request).unwrap_or_default();
    let session_id = response["SessionId"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let parameter = |key: &str| {
        request["Parameters"][key][0]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let remote = format!("{}:{}", parameter("host"), parameter("portNumber"));
    let local_port = parameter("localPortNumber");
    let mode = match std::env::var("DECLASTRUCT_FAKE_SSM_MODE").as_deref() {
        Ok("basic") => Mode::Basic,
        _ => Mode::Mux,
    };
    let out = Arc::new(Out(Mutex::new(std::io::stdout())));
    out.print(&format!(
        "\nStarting session with SessionId: {session_id}\n"
    ));
    let stop = Arc::new(AtomicBool::new(false));
    control_signals::flag_on(stop.clone());

    let listener = match TcpListener::bind(format!("127.0.0.1:{local_port}")) {
        Ok(listener) => listener,
        // mux mode: `handleClientConnections` returns the listen error into `ReadStream`'s errgroup, whose
        // `g.Wait()` then waits for `transferDataToServer`, blocked reading the idle mux connection (smux keep-alive
        // is disabled for current agents): the plugin prints nothing and stays until a control signal ends it
        // (`muxportforwarding.go`)
        Err(_) if mode == Mode::Mux => {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            out.print("Terminate signal received, exiting.\n");
            out.print(&format!(
                "\n\nExiting session with sessionId: {session_id}.\n\n"
            ));
            return ExitCode::SUCCESS;
        }
        // basic mode: the listen error ends the session (`basicportforwarding.go` `startLocalListener`, then
        // `session/session.go`)
        Err(error) => {
            out.print(&format!(
                "Cannot perform start session: listen tcp 127.0.0.1:{local_port}: bind: {}\n",
                bind_error_text(&error)
            ));
            return ExitCode::SUCCESS;
        }
    };
    match mode {
        Mode::Mux => {
            out.print(&format!(
                "Port {local_port} opened for sessionId {session_id}."
            ));
            out.print("\nWaiting for connections...\n");
        }
        Mode::Basic => out.print(&format!(
            "Port {local_port} opened for sessionId {session_id}.\n"
        )),
    }
    if let Some(seconds) = std::env::var("DECLASTRUCT_FAKE_SSM_TIMEOUT_SECONDS")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    {
        let out = out.clone();
        let session_id = session_id.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            out.print(&format!("Session: {session_id} timed out.\n"));
            std::process::exit(0);
        });
    }
    {
        let out = out.clone();
        let session_id = session_id.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            out.print("Terminate signal received, exiting.\n");
            out.print(&format!(
                "\n\nExiting session with sessionId: {session_id}.\n\n"
            ));
            std::process::exit(0);
        });
    }

    let destination = resolve(&remote);
    let announce = Once::new();
    for client in listener.incoming() {
        let Ok(client) = client else {
            continue;
        };
        match mode {
            Mode::Mux => {
                announce.call_once(|| {
                    out.print(&format!(
                        "\nConnection accepted for session [{session_id}]\n"
                    ));
                });
                let destination = destination.clone();
                let out = out.clone();
                std::thread::spawn(move || {
                    // the agent sends the ConnectToPortError flag when its dial fails, and the plugin prints
                    // on the flag's arrival (`muxportforwarding.go`, `WriteStream`); the stream closes after
                    forward(client, destination.as_deref(), || {
                        out.print(
                            "\nConnection to destination port failed, check SSM Agent logs.\n",
                        );
                    });
                });
            }
            Mode::Basic => {
                announce.call_once(|| {
                    out.print(&format!("Connection accepted for session {session_id}.\n"));
                });
                // one client at a time: the next waits in the listen queue until this one is done
                // basic mode prints nothing when the destination refuses (`basicportforwarding.go`)
                forward(client, destination.as_deref(), || {});
            }
        }
    }
    ExitCode::SUCCESS
}

/// Go's wording of the bind errors a test can cause
fn bind_error_text(error: &std::io::Error) -> String {
    if error.kind() == std::io::ErrorKind::AddrInUse {
        "address already in use".into()
    } else {
        error.to_string()
    }
}

fn resolve(remote: &str) -> Option<String> {
    let map = std::env::var("DECLASTRUCT_FAKE_SSM_HOSTS").unwrap_or_default();
    map.split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(from, _)| *from == remote)
        .map(|(_, to)| to.to_string())
}

/// forwards one client to the destination until either side ends; `refused` runs before the client is closed
/// when the destination refuses
fn forward(client: TcpStream, destination: Option<&str>, refused: impl FnOnce()) {
    let Some(server) = destination.and_then(|destination| TcpStream::connect(destination).ok())
    else {
        refused();
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(mut client_reader), Ok(mut server_writer)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = pump(&mut client_reader, &mut server_writer);
        let _ = server_writer.shutdown(Shutdown::Write);
    });
    let (mut server_reader, mut client_writer) = (server, client);
    let _ = pump(&mut server_reader, &mut client_writer);
    let _ = client_writer.shutdown(Shutdown::Write);
    let _ = upstream.join();
}

fn pump(from: &mut TcpStream, to: &mut TcpStream) -> std::io::Result<()> {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = from.read(&mut buffer)?;
        if read == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..read])?;
    }
}

/// the plugin's control signals (`sessionutil/control_signals_unix.go`: SIGINT, SIGTSTP, SIGQUIT) set a flag,
/// so it can say goodbye and exit 0 as the real one does; SIGTERM keeps its default action
mod control_signals {
    use std::sync::Arc;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use nix::sys::signal::Signal;

    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_signal(_: nix::libc::c_int) {
        if let Some(flag) = FLAG.get() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    #[allow(unsafe_code)]
    pub fn flag_on(flag: Arc<AtomicBool>) {
        let _ = FLAG.set(flag);
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        for signal in [Signal::SIGINT, Signal::SIGTSTP, Signal::SIGQUIT] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe
            let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
        }
    }
}
