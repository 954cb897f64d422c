//! .what = opening a tunnel: keep a healthy one, stop a broken one of ours, check the port, start the bastion,
//! start the session under its supervisor, record it at once, wait until it serves
//! .why = each step has a deadline, is interruptible, and leaves nothing half-started behind when it fails

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::VpcTunnelObservation;
use super::close_vpc_tunnel::CLOSE_GRACE;
use super::get_tunnel_target::TargetKind;
use super::get_vpc_tunnel::HEALTH_LIMIT;
use super::set_vpc_tunnel::ResolvedVpcTunnel;
use crate::domain_objects::{ContextAwsApi, Ec2InstanceStatus, VpcTunnelStatus};
use crate::domain_objects::{IdleDuration, LoopbackHost, TransportChoice};
use crate::domain_operations::ec2_instance::mark_bastion_in_use;
use crate::domain_operations::ec2_instance::{DesiredInstanceStatus, set_ec2_instance_status};
use crate::domain_operations::vpc_tunnel::TunnelMeta;
use crate::error::AwsError;
use declastruct_tunnel::session_output::{SessionFailure, explain_failure, is_listening};
use declastruct_tunnel::supervisor::{
    InUseTarget, NativeSpec, SessionSpec, SupervisorRequest, read_attempts, read_restarts,
    supervisor_command,
};
use declastruct_tunnel::{
    READY_FD, SessionTarget, StartedTunnelProcess, TunnelFiles, TunnelHolder, TunnelProcesses,
    find_port_holder, find_program, is_port_in_use, is_tunnel_healthy, process_start_time,
    read_process, session_command, start_tunnel_process, stop_tunnel_process,
};

