//! .what = the declared resources with what was observed of them live, as the engine's `Resource`s
//! .why = reads all of AWS in a few batched calls (`live`), then lets the engine plan every kind the same way
//!
//! - `live`: the references a manifest makes and the batched reads that answer them
//! - `assemble`: the observed resources, with the changes a tunnel implies for its bastion and the ordering edges
//! - `observed`: each kind's desired and remote documents, action and difference

mod assemble;
mod live;
mod observed;

pub use assemble::assemble;
pub use live::{FieldAt, LiveState, References, read_live_state, read_tunnel_processes};
pub use observed::{Observed, ObservedBastion, ObservedCluster, ObservedTunnel};

use std::collections::BTreeMap;

use declastruct_aws::ContextAwsApi;
use declastruct_aws::internal::{VpcTunnelObservation, inspect_vpc_tunnel};

use crate::manifest::{Manifest, ResourceDeclaration};

/// .what = reads the live state of every declared resource and assembles the observed resources
/// .why = `plan`, `apply` and `status` start from here; every tunnel is inspected concurrently, with no AWS call
pub async fn observe(
    manifest: &Manifest,
    context: &ContextAwsApi,
) -> Result<Vec<Observed>, Vec<miette::Report>> {
    let references = References::of(manifest);
    let live = read_live_state(manifest, &references, context).await?;
    let tunnels = inspect_tunnels(manifest, &live, context).await?;
    assemble(manifest, &live, tunnels)
}

/// .what = every declared tunnel inspected against the live state, by its position in the manifest
/// .why = the observation of a tunnel is found by the resource it belongs to, never by an order agreement
pub async fn inspect_tunnels(
    manifest: &Manifest,
    live: &LiveState,
    context: &ContextAwsApi,
) -> Result<BTreeMap<usize, VpcTunnelObservation>, Vec<miette::Report>> {
    let inspections = manifest
        .resources
        .iter()
        .enumerate()
        .filter_map(|(index, declared)| {
            let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &declared.declaration else {
                return None;
            };
            let bastion = live.bastions.get(&tunnel.via.bastion)?;
            let cluster = live.clusters.get(&tunnel.into.cluster)?;
            let tunnel = tunnel.to_domain();
            let processes = &live.processes;
            Some(async move {
                let observation =
                    inspect_vpc_tunnel(&tunnel, bastion, cluster, processes, context).await;
                observation.map(|observation| (index, observation))
            })
        });
    futures::future::join_all(inspections)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|error| vec![miette::Report::new(error)])
}
