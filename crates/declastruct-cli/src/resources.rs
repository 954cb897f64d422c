//! .what = the declared resources with their live state, as the engine's `Resource`s
//! .why = reads all of AWS in a few batched calls, then lets the engine plan every kind the same way

use std::collections::{BTreeMap, BTreeSet};

use declastruct_aws::internal::utils::{TunnelFiles, TunnelProcesses};
use declastruct_aws::internal::{
    VpcTunnelObservation, closest_cluster_names, get_ec2_instances, get_rds_clusters,
    inspect_vpc_tunnel,
};
use declastruct_aws::{
    AwsError, ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster, DesiredInstanceStatus,
    Ec2InstanceRef, RdsClusterRef,
};
use declastruct_engine::{Action, Edge, Resource, ResourceAddress, unified_difference};
use serde_json::Value;

use crate::located::Located;
use crate::manifest::{
    Ec2InstanceDeclaration, Manifest, RdsClusterDeclaration, ResourceDeclaration,
    VpcTunnelDeclaration, bastion_address, cluster_address,
};

/// .what = one declared resource with what was observed of it live
/// .why = the unit the engine plans and apply executes
#[derive(Debug, Clone)]
pub enum PlannedResource {
    /// a bastion
    Bastion {
        /// as declared
        declaration: Ec2InstanceDeclaration,
        /// as found
        live: DeclaredAwsEc2Instance,
    },
    /// a cluster
    Cluster {
        /// as declared
        declaration: RdsClusterDeclaration,
        /// as found
        live: DeclaredAwsRdsCluster,
    },
    /// a tunnel
    Tunnel {
        /// as declared
        declaration: VpcTunnelDeclaration,
        /// as observed
        observation: Box<VpcTunnelObservation>,
        /// its bastion as found
        bastion: DeclaredAwsEc2Instance,
        /// its cluster as found
        cluster: DeclaredAwsRdsCluster,
        /// ordering against its declared bastion and cluster
        edges: Vec<Edge>,
    },
}

