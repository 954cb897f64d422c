use std::process::ExitCode;

use declastruct_aws::internal::{
    ResolvedVpcTunnel, release_tunnel_identity, set_vpc_tunnel_resolved,
};
use declastruct_aws::{AwsError, Ec2InstanceStatus, TunnelHolder, VpcTunnelStatus};
use declastruct_manifest::kinds::{Kind, ObservedTunnel};
use declastruct_manifest::resources::Observed;

use crate::args::{Cli, ExecArgs};
use crate::commands::{EXIT_FAILURE, observe_or_report, report};
use crate::connect::variables_of;
use crate::progress::Progress;

/// .what = `declastruct exec [ADDRESS...] -- COMMAND [ARGS...]`: makes sure each named tunnel (default: every tunnel
/// of the manifest) is open and answers, runs COMMAND with the connection variables, forwards signals to it, and
/// exits with its status; tunnels opened for it are closed afterwards, tunnels already open stay as they were
/// .why = the one-shot CI use (`declastruct exec db -- ./migrate`): no foreground tunnel that never returns, no
/// password pasted by hand
pub async fn run(cli: &Cli, args: &ExecArgs) -> ExitCode {
    let (manifest, mut context, resources) =
        match observe_or_report(cli, &cli.manifest_path(), true).await {
            Ok(observed) => observed,
            Err(code) => return code,
        };
    let selected = match select_tunnels(&resources, &args.addresses) {
        Ok(selected) => selected,
        Err(code) => return code,
    };
    // this exec holds every tunnel it uses, for as long as it runs: it never closes one another holder uses, and
    // if it is killed, the tunnel's supervisor drops its hold within seconds. Only the program's name is recorded:
    // its arguments may carry a secret
    let program = std::path::Path::new(&args.command[0])
        .file_name()
        .map_or_else(
            || args.command[0].to_string_lossy(),
            |name| name.to_string_lossy(),
        )
        .into_owned();
    context.holder = TunnelHolder::process(
        std::process::id(),
        format!("exec {program}"),
        manifest
            .path
            .as_ref()
            .map(|path| path.display().to_string()),
    );
    if context.holder.is_none() {
        eprintln!(
            "error: exec cannot read its own process record (/proc/self/stat), which its hold needs"
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    if let Err(code) = announce_bastion_starts(&selected, args.no_start, cli.quiet, "exec") {
        return code;
    }
    let progress = Progress::for_terminal(!cli.quiet);
    context.progress = progress.reporter();
    let signals = Signals::listen();

    // open what is not open and serving, hold every one
    let mut held: Vec<(declastruct_aws::TunnelId, u16)> = Vec::new();
    let mut failed = false;
    let opening = selected.iter().map(|tunnel| {
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
        let task = (!tunnel.observation.is_healthy()).then(|| {
            progress.start(format!(
                "opening {} for the command",
                tunnel.declaration.address().slug
            ))
        });
        // what this open reports (a bastion starting, an agent not yet connected) is its own line's
        let mut context = context.clone();
        if let Some(reporter) = task.as_ref().and_then(crate::progress::Task::reporter) {
            context.progress = Some(reporter);
        }
        async move {
            let outcome = set_vpc_tunnel_resolved(&resolved, &context).await;
            drop(task);
            (outcome, resolved.tunnel.from.port)
        }
    });
    let opening = futures::future::join_all(opening);
    tokio::pin!(opening);
    let opened = tokio::select! {
        opened = &mut opening => opened,
        () = signals.first() => {
            context.cancel.cancel();
            eprintln!("Interrupted while opening the tunnels: the command was not run.");
            // each open sees the cancellation, stops what it started and says so; the holds taken already are
            // released below, as after any failed open
            opening.await
        }
    };
    if context.cancel.is_cancelled() {
        failed = true;
    }
    for (outcome, port) in opened {
        match outcome {
            Ok(observation) => {
                if let Some(hash) = observation.hash {
                    held.push((hash, port));
                }
            }
            Err(error) => {
                failed = true;
                report(error);
            }
        }
    }
    if failed {
        release_all(&held, &context).await;
        eprintln!("error: a tunnel could not be opened: the command was not run");
        return ExitCode::from(EXIT_FAILURE);
    }

    let code = match variables_of(&selected, &context).await {
        Ok(variables) => run_command(&args.command, &variables, &signals).await,
        Err(error) => {
            report(error);
            ExitCode::from(EXIT_FAILURE)
        }
    };
    release_all(&held, &context).await;
    code
}

/// .what = the tunnels named by `addresses` (every tunnel of the manifest when none is named), or the exit code
/// after saying which address names nothing
/// .why = `exec` and `connect` pick their tunnels the same way
pub(crate) fn select_tunnels<'a>(
    resources: &'a [Observed],
    addresses: &[String],
) -> Result<Vec<&'a ObservedTunnel>, ExitCode> {
    let tunnels: Vec<&ObservedTunnel> = resources
        .iter()
        .filter_map(|resource| match resource {
            Observed::Tunnel(tunnel) => Some(tunnel.as_ref()),
            _ => None,
        })
        .collect();
    let selected: Vec<&ObservedTunnel> = if addresses.is_empty() {
        tunnels.clone()
    } else {
        let mut selected = Vec::new();
        for address in addresses {
            match tunnels
                .iter()
                .find(|tunnel| tunnel.declaration.address().slug == *address)
            {
                Some(tunnel) => selected.push(*tunnel),
                None => {
                    let known: Vec<String> = tunnels
                        .iter()
                        .map(|tunnel| tunnel.declaration.address().slug)
                        .collect();
                    eprintln!(
                        "error: no tunnel of this manifest has the address `{address}`\n  help: its tunnels are: {}",
                        known.join(", ")
                    );
                    return Err(ExitCode::from(EXIT_FAILURE));
                }
            }
        }
        selected
    };
    if selected.is_empty() {
        eprintln!("error: the manifest declares no tunnel");
        return Err(ExitCode::from(EXIT_FAILURE));
    }
    Ok(selected)
}

