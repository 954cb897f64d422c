//! .what = the live state a manifest refers to: its bastions and clusters from AWS in a few batched calls, and
//! every process of ours from one pass over /proc
//! .why = a plan over a hundred tunnels costs a handful of AWS calls, not hundreds; each lookup is keyed by the
//! reference that asked for it, and remembers where in the manifest it was asked, for errors

use std::collections::BTreeMap;

use declastruct_aws::internal::{
    RdsClusterEndpoint, TargetLookups, closest_cluster_names, closest_exids,
    closest_instance_names, get_ec2_instances, get_rds_cluster_endpoints, get_rds_clusters,
    get_rds_instances,
};
use declastruct_aws::{
    AwsError, ClusterEndpoint, ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster,
    DeclaredAwsRdsInstance, Ec2InstanceRef, RdsClusterRef, RdsInstanceRef, VpcTunnelInto,
};
use declastruct_tunnel::{RecordedTunnel, TunnelFiles, TunnelProcesses};

use crate::located::Located;
use crate::manifest::{Manifest, ResourceDeclaration};

/// .what = where in the manifest a reference was written: the resource's index and the field's path
/// .why = an error found while reading AWS points at the line that caused it
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldAt {
    /// the resource's position in `resources`
    pub resource: usize,
    /// the field within it, e.g. `["via", "bastion"]`
    pub path: &'static [&'static str],
}

impl FieldAt {
    /// .what = `error`, pointed at this field of `manifest`
    /// .why = every live error is reported where the user can fix it
    pub fn locate(&self, manifest: &Manifest, error: AwsError, label: &str) -> miette::Report {
        miette::Report::new(Located {
            error,
            source: manifest.source.clone(),
            span: manifest.span_of(self.resource, self.path),
            label: label.to_string(),
            warning: false,
        })
    }

    /// .what = `error` as a warning pointed at this field: the command goes on
    /// .why = a bastion or cluster that is gone, while only CLOSED tunnels name it, stops nothing
    pub fn warn(&self, manifest: &Manifest, error: AwsError, label: &str) -> miette::Report {
        miette::Report::new(Located {
            error,
            source: manifest.source.clone(),
            span: manifest.span_of(self.resource, self.path),
            label: label.to_string(),
            warning: true,
        })
    }
}

/// .what = every bastion, cluster, instance and custom endpoint the manifest names, each with the first place
/// that names it
/// .why = one batched lookup for each kind, and a located error for each one that is missing
#[derive(Debug, Default)]
pub struct References {
    /// the bastions, in the order first named
    pub bastions: Vec<(Ec2InstanceRef, FieldAt)>,
    /// the clusters, in the order first named
    pub clusters: Vec<(RdsClusterRef, FieldAt)>,
    /// the DB instances, in the order first named
    pub instances: Vec<(RdsInstanceRef, FieldAt)>,
    /// the custom cluster endpoints, by cluster and endpoint name
    pub endpoints: Vec<((RdsClusterRef, String), FieldAt)>,
    /// what needs each reference to exist, by its key (`need_key`)
    needs: std::collections::HashMap<String, Need>,
}

/// .what = what needs a referenced bastion, cluster or instance to exist
/// .why = a tunnel declared CLOSED whose bastion was terminated or whose cluster was deleted can still be closed
/// (by its record); only what must act on a reference (an OPEN tunnel, a bastion declared running, a declaration
/// no CLOSED tunnel explains) makes its absence an error
#[derive(Debug, Default, Clone, Copy)]
struct Need {
    /// an OPEN tunnel names it
    open: bool,
    /// a CLOSED tunnel names it
    closed: bool,
    /// a declaration acts on it (a bastion declared `running`), or is only that declaration
    declared: bool,
}

impl Need {
    fn required(self) -> bool {
        self.open || (self.declared && !self.closed)
    }
}

fn need_key(reference: &impl std::fmt::Debug) -> String {
    format!("{reference:?}")
}

