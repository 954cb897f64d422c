//! .what = the bastion kind, `DeclaredAwsEc2Instance`: its declaration, the bastions a manifest names read in one
//! batch, the plan of each bastion (declared, or only named by a tunnel that starts it; stopped when idle), its
//! documents, its apply and its status row
//! .why = apply starts or stops a bastion to match `status`, and an OPEN tunnel starts the bastion it goes through

use std::collections::BTreeMap;

use declastruct_aws::internal::{closest_exids, get_ec2_instances};
use declastruct_aws::{
    AwsError, BastionActivity, ContextAwsApi, DeclaredAwsEc2Instance, DesiredInstanceStatus,
    Ec2InstanceRef, Ec2InstanceStatus, IdleDuration, VpcTunnelStatus, set_ec2_instance_status,
};
use declastruct_engine::{Action, Resource, ResourceAddress};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Kind, ResourceDeclaration, to_value};
use crate::manifest::{DeclaredResource, Manifest, ManifestError};
use crate::resources::{Assembly, FieldAt, LiveState, Missing, Observed, References};

/// .what = a declared bastion
/// .why = apply starts or stops it to match `status`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ec2InstanceDeclaration {
    /// the value of the instance's `exid` tag
    pub exid: String,
    /// the desired status; when absent, the instance is only referenced, never started or stopped
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DesiredInstanceStatus>,
    /// stop the bastion once it has been idle this long (`90s`, `30m`, `2h`): no Active SSM session targets it
    /// (anyone's), its `declastruct:in-use` tag is older than this, and no tunnel of this machine uses it
    #[serde(rename = "idleStop", default, skip_serializing_if = "Option::is_none")]
    pub idle_stop: Option<IdleDuration>,
}

/// .what = the address of a bastion reference
/// .why = tunnels depend on declared bastions by address
pub fn bastion_address(reference: &Ec2InstanceRef) -> ResourceAddress {
    ResourceAddress {
        class: Ec2InstanceDeclaration::CLASS.into(),
        slug: reference.key().to_string(),
    }
}

impl Kind for Ec2InstanceDeclaration {
    const CLASS: &'static str = "DeclaredAwsEc2Instance";
    const NOUN: &'static str = "bastion";
    type Observed = ObservedBastion;

    /// the bastion's address: its exid
    fn address(&self) -> ResourceAddress {
        ResourceAddress {
            class: Self::CLASS.into(),
            slug: self.exid.clone(),
        }
    }

    fn references(&self, index: usize, references: &mut References) {
        let reference = Ec2InstanceRef::by_exid(&self.exid);
        // a bastion declared running must exist; one declared stopped, or without a status, and named only by
        // CLOSED tunnels, may be gone
        let need = references.need(&reference);
        need.declared = true;
        if self.status == Some(DesiredInstanceStatus::Running) {
            need.open = true;
        }
        references.add_bastion(
            reference,
            FieldAt {
                resource: index,
                path: &["exid"],
            },
        );
    }

    fn observe(&self, _index: usize, assembly: &mut Assembly<'_>) {
        let reference = Ec2InstanceRef::by_exid(&self.exid);
        let observed = assembly
            .bastion_of(&reference)
            .and_then(|bastion| bastion.observed(assembly.live));
        assembly.observed.extend(observed);
    }

    async fn apply(
        observed: &ObservedBastion,
        context: &ContextAwsApi,
    ) -> Result<Option<String>, AwsError> {
        match observed.desired_status {
            Some(status) => set_ec2_instance_status(&observed.reference, status, context)
                .await
                .map(|_| None),
            None => Ok(None),
        }
    }

    fn status_row(bastion: &ObservedBastion) -> Value {
        let mut row = json!({
            "status": bastion.live.status.map(Ec2InstanceStatus::as_str),
            "instanceId": bastion.live.instance_id,
            "privateIp": bastion.live.private_ip,
        });
        // only an idleStop bastion has an activity to tell
        if let Some(activity) = &bastion.activity {
            row["healthReason"] = json!(activity);
        }
        row
    }
}

/// .what = every bastion the manifest names, in one DescribeInstances (two when some are named by id)
/// .why = a plan over a hundred tunnels costs one call for all of their bastions
pub(crate) async fn read(
    references: &References,
    context: &ContextAwsApi,
) -> Result<BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>, AwsError> {
    let keys: Vec<Ec2InstanceRef> = references
        .bastions
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    get_ec2_instances(&keys, context).await
}

/// .what = where a failed read of the bastions points: an `exid` that names more than one instance, at the
/// reference that names it
/// .why = otherwise the failure is shown at the manifest's first resource
pub(crate) fn failure_at(
    error: &AwsError,
    references: &References,
) -> Option<(FieldAt, &'static str)> {
    match error {
        AwsError::AmbiguousExid { exid, .. } => references
            .bastions
            .iter()
            .find(|(reference, _)| reference.key() == exid)
            .map(|(_, at)| (*at, "more than one instance")),
        _ => None,
    }
}

