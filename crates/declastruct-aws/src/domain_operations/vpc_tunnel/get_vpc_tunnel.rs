use std::time::Duration;

use crate::domain_operations::vpc_tunnel::supervisor::read_restarts;
use crate::domain_operations::vpc_tunnel::utils::{
    TunnelFiles, TunnelHealth, TunnelMeta, get_tunnel_hash, is_process_alive, is_tunnel_healthy,
    process_start_time,
};
use crate::error::AwsError;
use crate::{
    ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster, DeclaredAwsVpcTunnel,
    Ec2InstanceLookup, VpcTunnelStatus, get_ec2_instance, get_rds_cluster,
};

/// .what = everything observed of one tunnel: the tunnel with its live status and pid, its identity,
/// its record and its health
/// .why = `plan` needs the status, `status` needs the rest
#[derive(Debug, Clone)]
pub struct VpcTunnelObservation {
    /// the tunnel with its live status (and pid when OPEN)
    pub tunnel: DeclaredAwsVpcTunnel,
    /// the tunnel's identity, `None` when the bastion or cluster could not be resolved
    pub hash: Option<String>,
    /// the record of our process, when its process is alive and ours
    pub meta: Option<TunnelMeta>,
    /// the health probe's verdict, when our process is alive
    pub health: Option<TunnelHealth>,
    /// how often the supervisor restarted the session
    pub restarts: u64,
    /// the last restart's cause
    pub last_restart: Option<String>,
}

/// .what = gets the current status of a VPC tunnel: OPEN only when our process is alive and the database answers
/// .why = enables checking if a tunnel is currently open and healthy
pub async fn get_vpc_tunnel(
    tunnel: &DeclaredAwsVpcTunnel,
    context: &ContextAwsApi,
) -> Result<DeclaredAwsVpcTunnel, AwsError> {
    let (bastion, cluster) = resolve_tunnel_ends(tunnel, context).await?;
    // if either is not found, the tunnel is effectively closed
    let (Some(bastion), Some(cluster)) = (bastion, cluster) else {
        return Ok(tunnel.with_status(VpcTunnelStatus::Closed, None));
    };
    Ok(inspect_vpc_tunnel(tunnel, &bastion, &cluster, context)
        .await
        .tunnel)
}

/// .what = observes a tunnel whose bastion and cluster are already resolved
/// .why = `plan` resolves all bastions and clusters in a few batched calls, then inspects every tunnel
/// concurrently without another AWS call
pub async fn inspect_vpc_tunnel(
    tunnel: &DeclaredAwsVpcTunnel,
    bastion: &DeclaredAwsEc2Instance,
    cluster: &DeclaredAwsRdsCluster,
    context: &ContextAwsApi,
) -> VpcTunnelObservation {
    let (Some(instance_id), Some(host), Some(remote_port)) =
        (&bastion.instance_id, &cluster.host, cluster.port)
    else {
        return VpcTunnelObservation::closed(tunnel, None);
    };
    let hash = get_tunnel_hash(instance_id, &host.writer, remote_port, tunnel.from.port);
    let files = TunnelFiles::new(context.tunnels_dir(), &hash);
    let Some(meta) = live_tunnel_meta(&files) else {
        return VpcTunnelObservation::closed(tunnel, Some(hash));
    };
    let health = is_tunnel_healthy(
        tunnel.from.port,
        cluster.engine.as_deref(),
        Duration::from_secs(5),
    )
    .await;
    VpcTunnelObservation::of_our_process(tunnel, &files, meta, health)
}

impl VpcTunnelObservation {
    /// .what = a closed tunnel, with its identity when known
    /// .why = a tunnel without our live process, or one just closed
    pub(crate) fn closed(tunnel: &DeclaredAwsVpcTunnel, hash: Option<String>) -> Self {
        Self {
            tunnel: tunnel.with_status(VpcTunnelStatus::Closed, None),
            hash,
            meta: None,
            health: None,
            restarts: 0,
            last_restart: None,
        }
    }

    /// .what = a tunnel whose process is alive and ours: OPEN when the database answers, otherwise CLOSED with
    /// the probe's reason; restarts read from its log
    /// .why = one place decides what OPEN means, for `get_vpc_tunnel`, `plan` and `set_vpc_tunnel`
    pub(crate) fn of_our_process(
        tunnel: &DeclaredAwsVpcTunnel,
        files: &TunnelFiles,
        meta: TunnelMeta,
        health: TunnelHealth,
    ) -> Self {
        let (restarts, last_restart) = read_restarts(&files.log_path());
        let (status, pid, meta) = if health.healthy {
            (VpcTunnelStatus::Open, Some(meta.pid), Some(meta))
        } else {
            (VpcTunnelStatus::Closed, None, None)
        };
        Self {
            tunnel: tunnel.with_status(status, pid),
            hash: Some(files.hash.clone()),
            meta,
            health: Some(health),
            restarts,
            last_restart,
        }
    }
}

/// .what = the tunnel's bastion and cluster, looked up concurrently; `None` for one that does not exist
/// .why = getting and setting a tunnel both start from its two ends
pub(crate) async fn resolve_tunnel_ends(
    tunnel: &DeclaredAwsVpcTunnel,
    context: &ContextAwsApi,
) -> Result<
    (
        Option<DeclaredAwsEc2Instance>,
        Option<DeclaredAwsRdsCluster>,
    ),
    AwsError,
> {
    futures::future::try_join(
        get_ec2_instance(Ec2InstanceLookup::Ref(tunnel.via.bastion.clone()), context),
        get_rds_cluster(&tunnel.into.cluster, context),
    )
    .await
}

/// .what = the tunnel's record when its recorded process is alive and is still the one we started
/// .why = a pid file whose process died, or whose pid now belongs to another program, is a dead tunnel
pub(crate) fn live_tunnel_meta(files: &TunnelFiles) -> Option<TunnelMeta> {
    let pid = files.read_pid()?;
    let meta = files.read_meta()?;
    let ours = meta.pid == pid
        && is_process_alive(pid)
        && match meta.process_start_time {
            Some(recorded) => process_start_time(pid) == Some(recorded),
            None => true,
        };
    ours.then_some(meta)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::{
        action, bodies, describe_clusters_xml, describe_instances_xml, filters, recording_context,
    };
    use crate::{
        Ec2InstanceRef, LoopbackHost, RdsClusterRef, TunnelMechanism, VpcTunnelFrom, VpcTunnelInto,
        VpcTunnelVia,
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
            via: VpcTunnelVia {
                mechanism: TunnelMechanism::AwsSsm,
                bastion: Ec2InstanceRef::by_exid("vpc-main-bastion"),
            },
            into: VpcTunnelInto {
                cluster: RdsClusterRef::by_name("ahbodedb"),
            },
            from: VpcTunnelFrom {
                host: LoopbackHost::Localhost,
                port: 7775,
            },
            status: None,
            pid: None,
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
