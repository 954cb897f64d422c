use std::process::ExitCode;

use declastruct_aws::internal::{
    Released, ResolvedVpcTunnel, release_tunnel_identity, set_vpc_tunnel_resolved,
};
use declastruct_aws::{TunnelHolder, VpcTunnelStatus};
use declastruct_manifest::kinds::vpc_tunnel::{client_command, connection_line, describe_holders};

use crate::args::{Cli, ConnectArgs};
use crate::commands::exec::{Signals, announce_bastion_starts, select_tunnels};
use crate::commands::{EXIT_FAILURE, observe_or_report, report};
use crate::progress::Progress;

/// .what = `declastruct connect ADDRESS`: opens the tunnel (a hold), prints how to connect, holds it until Ctrl-C
/// or SIGTERM, then lets go (closing it when no other holder remains)
/// .why = the ad-hoc use, like `kubectl port-forward`, without editing the manifest: a hold like any other, so it
/// never closes a tunnel the manifest or an `exec` still uses, and a killed `connect` is dropped by the supervisor
pub async fn run(cli: &Cli, args: &ConnectArgs) -> ExitCode {
    let (manifest, mut context, resources) =
        match observe_or_report(cli, &cli.manifest_path(), true).await {
            Ok(observed) => observed,
            Err(code) => return code,
        };
    let selected = match select_tunnels(&resources, std::slice::from_ref(&args.address)) {
        Ok(selected) => selected,
        Err(code) => return code,
    };
    let tunnel = selected[0];
    context.holder = TunnelHolder::process(
        std::process::id(),
        format!("connect {}", args.address),
        manifest
            .path
            .as_ref()
            .map(|path| path.display().to_string()),
    );
    if context.holder.is_none() {
        eprintln!(
            "error: connect cannot read its own process record (/proc/self/stat), which its hold needs"
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    if let Err(code) = announce_bastion_starts(&selected, args.no_start, cli.quiet, "connect") {
        return code;
    }
    let progress = Progress::for_terminal(!cli.quiet);
    context.progress = progress.reporter();
    let signals = Signals::listen();
    let resolved = ResolvedVpcTunnel {
        tunnel: tunnel
            .declaration
            .to_domain()
            .with_status(VpcTunnelStatus::Open, None),
        bastion: tunnel.bastion.clone(),
        target: tunnel.target.clone(),
        restart: false,
        bastion_idle_stop: tunnel.bastion_idle_stop,
    };
    let task = (!tunnel.observation.is_healthy())
        .then(|| progress.start(format!("opening {}", args.address)));
    if let Some(reporter) = task.as_ref().and_then(crate::progress::Task::reporter) {
        context.progress = Some(reporter);
    }
    let opening = set_vpc_tunnel_resolved(&resolved, &context);
    tokio::pin!(opening);
    let opened = tokio::select! {
        opened = &mut opening => opened,
        () = signals.first() => {
            context.cancel.cancel();
            opening.await
        }
    };
    drop(task);
    let observation = match opened {
        Ok(observation) if !context.cancel.is_cancelled() => observation,
        Ok(observation) => {
            // interrupted just as it opened: let go at once
            if let Some(hash) = &observation.hash {
                let _ =
                    release_tunnel_identity(hash, tunnel.declaration.from.port, false, &context)
                        .await;
            }
            eprintln!("Interrupted: the tunnel was let go of.");
            return ExitCode::from(EXIT_FAILURE);
        }
        Err(error) => {
            report(error);
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let Some(hash) = observation.hash.clone() else {
        eprintln!("error: the tunnel opened without an identity: this is a bug");
        return ExitCode::from(EXIT_FAILURE);
    };
    let _ = crate::commands::write_stdout(&format!(
        "Connected: {}\n  {}\nHolding the tunnel until Ctrl-C (or SIGTERM).\n",
        connection_line(tunnel),
        client_command(tunnel)
    ));
    signals.first().await;
    match release_tunnel_identity(&hash, tunnel.declaration.from.port, false, &context).await {
        Ok(Released::Closed) => {
            let _ = crate::commands::write_stdout(&format!("Closed {}.\n", args.address));
            ExitCode::SUCCESS
        }
        Ok(Released::StillHeld(others)) => {
            let _ = crate::commands::write_stdout(&format!(
                "Released {}; it stays open for {}.\n",
                args.address,
                describe_holders(&others)
            ));
            ExitCode::SUCCESS
        }
        Err(error) => {
            report(error);
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
