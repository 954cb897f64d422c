//! .what = one resource of the plan, whatever its kind: the engine's `Resource`, applied and shown through its
//! kind
//! .why = the engine plans, `apply` runs and `status` shows a list of resources of every kind; each kind says in
//! its own module what its documents, its change and its row are

use declastruct_aws::{AwsError, ContextAwsApi};
use declastruct_engine::{Action, Edge, Resource, ResourceAddress};
use serde_json::{Value, json};

use crate::kinds::{
    Ec2InstanceDeclaration, Kind, ObservedBastion, ObservedCluster, ObservedInstance,
    ObservedTunnel, RdsClusterDeclaration, RdsInstanceDeclaration, RemovedTunnel,
    VpcTunnelDeclaration, vpc_tunnel,
};

/// .what = one resource of the plan with what was observed of it live
/// .why = the unit the engine plans and apply executes
#[derive(Debug, Clone)]
pub enum Observed {
    /// a bastion
    Bastion(ObservedBastion),
    /// a cluster
    Cluster(ObservedCluster),
    /// a DB instance
    Instance(ObservedInstance),
    /// a tunnel
    Tunnel(Box<ObservedTunnel>),
    /// a tunnel the manifest holds and no longer declares, or declares CLOSED while its ends are gone
    Removed(Box<RemovedTunnel>),
}

/// `$body` with `$resource` bound to the resource of whichever kind `$observed` holds
macro_rules! each {
    ($observed:expr, $resource:ident => $body:expr) => {
        match $observed {
            Observed::Bastion($resource) => $body,
            Observed::Cluster($resource) => $body,
            Observed::Instance($resource) => $body,
            Observed::Tunnel($resource) => $body,
            Observed::Removed($resource) => $body,
        }
    };
}

impl Observed {
    /// .what = whether a KEEP of this resource still lets go of this manifest's hold: a tunnel declared CLOSED, or
    /// no longer declared, that others keep open
    /// .why = apply releases the hold, so that the tunnel closes when the others let go
    pub fn releases_when_kept(&self) -> bool {
        match self {
            Self::Removed(removed) => removed.releases_when_kept(),
            Self::Tunnel(tunnel) => tunnel.releases_when_kept(),
            _ => false,
        }
    }

    /// .what = applies this resource's change through its kind; what a person should know beside "done"
    /// .why = `apply` runs every change the same way, whatever its kind
    pub async fn apply(&self, context: &ContextAwsApi) -> Result<Option<String>, AwsError> {
        match self {
            Self::Bastion(bastion) => Ec2InstanceDeclaration::apply(bastion, context).await,
            Self::Cluster(cluster) => RdsClusterDeclaration::apply(cluster, context).await,
            Self::Instance(instance) => RdsInstanceDeclaration::apply(instance, context).await,
            Self::Tunnel(tunnel) => VpcTunnelDeclaration::apply(tunnel, context).await,
            Self::Removed(removed) => vpc_tunnel::apply_removed(removed, context).await,
        }
    }

    /// .what = the resource as a row of `status`: its class and slug, then its kind's fields
    /// .why = `status` and `status --json` show every kind the same way
    pub fn status_row(&self) -> Value {
        let fields = match self {
            Self::Bastion(bastion) => Ec2InstanceDeclaration::status_row(bastion),
            Self::Cluster(cluster) => RdsClusterDeclaration::status_row(cluster),
            Self::Instance(instance) => RdsInstanceDeclaration::status_row(instance),
            Self::Tunnel(tunnel) => VpcTunnelDeclaration::status_row(tunnel),
            Self::Removed(removed) => vpc_tunnel::removed_status_row(removed),
        };
        with_address(&self.address(), fields)
    }
}

/// .what = a status row: `class` and `slug` first, then `fields`
/// .why = every row of `status` starts with the resource's address, whatever shows it
pub fn with_address(address: &ResourceAddress, mut fields: Value) -> Value {
    let base = json!({"class": address.class, "slug": address.slug});
    if let (Value::Object(fields), Value::Object(base)) = (&mut fields, base) {
        for (key, value) in base.into_iter().rev() {
            fields.shift_insert(0, key, value);
        }
    }
    fields
}

impl Resource for Observed {
    fn address(&self) -> ResourceAddress {
        each!(self, resource => resource.address())
    }

    fn desired(&self) -> Value {
        each!(self, resource => resource.desired())
    }

    fn remote(&self) -> Option<Value> {
        each!(self, resource => resource.remote())
    }

    fn edges(&self) -> Vec<Edge> {
        each!(self, resource => resource.edges())
    }

    fn action(&self, desired: &Value, remote: Option<&Value>) -> Action {
        each!(self, resource => resource.action(desired, remote))
    }

    fn note(&self, action: Action) -> Option<String> {
        each!(self, resource => resource.note(action))
    }

    fn difference(
        &self,
        action: Action,
        desired: &Value,
        remote: Option<&Value>,
    ) -> Option<String> {
        each!(self, resource => resource.difference(action, desired, remote))
    }
}
