//! .what = how tunnels are observed: every declared tunnel's far end resolved and its processes, files and health
//! inspected against the batched reads (concurrently, no AWS call), each assembled with its ordering edges; then
//! what this manifest opened and no longer declares, what is declared CLOSED while its ends are gone, the order of
//! tunnels that move from one local port to another, and a change of transport
//! .why = nothing this manifest opened is left running unseen, and a tunnel is never opened on a port another
//! change of the same apply still holds

use std::collections::BTreeMap;

use declastruct_aws::internal::{VpcTunnelObservation, inspect_vpc_tunnel, resolve_tunnel_target};
use declastruct_aws::{
    ContextAwsApi, DesiredInstanceStatus, Ec2InstanceRef, TunnelHolder, TunnelTarget,
    VpcTunnelInto, VpcTunnelStatus,
};
use declastruct_engine::{Edge, ResourceAddress};
use declastruct_tunnel::other_live_holders;

use super::{
    ObservedTunnel, PreviousIdentity, RemovedTunnel, Stranded, VpcTunnelDeclaration, record_address,
};
use crate::kinds::{Kind, ResourceDeclaration, bastion_address, cluster_address, instance_address};
use crate::manifest::Manifest;
use crate::resources::{Assembly, FieldAt, LiveState, Observed, plan_bastion};

/// .what = every declared tunnel inspected against the live state, by its position in the manifest, and the
/// tunnels declared CLOSED whose bastion or far end is gone, with what is gone
/// .why = what `assemble` needs from the tunnel inspection
#[derive(Debug, Default)]
pub struct Inspected {
    /// each inspected tunnel's observation and far end
    pub tunnels: BTreeMap<usize, (VpcTunnelObservation, TunnelTarget)>,
    /// each CLOSED tunnel whose ends do not resolve, with the reason
    pub stranded: BTreeMap<usize, String>,
}

