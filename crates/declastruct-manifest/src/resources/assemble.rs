//! .what = the observed resources of a manifest, from its declarations and the live state
//! .why = pure, so that the plan of any manifest can be computed and measured against an in-memory world; here a
//! tunnel's bastion is recognised however it is named, and a bastion an OPEN tunnel will start is planned so

use std::collections::BTreeMap;

use declastruct_aws::internal::VpcTunnelObservation;
use declastruct_aws::{
    DesiredInstanceStatus, Ec2InstanceRef, Ec2InstanceStatus, RdsInstanceRef, TunnelHolder,
    TunnelTarget, VpcTunnelInto, VpcTunnelStatus,
};
use declastruct_engine::{Edge, ResourceAddress};
use declastruct_tunnel::other_live_holders;

use super::live::LiveState;
use super::observed::{
    Observed, ObservedBastion, ObservedCluster, ObservedInstance, ObservedTunnel, PreviousIdentity,
    RemovedTunnel, Stranded,
};
use crate::manifest::{
    DeclaredResource, Ec2InstanceDeclaration, Manifest, ManifestError, ResourceDeclaration,
    bastion_address, cluster_address, instance_address, tunnel_address,
};

/// one bastion of the plan: where it is declared (if it is), and the reference the plan names it by
struct PlanBastion<'a> {
    reference: Ec2InstanceRef,
    declared: Option<(usize, &'a Ec2InstanceDeclaration)>,
    desired_status: Option<DesiredInstanceStatus>,
    started_for_a_tunnel: bool,
    /// an OPEN tunnel of this manifest goes through it
    needed: bool,
    /// what its idleness says, when it is declared with `idleStop` and running: the note of the plan
    idle_note: Option<String>,
    /// its activity in words, when it is declared with `idleStop` and running: for `status`
    activity: Option<String>,
}

