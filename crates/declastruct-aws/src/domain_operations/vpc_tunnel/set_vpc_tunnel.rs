use super::VpcTunnelObservation;
use super::close_vpc_tunnel::{Released, after_close, release_hold};
use super::get_tunnel_target::TunnelTarget;
use super::get_vpc_tunnel::resolve_tunnel_ends;
use super::open_vpc_tunnel::open_vpc_tunnel;
use crate::domain_objects::{
    ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsVpcTunnel, VpcTunnelStatus,
};
use crate::error::AwsError;
use declastruct_tunnel::TunnelId;
use declastruct_tunnel::{SessionTarget, TunnelFiles, TunnelProcesses, lock_tunnel};

/// .what = a tunnel together with its bastion and far end, already resolved
/// .why = `apply` has resolved them while planning; opening needs no second lookup
#[derive(Debug, Clone)]
pub struct ResolvedVpcTunnel {
    /// the tunnel, with the status to set
    pub tunnel: DeclaredAwsVpcTunnel,
    /// its bastion as found
    pub bastion: DeclaredAwsEc2Instance,
    /// its far end as resolved
    pub target: TunnelTarget,
    /// close and open it again even if it is healthy (`apply --replace`); its holders keep holding it
    pub restart: bool,
    /// the bastion's `idleStop`, when the manifest declares one: the tunnel renews the bastion's in-use tag, and the
    /// last tunnel through it to close here starts its idle timer
    pub bastion_idle_stop: Option<crate::domain_objects::IdleDuration>,
}

impl ResolvedVpcTunnel {
    /// .what = where the session goes: the bastion's instance id, the far end's host and port, the local port
    /// .why = the tunnel's identity and its session command are made of these
    pub fn session_target(&self, context: &ContextAwsApi) -> Result<SessionTarget, AwsError> {
        let instance_id = self.bastion.instance_id.clone().ok_or_else(|| {
            AwsError::Unexpected(format!("bastion {} has no instance id", self.bastion.exid))
        })?;
        Ok(SessionTarget {
            instance_id,
            host: self.target.host.clone(),
            port: self.target.port,
            local_port: self.tunnel.from.port,
            region: context.region.clone(),
            profile: context.profile.clone(),
        })
    }
}

/// .what = opens or closes a VPC tunnel, as its `status` says
/// .why = enables declarative control of SSM port-forwarding tunnels
pub async fn set_vpc_tunnel(
    tunnel: &DeclaredAwsVpcTunnel,
    context: &ContextAwsApi,
) -> Result<DeclaredAwsVpcTunnel, AwsError> {
    let (bastion, target) = resolve_tunnel_ends(tunnel, context).await?;
    let bastion = bastion.ok_or_else(|| AwsError::BastionNotFound {
        reference: tunnel.via.bastion.to_string(),
        region: context
            .region
            .clone()
            .unwrap_or_else(|| "the configured region".into()),
        closest: Vec::new(),
    })?;
    let resolved = ResolvedVpcTunnel {
        tunnel: tunnel.clone(),
        bastion,
        target: target?,
        restart: false,
        bastion_idle_stop: None,
    };
    Ok(set_vpc_tunnel_resolved(&resolved, context).await?.tunnel)
}

/// .what = opens a tunnel (adding the context's hold) or lets go of it (releasing that hold, and closing it when
/// no other holder remains), whose bastion and cluster are resolved, under the tunnel's lock
/// .why = idempotent: an open healthy tunnel is kept, an unhealthy or damaged one reopened, a closed one left
/// closed; whatever of ours serves the tunnel is found from its processes, not only from its files; a tunnel
/// another holder uses is never closed under them
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
    let target = resolved.session_target(context)?;
    let hash = TunnelId::compute(
        &target.instance_id,
        &target.host,
        target.port,
        target.local_port,
    );
    let files = TunnelFiles::new(context.checked_tunnels_dir()?, hash.clone());
    files.ensure_dir()?;
    let lock = lock_tunnel(&files, &context.cancel).await?;

    match to {
        VpcTunnelStatus::Closed => {
            let record = files.read_meta::<DeclaredAwsVpcTunnel>().ok().flatten();
            match release_hold(&files, target.local_port, Some(&context.holder())).await? {
                Released::Closed => {
                    lock.remove()?;
                    after_close(record.as_ref(), context);
                    Ok(VpcTunnelObservation::closed(tunnel, Some(hash)))
                }
                Released::StillHeld(_) => {
                    let processes = TunnelProcesses::scan(&files.dir);
                    Ok(VpcTunnelObservation::observe(
                        tunnel,
                        &files,
                        processes.of(&files.id),
                        resolved.target.engine.as_deref(),
                    )
                    .await)
                }
            }
        }
        VpcTunnelStatus::Open => match open_vpc_tunnel(resolved, &target, &files, context).await {
            Ok(observation) => Ok(observation),
            Err(error) => {
                lock.remove()?;
                Err(error)
            }
        },
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
