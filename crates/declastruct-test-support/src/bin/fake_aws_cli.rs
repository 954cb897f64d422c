//! A stand-in for `aws ssm start-session` port forwarding, for tests: the same arguments, the session manager
//! plugin's messages, and the same failures.
//!
//! - Arguments: `ssm start-session --target ID --document-name AWS-StartPortForwardingSessionToRemoteHost
//!   --parameters JSON [--region R]`; anything else is refused as the AWS CLI refuses it (exit 252).
//! - The target is looked up in moto (AWS_ENDPOINT_URL); unless it is running:
//!   `An error occurred (TargetNotConnected) when calling the StartSession operation: ID is not connected.`
//!   (exit 254).
//! - Like the real CLI, it runs the forwarding in a child process (the "plugin") and waits for it. SIGINT is
//!   left to the plugin, which ends its session; SIGTERM kills only this parent and leaves the plugin holding
//!   the port, as the real one does.
//! - The plugin prints `Starting session with SessionId: ...`, `Port N opened for sessionId ....`,
//!   `Waiting for connections...`, and `Connection accepted for session [...]` on every client; it dies when
//!   that write fails (the real plugin dies of SIGPIPE once its reader is gone).
//! - `DECLASTRUCT_FAKE_SSM_HOSTS=host:port=127.0.0.1:port,...` maps remote hosts to local servers; an unmapped
//!   or unreachable remote gets its client connections closed, as when the bastion cannot reach the database.
//!
//! `DECLASTRUCT_FAKE_SSM_SKIP_LOOKUP=1` skips the moto lookup, for benchmarks that measure declastruct alone.
//!
//! Failure simulation, for tests of healing and readiness:
//! - `DECLASTRUCT_FAKE_SSM_NOT_CONNECTED_TIMES=N` with `DECLASTRUCT_FAKE_SSM_COUNTER=FILE`: the first N sessions
//!   fail with TargetNotConnected even when the instance runs.
//! - `DECLASTRUCT_FAKE_SSM_TIMEOUT_SECONDS=S`: the session ends after S seconds with
//!   `Session: ID timed out.` and exit 0, as an idle session does.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__plugin") {
        return plugin(&args[1..]);
    }
    match parse(&args) {
        Ok(session) => start_session(session),
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
    host: String,
    port: u16,
    local_port: u16,
    region: Option<String>,
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
    Ok(Session {
        target,
        host: first("host")?,
        port: number("portNumber")?,
        local_port: number("localPortNumber")?,
        region,
    })
}

