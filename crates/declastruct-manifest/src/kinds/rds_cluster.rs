//! .what = the cluster kind, `DeclaredAwsRdsCluster`: its declaration, the clusters and custom endpoints a manifest
//! names read in one batch each, its documents and its status row
//! .why = a read-only reference: declastruct never creates or changes clusters, its plan is always KEEP, and a
//! tunnel into it is ordered after it

use std::collections::BTreeMap;

use declastruct_aws::internal::{
    RdsClusterEndpoint, closest_cluster_names, get_rds_cluster_endpoints, get_rds_clusters,
};
use declastruct_aws::{AwsError, ContextAwsApi, DeclaredAwsRdsCluster, RdsClusterRef};
use declastruct_engine::{Resource, ResourceAddress};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Kind, to_value};
use crate::resources::{Assembly, FieldAt, Missing, Observed, References};

/// .what = a declared cluster
/// .why = a read-only reference: declastruct never creates or changes clusters
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RdsClusterDeclaration {
    /// the cluster identifier
    pub name: String,
}

/// .what = the address of a cluster reference
/// .why = tunnels depend on declared clusters by address
pub fn cluster_address(reference: &RdsClusterRef) -> ResourceAddress {
    ResourceAddress {
        class: RdsClusterDeclaration::CLASS.into(),
        slug: reference.name.clone(),
    }
}

impl Kind for RdsClusterDeclaration {
    const CLASS: &'static str = "DeclaredAwsRdsCluster";
    const NOUN: &'static str = "cluster";
    type Observed = ObservedCluster;

    /// the cluster's address: its name
    fn address(&self) -> ResourceAddress {
        ResourceAddress {
            class: Self::CLASS.into(),
            slug: self.name.clone(),
        }
    }

    fn references(&self, index: usize, references: &mut References) {
        let reference = RdsClusterRef::by_name(&self.name);
        references.need(&reference).declared = true;
        references.add_cluster(
            reference,
            FieldAt {
                resource: index,
                path: &["name"],
            },
        );
    }

    fn observe(&self, _index: usize, assembly: &mut Assembly<'_>) {
        let reference = RdsClusterRef::by_name(&self.name);
        if let Some(found) = assembly.live.clusters.get(&reference) {
            assembly.observed.push(Observed::Cluster(ObservedCluster {
                declaration: self.clone(),
                live: found.clone(),
            }));
        }
    }

    /// a read-only reference: its plan is always KEEP
    async fn apply(
        _observed: &ObservedCluster,
        _context: &ContextAwsApi,
    ) -> Result<Option<String>, AwsError> {
        Ok(None)
    }

    fn status_row(cluster: &ObservedCluster) -> Value {
        json!({
            "status": cluster.live.status,
            "writer": cluster.live.host.as_ref().map(|host| host.writer.clone()),
            "port": cluster.live.port,
            "engine": cluster.live.engine,
        })
    }
}

/// .what = every cluster the manifest names, in one DescribeDBClusters
/// .why = one call for all of them
pub(crate) async fn read(
    references: &References,
    context: &ContextAwsApi,
) -> Result<BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>, AwsError> {
    let keys: Vec<RdsClusterRef> = references
        .clusters
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    get_rds_clusters(&keys, context).await
}

/// .what = every custom cluster endpoint the manifest names, in one DescribeDBClusterEndpoints (none when it names
/// none)
/// .why = a tunnel into a custom endpoint is resolved from the batch, with no call of its own
pub(crate) async fn read_endpoints(
    references: &References,
    context: &ContextAwsApi,
) -> Result<BTreeMap<(RdsClusterRef, String), RdsClusterEndpoint>, AwsError> {
    let keys: Vec<(RdsClusterRef, String)> = references
        .endpoints
        .iter()
        .map(|(key, _)| key.clone())
        .collect();
    get_rds_cluster_endpoints(&keys, context).await
}

/// .what = every named cluster that does not exist, with the names closest to it (from one listing)
/// .why = a typo in a cluster's name is answered with what the user probably meant
pub(crate) async fn report_missing(
    references: &References,
    found: &BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>,
    missing: &mut Missing<'_>,
    context: &ContextAwsApi,
) {
    let missing_clusters: Vec<_> = references
        .clusters
        .iter()
        .filter(|(reference, _)| !found.contains_key(reference))
        .collect();
    let cluster_names: Vec<&str> = missing_clusters
        .iter()
        .map(|(reference, _)| reference.name.as_str())
        .collect();
    let mut closest_of_clusters = closest_cluster_names(&cluster_names, context)
        .await
        .unwrap_or_default()
        .into_iter();
    for (reference, at) in missing_clusters {
        let error = AwsError::ClusterNotFound {
            name: reference.name.clone(),
            region: missing.region.clone(),
            closest: closest_of_clusters.next().unwrap_or_default(),
        };
        missing.gone(reference, at, error, "no such cluster");
    }
}

/// .what = every named custom endpoint of an existing cluster that does not exist
/// .why = a cluster that is missing was said already
pub(crate) fn report_missing_endpoints(
    references: &References,
    clusters: &BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>,
    endpoints: &BTreeMap<(RdsClusterRef, String), RdsClusterEndpoint>,
    missing: &mut Missing<'_>,
) {
    for ((cluster, endpoint), at) in &references.endpoints {
        if clusters.contains_key(cluster)
            && !endpoints.contains_key(&(cluster.clone(), endpoint.clone()))
        {
            let error = AwsError::EndpointNotFound {
                cluster: cluster.name.clone(),
                endpoint: endpoint.clone(),
            };
            missing.gone(
                &(cluster.clone(), endpoint.clone()),
                at,
                error,
                "no such endpoint",
            );
        }
    }
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

impl Resource for ObservedCluster {
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
