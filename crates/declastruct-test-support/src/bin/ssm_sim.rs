//! `ssm-sim`: the SSM service simulator as a program others can run.
//!
//! ```text
//! ssm-sim --listen 127.0.0.1:PORT --route HOST:PORT=ADDR:PORT [--route '*=ADDR:PORT'] [--mode mux|basic]
//!         [--ec2-endpoint URL] [--registration-delay SECONDS] [--abort-websocket-after SECONDS]
//! ```
//!
//! `--abort-websocket-after` aborts each session's first websocket that long after it opened (`Faults`), so a
//! client's resume can be tried from the command line.
//!
//! Prints exactly one line, `ready http://127.0.0.1:PORT`, once it serves the SSM API and the data channel, and
//! runs until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use declastruct_test_support::ssm_sim::{Mode, SimConfig, SsmSimulator};

const USAGE: &str = "usage: ssm-sim --listen 127.0.0.1:PORT --route HOST:PORT=ADDR:PORT [--route '*=ADDR:PORT'] [--mode mux|basic] [--ec2-endpoint URL] [--registration-delay SECONDS] [--abort-websocket-after SECONDS]";

/// .what = the configuration the arguments ask for
/// .why = a few flags, read by hand: no parser crate for a test program
fn parse(arguments: &[String]) -> Result<SimConfig, String> {
    let mut config = SimConfig::default();
    let mut words = arguments.iter();
    while let Some(flag) = words.next() {
        let mut value = || {
            words
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let listen = value()?;
                config.listen = listen
                    .parse()
                    .map_err(|_| format!("--listen {listen}: not an ADDR:PORT"))?;
            }
            "--route" => {
                let route = value()?;
                let (destination, address) = route
                    .split_once('=')
                    .ok_or_else(|| format!("--route {route}: expected HOST:PORT=ADDR:PORT"))?;
                let address: SocketAddr = address
                    .parse()
                    .map_err(|_| format!("--route {route}: {address} is not an ADDR:PORT"))?;
                config.routes.push((destination.to_string(), address));
            }
            "--mode" => {
                config.mode = match value()?.as_str() {
                    "mux" => Mode::Mux,
                    "basic" => Mode::Basic,
                    other => return Err(format!("--mode {other}: expected mux or basic")),
                };
            }
            "--ec2-endpoint" => config.ec2_endpoint = Some(value()?),
            "--registration-delay" => {
                let seconds = value()?;
                config.registration_delay = Duration::from_secs_f64(
                    seconds
                        .parse()
                        .map_err(|_| format!("--registration-delay {seconds}: not a number"))?,
                );
            }
            "--abort-websocket-after" => {
                let seconds = value()?;
                config.faults.abort_websocket_after =
                    Some(Duration::from_secs_f64(seconds.parse().map_err(|_| {
                        format!("--abort-websocket-after {seconds}: not a number")
                    })?));
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(config)
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&arguments) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ssm-sim: {message}");
            return ExitCode::from(2);
        }
    };
    let simulator = match SsmSimulator::try_start(config) {
        Ok(simulator) => simulator,
        Err(error) => {
            eprintln!("ssm-sim: cannot listen: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "ready {}", simulator.endpoint())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    let waited = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            runtime.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let mut interrupt = signal(SignalKind::interrupt())?;
                let mut terminate = signal(SignalKind::terminate())?;
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                Ok::<(), std::io::Error>(())
            })
        });
    drop(simulator);
    match waited {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ssm-sim: {error}");
            ExitCode::FAILURE
        }
    }
}
