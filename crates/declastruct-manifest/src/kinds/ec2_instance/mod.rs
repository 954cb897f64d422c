//! .what = the bastion kind, `DeclaredAwsEc2Instance`: its declaration, the bastions a manifest names read in one
//! batch, the plan of each bastion (declared, or only named by a tunnel that starts it; stopped when idle), its
//! documents, its apply and its status row
//! .why = apply starts or stops a bastion to match `status`, and an OPEN tunnel starts the bastion it goes through
//!
//! - `read`: the bastions named, in one batch; a missing one; the activity of those with `idleStop`
//! - `plan`: the plan of every bastion, declared or only started for a tunnel

mod plan;
mod read;

pub(crate) use plan::{PlanBastion, plan_bastions, stopping};
pub(crate) use read::{failure_at, read, read_activity, report_missing};

use declastruct_aws::{
    AwsError, ContextAwsApi, DeclaredAwsEc2Instance, DesiredInstanceStatus, Ec2InstanceRef,
    Ec2InstanceStatus, IdleDuration, set_ec2_instance_status,
};
use declastruct_engine::{Action, Resource, ResourceAddress};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Kind, to_value};
use crate::resources::{Assembly, FieldAt, References};

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
