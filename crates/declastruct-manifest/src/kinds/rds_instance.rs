//! .what = the DB instance kind, `DeclaredAwsRdsInstance`: its declaration, the instances a manifest names read in
//! one batch, its documents and its status row
//! .why = a read-only reference to a plain (non-Aurora) database: declastruct never creates or changes it, its plan
//! is always KEEP, and a tunnel into it is ordered after it

use std::collections::BTreeMap;

use declastruct_aws::internal::{closest_instance_names, get_rds_instances};
use declastruct_aws::{AwsError, ContextAwsApi, DeclaredAwsRdsInstance, RdsInstanceRef};
use declastruct_engine::{Resource, ResourceAddress};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Kind, to_value};
use crate::resources::{Assembly, FieldAt, Missing, Observed, References};

/// .what = a declared DB instance
/// .why = a read-only reference: declastruct never creates or changes databases
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RdsInstanceDeclaration {
    /// the DB instance identifier
    pub name: String,
}

/// .what = the address of a DB instance reference
/// .why = tunnels depend on declared instances by address
pub fn instance_address(reference: &RdsInstanceRef) -> ResourceAddress {
    ResourceAddress {
        class: RdsInstanceDeclaration::CLASS.into(),
        slug: reference.name.clone(),
    }
}

impl Kind for RdsInstanceDeclaration {
    const CLASS: &'static str = "DeclaredAwsRdsInstance";
    const NOUN: &'static str = "instance";
    type Observed = ObservedInstance;

    /// the instance's address: its name
    fn address(&self) -> ResourceAddress {
        instance_address(&RdsInstanceRef::by_name(&self.name))
    }

    fn references(&self, index: usize, references: &mut References) {
        let reference = RdsInstanceRef::by_name(&self.name);
        references.need(&reference).declared = true;
        references.add_instance(
            reference,
            FieldAt {
                resource: index,
                path: &["name"],
            },
        );
    }

    fn observe(&self, _index: usize, assembly: &mut Assembly<'_>) {
        let reference = RdsInstanceRef::by_name(&self.name);
        if let Some(found) = assembly.live.instances.get(&reference) {
            assembly.observed.push(Observed::Instance(ObservedInstance {
                declaration: self.clone(),
                live: found.clone(),
            }));
        }
    }

    /// a read-only reference: its plan is always KEEP
    async fn apply(
        _observed: &ObservedInstance,
        _context: &ContextAwsApi,
    ) -> Result<Option<String>, AwsError> {
        Ok(None)
    }

    fn status_row(instance: &ObservedInstance) -> Value {
        json!({
            "status": instance.live.status,
            "endpoint": instance.live.host,
            "port": instance.live.port,
            "engine": instance.live.engine,
        })
    }
}

/// .what = every DB instance the manifest names, in one DescribeDBInstances
/// .why = one call for all of them
pub(crate) async fn read(
    references: &References,
    context: &ContextAwsApi,
) -> Result<BTreeMap<RdsInstanceRef, DeclaredAwsRdsInstance>, AwsError> {
    let keys: Vec<RdsInstanceRef> = references
        .instances
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    get_rds_instances(&keys, context).await
}

/// .what = every named DB instance that does not exist (with the names closest to it, from one listing), and every
/// one that is a member of a cluster
/// .why = a typo is answered with what the user probably meant; a cluster's member is reached through its cluster
pub(crate) async fn report_missing(
    references: &References,
    found: &BTreeMap<RdsInstanceRef, DeclaredAwsRdsInstance>,
    missing: &mut Missing<'_>,
    context: &ContextAwsApi,
) {
    let instance_names: Vec<&str> = references
        .instances
        .iter()
        .filter(|(reference, _)| !found.contains_key(reference))
        .map(|(reference, _)| reference.name.as_str())
        .collect();
    let mut closest_of_instances = closest_instance_names(&instance_names, context)
        .await
        .unwrap_or_default()
        .into_iter();
    for (reference, at) in &references.instances {
        match found.get(reference) {
            None => {
                let error = AwsError::InstanceNotFound {
                    name: reference.name.clone(),
                    region: missing.region.clone(),
                    closest: closest_of_instances.next().unwrap_or_default(),
                };
                missing.gone(reference, at, error, "no such DB instance");
            }
            Some(found) => {
                if let Some(cluster) = &found.cluster {
                    let error = AwsError::InstanceInCluster {
                        name: found.name.clone(),
                        cluster: cluster.clone(),
                    };
                    missing.refused(at, error, "a member of a cluster");
                }
            }
        }
    }
}

/// .what = a declared DB instance, a read-only reference
/// .why = its plan is always KEEP
#[derive(Debug, Clone)]
pub struct ObservedInstance {
    /// as declared
    pub declaration: RdsInstanceDeclaration,
    /// as found
    pub live: DeclaredAwsRdsInstance,
}

impl Resource for ObservedInstance {
    fn address(&self) -> ResourceAddress {
        self.declaration.address()
    }

    fn desired(&self) -> Value {
        to_value(&self.declaration)
    }

    fn remote(&self) -> Option<Value> {
        Some(to_value(&self.live))
    }
}
