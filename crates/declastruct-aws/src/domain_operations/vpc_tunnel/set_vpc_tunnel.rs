use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::VpcTunnelObservation;
use crate::domain_operations::vpc_tunnel::get_vpc_tunnel::{live_tunnel_meta, resolve_tunnel_ends};
use crate::domain_operations::vpc_tunnel::supervisor::{read_restarts, supervisor_command};
use crate::domain_operations::vpc_tunnel::utils::{
    TunnelFiles, TunnelHealth, TunnelMeta, find_port_holder, get_tunnel_hash, is_port_in_use,
    is_tunnel_healthy, lock_tunnel, process_start_time, stop_tunnel_process,
};
use crate::error::AwsError;
use crate::{
    ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster, DeclaredAwsVpcTunnel,
    DesiredInstanceStatus, Ec2InstanceStatus, VpcTunnelStatus, set_ec2_instance_status,
};

/// what the session prints once its local listener is up
const READY_LINE: &str = "Waiting for connections...";
/// how long each signal of a close may take before the next, stronger one
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// how long the health probe may take
const HEALTH_LIMIT: Duration = Duration::from_secs(5);

/// .what = a tunnel together with its bastion and cluster, already resolved
/// .why = `apply` has resolved them while planning; opening needs no second lookup
#[derive(Debug, Clone)]
pub struct ResolvedVpcTunnel {
    /// the tunnel, with the status to set
    pub tunnel: DeclaredAwsVpcTunnel,
    /// its bastion as found
    pub bastion: DeclaredAwsEc2Instance,
    /// its cluster as found
    pub cluster: DeclaredAwsRdsCluster,
}

/// .what = opens or closes a VPC tunnel, as its `status` says
/// .why = enables declarative control of SSM port-forwarding tunnels
pub async fn set_vpc_tunnel(
    tunnel: &DeclaredAwsVpcTunnel,
    context: &ContextAwsApi,
) -> Result<DeclaredAwsVpcTunnel, AwsError> {
    let region = || {
        context
            .region
            .clone()
            .unwrap_or_else(|| "the configured region".into())
    };
    let (bastion, cluster) = resolve_tunnel_ends(tunnel, context).await?;
    let bastion = bastion.ok_or_else(|| AwsError::BastionNotFound {
        reference: tunnel.via.bastion.to_string(),
        region: region(),
    })?;
    let cluster = cluster.ok_or_else(|| AwsError::ClusterNotFound {
        name: tunnel.into.cluster.name.clone(),
        region: region(),
        closest: Vec::new(),
    })?;
    let resolved = ResolvedVpcTunnel {
        tunnel: tunnel.clone(),
        bastion,
        cluster,
    };
    Ok(set_vpc_tunnel_resolved(&resolved, context).await?.tunnel)
}

/// .what = opens or closes a tunnel whose bastion and cluster are resolved, under the tunnel's lock
/// .why = idempotent: an open healthy tunnel is kept, a dead one reopened, a closed one left closed
pub async fn set_vpc_tunnel_resolved(
    resolved: &ResolvedVpcTunnel,
    context: &ContextAwsApi,
) -> Result<VpcTunnelObservation, AwsError> {
    let tunnel = &resolved.tunnel;
    let Some(to) = tunnel.status else {
        return Err(AwsError::Unexpected(
            "set_vpc_tunnel needs `status`: OPEN or CLOSED".into(),
        ));
    };
    let endpoint = Endpoint::of(resolved)?;
    let hash = get_tunnel_hash(
        &endpoint.instance_id,
        &endpoint.host,
        endpoint.port,
        tunnel.from.port,
    );
    let files = TunnelFiles::new(context.tunnels_dir(), &hash);
    files.ensure_dir()?;
    let lock = lock_tunnel(&files).await?;

    match to {
        VpcTunnelStatus::Closed => {
            close(&files).await?;
            lock.remove()?;
            Ok(VpcTunnelObservation::closed(tunnel, Some(hash)))
        }
        VpcTunnelStatus::Open => {
            let opened = open(resolved, &endpoint, &files, context).await;
            let (meta, health) = match opened {
                Ok(opened) => opened,
                Err(error) => {
                    lock.remove()?;
                    return Err(error);
                }
            };
            Ok(VpcTunnelObservation::of_our_process(
                tunnel, &files, meta, health,
            ))
        }
    }
}

/// the resolved far end of a tunnel
struct Endpoint {
    instance_id: String,
    host: String,
    port: u16,
}