/// .what = the observed resources, in manifest order (a bastion only a tunnel names comes before that tunnel),
/// with ordering edges; or the contradictions the live lookup revealed
/// .why = a tunnel that names its bastion by `instanceId` while the manifest declares it by `exid` is ordered
/// against it and checked against its declared status, and a bastion an OPEN tunnel will start shows in the plan
pub fn assemble(
    manifest: &Manifest,
    live: &LiveState,
    inspected: Inspected,
) -> Result<Vec<Observed>, Vec<miette::Report>> {
    let Inspected {
        mut tunnels,
        stranded,
    } = inspected;
    // every bastion of the plan, by live instance id: declared ones first, then those only tunnels name
    let mut bastions: BTreeMap<String, PlanBastion> = BTreeMap::new();
    for (index, declared) in manifest.resources.iter().enumerate() {
        if let ResourceDeclaration::DeclaredAwsEc2Instance(instance) = &declared.declaration {
            let reference = Ec2InstanceRef::by_exid(&instance.exid);
            if let Some(instance_id) = live.instance_id(&reference) {
                bastions.insert(
                    instance_id,
                    PlanBastion {
                        reference,
                        declared: Some((index, instance)),
                        desired_status: instance.status,
                        started_for_a_tunnel: false,
                        needed: false,
                        idle_note: None,
                        activity: None,
                    },
                );
            }
        }
    }
    let mut errors = Vec::new();
    for declared in &manifest.resources {
        let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &declared.declaration else {
            continue;
        };
        let Some(instance_id) = live.instance_id(&tunnel.via.bastion) else {
            continue;
        };
        let bastion = bastions.entry(instance_id).or_insert_with(|| PlanBastion {
            reference: tunnel.via.bastion.clone(),
            declared: None,
            desired_status: None,
            started_for_a_tunnel: false,
            needed: false,
            idle_note: None,
            activity: None,
        });
        if tunnel.status != VpcTunnelStatus::Open {
            continue;
        }
        bastion.needed = true;
        match bastion.desired_status {
            Some(DesiredInstanceStatus::Stopped) => {
                // the same-exid case is refused by `validate`; this one needed the live lookup to be seen
                if let Some((bastion_index, _)) = bastion.declared {
                    errors.push(contradiction(
                        manifest,
                        declared,
                        bastion_index,
                        tunnel.from.port,
                    ));
                }
            }
            Some(DesiredInstanceStatus::Running) => {}
            None => {
                let running = live
                    .bastions
                    .get(&tunnel.via.bastion)
                    .is_some_and(|found| found.status == Some(Ec2InstanceStatus::Running));
                if !running {
                    bastion.desired_status = Some(DesiredInstanceStatus::Running);
                    bastion.started_for_a_tunnel = true;
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // idleStop: a running bastion nothing uses is stopped (unless declared stopped already, or an OPEN tunnel of
    // this manifest needs it); one whose idleness cannot be told says why
    for (instance_id, bastion) in &mut bastions {
        let (Some(activity), Some((_, declaration))) =
            (live.activity.get(instance_id), bastion.declared)
        else {
            continue;
        };
        let Some(idle_stop) = declaration.idle_stop else {
            continue;
        };
        let described = activity.describe(idle_stop.as_duration());
        bastion.activity = Some(described.clone());
        if bastion.needed || bastion.desired_status == Some(DesiredInstanceStatus::Stopped) {
            continue;
        }
        if activity.is_idle() {
            bastion.desired_status = Some(DesiredInstanceStatus::Stopped);
            bastion.idle_note = Some(format!("idleStop: {described}"));
        } else if matches!(activity, declastruct_aws::BastionActivity::Unknown(_)) {
            bastion.idle_note = Some(format!("idleStop: not stopped, {described}"));
        }
    }

    let bastion_of = |reference: &Ec2InstanceRef| {
        live.instance_id(reference)
            .and_then(|instance_id| bastions.get(&instance_id))
    };
    let observed_bastion = |bastion: &PlanBastion| {
        live.bastions.get(&bastion.reference).map(|found| {
            Observed::Bastion(ObservedBastion {
                reference: bastion.reference.clone(),
                declaration: bastion.declared.map(|(_, declaration)| declaration.clone()),
                desired_status: bastion.desired_status,
                started_for_a_tunnel: bastion.started_for_a_tunnel,
                idle_note: bastion.idle_note.clone(),
                activity: bastion.activity.clone(),
                live: found.clone(),
            })
        })
    };
    let mut observed = Vec::with_capacity(manifest.resources.len());
    let mut listed: Vec<ResourceAddress> = Vec::new();
    for (index, declared) in manifest.resources.iter().enumerate() {
        match &declared.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                let reference = Ec2InstanceRef::by_exid(&instance.exid);
                if let Some(bastion) = bastion_of(&reference) {
                    observed.extend(observed_bastion(bastion));
                }
            }
            ResourceDeclaration::DeclaredAwsRdsCluster(cluster) => {
                let reference = declastruct_aws::RdsClusterRef::by_name(&cluster.name);
                if let Some(found) = live.clusters.get(&reference) {
                    observed.push(Observed::Cluster(ObservedCluster {
                        declaration: cluster.clone(),
                        live: found.clone(),
                    }));
                }
            }
            ResourceDeclaration::DeclaredAwsRdsInstance(instance) => {
                let reference = RdsInstanceRef::by_name(&instance.name);
                if let Some(found) = live.instances.get(&reference) {
                    observed.push(Observed::Instance(ObservedInstance {
                        declaration: instance.clone(),
                        live: found.clone(),
                    }));
                }
            }
            ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => {
                let (Some(bastion), Some((observation, target))) = (
                    live.bastions.get(&tunnel.via.bastion),
                    tunnels.remove(&index),
                ) else {
                    continue;
                };
                let address = tunnel.address();
                let mut edges = Vec::new();
                if let Some(plan_bastion) = bastion_of(&tunnel.via.bastion) {
                    let bastion_at = bastion_address(&plan_bastion.reference);
                    // a bastion only this tunnel names, and that it will start, is listed before it
                    if plan_bastion.declared.is_none()
                        && plan_bastion.desired_status.is_some()
                        && !listed.contains(&bastion_at)
                    {
                        observed.extend(observed_bastion(plan_bastion));
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
        }
    }
    attach_stranded_tunnels(&mut observed, manifest, live, &stranded);
    if let Some(holder) = &live.holder {
        let stopping: BTreeMap<&str, ResourceAddress> = bastions
            .iter()
            .filter(|(_, bastion)| bastion.desired_status == Some(DesiredInstanceStatus::Stopped))
            .map(|(instance_id, bastion)| {
                (instance_id.as_str(), bastion_address(&bastion.reference))
            })
            .collect();
        attach_owned_tunnels(&mut observed, holder, live, &stopping);
    }
    order_port_moves(&mut observed);
    Ok(observed)
}

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
fn attach_stranded_tunnels(
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
fn order_port_moves(observed: &mut [Observed]) {
    let closers: Vec<(ResourceAddress, u16)> = observed
        .iter()
        .filter_map(|resource| match resource {
            Observed::Removed(removed) if removed.closes() => {
                Some((removed.address.clone(), removed.meta.local_port))
            }
            Observed::Tunnel(tunnel) if tunnel.closes() => {
                Some((tunnel.declaration.address(), tunnel.declaration.from.port))
            }
            _ => None,
        })
        .collect();
    for resource in observed.iter_mut() {
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
                tunnel.edges.push(Edge {
                    before: closer.clone(),
                    after: address.clone(),
                });
                tunnel.displaces = Some(closer.slug.clone());
            }
        }
    }
}

/// .what = the tunnels this manifest opened that no longer match a declaration: an old identity of a declared
/// tunnel (REPLACE, or closed with it) or a tunnel no longer declared (DESTROY); only those still running
/// .why = nothing this manifest opened is left running unseen; nothing another manifest opened is touched
fn attach_owned_tunnels(
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
    for (files, meta) in &live.records {
        let Ok(meta) = meta else {
            continue;
        };
        let running = !live.processes.of(&files.id).is_empty();
        let holders = meta.holders();
        let held = holders.iter().any(|holder| holder.is(ours));
        let already = observed.iter().any(
            |resource| matches!(resource, Observed::Removed(removed) if removed.hash == files.id),
        );
        if !held || !running || current.contains(&files.id) || already {
            continue;
        }
        let (_, others) = split_holders(&holders, Some(ours));
        let address = tunnel_address(&meta.tunnel.via, &meta.tunnel.into, &meta.tunnel.from);
        let declared = observed.iter_mut().find_map(|resource| match resource {
            Observed::Tunnel(tunnel)
                if tunnel.declaration.address() == address && tunnel.previous.is_none() =>
            {
                Some(tunnel)
            }
            _ => None,
        });
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

/// an OPEN tunnel through a bastion that the manifest declares stopped under another name
fn contradiction(
    manifest: &Manifest,
    tunnel: &DeclaredResource,
    bastion_index: usize,
    port: u16,
) -> miette::Report {
    let bastion = &manifest.resources[bastion_index];
    let exid = match &bastion.declaration {
        ResourceDeclaration::DeclaredAwsEc2Instance(instance) => instance.exid.as_str(),
        _ => "",
    };
    let status_span = |index: usize| manifest.span_of(index, &["status"]);
    let tunnel_index = manifest
        .resources
        .iter()
        .position(|candidate| std::ptr::eq(candidate, tunnel))
        .unwrap_or(0);
    miette::Report::new(
        ManifestError::at(
            "declastruct::manifest::open_through_stopped_bastion",
            &manifest.source,
            status_span(tunnel_index),
            "declared OPEN",
            format!(
                "the tunnel on local port {port} is OPEN, but its bastion is `{exid}`, which is declared stopped (they are the same instance)"
            ),
            "a tunnel needs a running bastion: set the tunnel to CLOSED, or the bastion to running",
        )
        .also("declared stopped", status_span(bastion_index)),
    )
}

impl LiveState {
    /// .what = the live instance id a bastion reference resolves to
    /// .why = two references (by `exid`, by `instanceId`) to one instance are one bastion of the plan
    pub fn instance_id(&self, reference: &Ec2InstanceRef) -> Option<String> {
        self.bastions.get(reference)?.instance_id.clone()
    }
}
