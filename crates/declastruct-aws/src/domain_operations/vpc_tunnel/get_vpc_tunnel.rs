use std::time::Duration;

use crate::domain_objects::{
    ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsVpcTunnel, VpcTunnelStatus,
};
use crate::domain_operations::ec2_instance::{Ec2InstanceLookup, get_ec2_instance};
use crate::domain_operations::vpc_tunnel::TunnelMeta;
use crate::domain_operations::vpc_tunnel::get_tunnel_target::{TunnelTarget, get_tunnel_target};
use crate::error::AwsError;
use declastruct_tunnel::TunnelId;
use declastruct_tunnel::session_output::{PluginMode, plugin_mode};
use declastruct_tunnel::supervisor::read_restarts;
use declastruct_tunnel::{
    ProcessInfo, RecordDamage, TunnelFiles, TunnelHealth, TunnelHolder, TunnelProcesses,
    probe_tunnel_at,
};

/// how long the health probe may take
pub(crate) const HEALTH_LIMIT: Duration = Duration::from_secs(5);
/// how old a supervisor's heartbeat may be (it renews it every second) before the supervisor counts as hung
pub(crate) const HEARTBEAT_LIMIT: Duration = Duration::from_secs(10);

/// .what = everything observed of one tunnel: the tunnel with its live status, pid and health, its identity,
/// its record, its processes and its restarts
/// .why = `plan` needs the status and health, `status` needs the rest
#[derive(Debug, Clone)]
pub struct VpcTunnelObservation {
    /// the tunnel with its live status (and pid and health when OPEN)
    pub tunnel: DeclaredAwsVpcTunnel,
    /// the tunnel's identity, `None` when the bastion or cluster could not be resolved
    pub hash: Option<TunnelId>,
    /// the tunnel's record, when it is readable
    pub meta: Option<TunnelMeta>,
    /// who holds the tunnel open, live ones only: empty when it is closed or its record unreadable
    pub holders: Vec<TunnelHolder>,
    /// what is wrong with the tunnel's record, when it is damaged
    pub damage: Option<RecordDamage>,
    /// the tunnel's live processes (supervisor, session, plugin), each proven ours by its marker
    pub processes: Vec<ProcessInfo>,
    /// how often the supervisor restarted the session
    pub restarts: u64,
    /// the last restart's cause
    pub last_restart: Option<String>,
}

/// .what = gets the current status of a VPC tunnel: OPEN while any process of ours serves it, with its health;
/// CLOSED when none is alive
/// .why = enables checking if a tunnel is currently open and healthy
pub async fn get_vpc_tunnel(
    tunnel: &DeclaredAwsVpcTunnel,
    context: &ContextAwsApi,
) -> Result<DeclaredAwsVpcTunnel, AwsError> {
    let (bastion, target) = resolve_tunnel_ends(tunnel, context).await?;
    // if either end is not found, the tunnel is effectively closed
    let target = match target {
        Ok(target) => target,
        Err(
            AwsError::ClusterNotFound { .. }
            | AwsError::InstanceNotFound { .. }
            | AwsError::EndpointNotFound { .. },
        ) => return Ok(tunnel.with_status(VpcTunnelStatus::Closed, None)),
        Err(error) => return Err(error),
    };
    let Some(bastion) = bastion else {
        return Ok(tunnel.with_status(VpcTunnelStatus::Closed, None));
    };
    let tunnels_dir = context.checked_tunnels_dir()?;
    TunnelFiles::check_dir_readable(&tunnels_dir)?;
    let processes = TunnelProcesses::scan(&tunnels_dir);
    Ok(
        inspect_vpc_tunnel(tunnel, &bastion, &target, &processes, context)
            .await?
            .tunnel,
    )
}

/// .what = observes a tunnel whose bastion and far end are already resolved, against one scan of our processes
/// .why = `plan` resolves all bastions, clusters and instances in a few batched calls and scans /proc once, then
/// inspects every tunnel concurrently without another AWS call
pub async fn inspect_vpc_tunnel(
    tunnel: &DeclaredAwsVpcTunnel,
    bastion: &DeclaredAwsEc2Instance,
    target: &TunnelTarget,
    processes: &TunnelProcesses,
    context: &ContextAwsApi,
) -> Result<VpcTunnelObservation, AwsError> {
    let Some(instance_id) = &bastion.instance_id else {
        return Ok(VpcTunnelObservation::closed(tunnel, None));
    };
    let hash = TunnelId::compute(instance_id, &target.host, target.port, tunnel.from.port);
    let files = TunnelFiles::new(context.checked_tunnels_dir()?, hash.clone());
    Ok(VpcTunnelObservation::observe(
        tunnel,
        &files,
        processes.of(&hash),
        target.engine.as_deref(),
    )
    .await)
}

