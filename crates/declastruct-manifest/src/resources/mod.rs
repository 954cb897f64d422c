//! .what = the declared resources with what was observed of them live, as the engine's `Resource`s
//! .why = reads all of AWS in a few batched calls (`live`), then lets the engine plan every kind the same way
//!
//! - `live`: the references a manifest makes and the batched reads that answer them
//! - `assemble`: the observed resources, with the changes a tunnel implies for its bastion and the ordering edges
//! - `observed`: each kind's desired and remote documents, action and difference

mod assemble;
mod live;
mod observed;

pub use assemble::{Inspected, assemble};
pub use live::{FieldAt, LiveState, References, read_live_state, read_local_tunnels};
pub use observed::{
    Observed, ObservedBastion, ObservedCluster, ObservedInstance, ObservedTunnel, PreviousIdentity,
    RemovedTunnel, Stranded, describe_holders,
};

use std::collections::BTreeMap;

use declastruct_aws::ContextAwsApi;
use declastruct_aws::internal::{inspect_vpc_tunnel, resolve_tunnel_target};

use crate::manifest::{Manifest, ResourceDeclaration};

/// .what = what `observe_in_steps` tells its caller as it goes
/// .why = the caller shows it (a warning at once, a progress line that names what is waited for); this crate prints
/// nothing
#[derive(Debug)]
pub enum Step {
    /// something is gone that nothing needs (a bastion only CLOSED tunnels name): located, and it stops nothing
    Warning(miette::Report),
    /// what is waited for now, in words
    Waiting(String),
}

/// .what = reads the live state of every declared resource and assembles the observed resources, telling `on_step`
/// each warning and what it waits for once AWS has answered: the checks of the tunnels on this machine, each with
/// its health probe through its local port
/// .why = `plan`, `apply` and `status` start from here; every tunnel is inspected concurrently, with no AWS call;
/// a progress line names what is waited for at that moment, not the AWS calls that have already answered
pub async fn observe_in_steps(
    manifest: &Manifest,
    context: &ContextAwsApi,
    on_step: impl Fn(Step),
) -> Result<Vec<Observed>, Vec<miette::Report>> {
    let references = References::of(manifest);
    let mut live = read_live_state(manifest, &references, context).await?;
    // what is gone but needed by nothing is said, and stops nothing
    for warning in std::mem::take(&mut live.warnings) {
        on_step(Step::Warning(warning));
    }
    let ports: Vec<String> = manifest
        .resources
        .iter()
        .filter_map(|declared| match &declared.declaration {
            ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => Some(tunnel.from.port.to_string()),
            _ => None,
        })
        .collect();
    if !ports.is_empty() {
        on_step(Step::Waiting(format!(
            "checking the tunnels on this machine: their processes, and a health probe through local port{} {}",
            if ports.len() == 1 { "" } else { "s" },
            ports.join(", ")
        )));
    }
    let tunnels = inspect_tunnels(manifest, &live, context).await?;
    let mut observed = assemble(manifest, &live, tunnels)?;
    mark_transport_changes(&mut observed, context);
    Ok(observed)
}

/// .what = an open tunnel whose session runs on another transport than the one it would open with now (its
/// `via.transport`, `DECLASTRUCT_TRANSPORT`, or what `auto` finds installed) is replaced, and the plan says so
/// .why = the transport is chosen when the session starts: a change takes a new session
fn mark_transport_changes(observed: &mut [Observed], context: &ContextAwsApi) {
    for resource in observed.iter_mut() {
        let Observed::Tunnel(tunnel) = resource else {
            continue;
        };
        if tunnel.declaration.status != declastruct_aws::VpcTunnelStatus::Open
            || tunnel.observation.tunnel.status != Some(declastruct_aws::VpcTunnelStatus::Open)
        {
            continue;
        }
        let Some(running) = tunnel
            .observation
            .meta
            .as_ref()
            .and_then(|meta| meta.transport.clone())
        else {
            continue;
        };
        let wanted = context
            .transport_for(if tunnel.declaration.from.is_exposed() {
                Some(declastruct_aws::TransportChoice::Native)
            } else {
                tunnel.declaration.via.transport
            })
            .as_str()
            .to_string();
        if running != wanted {
            tunnel.transport_change = Some((running, wanted));
            tunnel.forced_replace = true;
        }
    }
}