/// .what = opens the tunnel (under its lock, taken by the caller) and reports it as observed
/// .why = the OPEN half of `set_vpc_tunnel`
pub(crate) async fn open_vpc_tunnel(
    resolved: &ResolvedVpcTunnel,
    target: &SessionTarget,
    files: &TunnelFiles,
    context: &ContextAwsApi,
) -> Result<VpcTunnelObservation, AwsError> {
    let tunnel = &resolved.tunnel;
    let local_port = target.local_port;
    let engine = resolved.target.engine.as_deref();

    TunnelFiles::check_dir_readable(&files.dir)?;
    let processes = TunnelProcesses::scan(&files.dir);
    let current =
        VpcTunnelObservation::observe(tunnel, files, processes.of(&files.id), engine).await;
    let holder = context.holder();
    if current.is_healthy() && !resolved.restart {
        return hold_open_tunnel(current, files, holder, tunnel.name.as_ref());
    }
    // whoever held the broken tunnel still holds the new one
    let mut holders: Vec<TunnelHolder> = current
        .meta
        .as_ref()
        .map(|meta| {
            meta.holders()
                .into_iter()
                .filter(|other| other.is_alive() && !other.is(&holder))
                .collect()
        })
        .unwrap_or_default();
    holders.push(holder.clone());
    let closed_before = !current.processes.is_empty();
    if closed_before {
        // ours, but not serving or not whole (damaged record, lost supervisor), or to be restarted: start over
        tracing::info!(
            hash = %files.id,
            health = ?current.tunnel.health,
            "stopping the tunnel's processes before opening it again"
        );
        stop_tunnel_process(&current.processes, Some(local_port), CLOSE_GRACE).await?;
    }
    // whatever is left is stale: a dead process's files
    files.remove_all()?;
    // a stopped cluster or instance is named as such, never blamed on the security group after a failed probe
    match (&resolved.target.kind, resolved.target.status.as_deref()) {
        (TargetKind::Cluster(name), Some("stopped" | "stopping")) => {
            return Err(AwsError::ClusterStopped { name: name.clone() });
        }
        (TargetKind::Instance(name), Some("stopped" | "stopping")) => {
            return Err(AwsError::InstanceStopped { name: name.clone() });
        }
        (TargetKind::Cluster(name), Some("starting")) => {
            return Err(AwsError::ClusterNotReady {
                name: name.clone(),
                status: "starting".into(),
            });
        }
        (TargetKind::Instance(name), Some("starting")) => {
            return Err(AwsError::InstanceNotReady {
                name: name.clone(),
                status: "starting".into(),
            });
        }
        _ => {}
    }

    if is_port_in_use(local_port) {
        let (holder, help) = describe_port_holder(local_port, &processes, &files.dir);
        return Err(AwsError::PortInUse {
            port: local_port,
            holder,
            help,
        });
    }
    if resolved.bastion.status != Some(Ec2InstanceStatus::Running) {
        set_ec2_instance_status(&tunnel.via.bastion, DesiredInstanceStatus::Running, context)
            .await?;
        // started for a tunnel: in use from now, as every machine that reads the tag must see
        if resolved.bastion_idle_stop.is_some() {
            mark_bastion_in_use(&target.instance_id, context).await?;
        }
    }
    let transport = context.transport_of_tunnel(&tunnel.via, &tunnel.from);
    let session = match transport {
        TransportChoice::Native => SessionSpec::Native(NativeSpec {
            target: target.instance_id.clone(),
            remote_host: target.host.clone(),
            remote_port: target.port,
            local_port,
            listen: listen_addresses(tunnel.from.host),
            region: context.region.clone(),
            profile: context.profile.clone(),
        }),
        _ => {
            let program =
                find_program(&context.aws_cli).ok_or_else(|| AwsError::AwsCliNotFound {
                    program: context.aws_cli.to_string_lossy().into_owned(),
                })?;
            SessionSpec::Command(session_command(&program, target))
        }
    };
    let command = match (&context.supervisor, session) {
        (Some(supervisor), session) => supervisor_command(
            supervisor,
            &SupervisorRequest {
                log: files.log_path(),
                ready_fd: Some(READY_FD),
                idle_close: tunnel.idle_close.map(IdleDuration::as_duration),
                in_use: resolved.bastion_idle_stop.map(|idle_stop| InUseTarget {
                    instance_id: target.instance_id.clone(),
                    region: context.region.clone(),
                    profile: context.profile.clone(),
                    idle_stop: idle_stop.as_duration(),
                }),
                session,
            },
        ),
        (None, SessionSpec::Command(session)) => session,
        (None, SessionSpec::Native(_)) => {
            return Err(AwsError::Unexpected(
                "the native transport runs in the tunnel's supervisor: this program has none (call run_supervisor_if_requested first in main)".into(),
            ));
        }
    };
    tracing::info!(hash = %files.id, command = ?command, "starting the tunnel");
    let withheld: Vec<&str> = match tunnel
        .connect
        .as_ref()
        .and_then(|connect| connect.password.as_ref())
    {
        Some(crate::PasswordSource::Env { env }) => vec![env.as_str()],
        _ => Vec::new(),
    };
    let mut started =
        start_tunnel_process(&command, files, context.supervisor.is_some(), &withheld)?;
    let pid = started.child.id();
    let mut meta = TunnelMeta {
        tunnel: tunnel.with_status(VpcTunnelStatus::Open, None),
        instance_id: target.instance_id.clone(),
        remote_host: target.host.clone(),
        remote_port: target.port,
        local_port,
        pid,
        process_group: pid,
        process_start_time: process_start_time(pid),
        command: command
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect(),
        opened_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        region: context.region.clone(),
        engine: resolved.target.engine.clone(),
        ready: false,
        transport: Some(transport.as_str().to_string()),
        manifest: match &holder {
            TunnelHolder::Manifest(environment) => Some(environment.manifest.clone()),
            TunnelHolder::Process(process) => process.manifest.clone(),
            _ => None,
        },
        bastion_idle_stop: resolved
            .bastion_idle_stop
            .map(|idle_stop| idle_stop.as_duration().as_secs()),
        closed: None,
        holders: Some(holders),
    };
    // recorded as soon as the process exists: a killed apply leaves nothing unrecorded
    if let Err(error) = files.write_state(&meta) {
        abandon(&mut started, files).await;
        return Err(error.into());
    }

    let outcome = match wait_until_ready(&mut started.child, files, local_port, context).await {
        Ok(()) => {
            let health = is_tunnel_healthy(local_port, engine, HEALTH_LIMIT).await;
            if health.healthy {
                Ok(health)
            } else {
                Err(NotReady::Failed(SessionFailure {
                    reason: health
                        .reason
                        .unwrap_or_else(|| "the database does not answer through the tunnel".into()),
                    help: "check that the bastion's security group may reach the cluster's port, and that the cluster is available".into(),
                    agent_not_connected: false,
                }))
            }
        }
        Err(not_ready) => Err(not_ready),
    };
    match outcome {
        Ok(health) => {
            meta.ready = true;
            files.write_state(&meta)?;
            started.confirm_ready();
            let (restarts, last_restart) = read_restarts(&files.log_path());
            Ok(VpcTunnelObservation {
                tunnel: tunnel.observed_open(pid, health),
                hash: Some(files.id.clone()),
                holders: meta.holders(),
                meta: Some(meta),
                damage: None,
                processes: read_process(pid).into_iter().collect(),
                restarts,
                last_restart,
            })
        }
        Err(not_ready) => {
            // read once the session and its supervisor are stopped: the plugin's last words are in the log by then
            let log_tail = abandon(&mut started, files).await;
            Err(match not_ready {
                NotReady::Interrupted => AwsError::Interrupted {
                    waiting_for: format!(
                        "waiting for the tunnel on local port {local_port} to open"
                    ),
                },
                NotReady::Failed(failure) => {
                    let failure = name_a_port_taker(failure, local_port, closed_before);
                    AwsError::TunnelOpenFailed {
                        port: local_port,
                        reason: failure.reason,
                        log_tail: indent(&log_tail),
                        help: failure.help,
                    }
                }
            })
        }
    }
}