fn target_is_running(session: &Session) -> Result<bool, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    runtime.block_on(async {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &session.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let ec2 = aws_sdk_ec2::Client::new(&loader.load().await);
        let response = ec2
            .describe_instances()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-id")
                    .values(&session.target)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| aws_sdk_ec2::error::DisplayErrorContext(error).to_string())?;
        Ok(response
            .reservations()
            .iter()
            .flat_map(|reservation| reservation.instances())
            .any(|instance| {
                instance
                    .state()
                    .and_then(|state| state.name())
                    .map(|name| name.as_str())
                    == Some("running")
            }))
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

fn start_session(session: Session) -> ExitCode {
    let not_connected = || {
        eprintln!(
            "\nAn error occurred (TargetNotConnected) when calling the StartSession operation: {} is not connected.\n",
            session.target
        );
        ExitCode::from(254)
    };
    // benchmarks measure declastruct, not moto: the session may skip its lookup and be ready at once
    let skip_lookup = std::env::var_os("DECLASTRUCT_FAKE_SSM_SKIP_LOOKUP").is_some();
    match if skip_lookup {
        Ok(true)
    } else {
        target_is_running(&session)
    } {
        Ok(true) => {}
        Ok(false) => return not_connected(),
        Err(error) => {
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

    // the CLI leaves SIGINT to the plugin, which ends the session on it
    ignore_sigint();
    let session_id = format!(
        "declastruct-test-{:016x}",
        std::process::id() as u64 * 2_654_435_761
    );
    let status = Command::new(std::env::current_exe().unwrap_or_else(|_| "fake-aws-cli".into()))
        .arg("__plugin")
        .arg(&session_id)
        .arg(format!("{}:{}", session.host, session.port))
        .arg(session.local_port.to_string())
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(error) => {
            eprintln!(
                "\nSessionManagerPlugin is not found. Please refer to SessionManager Documentation here: https://docs.aws.amazon.com/console/systems-manager/session-manager-plugin-not-found ({error})\n"
            );
            ExitCode::from(255)
        }
    }
}

#[allow(unsafe_code)]
fn ignore_sigint() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN runs no code in the signal context
    let _ = unsafe { signal(Signal::SIGINT, SigHandler::SigIgn) };
}

fn plugin(args: &[String]) -> ExitCode {
    let [session_id, remote, local_port] = args else {
        return ExitCode::from(2);
    };
    let local_port: u16 = local_port.parse().unwrap_or(0);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = |text: &str| -> bool {
        let Ok(mut out) = out.lock() else {
            return false;
        };
        writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
    };
    say("");
    say(&format!("Starting session with SessionId: {session_id}"));
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, local_port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("listen tcp 127.0.0.1:{local_port}: bind: {error}");
            return ExitCode::from(1);
        }
    };
    say(&format!(
        "Port {local_port} opened for sessionId {session_id}."
    ));
    say("Waiting for connections...");

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook_like::SIGINT, signal_hook_like::SIGTERM] {
        signal_hook_like::flag_on(signal, stop.clone());
    }
    if let Some(seconds) = std::env::var("DECLASTRUCT_FAKE_SSM_TIMEOUT_SECONDS")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            stop.store(true, Ordering::SeqCst);
        });
    }

    let destination = resolve(remote);
    listener.set_nonblocking(true).ok();
    loop {
        if stop.load(Ordering::SeqCst) {
            let timed_out = std::env::var("DECLASTRUCT_FAKE_SSM_TIMEOUT_SECONDS").is_ok();
            if timed_out {
                say(&format!("\nSession: {session_id} timed out."));
            } else {
                say(&format!(
                    "\n\nExiting session with sessionId: {session_id}.\n"
                ));
            }
            return ExitCode::SUCCESS;
        }
        match listener.accept() {
            Ok((client, _)) => {
                if !say(&format!("\nConnection accepted for session [{session_id}]")) {
                    // the real plugin dies of SIGPIPE here
                    return ExitCode::from(141);
                }
                client.set_nonblocking(false).ok();
                let destination = destination.clone();
                std::thread::spawn(move || forward(client, destination));
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn resolve(remote: &str) -> Option<String> {
    let map = std::env::var("DECLASTRUCT_FAKE_SSM_HOSTS").unwrap_or_default();
    map.split(',')
        .filter_map(|pair| pair.split_once('='))
        .find(|(from, _)| *from == remote)
        .map(|(_, to)| to.to_string())
}

fn forward(client: TcpStream, destination: Option<String>) {
    let Some(server) = destination.and_then(|destination| TcpStream::connect(destination).ok())
    else {
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

/// SIGINT/SIGTERM set a flag, so the plugin can say goodbye and exit 0 as the real one does
mod signal_hook_like {
    use std::sync::Arc;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    pub use nix::sys::signal::Signal::{SIGINT, SIGTERM};

    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

    extern "C" fn on_signal(_: nix::libc::c_int) {
        if let Some(flag) = FLAG.get() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    #[allow(unsafe_code)]
    pub fn flag_on(signal: nix::sys::signal::Signal, flag: Arc<AtomicBool>) {
        let _ = FLAG.set(flag);
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(on_signal),
            nix::sys::signal::SaFlags::empty(),
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
}