impl PlannedResource {
    /// .what = the declaration this resource came from
    /// .why = addresses and apply
    pub fn declaration(&self) -> ResourceDeclaration {
        match self {
            Self::Bastion { declaration, .. } => {
                ResourceDeclaration::DeclaredAwsEc2Instance(declaration.clone())
            }
            Self::Cluster { declaration, .. } => {
                ResourceDeclaration::DeclaredAwsRdsCluster(declaration.clone())
            }
            Self::Tunnel { declaration, .. } => {
                ResourceDeclaration::DeclaredAwsVpcTunnel(declaration.clone())
            }
        }
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl Resource for PlannedResource {
    fn address(&self) -> ResourceAddress {
        match self {
            Self::Bastion { declaration, .. } => declaration.address(),
            Self::Cluster { declaration, .. } => declaration.address(),
            Self::Tunnel { declaration, .. } => declaration.address(),
        }
    }

    fn desired(&self) -> Value {
        match self {
            Self::Bastion { declaration, .. } => to_value(declaration),
            Self::Cluster { declaration, .. } => to_value(declaration),
            Self::Tunnel { declaration, .. } => to_value(declaration),
        }
    }

    fn remote(&self) -> Option<Value> {
        Some(match self {
            Self::Bastion { live, .. } => to_value(live),
            Self::Cluster { live, .. } => to_value(live),
            Self::Tunnel { observation, .. } => to_value(&observation.tunnel),
        })
    }

    fn edges(&self) -> Vec<Edge> {
        match self {
            Self::Tunnel { edges, .. } => edges.clone(),
            _ => Vec::new(),
        }
    }

    /// a tunnel declared OPEN whose process lives but does not serve is an UPDATE: apply heals it
    fn action(&self, desired: &Value, remote: Option<&Value>) -> Action {
        if self.unhealthy_reason().is_some() {
            return Action::Update;
        }
        match remote {
            None => Action::Create,
            Some(remote) if declastruct_engine::project_onto(remote, desired) == *desired => {
                Action::Keep
            }
            Some(_) => Action::Update,
        }
    }

    /// the unhealthy tunnel's difference shows its health, which the declared fields do not hold
    fn difference(
        &self,
        action: Action,
        desired: &Value,
        remote: Option<&Value>,
    ) -> Option<String> {
        if action == Action::Keep {
            return None;
        }
        match (self.unhealthy_reason(), remote) {
            (Some(reason), Some(remote)) => {
                let mut remote = declastruct_engine::project_onto(remote, desired);
                let mut desired = desired.clone();
                if let (Value::Object(remote), Value::Object(desired)) = (&mut remote, &mut desired)
                {
                    remote.insert(
                        "health".into(),
                        Value::String(format!("unhealthy: {reason}")),
                    );
                    desired.insert("health".into(), Value::String("healthy".into()));
                }
                unified_difference(Some(&remote), &desired)
            }
            _ => unified_difference(remote, desired),
        }
    }
}

impl PlannedResource {
    /// .what = why a tunnel declared OPEN and observed OPEN does not serve, if it does not
    /// .why = such a tunnel must be planned as an UPDATE that heals it, never as KEEP
    fn unhealthy_reason(&self) -> Option<String> {
        let Self::Tunnel {
            declaration,
            observation,
            ..
        } = self
        else {
            return None;
        };
        let health = observation.tunnel.health.as_ref()?;
        (declaration.status == declastruct_aws::VpcTunnelStatus::Open
            && observation.tunnel.status == Some(declastruct_aws::VpcTunnelStatus::Open)
            && !health.healthy)
            .then(|| {
                health
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into())
            })
    }
}

/// an error found while reading live state, pointed at the manifest where it can be
pub type LiveError = miette::Report;

/// .what = reads the live state of every declared resource: one DescribeInstances (two when some bastions are
/// referenced by id), one DescribeDBClusters, concurrently; then every tunnel, concurrently, with no AWS call
/// .why = a plan over a hundred tunnels costs a handful of AWS calls, not hundreds
pub async fn observe(
    manifest: &Manifest,
    context: &ContextAwsApi,
) -> Result<Vec<PlannedResource>, Vec<LiveError>> {
    let mut bastion_refs: Vec<(Ec2InstanceRef, usize, &[&str])> = Vec::new();
    let mut cluster_refs: Vec<(RdsClusterRef, usize, &[&str])> = Vec::new();
    for (index, resource) in manifest.resources.iter().enumerate() {
        match &resource.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                bastion_refs.push((Ec2InstanceRef::by_exid(&instance.exid), index, &["exid"]));
            }
            ResourceDeclaration::DeclaredAwsRdsCluster(cluster) => {
                cluster_refs.push((RdsClusterRef::by_name(&cluster.name), index, &["name"]));
            }
            ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => {
                bastion_refs.push((tunnel.via.bastion.clone(), index, &["via", "bastion"]));
                cluster_refs.push((tunnel.into.cluster.clone(), index, &["into", "cluster"]));
            }
        }
    }

    let at = |error: AwsError, index: usize, path: &[&str], label: &str| {
        miette::Report::new(Located {
            error,
            source: manifest.source.clone(),
            span: manifest.span_of(index, path),
            label: label.to_string(),
        })
    };
    let first_index = bastion_refs
        .first()
        .map(|(_, index, _)| *index)
        .or_else(|| cluster_refs.first().map(|(_, index, _)| *index))
        .unwrap_or(0);
    let bastion_keys: Vec<Ec2InstanceRef> = bastion_refs
        .iter()
        .map(|(reference, ..)| reference.clone())
        .collect();
    let cluster_keys: Vec<RdsClusterRef> = cluster_refs
        .iter()
        .map(|(reference, ..)| reference.clone())
        .collect();
    let (bastions, clusters) = futures::join!(
        get_ec2_instances(&bastion_keys, context),
        get_rds_clusters(&cluster_keys, context)
    );
    let mut errors = Vec::new();
    let bastions = bastions.unwrap_or_else(|error| {
        let culprit = match &error {
            AwsError::AmbiguousExid { exid, .. } => bastion_refs
                .iter()
                .find(|(reference, ..)| reference.key() == exid),
            _ => None,
        };
        match culprit {
            Some((_, index, path)) => {
                errors.push(at(error, *index, path, "more than one instance"))
            }
            None => errors.push(at(error, first_index, &[], "while reading this resource")),
        }
        BTreeMap::new()
    });
    let clusters = clusters.unwrap_or_else(|error| {
        if errors.is_empty() {
            errors.push(at(error, first_index, &[], "while reading this resource"));
        }
        BTreeMap::new()
    });
    if !errors.is_empty() {
        return Err(errors);
    }

    let region = context
        .region
        .clone()
        .unwrap_or_else(|| "the configured region".into());
    let mut reported: Vec<String> = Vec::new();
    for (reference, index, path) in &bastion_refs {
        if !bastions.contains_key(reference) && !reported.contains(&reference.to_string()) {
            reported.push(reference.to_string());
            errors.push(at(
                AwsError::BastionNotFound {
                    reference: reference.to_string(),
                    region: region.clone(),
                },
                *index,
                path,
                "no such instance",
            ));
        }
    }
    for (reference, index, path) in &cluster_refs {
        if !clusters.contains_key(reference) && !reported.contains(&reference.to_string()) {
            reported.push(reference.to_string());
            let closest = closest_cluster_names(&reference.name, context)
                .await
                .unwrap_or_default();
            errors.push(at(
                AwsError::ClusterNotFound {
                    name: reference.name.clone(),
                    region: region.clone(),
                    closest,
                },
                *index,
                path,
                "no such cluster",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    // one pass over /proc finds every process of ours, whatever state the tunnel files are in
    let processes = match context.checked_tunnels_dir().and_then(|dir| {
        TunnelFiles::check_dir_readable(&dir)?;
        Ok(TunnelProcesses::scan(&dir))
    }) {
        Ok(processes) => processes,
        Err(error) => return Err(vec![miette::Report::new(error)]),
    };
    let observations =
        futures::future::join_all(
            manifest.resources.iter().filter_map(|resource| {
                let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &resource.declaration
                else {
                    return None;
                };
                let bastion = bastions.get(&tunnel.via.bastion)?;
                let cluster = clusters.get(&tunnel.into.cluster)?;
                let tunnel = tunnel.to_domain();
                let processes = &processes;
                Some(async move {
                    inspect_vpc_tunnel(&tunnel, bastion, cluster, processes, context).await
                })
            }),
        )
        .await;
    let observations: Vec<VpcTunnelObservation> = observations
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|error| vec![miette::Report::new(error)])?;
    Ok(assemble(manifest, &bastions, &clusters, observations))
}

/// .what = the planned resources from the manifest, the live bastions and clusters, and one observation per
/// tunnel in declaration order; with the ordering edges between them
/// .why = pure, so that the plan of any manifest can be computed and measured against an in-memory world
pub fn assemble(
    manifest: &Manifest,
    bastions: &BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    clusters: &BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>,
    observations: Vec<VpcTunnelObservation>,
) -> Vec<PlannedResource> {
    let mut declared_bastions: BTreeMap<ResourceAddress, Option<DesiredInstanceStatus>> =
        BTreeMap::new();
    let mut declared_clusters: BTreeSet<ResourceAddress> = BTreeSet::new();
    for resource in &manifest.resources {
        match &resource.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                declared_bastions.insert(resource.declaration.address(), instance.status);
            }
            ResourceDeclaration::DeclaredAwsRdsCluster(_) => {
                declared_clusters.insert(resource.declaration.address());
            }
            ResourceDeclaration::DeclaredAwsVpcTunnel(_) => {}
        }
    }

    let mut observations = observations.into_iter();
    let mut planned = Vec::with_capacity(manifest.resources.len());
    for resource in &manifest.resources {
        let next = match &resource.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => bastions
                .get(&Ec2InstanceRef::by_exid(&instance.exid))
                .map(|live| PlannedResource::Bastion {
                    declaration: instance.clone(),
                    live: live.clone(),
                }),
            ResourceDeclaration::DeclaredAwsRdsCluster(cluster) => clusters
                .get(&RdsClusterRef::by_name(&cluster.name))
                .map(|live| PlannedResource::Cluster {
                    declaration: cluster.clone(),
                    live: live.clone(),
                }),
            ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => {
                let (Some(bastion), Some(cluster), Some(observation)) = (
                    bastions.get(&tunnel.via.bastion),
                    clusters.get(&tunnel.into.cluster),
                    observations.next(),
                ) else {
                    continue;
                };
                let address = resource.declaration.address();
                let mut edges = Vec::new();
                let bastion_at = bastion_address(&tunnel.via.bastion);
                if let Some(status) = declared_bastions.get(&bastion_at) {
                    // a tunnel closes before its bastion stops, and opens after it starts
                    edges.push(if *status == Some(DesiredInstanceStatus::Stopped) {
                        Edge {
                            before: address.clone(),
                            after: bastion_at,
                        }
                    } else {
                        Edge {
                            before: bastion_at,
                            after: address.clone(),
                        }
                    });
                }
                let cluster_at = cluster_address(&tunnel.into.cluster);
                if declared_clusters.contains(&cluster_at) {
                    edges.push(Edge {
                        before: cluster_at,
                        after: address,
                    });
                }
                Some(PlannedResource::Tunnel {
                    declaration: tunnel.clone(),
                    observation: Box::new(observation),
                    bastion: bastion.clone(),
                    cluster: cluster.clone(),
                    edges,
                })
            }
        };
        planned.extend(next);
    }
    planned
}