impl Endpoint {
    fn of(resolved: &ResolvedVpcTunnel) -> Result<Self, AwsError> {
        let instance_id = resolved.bastion.instance_id.clone().ok_or_else(|| {
            AwsError::Unexpected(format!(
                "bastion {} has no instance id",
                resolved.bastion.exid
            ))
        })?;
        let not_ready = || AwsError::ClusterNotReady {
            name: resolved.cluster.name.clone(),
            status: resolved
                .cluster
                .status
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        };
        let host = resolved
            .cluster
            .host
            .as_ref()
            .ok_or_else(not_ready)?
            .writer
            .clone();
        let port = resolved.cluster.port.ok_or_else(not_ready)?;
        Ok(Self {
            instance_id,
            host,
            port,
        })
    }
}

async fn close(files: &TunnelFiles) -> Result<(), AwsError> {
    if let Some(meta) = files.read_meta() {
        tracing::info!(hash = %files.hash, pid = meta.pid, "closing the tunnel");
        // stop_tunnel_process signals only a process that is still the one we started
        stop_tunnel_process(&meta, CLOSE_GRACE).await?;
    }
    files.remove_all()
}

async fn open(
    resolved: &ResolvedVpcTunnel,
    endpoint: &Endpoint,
    files: &TunnelFiles,
    context: &ContextAwsApi,
) -> Result<(TunnelMeta, TunnelHealth), AwsError> {
    let tunnel = &resolved.tunnel;
    let local_port = tunnel.from.port;
    let engine = resolved.cluster.engine.as_deref();

    if let Some(meta) = live_tunnel_meta(files) {
        let health = is_tunnel_healthy(local_port, engine, HEALTH_LIMIT).await;
        if health.healthy {
            return Ok((meta, health));
        }
        // our process is alive but the database does not answer through it: start over
        stop_tunnel_process(&meta, CLOSE_GRACE).await?;
    }
    // whatever is left is stale: a dead process's files, or a pid now used by another program
    files.remove_all()?;

    if is_port_in_use(local_port) {
        return Err(AwsError::PortInUse {
            port: local_port,
            holder: describe_port_holder(local_port, context),
        });
    }
    if resolved.bastion.status != Some(Ec2InstanceStatus::Running) {
        set_ec2_instance_status(&tunnel.via.bastion, DesiredInstanceStatus::Running, context)
            .await?;
    }
    let program = find_program(&context.aws_cli).ok_or_else(|| AwsError::AwsCliNotFound {
        program: context.aws_cli.to_string_lossy().into_owned(),
    })?;

    let session = session_command(&program, endpoint, local_port, context.region.as_deref());
    let command = match &context.supervisor {
        Some(supervisor) => supervisor_command(supervisor, &files.log_path(), &session),
        None => session,
    };
    tracing::info!(hash = %files.hash, command = ?command, "starting the tunnel");
    let mut child = spawn_detached(&command, files)?;
    let pid = child.id();
    let meta = TunnelMeta {
        tunnel: tunnel.with_status(VpcTunnelStatus::Open, None),
        instance_id: endpoint.instance_id.clone(),
        remote_host: endpoint.host.clone(),
        remote_port: endpoint.port,
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
        engine: resolved.cluster.engine.clone(),
    };

    let failure = match wait_until_ready(&mut child, files, context).await {
        Err(failure) => Some(failure),
        Ok(()) => {
            let health = is_tunnel_healthy(local_port, engine, HEALTH_LIMIT).await;
            if health.healthy {
                files.write_state(&meta)?;
                return Ok((meta, health));
            }
            Some(ReadyFailure {
                reason: health
                    .reason
                    .unwrap_or_else(|| "the database does not answer through the tunnel".into()),
                help: "check that the bastion's security group may reach the cluster's port, and that the cluster is available".into(),
            })
        }
    };

    // leave nothing half-started behind: stop what was started and remove its files
    let log_tail = files.log_tail(8);
    let _ = stop_tunnel_process(&meta, Duration::from_secs(1)).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = files.remove_all();
    let failure = failure.unwrap_or_else(|| ReadyFailure {
        reason: "unknown".into(),
        help: String::new(),
    });
    Err(AwsError::TunnelOpenFailed {
        port: local_port,
        reason: failure.reason,
        log_tail: indent(&log_tail),
        help: failure.help,
    })
}