/// .what = adds `holder` to a healthy open tunnel's holders (dropping dead ones), records the name it is declared
/// by now, and reports it
/// .why = an `exec` that finds the tunnel open, or a manifest that finds it opened by someone else, holds it too:
/// the tunnel stays open until the last of them lets go; a tunnel named (or renamed) while open keeps its session,
/// and `status --all` and `logs` show it by its new name
fn hold_open_tunnel(
    mut current: VpcTunnelObservation,
    files: &TunnelFiles,
    holder: TunnelHolder,
    name: Option<&crate::domain_objects::TunnelName>,
) -> Result<VpcTunnelObservation, AwsError> {
    let Some(meta) = current.meta.as_mut() else {
        // a healthy tunnel has a whole record
        return Err(AwsError::Unexpected(format!(
            "the tunnel {} is healthy without a record",
            files.id
        )));
    };
    let mut holders: Vec<TunnelHolder> = meta
        .holders()
        .into_iter()
        .filter(TunnelHolder::is_alive)
        .collect();
    if !holders.iter().any(|other| other.is(&holder)) {
        holders.push(holder);
    }
    // a name is recorded, never taken away (another manifest, or an exec through it, may hold the tunnel unnamed),
    // and only by its sole holder (`holders` includes this one now): two manifests that name one session
    // differently must not rename it back and forth
    let renamed = name.is_some() && meta.tunnel.name.as_ref() != name && holders.len() == 1;
    if meta.holders.as_ref() != Some(&holders) || renamed {
        meta.holders = Some(holders);
        if renamed {
            meta.tunnel.name = name.cloned();
        }
        files.write_meta(meta)?;
    }
    current.holders = meta.holders();
    Ok(current)
}

/// .what = stops everything a failed or interrupted open started and removes its files; returns the log's tail
/// .why = no half-open tunnel is left behind, and nothing unrecorded either; the tail is complete only once
///   the supervisor, which copies the plugin's output into the log, has stopped
async fn abandon(started: &mut StartedTunnelProcess, files: &TunnelFiles) -> String {
    let processes = TunnelProcesses::scan(&files.dir).of(&files.id).to_vec();
    let _ = stop_tunnel_process(&processes, None, Duration::from_secs(1)).await;
    // reap the supervisor we started, now that it is gone
    if matches!(started.child.try_wait(), Ok(None)) {
        let _ = started.child.kill();
        let _ = started.child.wait();
    }
    let log_tail = files.log_tail(8);
    let _ = files.remove_all();
    log_tail
}