/// .what = every named bastion that does not exist, with the `exid`s closest to what was named (from one listing,
/// however many are missing)
/// .why = a typo in an `exid` is answered with what the user probably meant
pub(crate) async fn report_missing(
    references: &References,
    found: &BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    missing: &mut Missing<'_>,
    context: &ContextAwsApi,
) {
    let missing_bastions: Vec<_> = references
        .bastions
        .iter()
        .filter(|(reference, _)| !found.contains_key(reference))
        .collect();
    let missing_exids: Vec<&str> = missing_bastions
        .iter()
        .filter_map(|(reference, _)| match reference {
            Ec2InstanceRef::ByUnique { exid } => Some(exid.as_str()),
            Ec2InstanceRef::ByPrimary { .. } => None,
        })
        .collect();
    let mut closest_of_exids = closest_exids(&missing_exids, context)
        .await
        .unwrap_or_default()
        .into_iter();
    for (reference, at) in missing_bastions {
        let closest = match reference {
            Ec2InstanceRef::ByUnique { .. } => closest_of_exids.next().unwrap_or_default(),
            Ec2InstanceRef::ByPrimary { .. } => Vec::new(),
        };
        let error = AwsError::BastionNotFound {
            reference: reference.to_string(),
            region: missing.region.clone(),
            closest,
        };
        missing.gone(reference, at, error, "no such instance");
    }
}

/// .what = the activity of every running bastion the manifest declares with `idleStop`: its Active SSM sessions
/// (one DescribeSessions each, concurrently), its in-use tag and this machine's tunnels through it
/// .why = an idle bastion is planned to stop, with the reason; one a colleague uses, or whose sessions cannot be
/// seen, is not
pub(crate) async fn read_activity(
    manifest: &Manifest,
    bastions: &BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    context: &ContextAwsApi,
) -> BTreeMap<String, BastionActivity> {
    let tunnels_dir = context.checked_tunnels_dir().ok();
    let watched: Vec<(DeclaredAwsEc2Instance, std::time::Duration)> = manifest
        .resources
        .iter()
        .filter_map(|declared| match &declared.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                let live = bastions.get(&Ec2InstanceRef::by_exid(&instance.exid))?;
                let running = live.status == Some(Ec2InstanceStatus::Running);
                Some((live.clone(), instance.idle_stop?.as_duration())).filter(|_| running)
            }
            _ => None,
        })
        .collect();
    let judged = watched.into_iter().map(|(bastion, idle_stop)| {
        let tunnels_dir = tunnels_dir.clone();
        async move {
            let instance_id = bastion.instance_id.clone().unwrap_or_default();
            let sessions = declastruct_aws::count_active_sessions(&instance_id, context).await;
            let local = tunnels_dir.as_deref().map_or(0, |dir| {
                declastruct_aws::internal::local_tunnels_through(dir, &instance_id)
            });
            let activity = declastruct_aws::judge_bastion_activity(
                &bastion,
                idle_stop,
                sessions.as_ref().map(|count| *count),
                local,
                chrono::Utc::now(),
            );
            (instance_id, activity)
        }
    });
    futures::future::join_all(judged)
        .await
        .into_iter()
        .collect()
}

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

/// .what = a bastion: declared, or only named by a tunnel that will start it
/// .why = a plan shows every change apply will make, a bastion started for a tunnel included
#[derive(Debug, Clone)]
pub struct ObservedBastion {
    /// how the plan names it: the declared `exid`, or the reference a tunnel uses
    pub reference: Ec2InstanceRef,
    /// as declared; `None` when only a tunnel names it
    pub declaration: Option<Ec2InstanceDeclaration>,
    /// the status apply sets: the declared one, or `running` when an OPEN tunnel goes through it
    pub desired_status: Option<DesiredInstanceStatus>,
    /// whether `desired_status` comes from a tunnel rather than from the declaration
    pub started_for_a_tunnel: bool,
    /// why `idleStop` stops it, or why it cannot tell
    pub idle_note: Option<String>,
    /// its activity in words (`idle 12m of 30m`, what keeps it busy), when it is declared with `idleStop`
    pub activity: Option<String>,
    /// as found
    pub live: DeclaredAwsEc2Instance,
}

impl Resource for ObservedBastion {
    fn address(&self) -> ResourceAddress {
        bastion_address(&self.reference)
    }

    fn desired(&self) -> Value {
        let mut desired = match &self.declaration {
            Some(declaration) => to_value(declaration),
            None => to_value(&self.reference),
        };
        if let (Value::Object(fields), Some(status)) = (&mut desired, self.desired_status) {
            fields.insert("status".into(), to_value(&status));
        }
        desired
    }

    fn remote(&self) -> Option<Value> {
        let mut live = to_value(&self.live);
        // idleStop is this manifest's setting, not the instance's: the same on both sides
        if let (Value::Object(fields), Some(idle_stop)) = (
            &mut live,
            self.declaration
                .as_ref()
                .and_then(|declaration| declaration.idle_stop),
        ) {
            fields.insert("idleStop".into(), to_value(&idle_stop));
        }
        Some(live)
    }

    fn note(&self, _action: Action) -> Option<String> {
        self.idle_note.clone()
    }
}