/// .what = says on stderr, one line a bastion, which stopped bastion exec starts for which tunnels; with
/// `--no-start`, refuses instead (exit 1)
/// .why = starting an instance costs money and a minute or two: never a silent side effect
pub(crate) fn announce_bastion_starts(
    selected: &[&ObservedTunnel],
    no_start: bool,
    quiet: bool,
    command: &str,
) -> Result<(), ExitCode> {
    let mut bastions: Vec<(String, String, Vec<String>)> = Vec::new();
    for tunnel in selected {
        let status = tunnel.bastion.status;
        if status == Some(Ec2InstanceStatus::Running) {
            continue;
        }
        let name = format!(
            "{} ({})",
            tunnel.declaration.via.bastion,
            tunnel
                .bastion
                .instance_id
                .as_deref()
                .unwrap_or("no instance id")
        );
        let status = status
            .map_or("not running", Ec2InstanceStatus::as_str)
            .to_string();
        let address = tunnel.declaration.address().slug;
        match bastions.iter_mut().find(|(known, _, _)| *known == name) {
            Some((_, _, addresses)) => addresses.push(address),
            None => bastions.push((name, status, vec![address])),
        }
    }
    if no_start && !bastions.is_empty() {
        for (bastion, status, _) in bastions {
            report(AwsError::BastionNotRunning { bastion, status });
        }
        return Err(ExitCode::from(EXIT_FAILURE));
    }
    if !quiet {
        for (bastion, status, addresses) in bastions {
            eprintln!(
                "{command}: starting the bastion {bastion}, which is {status}, for {}",
                addresses.join(", ")
            );
        }
    }
    Ok(())
}

/// lets go of the tunnels `exec` held: each closes when no other holder remains; a failure is reported, not
/// hidden
pub(crate) async fn release_all(
    held: &[(declastruct_aws::TunnelId, u16)],
    context: &declastruct_aws::ContextAwsApi,
) {
    for (hash, port) in held {
        if let Err(error) = release_tunnel_identity(hash, *port, false, context).await {
            report(error);
        }
    }
}

/// .what = runs the command with the variables, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT to it, and
/// returns its exit status (128 + the signal when a signal ended it)
/// .why = `exec` is transparent: the command sees what it would see run directly, and its status is ours
async fn run_command(
    command: &[std::ffi::OsString],
    variables: &[(String, String)],
    signals: &Signals,
) -> ExitCode {
    let mut child = match tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .envs(variables.iter().map(|(name, value)| (name, value)))
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            eprintln!(
                "error: cannot run `{}`: {error}",
                command[0].to_string_lossy()
            );
            // as a shell does for a command it cannot run
            return ExitCode::from(127);
        }
    };
    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            signal = signals.next() => {
                if let (Some(pid), false) = (pid, sent_by_the_terminal(signal)) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                }
            }
        }
    };
    match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .or_else(|| status.signal().map(|signal| 128 + signal))
                .unwrap_or(1);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(error) => {
            eprintln!("error: waiting for the command failed: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// .what = whether the terminal itself sent `signal` to the command: Ctrl-C and Ctrl-\ reach every process of the
/// terminal's foreground group, which the command shares with `exec`
/// .why = forwarded again, the command would see a second Ctrl-C, which many programs read as "force quit"
fn sent_by_the_terminal(signal: nix::sys::signal::Signal) -> bool {
    use nix::sys::signal::Signal;
    matches!(signal, Signal::SIGINT | Signal::SIGQUIT)
        && nix::unistd::tcgetpgrp(std::io::stdin())
            .is_ok_and(|group| group == nix::unistd::getpgrp())
}

/// the signals `exec` forwards, received as they come
pub(crate) struct Signals {
    receiver: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<nix::sys::signal::Signal>>,
}

impl Signals {
    /// starts listening for SIGINT, SIGTERM, SIGHUP and SIGQUIT
    pub(crate) fn listen() -> Self {
        use nix::sys::signal::Signal;
        use tokio::signal::unix::{SignalKind, signal};
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        for (kind, forwarded) in [
            (SignalKind::interrupt(), Signal::SIGINT),
            (SignalKind::terminate(), Signal::SIGTERM),
            (SignalKind::hangup(), Signal::SIGHUP),
            (SignalKind::quit(), Signal::SIGQUIT),
        ] {
            if let Ok(mut stream) = signal(kind) {
                let sender = sender.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if sender.send(forwarded).is_err() {
                            return;
                        }
                    }
                });
            }
        }
        Self {
            receiver: tokio::sync::Mutex::new(receiver),
        }
    }

    /// the next signal received
    pub(crate) async fn next(&self) -> nix::sys::signal::Signal {
        match self.receiver.lock().await.recv().await {
            Some(signal) => signal,
            None => std::future::pending().await,
        }
    }

    /// waits for any signal
    pub(crate) async fn first(&self) {
        self.next().await;
    }
}