/// .what = who holds a port, in words: another tunnel of ours, a tunnel of another state folder, or a program
/// .why = the user must know what to stop; declastruct stops nothing it did not start
fn describe_port_holder(
    port: u16,
    processes: &TunnelProcesses,
    tunnels_dir: &Path,
) -> (String, String) {
    let another_port = "or give this tunnel another `from.port`";
    let foreign = |holder: String| {
        let help = format!(
            "declastruct never stops a program it did not start: stop it yourself if it is yours, {another_port}"
        );
        (holder, help)
    };
    let Some(holder) = find_port_holder(port) else {
        return foreign("another program (the system does not tell which)".into());
    };
    if let Some(hash) = processes.tunnel_of(holder.pid) {
        return match TunnelFiles::new(tunnels_dir, hash.clone())
            .read_meta::<crate::DeclaredAwsVpcTunnel>()
        {
            Ok(Some(meta)) => {
                let holder_text = format!(
                    "another declastruct tunnel (pid {}) to {}:{} through {}{}",
                    holder.pid,
                    meta.remote_host,
                    meta.remote_port,
                    meta.instance_id,
                    meta.region
                        .as_ref()
                        .map(|region| format!(" in {region}"))
                        .unwrap_or_default(),
                );
                match &meta.manifest {
                    Some(manifest) => (
                        format!("{holder_text}, opened by the manifest {manifest}"),
                        format!(
                            "close that tunnel from its manifest: declare it CLOSED (or remove it) in {manifest} and run `declastruct apply -f {manifest}`; {another_port}"
                        ),
                    ),
                    None => (
                        format!("{holder_text}, opened by a program using the SDK"),
                        format!("close it from the program that opened it; {another_port}"),
                    ),
                }
            }
            _ => (
                format!(
                    "another declastruct tunnel (pid {}, {hash}) whose record is damaged or missing",
                    holder.pid
                ),
                format!(
                    "`declastruct status --all` shows it; `declastruct apply` with the manifest that declares it heals or closes it; {another_port}"
                ),
            ),
        };
    }
    if let Some(marker) = read_process(holder.pid).and_then(|process| process.tunnel) {
        let home = marker.parent().and_then(Path::parent).map_or_else(
            || marker.display().to_string(),
            |home| home.display().to_string(),
        );
        return (
            format!(
                "a declastruct tunnel of another state folder (pid {}, DECLASTRUCT_HOME={home})",
                holder.pid
            ),
            format!(
                "close it from there: `DECLASTRUCT_HOME={home} declastruct status --all` shows its manifest; {another_port}"
            ),
        );
    }
    foreign(holder.to_string())
}

/// why a tunnel did not become ready
enum NotReady {
    Failed(SessionFailure),
    Interrupted,
}