/// .what = every declared tunnel's far end resolved and the tunnel inspected against the live state, by its
/// position in the manifest
/// .why = the observation of a tunnel is found by the resource it belongs to, never by an order agreement
pub async fn inspect_tunnels(
    manifest: &Manifest,
    live: &LiveState,
    context: &ContextAwsApi,
) -> Result<Inspected, Vec<miette::Report>> {
    let region = context.region.clone().unwrap_or_default();
    let mut errors = Vec::new();
    let mut inspections = Vec::new();
    let mut stranded = BTreeMap::new();
    for (index, declared) in manifest.resources.iter().enumerate() {
        let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &declared.declaration else {
            continue;
        };
        let closed = tunnel.status == declastruct_aws::VpcTunnelStatus::Closed;
        let Some(bastion) = live.bastions.get(&tunnel.via.bastion) else {
            // an OPEN tunnel's missing bastion was an error already; a CLOSED one is closed by its record
            if closed {
                stranded.insert(
                    index,
                    format!("its bastion {} no longer exists", tunnel.via.bastion),
                );
            }
            continue;
        };
        let target = match resolve_tunnel_target(&tunnel.into, live.target_lookups(&region)) {
            Ok(target) => target,
            Err(error) if closed => {
                stranded.insert(index, format!("its far end is gone: {error}"));
                continue;
            }
            Err(error) => {
                let at = FieldAt {
                    resource: index,
                    path: &["into"],
                };
                errors.push(at.locate(manifest, error, "while resolving this target"));
                continue;
            }
        };
        let tunnel = tunnel.to_domain();
        let processes = &live.processes;
        inspections.push(async move {
            let observation =
                inspect_vpc_tunnel(&tunnel, bastion, &target, processes, context).await;
            observation.map(|observation| (index, (observation, target)))
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let tunnels = futures::future::join_all(inspections)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|error| vec![miette::Report::new(error)])?;
    Ok(Inspected { tunnels, stranded })
}

/// .what = only the resources named by `targets` (their addresses, as `plan` prints them) and what they depend on
/// .why = `--target`: apply one tunnel of a large manifest, with the bastion it needs, and nothing else
pub fn select_targets(
    resources: Vec<Observed>,
    targets: &[String],
) -> Result<Vec<Observed>, String> {
    use declastruct_engine::Resource;
    if targets.is_empty() {
        return Ok(resources);
    }
    let addresses: Vec<String> = resources
        .iter()
        .map(|resource| resource.address().slug)
        .collect();
    if let Some(unknown) = targets.iter().find(|target| !addresses.contains(target)) {
        return Err(format!(
            "--target {unknown} names no resource of this manifest; its addresses are: {}",
            addresses.join(", ")
        ));
    }
    let edges: Vec<declastruct_engine::Edge> = resources.iter().flat_map(Resource::edges).collect();
    let mut wanted: Vec<String> = targets.to_vec();
    let mut index = 0;
    while index < wanted.len() {
        let dependencies: Vec<String> = edges
            .iter()
            .filter(|edge| edge.after.slug == wanted[index])
            .map(|edge| edge.before.slug.clone())
            .collect();
        for dependency in dependencies {
            if !wanted.contains(&dependency) {
                wanted.push(dependency);
            }
        }
        index += 1;
    }
    Ok(resources
        .into_iter()
        .filter(|resource| wanted.contains(&resource.address().slug))
        .collect())
}

/// .what = marks the tunnels named by `addresses` to be closed and opened again, even if they look healthy
/// .why = `apply --replace`: a session that serves but is stale (rotated credentials, a half-broken agent)
pub fn force_replace(resources: &mut [Observed], addresses: &[String]) -> Result<(), String> {
    use declastruct_engine::Resource;
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
    use declastruct_engine::Resource;
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