/// .what = who holds a port, in words: another declastruct tunnel (e.g. of another environment) or a program
/// .why = the user must know what to stop; declastruct stops nothing it did not start
fn describe_port_holder(port: u16, context: &ContextAwsApi) -> String {
    let holder = find_port_holder(port);
    for (_, meta) in TunnelFiles::recorded_in(&context.tunnels_dir()) {
        if meta.local_port == port {
            return format!(
                "another declastruct tunnel (pid {}) to {}:{} through {}{}; close it with the manifest that opened it",
                meta.pid,
                meta.remote_host,
                meta.remote_port,
                meta.instance_id,
                meta.region
                    .map(|region| format!(" in {region}"))
                    .unwrap_or_default(),
            );
        }
    }
    match holder {
        Some(holder) => holder.to_string(),
        None => "another program (the system does not tell which)".into(),
    }
}

struct ReadyFailure {
    reason: String,
    help: String,
}

/// waits until the log says the listener is up; keeps waiting (up to the agent limit) while restarts say the
/// bastion's agent is not connected yet; fails fast on any other failure
async fn wait_until_ready(
    child: &mut Child,
    files: &TunnelFiles,
    context: &ContextAwsApi,
) -> Result<(), ReadyFailure> {
    let started = Instant::now();
    let mut deadline = started + context.tunnel_ready_timeout;
    let mut reported_restarts = 0;
    loop {
        let log = std::fs::read_to_string(files.log_path()).unwrap_or_default();
        if log.contains(READY_LINE) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(explain_exit(&log, &status.to_string()));
        }
        let (restarts, cause) = read_restarts(&files.log_path());
        if restarts > reported_restarts {
            reported_restarts = restarts;
            let cause = cause.unwrap_or_default();
            if !cause.contains("TargetNotConnected") {
                return Err(explain_exit(&log, "the session ended"));
            }
            deadline = deadline.max(started + context.agent_wait_timeout);
            context.report_progress(&format!(
                "waiting for the bastion's SSM agent to connect (TargetNotConnected, attempt {}, {} s of {} s)",
                restarts + 1,
                started.elapsed().as_secs(),
                context.agent_wait_timeout.as_secs()
            ));
        }
        if Instant::now() >= deadline {
            if reported_restarts > 0 {
                return Err(ReadyFailure {
                    reason: format!(
                        "the bastion's SSM agent did not connect within {} s (TargetNotConnected)",
                        context.agent_wait_timeout.as_secs()
                    ),
                    help: "check that the instance runs the SSM agent with an instance profile that allows Session Manager (AmazonSSMManagedInstanceCore) and can reach the SSM endpoints; raise DECLASTRUCT_AGENT_TIMEOUT_SECONDS if it only needs longer".into(),
                });
            }
            return Err(ReadyFailure {
                reason: format!(
                    "the session did not say `{READY_LINE}` within {} s",
                    context.tunnel_ready_timeout.as_secs()
                ),
                help: "look at the session's output below; check the bastion's SSM agent and your network, then apply again".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn explain_exit(log: &str, status: &str) -> ReadyFailure {
    let (reason, help) = if log.contains("TargetNotConnected") {
        (
            "the bastion's SSM agent is not connected (TargetNotConnected)",
            "right after a bastion starts its agent needs a minute: apply again; otherwise check that the instance runs the SSM agent with an instance profile that allows Session Manager (AmazonSSMManagedInstanceCore)",
        )
    } else if log.contains("SessionManagerPlugin is not found") {
        (
            "the Session Manager plugin is not installed",
            "install it: https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html",
        )
    } else if log.to_lowercase().contains("address already in use") {
        (
            "another program took the local port while the tunnel was starting",
            "find it with `ss -ltnp`, stop it or pick another `from.port`, then apply again",
        )
    } else if log.contains("AccessDenied") || log.contains("not authorized") {
        (
            "your AWS identity may not start a Session Manager session on this instance",
            "ask for ssm:StartSession on the instance and the AWS-StartPortForwardingSessionToRemoteHost document",
        )
    } else {
        (
            "the session ended before it was ready",
            "look at the session's output below, fix what it says, and apply again",
        )
    };
    ReadyFailure {
        reason: format!("{reason} ({status})"),
        help: help.into(),
    }
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

/// .what = the contract's session command
/// .why = exactly what a user would type: `aws ssm start-session ... --parameters '{...}' [--region R]`
fn session_command(
    program: &Path,
    endpoint: &Endpoint,
    local_port: u16,
    region: Option<&str>,
) -> Vec<OsString> {
    let parameters = serde_json::json!({
        "host": [endpoint.host],
        "portNumber": [endpoint.port.to_string()],
        "localPortNumber": [local_port.to_string()],
    });
    let mut command: Vec<OsString> = vec![
        program.into(),
        "ssm".into(),
        "start-session".into(),
        "--target".into(),
        endpoint.instance_id.clone().into(),
        "--document-name".into(),
        "AWS-StartPortForwardingSessionToRemoteHost".into(),
        "--parameters".into(),
        parameters.to_string().into(),
    ];
    if let Some(region) = region {
        command.push("--region".into());
        command.push(region.into());
    }
    command
}

/// .what = the program as a path: as given when it has a slash, else the first match on PATH
/// .why = "the AWS CLI is not installed" is reported before anything starts
fn find_program(program: &OsString) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        std::fs::metadata(path)
            .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let given = Path::new(program);
    if given.components().count() > 1 {
        return executable(given).then(|| given.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|folder| folder.join(given))
        .find(|candidate| executable(candidate))
}

/// .what = starts the session detached: its own session and process group, stdin from /dev/null, stdout and
/// stderr appended to the log
/// .why = it must outlive declastruct and never write into a pipe that declastruct closes (the plugin dies of
/// SIGPIPE on the first client connection otherwise: the blueprint's bug)
fn spawn_detached(command: &[OsString], files: &TunnelFiles) -> Result<Child, AwsError> {
    let log = files.open_log()?;
    let log_for_stderr = log.try_clone().map_err(|source| AwsError::StateIo {
        action: "open",
        path: files.log_path().display().to_string(),
        source,
    })?;
    let mut process = Command::new(&command[0]);
    process
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr));
    start_new_session(&mut process);
    process.spawn().map_err(|source| AwsError::StateIo {
        action: "start",
        path: command[0].to_string_lossy().into_owned(),
        source,
    })
}

/// .what = the child calls setsid before it runs: its own session and process group, no controlling terminal
/// .why = the contract runs the session "detached in its own session": no terminal's Ctrl-C or hangup reaches
/// it, and closing signals exactly its group
#[allow(unsafe_code)]
fn start_new_session(process: &mut Command) {
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it is the only call made
    // between fork and exec
    unsafe {
        process.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_command_is_the_contracts() {
        let endpoint = Endpoint {
            instance_id: "i-0abc".into(),
            host: "db.cluster-x.us-east-1.rds.amazonaws.com".into(),
            port: 5432,
        };
        let command = session_command(Path::new("aws"), &endpoint, 7775, Some("us-east-1"));
        let words: Vec<String> = command
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            words,
            vec![
                "aws",
                "ssm",
                "start-session",
                "--target",
                "i-0abc",
                "--document-name",
                "AWS-StartPortForwardingSessionToRemoteHost",
                "--parameters",
                r#"{"host":["db.cluster-x.us-east-1.rds.amazonaws.com"],"portNumber":["5432"],"localPortNumber":["7775"]}"#,
                "--region",
                "us-east-1",
            ]
        );
    }

    #[test]
    fn a_missing_program_is_not_found() {
        assert_eq!(
            find_program(&OsString::from("declastruct-no-such-program")),
            None
        );
        assert!(find_program(&OsString::from("sh")).is_some());
    }
}

#[cfg(test)]
mod request_tests {
    use super::*;
    use crate::domain_operations::vpc_tunnel::get_vpc_tunnel::tests::{
        assert_resolves_bastion_and_cluster, respond, tunnel,
    };
    use crate::test_support::{bodies, recording_context};

    #[tokio::test]
    async fn closing_a_closed_tunnel_resolves_both_ends_and_starts_nothing() {
        let (context, recorded, folder) = recording_context(respond);
        let closed = set_vpc_tunnel(
            &tunnel().with_status(VpcTunnelStatus::Closed, None),
            &context,
        )
        .await
        .expect("closed");
        assert_eq!(closed.status, Some(VpcTunnelStatus::Closed));
        assert_resolves_bastion_and_cluster(&bodies(&recorded));
        let left: Vec<_> = std::fs::read_dir(folder.path().join("tunnels"))
            .expect("tunnels")
            .collect();
        assert!(left.is_empty(), "no tunnel files are left: {left:?}");
    }

    #[tokio::test]
    async fn a_tunnel_without_status_is_refused() {
        let (context, _recorded, _folder) = recording_context(respond);
        let error = set_vpc_tunnel(&tunnel(), &context)
            .await
            .expect_err("needs a status");
        assert!(error.to_string().contains("needs `status`"));
    }
}
