//! .what = where a tunnel's far end resolves to: a cluster's writer, reader or custom endpoint, an instance's
//! endpoint, or a declared host, each with its port and engine
//! .why = the tunnel's identity, its session command and its health probe are made of the resolved host, port and
//! engine; a far end that resolves differently is another identity

use std::collections::BTreeMap;

use crate::domain_objects::{
    ClusterEndpoint, ContextAwsApi, DeclaredAwsRdsCluster, DeclaredAwsRdsInstance, EndpointRole,
    RdsClusterRef, RdsInstanceRef, VpcTunnelInto,
};
use crate::domain_operations::rds_cluster::get_rds_cluster;
use crate::domain_operations::rds_cluster::{RdsClusterEndpoint, get_rds_cluster_endpoints};
use crate::domain_operations::rds_instance::get_rds_instance;
use crate::error::AwsError;

/// .what = a tunnel's far end, resolved
/// .why = everything the open, the identity and the probe need, whatever kind of target it is
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    /// the host the bastion forwards to
    pub host: String,
    /// its port
    pub port: u16,
    /// the engine, for the health probe (e.g. `aurora-postgresql`, `postgres`, `redis`)
    pub engine: Option<String>,
    /// the cluster's or instance's status, when AWS reports one
    pub status: Option<String>,
    /// what it is, in words, e.g. `ahbodedb (reader)`
    pub label: String,
    /// what kind of target it is
    pub kind: TargetKind,
    /// the cluster's or instance's RDS-managed master user secret, when RDS manages it
    pub master_user_secret_arn: Option<String>,
}

/// .what = the kinds of far end
/// .why = a stopped cluster and a stopped instance are started with different commands
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// an Aurora cluster, by identifier
    Cluster(String),
    /// an RDS DB instance, by identifier
    Instance(String),
    /// a declared host
    Host,
}

/// .what = the live objects a target resolves against, found in batched reads
/// .why = `plan` resolves a hundred tunnels with no call of its own
#[derive(Debug, Clone, Copy)]
pub struct TargetLookups<'a> {
    /// clusters, by reference
    pub clusters: &'a BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>,
    /// instances, by reference
    pub instances: &'a BTreeMap<RdsInstanceRef, DeclaredAwsRdsInstance>,
    /// custom cluster endpoints, by cluster and endpoint name
    pub endpoints: &'a BTreeMap<(RdsClusterRef, String), RdsClusterEndpoint>,
    /// the region, for messages
    pub region: &'a str,
}

/// .what = resolves a tunnel's `into` against what was found; an error says what is missing and what to do
/// .why = one place decides what each kind of target means
pub fn resolve_tunnel_target(
    into: &VpcTunnelInto,
    lookups: TargetLookups<'_>,
) -> Result<TunnelTarget, AwsError> {
    match into {
        VpcTunnelInto::Cluster { cluster, endpoint } => {
            let found = lookups
                .clusters
                .get(cluster)
                .ok_or_else(|| AwsError::ClusterNotFound {
                    name: cluster.name.clone(),
                    region: lookups.region.to_string(),
                    closest: Vec::new(),
                })?;
            let not_ready = || AwsError::ClusterNotReady {
                name: found.name.clone(),
                status: found.status.clone().unwrap_or_else(|| "unknown".into()),
            };
            let hosts = found.host.as_ref().ok_or_else(not_ready)?;
            let port = found.port.ok_or_else(not_ready)?;
            let endpoint = endpoint
                .clone()
                .unwrap_or(ClusterEndpoint::Role(EndpointRole::Writer));
            let host = match &endpoint {
                ClusterEndpoint::Role(EndpointRole::Writer) => hosts.writer.clone(),
                ClusterEndpoint::Role(EndpointRole::Reader) => hosts.reader.clone(),
                ClusterEndpoint::Custom(name) => lookups
                    .endpoints
                    .get(&(cluster.clone(), name.clone()))
                    .map(|custom| custom.address.clone())
                    .ok_or_else(|| AwsError::EndpointNotFound {
                        cluster: found.name.clone(),
                        endpoint: name.clone(),
                    })?,
            };
            Ok(TunnelTarget {
                host,
                port,
                engine: found.engine.clone(),
                status: found.status.clone(),
                label: format!("{} ({})", found.name, endpoint.as_str()),
                kind: TargetKind::Cluster(found.name.clone()),
                master_user_secret_arn: found.master_user_secret_arn.clone(),
            })
        }
        VpcTunnelInto::Instance { instance } => {
            let found =
                lookups
                    .instances
                    .get(instance)
                    .ok_or_else(|| AwsError::InstanceNotFound {
                        name: instance.name.clone(),
                        region: lookups.region.to_string(),
                        closest: Vec::new(),
                    })?;
            if let Some(cluster) = &found.cluster {
                return Err(AwsError::InstanceInCluster {
                    name: found.name.clone(),
                    cluster: cluster.clone(),
                });
            }
            let not_ready = || AwsError::InstanceNotReady {
                name: found.name.clone(),
                status: found.status.clone().unwrap_or_else(|| "unknown".into()),
            };
            Ok(TunnelTarget {
                host: found.host.clone().ok_or_else(not_ready)?,
                port: found.port.ok_or_else(not_ready)?,
                engine: found.engine.clone(),
                status: found.status.clone(),
                label: found.name.clone(),
                kind: TargetKind::Instance(found.name.clone()),
                master_user_secret_arn: found.master_user_secret_arn.clone(),
            })
        }
        VpcTunnelInto::Host { host, port, engine } => Ok(TunnelTarget {
            host: host.clone(),
            port: *port,
            engine: engine.map(|engine| engine.as_str().to_string()),
            status: None,
            label: format!("{host}:{port}"),
            kind: TargetKind::Host,
            master_user_secret_arn: None,
        }),
    }
}

/// .what = looks up and resolves one tunnel's far end: the cluster (and its custom endpoint), or the instance
/// .why = the SDK's `get_vpc_tunnel` and `set_vpc_tunnel` name one tunnel at a time
pub async fn get_tunnel_target(
    into: &VpcTunnelInto,
    context: &ContextAwsApi,
) -> Result<TunnelTarget, AwsError> {
    let mut clusters = BTreeMap::new();
    let mut instances = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    match into {
        VpcTunnelInto::Cluster { cluster, endpoint } => {
            if let Some(found) = get_rds_cluster(cluster, context).await? {
                clusters.insert(cluster.clone(), found);
            }
            if let Some(ClusterEndpoint::Custom(name)) = endpoint {
                endpoints =
                    get_rds_cluster_endpoints(&[(cluster.clone(), name.clone())], context).await?;
            }
        }
        VpcTunnelInto::Instance { instance } => {
            if let Some(found) = get_rds_instance(instance, context).await? {
                instances.insert(instance.clone(), found);
            }
        }
        VpcTunnelInto::Host { .. } => {}
    }
    let region = context.region.clone().unwrap_or_default();
    resolve_tunnel_target(
        into,
        TargetLookups {
            clusters: &clusters,
            instances: &instances,
            endpoints: &endpoints,
            region: &region,
        },
    )
}
