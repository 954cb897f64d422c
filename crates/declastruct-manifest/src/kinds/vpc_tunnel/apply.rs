//! .what = how a change of a tunnel is applied: opened (through the code behind `set_vpc_tunnel`, with the bastion
//! and far end the plan already resolved), closed, or released; and the marks `--replace` and `--force-close` put
//! on a tunnel before it is planned
//! .why = the CLI and SDK users run the same operations; a tunnel others hold is released, never closed under them

use declastruct_aws::internal::{
    Released, ResolvedVpcTunnel, release_tunnel_identity, set_vpc_tunnel_resolved,
};
use declastruct_aws::{AwsError, ContextAwsApi, VpcTunnelStatus};
use declastruct_engine::Resource;

use super::{ObservedTunnel, RemovedTunnel, describe_holders};
use crate::kinds::Kind;
use crate::resources::Observed;

/// what a release left: nothing to say when it closed, the holders that keep it open otherwise
fn release_note(released: Released) -> Option<String> {
    match released {
        Released::Closed => None,
        Released::StillHeld(others) => Some(format!(
            "released; stays open for {}",
            describe_holders(&others)
        )),
    }
}

/// .what = applies a declared tunnel: its old identity closed first, then opened (or healed, or held) when it is
/// declared OPEN, closed or released when it is declared CLOSED
/// .why = see `Kind::apply`
pub(super) async fn apply_tunnel(
    tunnel: &ObservedTunnel,
    context: &ContextAwsApi,
) -> Result<Option<String>, AwsError> {
    let mut note = None;
    // the old identity goes first: it may hold the very port the new one needs
    if let Some(previous) = &tunnel.previous {
        note = release_note(
            release_tunnel_identity(
                &previous.hash,
                previous.meta.local_port,
                tunnel.force_close,
                context,
            )
            .await?,
        );
    }
    if tunnel.declaration.status == VpcTunnelStatus::Closed {
        if let (Some(hash), Some(VpcTunnelStatus::Open)) =
            (&tunnel.observation.hash, tunnel.observation.tunnel.status)
        {
            note = release_note(
                release_tunnel_identity(
                    hash,
                    tunnel.declaration.from.port,
                    tunnel.force_close,
                    context,
                )
                .await?,
            )
            .or(note);
        }
        return Ok(note);
    }
    let resolved = ResolvedVpcTunnel {
        tunnel: tunnel.declaration.to_domain(),
        bastion: tunnel.bastion.clone(),
        target: tunnel.target.clone(),
        restart: tunnel.forced_replace,
        bastion_idle_stop: tunnel.bastion_idle_stop,
    };
    match set_vpc_tunnel_resolved(&resolved, context).await {
        Ok(_) => Ok(note),
        // a moved tunnel's old session was closed to free the port: say so, and how to get it back
        Err(error @ (AwsError::PortInUse { .. } | AwsError::Interrupted { .. })) => Err(error),
        Err(error) => Err(match &tunnel.displaces {
            Some(closed) => AwsError::OpenAfterCloseFailed {
                address: tunnel.declaration.address().slug,
                port: tunnel.declaration.from.port,
                closed: closed.clone(),
                source: Box::new(error),
            },
            None => error,
        }),
    }
}

/// .what = applies a tunnel no longer declared (or declared CLOSED while its ends are gone): closed by its record,
/// or released when others hold it
/// .why = nothing this manifest opened is left running unseen
pub async fn apply_removed(
    removed: &RemovedTunnel,
    context: &ContextAwsApi,
) -> Result<Option<String>, AwsError> {
    release_tunnel_identity(
        &removed.hash,
        removed.meta.local_port,
        removed.force_close,
        context,
    )
    .await
    .map(release_note)
}

/// .what = marks the tunnels named by `addresses` to be closed and opened again, even if they look healthy
/// .why = `apply --replace`: a session that serves but is stale (rotated credentials, a half-broken agent)
pub fn force_replace(resources: &mut [Observed], addresses: &[String]) -> Result<(), String> {
    for address in addresses {
        let tunnel = resources.iter_mut().find_map(|resource| match resource {
            Observed::Tunnel(tunnel) if tunnel.declaration.address().slug == *address => {
                Some(tunnel)
            }
            _ => None,
        });
        match tunnel {
            Some(tunnel) if tunnel.declaration.status == declastruct_aws::VpcTunnelStatus::Open => {
                tunnel.forced_replace = true;
            }
            Some(_) => {
                return Err(format!(
                    "--replace {address}: the tunnel is declared CLOSED; only an OPEN tunnel is replaced"
                ));
            }
            None => {
                let tunnels: Vec<String> = resources
                    .iter()
                    .filter(|resource| matches!(resource, Observed::Tunnel(_)))
                    .map(|resource| resource.address().slug)
                    .collect();
                return Err(format!(
                    "--replace {address} names no tunnel of this manifest; its tunnels are: {}",
                    tunnels.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// .what = marks the tunnels named by `addresses` (declared CLOSED, or no longer declared) to be closed for every
/// holder
/// .why = `--force-close`: the named, explicit way to close a tunnel an `exec`, a `connect` or another manifest
/// still holds; its plan names them
pub fn force_close(resources: &mut [Observed], addresses: &[String]) -> Result<(), String> {
    for address in addresses {
        let Some(resource) = resources
            .iter_mut()
            .find(|resource| resource.address().slug == *address)
        else {
            // `--target` names it: select_targets says what is wrong with it
            continue;
        };
        match resource {
            Observed::Tunnel(tunnel)
                if tunnel.declaration.status == declastruct_aws::VpcTunnelStatus::Open =>
            {
                return Err(format!(
                    "--force-close {address}: the tunnel is declared OPEN; declare it CLOSED (or remove it), then force its close"
                ));
            }
            Observed::Tunnel(tunnel) => tunnel.force_close = true,
            Observed::Removed(removed) => removed.force_close = true,
            _ => {
                return Err(format!(
                    "--force-close {address}: only a tunnel can be closed; that is a {}",
                    resource.address().class
                ));
            }
        }
    }
    Ok(())
}
