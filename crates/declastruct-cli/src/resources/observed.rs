//! .what = each kind of observed resource: what is declared, what is live, and how the plan shows the difference
//! .why = the engine plans anything that implements `Resource`; each kind says here what "desired" means for it

use declastruct_aws::internal::VpcTunnelObservation;
use declastruct_aws::{
    DeclaredAwsEc2Instance, DeclaredAwsRdsCluster, DesiredInstanceStatus, Ec2InstanceRef,
    VpcTunnelStatus,
};
use declastruct_engine::{
    Action, Edge, Resource, ResourceAddress, project_onto, projection_equals, unified_difference,
};
use serde_json::{Value, json};

use crate::manifest::{
    Ec2InstanceDeclaration, RdsClusterDeclaration, VpcTunnelDeclaration, bastion_address,
};

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
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
    /// as found
    pub live: DeclaredAwsEc2Instance,
}

/// .what = a declared cluster, a read-only reference
/// .why = its plan is always KEEP
#[derive(Debug, Clone)]
pub struct ObservedCluster {
    /// as declared
    pub declaration: RdsClusterDeclaration,
    /// as found
    pub live: DeclaredAwsRdsCluster,
}

/// .what = a declared tunnel with its observation and both of its ends as found
/// .why = apply opens it without looking them up again
#[derive(Debug, Clone)]
pub struct ObservedTunnel {
    /// as declared
    pub declaration: VpcTunnelDeclaration,
    /// as observed
    pub observation: VpcTunnelObservation,
    /// its bastion as found
    pub bastion: DeclaredAwsEc2Instance,
    /// its cluster as found
    pub cluster: DeclaredAwsRdsCluster,
    /// ordering against its bastion and cluster
    pub edges: Vec<Edge>,
}

/// .what = one resource of the plan with what was observed of it live
/// .why = the unit the engine plans and apply executes
#[derive(Debug, Clone)]
pub enum Observed {
    /// a bastion
    Bastion(ObservedBastion),
    /// a cluster
    Cluster(ObservedCluster),
    /// a tunnel
    Tunnel(Box<ObservedTunnel>),
}

impl ObservedTunnel {
    /// .what = why a tunnel declared OPEN and observed OPEN does not serve, if it does not
    /// .why = such a tunnel is planned as an UPDATE that heals it, never as KEEP
    pub fn unhealthy_reason(&self) -> Option<String> {
        let health = self.observation.tunnel.health.as_ref()?;
        (self.declaration.status == VpcTunnelStatus::Open
            && self.observation.tunnel.status == Some(VpcTunnelStatus::Open)
            && !health.healthy)
            .then(|| {
                health
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into())
            })
    }
}

impl Resource for Observed {
    fn address(&self) -> ResourceAddress {
        match self {
            Self::Bastion(bastion) => bastion_address(&bastion.reference),
            Self::Cluster(cluster) => cluster.declaration.address(),
            Self::Tunnel(tunnel) => tunnel.declaration.address(),
        }
    }

    fn desired(&self) -> Value {
        match self {
            Self::Bastion(bastion) => {
                let mut desired = match &bastion.declaration {
                    Some(declaration) => to_value(declaration),
                    None => to_value(&bastion.reference),
                };
                if let (Value::Object(fields), Some(status)) =
                    (&mut desired, bastion.desired_status)
                {
                    fields.insert("status".into(), to_value(&status));
                }
                desired
            }
            Self::Cluster(cluster) => to_value(&cluster.declaration),
            Self::Tunnel(tunnel) => to_value(&tunnel.declaration),
        }
    }

    fn remote(&self) -> Option<Value> {
        Some(match self {
            Self::Bastion(bastion) => to_value(&bastion.live),
            Self::Cluster(cluster) => to_value(&cluster.live),
            Self::Tunnel(tunnel) => to_value(&tunnel.observation.tunnel),
        })
    }

    fn edges(&self) -> Vec<Edge> {
        match self {
            Self::Tunnel(tunnel) => tunnel.edges.clone(),
            _ => Vec::new(),
        }
    }

    fn action(&self, desired: &Value, remote: Option<&Value>) -> Action {
        if let Self::Tunnel(tunnel) = self
            && tunnel.unhealthy_reason().is_some()
        {
            return Action::Update;
        }
        match remote {
            None => Action::Create,
            Some(remote) if projection_equals(remote, desired) => Action::Keep,
            Some(_) => Action::Update,
        }
    }

    /// an unhealthy tunnel's difference shows its health, which the declared fields do not hold
    fn difference(
        &self,
        action: Action,
        desired: &Value,
        remote: Option<&Value>,
    ) -> Option<String> {
        if action == Action::Keep {
            return None;
        }
        let unhealthy = match self {
            Self::Tunnel(tunnel) => tunnel.unhealthy_reason(),
            _ => None,
        };
        match (unhealthy, remote) {
            (Some(reason), Some(remote)) => {
                let mut remote = project_onto(remote, desired);
                let mut desired = desired.clone();
                if let (Value::Object(remote), Value::Object(desired)) = (&mut remote, &mut desired)
                {
                    remote.insert("health".into(), json!(format!("unhealthy: {reason}")));
                    desired.insert("health".into(), json!("healthy"));
                }
                unified_difference(Some(&remote), &desired)
            }
            _ => unified_difference(remote, desired),
        }
    }
}