/// .what = waits until the session's output says its listener is up; keeps waiting (up to the agent limit)
/// while restarts say the bastion's agent is not connected yet; fails fast on any other failure; ends at once
/// when the user interrupts
/// .why = every wait has a deadline and says what it waits for
async fn wait_until_ready(
    child: &mut Child,
    files: &TunnelFiles,
    local_port: u16,
    context: &ContextAwsApi,
) -> Result<(), NotReady> {
    let started = Instant::now();
    let mut deadline = started + context.tunnel_ready_timeout;
    let mut reported_restarts = 0;
    loop {
        let log = files.read_log();
        if is_listening(&log, local_port) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let failure = explain_failure(&log);
            return Err(NotReady::Failed(SessionFailure {
                reason: format!("{} ({status})", failure.reason),
                ..failure
            }));
        }
        let (restarts, _) = read_attempts(&files.log_path());
        if restarts > reported_restarts {
            reported_restarts = restarts;
            let failure = explain_failure(&log);
            if !failure.agent_not_connected {
                return Err(NotReady::Failed(failure));
            }
            deadline = deadline.max(started + context.agent_wait_timeout);
            // the line that shows it has the clock: the message says only what and how far
            context.report_progress(&format!(
                "waiting for the bastion's SSM agent to connect: TargetNotConnected, attempt {}; gives up after {} s",
                restarts + 1,
                context.agent_wait_timeout.as_secs()
            ));
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Failed(if reported_restarts > 0 {
                SessionFailure {
                    reason: format!(
                        "the bastion's SSM agent did not connect within {} s (TargetNotConnected)",
                        context.agent_wait_timeout.as_secs()
                    ),
                    help: "check that the instance runs the SSM agent with an instance profile that allows Session Manager (AmazonSSMManagedInstanceCore) and can reach the SSM endpoints; raise DECLASTRUCT_AGENT_TIMEOUT_SECONDS if it only needs longer".into(),
                    agent_not_connected: true,
                }
            } else {
                disk_full_failure(files).unwrap_or_else(|| SessionFailure {
                    reason: format!(
                        "the session did not open local port {local_port} within {} s",
                        context.tunnel_ready_timeout.as_secs()
                    ),
                    help: "look at the session's output above; check the bastion's SSM agent and your network, then apply again".into(),
                    agent_not_connected: false,
                })
            }));
        }
        tokio::select! {
            () = context.cancel.cancelled() => return Err(NotReady::Interrupted),
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}

/// .what = the failure, naming the program that took the local port while the session was starting (once our
/// own processes are gone), and saying when this open had closed the tunnel's earlier session first
/// .why = "bind: address already in use" alone, after `--replace` closed the old session, leaves the user with no
/// tunnel and no idea whom to ask
fn name_a_port_taker(failure: SessionFailure, port: u16, closed_before: bool) -> SessionFailure {
    if !is_port_in_use(port) {
        return failure;
    }
    let holder = find_port_holder(port).map_or_else(
        || "another program (the system does not tell which)".to_string(),
        |holder| holder.to_string(),
    );
    let earlier = if closed_before {
        "; the tunnel's earlier session had been closed first, so nothing of it serves now"
    } else {
        ""
    };
    SessionFailure {
        reason: format!(
            "{}; local port {port} was taken meanwhile by {holder}{earlier}",
            failure.reason
        ),
        help: format!(
            "declastruct never stops a program it did not start: stop {holder} yourself if it is yours, or give this tunnel another `from.port`; then apply again"
        ),
        ..failure
    }
}

/// .what = the failure to report when the disk that holds the tunnel's log is full, if it is
/// .why = a session whose output cannot be written never shows its port line: "did not open within 30 s" would
/// blame the network for a full disk
fn disk_full_failure(files: &TunnelFiles) -> Option<SessionFailure> {
    let stats = nix::sys::statvfs::statvfs(&files.dir).ok()?;
    (stats.blocks_available() == 0).then(|| SessionFailure {
        reason: format!(
            "the disk that holds {} is full (ENOSPC): the session's output cannot be written, so its readiness cannot be read",
            files.dir.display()
        ),
        help: format!(
            "free some space on it (`df -h {}`), or point DECLASTRUCT_HOME at a folder on another disk, then apply again",
            files.dir.display()
        ),
        agent_not_connected: false,
    })
}

fn indent(text: &str) -> String {
    if text.is_empty() {
        return "  (the session printed nothing)".into();
    }
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// .what = the addresses a native session listens on: both loopbacks for `localhost`, the one named otherwise
/// .why = `localhost` means 127.0.0.1 and ::1 to clients that resolve it either way (the plugin listens on one)
fn listen_addresses(host: LoopbackHost) -> Vec<std::net::IpAddr> {
    match host {
        LoopbackHost::Localhost => vec![
            std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ],
        LoopbackHost::Ipv4Loopback => vec![std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST)],
        LoopbackHost::Address(address) => vec![address],
    }
}