/// .what = what the inspection of the tunnels waits for, in words: their processes, and a health probe through
/// each local port; `None` when the manifest declares no tunnel
/// .why = a progress line names what is waited for once AWS has answered
pub fn waiting_for_tunnels(manifest: &Manifest) -> Option<String> {
    let ports: Vec<String> = manifest
        .resources
        .iter()
        .filter_map(|declared| match &declared.declaration {
            ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => Some(tunnel.from.port.to_string()),
            _ => None,
        })
        .collect();
    (!ports.is_empty()).then(|| {
        format!(
            "checking the tunnels on this machine: their processes, and a health probe through local port{} {}",
            if ports.len() == 1 { "" } else { "s" },
            ports.join(", ")
        )
    })
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

/// .what = a declared tunnel, with its observation and far end, as a resource of the plan, ordered after the
/// bastion it starts and the cluster or instance it goes into (and before the bastion it stops); a bastion only it
/// names, and that it starts, is listed before it
/// .why = a tunnel that names its bastion by `instanceId` while the manifest declares it by `exid` is ordered
/// against it, and a bastion an OPEN tunnel will start shows in the plan
pub(super) fn observe_tunnel(
    tunnel: &VpcTunnelDeclaration,
    index: usize,
    assembly: &mut Assembly<'_>,
) {
    let Assembly {
        manifest,
        live,
        bastions,
        tunnels,
        listed,
        observed,
    } = assembly;
    let (manifest, live) = (*manifest, *live);
    let (Some(bastion), Some((observation, target))) = (
        live.bastions.get(&tunnel.via.bastion),
        tunnels.remove(&index),
    ) else {
        return;
    };
    let bastion_of = |reference: &Ec2InstanceRef| plan_bastion(live, bastions, reference);
    let address = tunnel.address();
    let mut edges = Vec::new();
    if let Some(plan_bastion) = bastion_of(&tunnel.via.bastion) {
        let bastion_at = bastion_address(&plan_bastion.reference);
        // a bastion only this tunnel names, and that it will start, is listed before it
        if plan_bastion.declared.is_none()
            && plan_bastion.desired_status.is_some()
            && !listed.contains(&bastion_at)
        {
            observed.extend(plan_bastion.observed(live));
            listed.push(bastion_at.clone());
        }
        if plan_bastion.declared.is_some() || plan_bastion.desired_status.is_some() {
            // a tunnel closes before its bastion stops, and opens after it starts
            edges.push(
                if plan_bastion.desired_status == Some(DesiredInstanceStatus::Stopped) {
                    Edge {
                        before: address.clone(),
                        after: bastion_at,
                    }
                } else {
                    Edge {
                        before: bastion_at,
                        after: address.clone(),
                    }
                },
            );
        }
    }
    // a declared cluster or instance is handled before the tunnel into it
    let target_at = match &tunnel.into {
        VpcTunnelInto::Cluster { cluster, .. } => Some(cluster_address(cluster)),
        VpcTunnelInto::Instance { instance } => Some(instance_address(instance)),
        VpcTunnelInto::Host { .. } => None,
    };
    if let Some(target_at) = target_at
        && manifest
            .resources
            .iter()
            .any(|other| other.declaration.address() == target_at)
    {
        edges.push(Edge {
            before: target_at,
            after: address,
        });
    }
    let (held, others) = split_holders(&observation.holders, live.holder.as_ref());
    let bastion_idle_stop = bastion_of(&tunnel.via.bastion)
        .and_then(|plan_bastion| plan_bastion.declared)
        .and_then(|(_, declaration)| declaration.idle_stop);
    observed.push(Observed::Tunnel(Box::new(ObservedTunnel {
        declaration: tunnel.clone(),
        observation,
        bastion: bastion.clone(),
        target,
        edges,
        previous: None,
        forced_replace: false,
        transport_change: None,
        held,
        others,
        force_close: false,
        displaces: None,
        bastion_idle_stop,
    })));
}

/// .what = an open tunnel whose session runs on another transport than the one it would open with now (its
/// `via.transport`, `DECLASTRUCT_TRANSPORT`, or what `auto` finds installed) is replaced, and the plan says so
/// .why = the transport is chosen when the session starts: a change takes a new session
pub fn mark_transport_changes(observed: &mut [Observed], context: &ContextAwsApi) {
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
            .transport_of_tunnel(&tunnel.declaration.via, &tunnel.declaration.from)
            .as_str()
            .to_string();
        if running != wanted {
            tunnel.transport_change = Some((running, wanted));
            tunnel.forced_replace = true;
        }
    }
}

/// .what = whether `ours` is among a tunnel's live holders, and the others
/// .why = a tunnel this environment does not hold is held by apply; one others hold is only released
fn split_holders(
    holders: &[TunnelHolder],
    ours: Option<&TunnelHolder>,
) -> (bool, Vec<TunnelHolder>) {
    let held = ours.is_some_and(|ours| holders.iter().any(|holder| holder.is(ours)));
    let others = other_live_holders(holders, ours)
        .into_iter()
        .cloned()
        .collect();
    (held, others)
}

/// .what = the running tunnels recorded for a CLOSED declaration whose bastion or far end is gone, as changes that
/// close them by their records (UPDATE to CLOSED, with the reason)
/// .why = a terminated bastion or a deleted cluster must not leave a session serving that the manifest says is
/// CLOSED
pub(crate) fn attach_stranded_tunnels(
    observed: &mut Vec<Observed>,
    manifest: &Manifest,
    live: &LiveState,
    stranded: &BTreeMap<usize, String>,
) {
    for (index, reason) in stranded {
        let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) =
            &manifest.resources[*index].declaration
        else {
            continue;
        };
        let mut found = 0;
        for (files, meta) in &live.records {
            let Ok(meta) = meta else {
                continue;
            };
            let same = meta.tunnel.via == tunnel.via
                && meta.tunnel.into == tunnel.into
                && meta.tunnel.from == tunnel.from;
            if !same || live.processes.of(&files.id).is_empty() {
                continue;
            }
            let holders: Vec<TunnelHolder> = meta.holders();
            let (_, others) = split_holders(&holders, live.holder.as_ref());
            let mut address = tunnel.address();
            // two old sessions of one declaration are two changes, told apart by their identity
            if found > 0 {
                address.slug = format!("{}#{}", address.slug, files.id);
            }
            found += 1;
            observed.push(Observed::Removed(Box::new(RemovedTunnel {
                address,
                hash: files.id.clone(),
                meta: meta.clone(),
                edges: Vec::new(),
                others,
                force_close: false,
                stranded: Some(Stranded {
                    declaration: tunnel.clone(),
                    reason: reason.clone(),
                }),
            })));
        }
    }
}

