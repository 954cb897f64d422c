//! .what = the observed resources of a manifest, from its declarations and the live state
//! .why = pure, so that the plan of any manifest can be computed and measured against an in-memory world; each
//! declaration is observed by its kind (`Kind::observe`), in manifest order, after the bastions are planned (a
//! tunnel's bastion is recognised however it is named, and a bastion an OPEN tunnel will start is planned so)

use std::collections::BTreeMap;

use declastruct_aws::internal::VpcTunnelObservation;
use declastruct_aws::{Ec2InstanceRef, TunnelTarget};
use declastruct_engine::ResourceAddress;

use super::live::LiveState;
use super::observed::Observed;
use crate::kinds::ec2_instance::{self, PlanBastion};
use crate::kinds::vpc_tunnel::{
    Inspected, attach_owned_tunnels, attach_stranded_tunnels, order_port_moves,
};
use crate::manifest::Manifest;

/// .what = the observed resources as they are assembled, and what each kind's observation reads: the live state,
/// the plan of every bastion, the inspection of every tunnel
/// .why = each declaration adds its resources with no call of its own (`Kind::observe`)
pub struct Assembly<'a> {
    /// the manifest
    pub(crate) manifest: &'a Manifest,
    /// the batched reads
    pub(crate) live: &'a LiveState,
    /// every bastion of the plan, by live instance id
    pub(crate) bastions: BTreeMap<String, PlanBastion<'a>>,
    /// each inspected tunnel's observation and far end, by its position in the manifest, until it is observed
    pub(crate) tunnels: BTreeMap<usize, (VpcTunnelObservation, TunnelTarget)>,
    /// the bastions only a tunnel names, listed already
    pub(crate) listed: Vec<ResourceAddress>,
    /// the observed resources so far, in manifest order
    pub(crate) observed: Vec<Observed>,
}

impl<'a> Assembly<'a> {
    /// .what = the bastion of the plan that `reference` names, however it names it
    /// .why = see `plan_bastion`
    pub(crate) fn bastion_of(&self, reference: &Ec2InstanceRef) -> Option<&PlanBastion<'a>> {
        plan_bastion(self.live, &self.bastions, reference)
    }
}

/// .what = the bastion of the plan that `reference` names: by `exid` or by `instanceId`, one bastion
/// .why = a bastion named both ways is planned once
pub(crate) fn plan_bastion<'b, 'a>(
    live: &LiveState,
    bastions: &'b BTreeMap<String, PlanBastion<'a>>,
    reference: &Ec2InstanceRef,
) -> Option<&'b PlanBastion<'a>> {
    live.instance_id(reference)
        .and_then(|instance_id| bastions.get(&instance_id))
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
    let Inspected { tunnels, stranded } = inspected;
    let mut assembly = Assembly {
        manifest,
        live,
        bastions: ec2_instance::plan_bastions(manifest, live)?,
        tunnels,
        listed: Vec::new(),
        observed: Vec::new(),
    };
    for (index, declared) in manifest.resources.iter().enumerate() {
        declared.declaration.observe(index, &mut assembly);
    }
    let Assembly {
        bastions,
        mut observed,
        ..
    } = assembly;
    attach_stranded_tunnels(&mut observed, manifest, live, &stranded);
    if let Some(holder) = &live.holder {
        attach_owned_tunnels(
            &mut observed,
            holder,
            live,
            &ec2_instance::stopping(&bastions),
        );
    }
    order_port_moves(&mut observed);
    Ok(observed)
}