/// .what = observes a tunnel from this machine alone: its files and its processes, with no AWS call
/// .why = `status` shows what runs here even when AWS cannot be reached, and `status --all` every tunnel
pub async fn inspect_local_tunnel(
    tunnel: &DeclaredAwsVpcTunnel,
    files: &TunnelFiles,
    processes: &TunnelProcesses,
    engine: Option<&str>,
) -> VpcTunnelObservation {
    VpcTunnelObservation::observe(tunnel, files, processes.of(&files.id), engine).await
}

impl VpcTunnelObservation {
    /// .what = a closed tunnel, with its identity when known
    /// .why = a tunnel without a live process of ours, or one just closed
    pub fn closed(tunnel: &DeclaredAwsVpcTunnel, hash: Option<TunnelId>) -> Self {
        Self {
            tunnel: tunnel.with_status(VpcTunnelStatus::Closed, None),
            hash,
            meta: None,
            holders: Vec::new(),
            damage: None,
            processes: Vec::new(),
            restarts: 0,
            last_restart: None,
        }
    }

    /// .what = what a tunnel is, from its live processes and its files: CLOSED when no process of ours lives;
    /// otherwise OPEN, healthy only when the database answers, the supervisor watches the session and the
    /// record is whole
    /// .why = one place decides what OPEN means, for `get_vpc_tunnel`, `plan`, `status` and `set_vpc_tunnel`;
    /// a process of ours is never hidden because its record is damaged
    pub(crate) async fn observe(
        tunnel: &DeclaredAwsVpcTunnel,
        files: &TunnelFiles,
        processes: &[ProcessInfo],
        engine: Option<&str>,
    ) -> Self {
        let (meta, damage) = match files.read_meta::<crate::DeclaredAwsVpcTunnel>() {
            Ok(meta) => (meta, None),
            Err(damage) => (None, Some(damage)),
        };
        if processes.is_empty() {
            return Self {
                meta,
                damage,
                ..Self::closed(tunnel, Some(files.id.clone()))
            };
        }
        let supervisor = processes.iter().find(|process| process.is_supervisor());
        let pid = supervisor.unwrap_or(&processes[0]).pid;
        let probe = match probe_tunnel_at(
            tunnel.from.connect_address(),
            tunnel.from.port,
            engine,
            HEALTH_LIMIT,
        )
        .await
        {
            Ok(health) => health,
            Err(silent) => {
                let log = files.read_log();
                if plugin_mode(&log) == Some(PluginMode::Basic) {
                    // the plugin's basic mode serves one client at a time: the probe waits behind the user's
                    TunnelHealth {
                        healthy: true,
                        reason: Some("busy: the session serves one client at a time (the bastion's agent is older than 3.0.196.0) and one is connected; database not verified".into()),
                    }
                } else {
                    silent.into_health()
                }
            }
        };
        let (restarts, last_restart) = read_restarts(&files.log_path());
        let mut problems: Vec<String> = Vec::new();
        if !probe.healthy {
            problems.extend(probe.reason.clone());
            if let Some(cause) = &last_restart {
                problems.push(format!("the session is restarting after: {cause}"));
            }
        }
        match (files.read_pid(), supervisor) {
            (Err(damage), _) => problems.push(format!("its pid file is damaged: {damage}")),
            (Ok(None), _) => problems.push(format!(
                "its pid file is missing ({} does not exist)",
                files.pid_path().display()
            )),
            (Ok(Some(recorded)), Some(supervisor)) if recorded != supervisor.pid => {
                problems.push(format!(
                    "its pid file names pid {recorded}, but its supervisor is pid {}",
                    supervisor.pid
                ));
            }
            _ => {}
        }
        match (&meta, &damage, supervisor) {
            (_, Some(damage), _) => problems.push(format!("its record is damaged: {damage}")),
            (None, None, _) => problems.push(format!(
                "its record is missing ({} does not exist)",
                files.meta_path().display()
            )),
            (Some(meta), None, Some(supervisor)) if meta.pid != supervisor.pid => {
                problems.push(format!(
                    "its record names pid {}, but its supervisor is pid {}",
                    meta.pid, supervisor.pid
                ));
            }
            (Some(meta), None, _) if !meta.ready => {
                problems.push("it is still opening, or the apply that opened it was killed".into());
            }
            _ => {}
        }
        match supervisor {
            None => problems.push(format!(
                "its supervisor is gone: nothing restarts the session (pid {pid}) when it ends"
            )),
            Some(supervisor) if meta.as_ref().is_some_and(|meta| meta.ready) => {
                problems.extend(stale_heartbeat(files, supervisor.pid));
            }
            Some(_) => {}
        }
        let health = if problems.is_empty() {
            probe
        } else {
            TunnelHealth::failed(problems.join("; "))
        };
        let holders = meta
            .as_ref()
            .map(|meta| {
                meta.holders()
                    .into_iter()
                    .filter(TunnelHolder::is_alive)
                    .collect()
            })
            .unwrap_or_default();
        Self {
            tunnel: tunnel.observed_open(pid, health),
            hash: Some(files.id.clone()),
            holders,
            meta,
            damage,
            processes: processes.to_vec(),
            restarts,
            last_restart,
        }
    }