impl References {
    /// .what = the references of every declared resource
    /// .why = declared bastions and clusters are looked up by their keys, tunnels by what they name
    pub fn of(manifest: &Manifest) -> Self {
        let mut references = Self::default();
        for (resource, declared) in manifest.resources.iter().enumerate() {
            let at = |path| FieldAt { resource, path };
            match &declared.declaration {
                ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                    let reference = Ec2InstanceRef::by_exid(&instance.exid);
                    // a bastion declared running must exist; one declared stopped, or without a status, and
                    // named only by CLOSED tunnels, may be gone
                    let need = references.need(&reference);
                    need.declared = true;
                    if instance.status == Some(declastruct_aws::DesiredInstanceStatus::Running) {
                        need.open = true;
                    }
                    references.add_bastion(reference, at(&["exid"]));
                }
                ResourceDeclaration::DeclaredAwsRdsCluster(cluster) => {
                    let reference = RdsClusterRef::by_name(&cluster.name);
                    references.need(&reference).declared = true;
                    references.add_cluster(reference, at(&["name"]));
                }
                ResourceDeclaration::DeclaredAwsRdsInstance(instance) => {
                    let reference = RdsInstanceRef::by_name(&instance.name);
                    references.need(&reference).declared = true;
                    references.add(Kind::Instance(reference), at(&["name"]));
                }
                ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => {
                    let open = tunnel.status == declastruct_aws::VpcTunnelStatus::Open;
                    let mut uses = |key: String| {
                        let need = references.needs.entry(key).or_default();
                        if open {
                            need.open = true;
                        } else {
                            need.closed = true;
                        }
                    };
                    uses(need_key(&tunnel.via.bastion));
                    match &tunnel.into {
                        VpcTunnelInto::Cluster { cluster, endpoint } => {
                            uses(need_key(cluster));
                            if let Some(ClusterEndpoint::Custom(name)) = endpoint {
                                uses(need_key(&(cluster.clone(), name.clone())));
                            }
                        }
                        VpcTunnelInto::Instance { instance } => uses(need_key(instance)),
                        VpcTunnelInto::Host { .. } => {}
                    }
                    references.add_bastion(tunnel.via.bastion.clone(), at(&["via", "bastion"]));
                    match &tunnel.into {
                        VpcTunnelInto::Cluster { cluster, endpoint } => {
                            references.add_cluster(cluster.clone(), at(&["into", "cluster"]));
                            if let Some(ClusterEndpoint::Custom(name)) = endpoint {
                                references.add(
                                    Kind::Endpoint((cluster.clone(), name.clone())),
                                    at(&["into", "endpoint"]),
                                );
                            }
                        }
                        VpcTunnelInto::Instance { instance } => {
                            references
                                .add(Kind::Instance(instance.clone()), at(&["into", "instance"]));
                        }
                        // a host needs no AWS lookup
                        VpcTunnelInto::Host { .. } => {}
                    }
                }
            }
        }
        references
    }

    fn need(&mut self, reference: &impl std::fmt::Debug) -> &mut Need {
        self.needs.entry(need_key(reference)).or_default()
    }

    /// .what = whether a missing `reference` is an error: something must act on it
    /// .why = otherwise its absence is a warning, and the tunnels naming it are closed by their records
    pub fn is_required(&self, reference: &impl std::fmt::Debug) -> bool {
        self.needs
            .get(&need_key(reference))
            .is_none_or(|need| need.required())
    }

    fn add_bastion(&mut self, reference: Ec2InstanceRef, at: FieldAt) {
        if !self.bastions.iter().any(|(known, _)| *known == reference) {
            self.bastions.push((reference, at));
        }
    }

    fn add_cluster(&mut self, reference: RdsClusterRef, at: FieldAt) {
        if !self.clusters.iter().any(|(known, _)| *known == reference) {
            self.clusters.push((reference, at));
        }
    }

    fn add(&mut self, kind: Kind, at: FieldAt) {
        match kind {
            Kind::Instance(reference) => {
                if !self.instances.iter().any(|(known, _)| *known == reference) {
                    self.instances.push((reference, at));
                }
            }
            Kind::Endpoint(key) => {
                if !self.endpoints.iter().any(|(known, _)| *known == key) {
                    self.endpoints.push((key, at));
                }
            }
        }
    }

    /// .what = where the manifest first names `reference`
    /// .why = errors about a bastion point at it
    pub fn bastion_at(&self, reference: &Ec2InstanceRef) -> Option<FieldAt> {
        self.bastions
            .iter()
            .find(|(known, _)| known == reference)
            .map(|(_, at)| *at)
    }
}

/// the references that are not bastions or clusters
enum Kind {
    Instance(RdsInstanceRef),
    Endpoint((RdsClusterRef, String)),
}