/// .what = orders every change that closes a tunnel on a local port before every change that opens one on it, and
/// tells the opener which change frees its port
/// .why = a tunnel moved to another bastion or target on the same port: the old one must let go of the port
/// before the new one listens, or the open fails and the user is left with no tunnel
pub(crate) fn order_port_moves(observed: &mut [Observed]) {
    let mut closers: Vec<(ResourceAddress, u16)> = Vec::new();
    for resource in observed.iter() {
        match resource {
            Observed::Removed(removed) if removed.closes() => {
                closers.push((removed.address.clone(), removed.meta.local_port));
            }
            Observed::Tunnel(tunnel) => {
                let address = tunnel.declaration.address();
                if tunnel.closes_current_session() {
                    closers.push((address.clone(), tunnel.declaration.from.port));
                }
                // an old identity closed (CLOSED) or replaced (OPEN) frees the port it listened on, which is
                // not the declared one when the port changed too
                if let Some(previous) = tunnel
                    .previous
                    .as_ref()
                    .filter(|previous| previous.others.is_empty() || tunnel.force_close)
                    && (previous.meta.local_port != tunnel.declaration.from.port
                        || tunnel.declaration.status == VpcTunnelStatus::Closed)
                {
                    closers.push((address, previous.meta.local_port));
                }
            }
            _ => {}
        }
    }
    let mut edges: Vec<Edge> = Vec::new();
    for resource in observed.iter() {
        let Observed::Tunnel(tunnel) = resource else {
            continue;
        };
        let opens = tunnel.declaration.status == VpcTunnelStatus::Open
            && (tunnel.is_replaced() || !tunnel.observation.is_healthy());
        if !opens {
            continue;
        }
        let address = tunnel.declaration.address();
        for (closer, port) in &closers {
            if *port == tunnel.declaration.from.port && *closer != address {
                edges.push(Edge {
                    before: closer.clone(),
                    after: address.clone(),
                });
            }
        }
    }
    // tunnels that trade ports (two that swap, or three and more in a ring) cannot all go first: no edge of the
    // ring is ordered, and the open that finds its port still held names the holder
    let reaches = |from: &ResourceAddress, to: &ResourceAddress| {
        let mut stack = vec![from];
        let mut visited: Vec<&ResourceAddress> = Vec::new();
        while let Some(node) = stack.pop() {
            if node == to {
                return true;
            }
            if visited.contains(&node) {
                continue;
            }
            visited.push(node);
            stack.extend(
                edges
                    .iter()
                    .filter(|edge| edge.before == *node)
                    .map(|edge| &edge.after),
            );
        }
        false
    };
    let traded = |edge: &Edge| reaches(&edge.after, &edge.before);
    let kept: Vec<Edge> = edges.iter().filter(|edge| !traded(edge)).cloned().collect();
    for edge in kept {
        for resource in observed.iter_mut() {
            if let Observed::Tunnel(tunnel) = resource
                && tunnel.declaration.address() == edge.after
            {
                tunnel.displaces = Some(edge.before.slug.clone());
                tunnel.edges.push(edge.clone());
            }
        }
    }
}

/// .what = the one declared tunnel an unnamed record moved to: OPEN, not running, through the same bastion into the
/// same target, with another local port (or now a name); `None` when none or more than one could be
/// .why = a port change is one REPLACE of the tunnel, not an open of a new address beside a close of the old one
fn moved_to(
    observed: &[Observed],
    recorded: &declastruct_aws::DeclaredAwsVpcTunnel,
) -> Option<usize> {
    if recorded.name.is_some() {
        return None;
    }
    let mut candidates = observed.iter().enumerate().filter(|(_, resource)| {
        matches!(resource, Observed::Tunnel(tunnel)
            if tunnel.previous.is_none()
                && tunnel.declaration.status == VpcTunnelStatus::Open
                && tunnel.observation.tunnel.status != Some(VpcTunnelStatus::Open)
                && tunnel.declaration.via.bastion == recorded.via.bastion
                && tunnel.declaration.into == recorded.into)
    });
    match (candidates.next(), candidates.next()) {
        (Some((position, _)), None) => Some(position),
        _ => None,
    }
}

