//! .what = the plan of every bastion: declared, or only named by a tunnel that starts it; stopped when idle
//! .why = a bastion named by `instanceId` in a tunnel and declared by `exid` is one bastion, planned once, and an
//! OPEN tunnel through a bastion declared stopped under another name is refused

use std::collections::BTreeMap;

use declastruct_aws::{
    BastionActivity, DesiredInstanceStatus, Ec2InstanceRef, Ec2InstanceStatus, VpcTunnelStatus,
};
use declastruct_engine::ResourceAddress;

use super::{Ec2InstanceDeclaration, ObservedBastion, bastion_address};
use crate::kinds::ResourceDeclaration;
use crate::manifest::{DeclaredResource, Manifest, ManifestError};
use crate::resources::{LiveState, Observed};

/// .what = one bastion of the plan: where it is declared (if it is), and the reference the plan names it by
/// .why = a bastion named by `instanceId` in a tunnel and declared by `exid` is one bastion, planned once
#[derive(Debug)]
pub(crate) struct PlanBastion<'a> {
    /// how the plan names it: the declared `exid`, or the reference the first tunnel through it uses
    pub(crate) reference: Ec2InstanceRef,
    /// its position in the manifest and its declaration, when it is declared
    pub(crate) declared: Option<(usize, &'a Ec2InstanceDeclaration)>,
    /// the status apply sets, if any
    pub(crate) desired_status: Option<DesiredInstanceStatus>,
    /// `desired_status` comes from an OPEN tunnel, not from the declaration
    started_for_a_tunnel: bool,
    /// an OPEN tunnel of this manifest goes through it
    needed: bool,
    /// what its idleness says, when it is declared with `idleStop` and running: the note of the plan
    idle_note: Option<String>,
    /// its activity in words, when it is declared with `idleStop` and running: for `status`
    activity: Option<String>,
}

impl PlanBastion<'_> {
    /// .what = the bastion as a resource of the plan, when it exists
    /// .why = declared, or started for a tunnel, it is planned like any resource
    pub(crate) fn observed(&self, live: &LiveState) -> Option<Observed> {
        live.bastions.get(&self.reference).map(|found| {
            Observed::Bastion(ObservedBastion {
                reference: self.reference.clone(),
                declaration: self.declared.map(|(_, declaration)| declaration.clone()),
                desired_status: self.desired_status,
                started_for_a_tunnel: self.started_for_a_tunnel,
                idle_note: self.idle_note.clone(),
                activity: self.activity.clone(),
                live: found.clone(),
            })
        })
    }
}

/// .what = every bastion of the plan, by live instance id: declared ones first, then those only tunnels name; the
/// status each is given (started for an OPEN tunnel, stopped when idle); or the contradictions the live lookup
/// revealed
/// .why = a tunnel that names its bastion by `instanceId` while the manifest declares it by `exid` is checked
/// against its declared status, and a bastion an OPEN tunnel will start shows in the plan
pub(crate) fn plan_bastions<'a>(
    manifest: &'a Manifest,
    live: &LiveState,
) -> Result<BTreeMap<String, PlanBastion<'a>>, Vec<miette::Report>> {
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
        } else if matches!(activity, BastionActivity::Unknown(_)) {
            bastion.idle_note = Some(format!("idleStop: not stopped, {described}"));
        }
    }
    Ok(bastions)
}

/// .what = the bastions the plan stops, by instance id, with their addresses
/// .why = a tunnel no longer declared closes before its bastion stops
pub(crate) fn stopping<'a>(
    bastions: &'a BTreeMap<String, PlanBastion<'_>>,
) -> BTreeMap<&'a str, ResourceAddress> {
    bastions
        .iter()
        .filter(|(_, bastion)| bastion.desired_status == Some(DesiredInstanceStatus::Stopped))
        .map(|(instance_id, bastion)| (instance_id.as_str(), bastion_address(&bastion.reference)))
        .collect()
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