/// .what = what AWS and this machine say about everything the manifest names
/// .why = the observed resources are assembled from it, with no further call
#[derive(Debug, Default)]
pub struct LiveState {
    /// every named bastion that exists, by the reference that named it
    pub bastions: BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    /// every named cluster that exists, by the reference that named it
    pub clusters: BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>,
    /// every named DB instance that exists, by the reference that named it
    pub instances: BTreeMap<RdsInstanceRef, DeclaredAwsRdsInstance>,
    /// every named custom cluster endpoint that exists, by cluster and endpoint name
    pub endpoints: BTreeMap<(RdsClusterRef, String), RdsClusterEndpoint>,
    /// every live process of every tunnel of the state folder
    pub processes: TunnelProcesses,
    /// every tunnel recorded in the state folder, with its record or what is wrong with it
    pub records: Vec<RecordedTunnel<declastruct_aws::DeclaredAwsVpcTunnel>>,
    /// the manifest environment now planning: the tunnels it holds are its own to release, destroy or replace
    pub holder: Option<declastruct_aws::TunnelHolder>,
    /// what is missing but needed by nothing (a bastion only CLOSED tunnels name), located in the manifest
    pub warnings: Vec<miette::Report>,
    /// each running bastion declared with `idleStop`, by instance id: busy, idle, waiting or unknown
    pub activity: BTreeMap<String, declastruct_aws::BastionActivity>,
}

/// .what = the processes of every tunnel of the state folder, from one pass over /proc, and every record
/// .why = they need no AWS: `status` shows them even when AWS cannot be reached; the records say which tunnels a
/// manifest opened
pub fn read_local_tunnels(
    context: &ContextAwsApi,
) -> Result<
    (
        TunnelProcesses,
        Vec<RecordedTunnel<declastruct_aws::DeclaredAwsVpcTunnel>>,
    ),
    AwsError,
> {
    let dir = context.checked_tunnels_dir()?;
    let records = TunnelFiles::recorded_in::<declastruct_aws::DeclaredAwsVpcTunnel>(&dir)?;
    Ok((TunnelProcesses::scan(&dir), records))
}