/// .what = the tunnels this manifest opened that no longer match a declaration: an old identity of a declared
/// tunnel (REPLACE, or closed with it) or a tunnel no longer declared (DESTROY); only those still running
/// .why = nothing this manifest opened is left running unseen; nothing another manifest opened is touched
pub(crate) fn attach_owned_tunnels(
    observed: &mut Vec<Observed>,
    ours: &TunnelHolder,
    live: &LiveState,
    stopping: &BTreeMap<&str, ResourceAddress>,
) {
    let current: Vec<declastruct_aws::TunnelId> = observed
        .iter()
        .filter_map(|resource| match resource {
            Observed::Tunnel(tunnel) => tunnel.observation.hash.clone(),
            _ => None,
        })
        .collect();
    let mut removed = Vec::new();
    // the records still running that this manifest holds and that are no declared tunnel's current identity
    let candidates: Vec<_> = live
        .records
        .iter()
        .filter_map(|(files, meta)| {
            let meta = meta.as_ref().ok()?;
            let running = !live.processes.of(&files.id).is_empty();
            let holders = meta.holders();
            let held = holders.iter().any(|holder| holder.is(ours));
            let already = observed.iter().any(
                |resource| matches!(resource, Observed::Removed(removed) if removed.hash == files.id),
            );
            (held && running && !current.contains(&files.id) && !already).then_some((files, meta, holders))
        })
        .collect();
    let same_address_of = |observed: &[Observed], address: &ResourceAddress| {
        observed.iter().position(|resource| {
            matches!(resource, Observed::Tunnel(tunnel)
                if tunnel.declaration.address() == *address && tunnel.previous.is_none())
        })
    };
    // a record at a declared tunnel's own address is that tunnel's old identity before any record is taken for a
    // moved one, whatever order the records were read in
    let (exact, rest): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|(_, meta, _)| {
        same_address_of(observed, &record_address(&meta.tunnel)).is_some()
    });
    for (files, meta, holders) in exact.into_iter().chain(rest) {
        let (_, others) = split_holders(&holders, Some(ours));
        let address = record_address(&meta.tunnel);
        let same_address = same_address_of(observed, &address);
        let declared = match same_address.or_else(|| moved_to(observed, &meta.tunnel)) {
            Some(position) => match &mut observed[position] {
                Observed::Tunnel(tunnel) => Some(tunnel),
                _ => None,
            },
            None => None,
        };
        let previous = PreviousIdentity {
            hash: files.id.clone(),
            meta: meta.clone(),
            others: others.clone(),
        };
        match declared {
            Some(tunnel) => tunnel.previous = Some(previous),
            None => {
                let edges = stopping
                    .get(meta.instance_id.as_str())
                    .map(|bastion| Edge {
                        before: address.clone(),
                        after: bastion.clone(),
                    })
                    .into_iter()
                    .collect();
                removed.push(Observed::Removed(Box::new(RemovedTunnel {
                    address,
                    hash: previous.hash,
                    meta: previous.meta,
                    edges,
                    others,
                    force_close: false,
                    stranded: None,
                })));
            }
        }
    }
    // two old identities of one removed tunnel are two changes: the second is told apart by its identity
    let mut seen: Vec<ResourceAddress> = observed
        .iter()
        .map(declastruct_engine::Resource::address)
        .collect();
    for mut resource in removed {
        if let Observed::Removed(removed) = &mut resource {
            if seen.contains(&removed.address) {
                removed.address.slug = format!("{}#{}", removed.address.slug, removed.hash);
            }
            seen.push(removed.address.clone());
        }
        observed.push(resource);
    }
}