    /// .what = whether the tunnel is open, healthy and whole
    /// .why = only then does an OPEN apply keep it as it is
    pub fn is_healthy(&self) -> bool {
        self.tunnel.status == Some(VpcTunnelStatus::Open)
            && self
                .tunnel
                .health
                .as_ref()
                .is_some_and(|health| health.healthy)
    }
}

/// .what = why the supervisor `pid` does not prove it works, if it does not: a heartbeat missing, or older than
/// `HEARTBEAT_LIMIT`
/// .why = a supervisor that is alive but stopped (SIGSTOP) or hung would restart nothing: it is unhealthy, and an
/// OPEN apply replaces it
fn stale_heartbeat(files: &TunnelFiles, pid: u32) -> Option<String> {
    let renewed = match std::fs::symlink_metadata(files.beat_path()) {
        Ok(metadata) => metadata.modified().ok()?,
        Err(_) => {
            return Some(format!(
                "its supervisor (pid {pid}) keeps no heartbeat ({} is missing): it cannot prove it works",
                files.beat_path().display()
            ));
        }
    };
    let age = std::time::SystemTime::now()
        .duration_since(renewed)
        .unwrap_or_default();
    (age > HEARTBEAT_LIMIT).then(|| {
        format!(
            "its supervisor (pid {pid}) has not renewed its heartbeat for {} s: it is stopped or hung, and would restart nothing",
            age.as_secs()
        )
    })
}

/// .what = the tunnel's bastion (`None` when it does not exist) and far end (or why it does not resolve), looked
/// up concurrently
/// .why = getting and setting a tunnel both start from its two ends
pub(crate) async fn resolve_tunnel_ends(
    tunnel: &DeclaredAwsVpcTunnel,
    context: &ContextAwsApi,
) -> Result<
    (
        Option<DeclaredAwsEc2Instance>,
        Result<TunnelTarget, AwsError>,
    ),
    AwsError,
> {
    let (bastion, target) = futures::future::join(
        get_ec2_instance(Ec2InstanceLookup::Ref(tunnel.via.bastion.clone()), context),
        get_tunnel_target(&tunnel.into, context),
    )
    .await;
    Ok((bastion?, target))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain_objects::{
        Ec2InstanceRef, LoopbackHost, RdsClusterRef, TunnelMechanism, VpcTunnelFrom, VpcTunnelInto,
        VpcTunnelVia,
    };
    use crate::test_support::{
        action, bodies, describe_clusters_xml, describe_instances_xml, filters, recording_context,
    };

    pub(crate) fn respond(action: &str, _body: &str) -> (u16, String) {
        match action {
            "DescribeDBClusters" => (200, describe_clusters_xml("ahbodedb")),
            _ => (
                200,
                describe_instances_xml("i-0abc", "vpc-main-bastion", "running"),
            ),
        }
    }

    pub(crate) fn tunnel() -> DeclaredAwsVpcTunnel {
        DeclaredAwsVpcTunnel {
            name: None,
            via: VpcTunnelVia {
                mechanism: TunnelMechanism::AwsSsm,
                bastion: Ec2InstanceRef::by_exid("vpc-main-bastion"),
                transport: None,
            },
            into: VpcTunnelInto::cluster(RdsClusterRef::by_name("ahbodedb")),
            from: VpcTunnelFrom {
                host: LoopbackHost::Localhost,
                expose: false,
                port: 7775,
            },
            status: None,
            pid: None,
            health: None,
            connect: None,
            idle_close: None,
        }
    }

    pub(crate) fn assert_resolves_bastion_and_cluster(sent: &[String]) {
        let mut sent = sent.to_vec();
        sent.sort();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert_eq!(action(&sent[0]), "DescribeDBClusters", "{}", sent[0]);
        assert!(
            sent[0].contains("&DBClusterIdentifier=ahbodedb"),
            "{}",
            sent[0]
        );
        assert_eq!(action(&sent[1]), "DescribeInstances", "{}", sent[1]);
        assert_eq!(
            filters(&sent[1])[0],
            ("tag:exid".to_string(), vec!["vpc-main-bastion".to_string()])
        );
    }

    #[tokio::test]
    async fn resolves_the_bastion_by_tag_and_the_cluster_by_identifier() {
        let (context, recorded, _folder) = recording_context(respond);
        let observed = get_vpc_tunnel(&tunnel(), &context).await.expect("answered");
        assert_eq!(
            observed.status,
            Some(VpcTunnelStatus::Closed),
            "no tunnel files: closed"
        );
        assert_eq!(observed.pid, None);
        assert_resolves_bastion_and_cluster(&bodies(&recorded));
    }
}