/// .what = reads the live state: all bastions in one DescribeInstances (two when some are named by id), all
/// clusters in one DescribeDBClusters, all instances in one DescribeDBInstances, all custom endpoints in one
/// DescribeDBClusterEndpoints, concurrently (a call for a kind the manifest does not name is not made); every
/// process of ours from /proc
/// .why = every missing bastion, cluster or instance is reported at once, each at the line that names it
pub async fn read_live_state(
    manifest: &Manifest,
    references: &References,
    context: &ContextAwsApi,
) -> Result<LiveState, Vec<miette::Report>> {
    let first = FieldAt {
        resource: 0,
        path: &[],
    };
    let keys = |list: &[(Ec2InstanceRef, FieldAt)]| -> Vec<Ec2InstanceRef> {
        list.iter()
            .map(|(reference, _)| reference.clone())
            .collect()
    };
    let bastion_keys = keys(&references.bastions);
    let cluster_keys: Vec<RdsClusterRef> = references
        .clusters
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    let instance_keys: Vec<RdsInstanceRef> = references
        .instances
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    let endpoint_keys: Vec<(RdsClusterRef, String)> = references
        .endpoints
        .iter()
        .map(|(key, _)| key.clone())
        .collect();
    let (bastions, clusters, instances, endpoints) = futures::join!(
        get_ec2_instances(&bastion_keys, context),
        get_rds_clusters(&cluster_keys, context),
        get_rds_instances(&instance_keys, context),
        get_rds_cluster_endpoints(&endpoint_keys, context)
    );
    let mut errors = Vec::new();
    let bastions = bastions.unwrap_or_else(|error| {
        let at = match &error {
            AwsError::AmbiguousExid { exid, .. } => references
                .bastions
                .iter()
                .find(|(reference, _)| reference.key() == exid)
                .map(|(_, at)| (*at, "more than one instance")),
            _ => None,
        };
        let (at, label) = at.unwrap_or((first, "while reading this resource"));
        errors.push(at.locate(manifest, error, label));
        BTreeMap::new()
    });
    let mut other_failure = |error: AwsError| {
        if errors.is_empty() {
            errors.push(first.locate(manifest, error, "while reading this resource"));
        }
    };
    let clusters = clusters.unwrap_or_else(|error| {
        other_failure(error);
        BTreeMap::new()
    });
    let instances = instances.unwrap_or_else(|error| {
        other_failure(error);
        BTreeMap::new()
    });
    let endpoints = endpoints.unwrap_or_else(|error| {
        other_failure(error);
        BTreeMap::new()
    });
    if !errors.is_empty() {
        return Err(errors);
    }

    let region = context
        .region
        .clone()
        .unwrap_or_else(|| "the configured region".into());
    let mut warnings = Vec::new();
    // missing: an error when something must act on it; a warning when only CLOSED tunnels name it
    let mut missing: Vec<(bool, miette::Report)> = Vec::new();
    let classify = |reference: &dyn std::fmt::Debug, at: &FieldAt, error: AwsError, label: &str| {
        if references.is_required(&reference) {
            (true, at.locate(manifest, error, label))
        } else {
            (
                false,
                at.warn(
                    manifest,
                    error,
                    &format!(
                        "{label}: only CLOSED tunnels name it, and they are closed by their records"
                    ),
                ),
            )
        }
    };
    // what the user probably meant, from one listing a kind however many of it are missing
    let missing_bastions: Vec<_> = references
        .bastions
        .iter()
        .filter(|(reference, _)| !bastions.contains_key(reference))
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
            region: region.clone(),
            closest,
        };
        missing.push(classify(reference, at, error, "no such instance"));
    }
    let missing_clusters: Vec<_> = references
        .clusters
        .iter()
        .filter(|(reference, _)| !clusters.contains_key(reference))
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
            region: region.clone(),
            closest: closest_of_clusters.next().unwrap_or_default(),
        };
        missing.push(classify(reference, at, error, "no such cluster"));
    }
    let instance_names: Vec<&str> = references
        .instances
        .iter()
        .filter(|(reference, _)| !instances.contains_key(reference))
        .map(|(reference, _)| reference.name.as_str())
        .collect();
    let mut closest_of_instances = closest_instance_names(&instance_names, context)
        .await
        .unwrap_or_default()
        .into_iter();
    for (reference, at) in &references.instances {
        match instances.get(reference) {
            None => {
                let error = AwsError::InstanceNotFound {
                    name: reference.name.clone(),
                    region: region.clone(),
                    closest: closest_of_instances.next().unwrap_or_default(),
                };
                missing.push(classify(reference, at, error, "no such DB instance"));
            }
            Some(found) => {
                if let Some(cluster) = &found.cluster {
                    let error = AwsError::InstanceInCluster {
                        name: found.name.clone(),
                        cluster: cluster.clone(),
                    };
                    missing.push((true, at.locate(manifest, error, "a member of a cluster")));
                }
            }
        }
    }
    for ((cluster, endpoint), at) in &references.endpoints {
        if clusters.contains_key(cluster)
            && !endpoints.contains_key(&(cluster.clone(), endpoint.clone()))
        {
            let error = AwsError::EndpointNotFound {
                cluster: cluster.name.clone(),
                endpoint: endpoint.clone(),
            };
            missing.push(classify(
                &(cluster.clone(), endpoint.clone()),
                at,
                error,
                "no such endpoint",
            ));
        }
    }
    for (is_error, report) in missing {
        if is_error {
            errors.push(report);
        } else {
            warnings.push(report);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (processes, records) =
        read_local_tunnels(context).map_err(|error| vec![miette::Report::new(error)])?;
    let activity = read_bastion_activity(manifest, &bastions, context).await;
    Ok(LiveState {
        bastions,
        clusters,
        instances,
        endpoints,
        processes,
        records,
        holder: context.holder.clone(),
        warnings,
        activity,
    })
}

/// .what = the activity of every running bastion the manifest declares with `idleStop`: its Active SSM sessions
/// (one DescribeSessions each, concurrently), its in-use tag and this machine's tunnels through it
/// .why = an idle bastion is planned to stop, with the reason; one a colleague uses, or whose sessions cannot be
/// seen, is not
async fn read_bastion_activity(
    manifest: &Manifest,
    bastions: &BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    context: &ContextAwsApi,
) -> BTreeMap<String, declastruct_aws::BastionActivity> {
    let tunnels_dir = context.checked_tunnels_dir().ok();
    let watched: Vec<(DeclaredAwsEc2Instance, std::time::Duration)> = manifest
        .resources
        .iter()
        .filter_map(|declared| match &declared.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                let live = bastions.get(&Ec2InstanceRef::by_exid(&instance.exid))?;
                let running = live.status == Some(declastruct_aws::Ec2InstanceStatus::Running);
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

impl LiveState {
    /// .what = the lookups a tunnel's far end resolves against
    /// .why = every tunnel is resolved from the batched reads, with no call of its own
    pub fn target_lookups<'a>(&'a self, region: &'a str) -> TargetLookups<'a> {
        TargetLookups {
            clusters: &self.clusters,
            instances: &self.instances,
            endpoints: &self.endpoints,
            region,
        }
    }
}
