//! .what = a port forward through the native transport, from the command line:
//! `native_forward TARGET REMOTE_HOST REMOTE_PORT LOCAL_PORT` (REMOTE_HOST `-` for the target's own port)
//! .why = the process a tunnel would be, for measuring its memory and throughput beside the plugin (and for
//! trying the transport by hand); credentials, region and endpoint come from the SDK's usual sources
//! (`AWS_ENDPOINT_URL_SSM` reaches a simulator); SIGINT or SIGTERM closes the session with TerminateSession

use std::process::ExitCode;

use declastruct_ssm::{NativeOptions, NativeSession, PortForwardRequest, localhost_addresses};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [target, host, remote_port, local_port] = arguments.as_slice() else {
        eprintln!("usage: native_forward TARGET REMOTE_HOST|- REMOTE_PORT LOCAL_PORT");
        return ExitCode::from(2);
    };
    let (Ok(remote_port), Ok(local_port)) = (remote_port.parse::<u16>(), local_port.parse::<u16>())
    else {
        eprintln!("ports are numbers from 0 to 65535");
        return ExitCode::from(2);
    };
    let request = PortForwardRequest {
        target: target.clone(),
        remote_host: (host != "-").then(|| host.clone()),
        remote_port,
        local_port,
        local_addresses: localhost_addresses(),
    };
    // one thread: what a supervisor holding one tunnel needs
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let (events, mut event_receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(event) = event_receiver.recv().await {
                println!("{event}");
            }
        });
        let options = NativeOptions {
            events: Some(events),
            ..NativeOptions::default()
        };
        let mut session = match NativeSession::start(&config, request, options).await {
            Ok(session) => session,
            Err(error) => {
                eprintln!("{:?}", miette::Report::new(error));
                return ExitCode::FAILURE;
            }
        };
        let closer = session.closer();
        tokio::spawn(async move {
            let (Ok(mut interrupt), Ok(mut terminate)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            println!("Terminate signal received, exiting.");
            closer.close();
        });
        match session.serve().await {
            Ok(end) => {
                println!("Session ended: {end}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{:?}", miette::Report::new(error));
                ExitCode::FAILURE
            }
        }
    })
}
