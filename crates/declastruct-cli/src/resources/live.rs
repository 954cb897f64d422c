//! .what = the live state a manifest refers to: its bastions and clusters from AWS in a few batched calls, and
//! every process of ours from one pass over /proc
//! .why = a plan over a hundred tunnels costs a handful of AWS calls, not hundreds; each lookup is keyed by the
//! reference that asked for it, and remembers where in the manifest it was asked, for errors

use std::collections::BTreeMap;

use declastruct_aws::internal::utils::{RecordedTunnel, TunnelFiles, TunnelProcesses};
use declastruct_aws::internal::{closest_cluster_names, get_ec2_instances, get_rds_clusters};
use declastruct_aws::{
    AwsError, ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster, Ec2InstanceRef,
    RdsClusterRef,
};

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
        })
    }
}

/// .what = every bastion and cluster the manifest names, each with the first place that names it
/// .why = one batched lookup for each kind, and a located error for each one that is missing
#[derive(Debug, Default)]
pub struct References {
    /// the bastions, in the order first named
    pub bastions: Vec<(Ec2InstanceRef, FieldAt)>,
    /// the clusters, in the order first named
    pub clusters: Vec<(RdsClusterRef, FieldAt)>,
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
                    references.add_bastion(Ec2InstanceRef::by_exid(&instance.exid), at(&["exid"]));
                }
                ResourceDeclaration::DeclaredAwsRdsCluster(cluster) => {
                    references.add_cluster(RdsClusterRef::by_name(&cluster.name), at(&["name"]));
                }
                ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) => {
                    references.add_bastion(tunnel.via.bastion.clone(), at(&["via", "bastion"]));
                    references.add_cluster(tunnel.into.cluster.clone(), at(&["into", "cluster"]));
                }
            }
        }
        references
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

    /// .what = where the manifest first names `reference`
    /// .why = errors about a bastion point at it
    pub fn bastion_at(&self, reference: &Ec2InstanceRef) -> Option<FieldAt> {
        self.bastions
            .iter()
            .find(|(known, _)| known == reference)
            .map(|(_, at)| *at)
    }
}

/// .what = what AWS and this machine say about everything the manifest names
/// .why = the observed resources are assembled from it, with no further call
#[derive(Debug, Default)]
pub struct LiveState {
    /// every named bastion that exists, by the reference that named it
    pub bastions: BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    /// every named cluster that exists, by the reference that named it
    pub clusters: BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>,
    /// every live process of every tunnel of the state folder
    pub processes: TunnelProcesses,
    /// every tunnel recorded in the state folder, with its record or what is wrong with it
    pub records: Vec<RecordedTunnel>,
    /// the manifest and environment now planning: the tunnels it opened are its own to destroy or replace
    pub owner: Option<declastruct_aws::TunnelOwner>,
}

/// .what = the processes of every tunnel of the state folder, from one pass over /proc, and every record
/// .why = they need no AWS: `status` shows them even when AWS cannot be reached; the records say which tunnels a
/// manifest opened
pub fn read_local_tunnels(
    context: &ContextAwsApi,
) -> Result<(TunnelProcesses, Vec<RecordedTunnel>), AwsError> {
    let dir = context.checked_tunnels_dir()?;
    let records = TunnelFiles::recorded_in(&dir)?;
    Ok((TunnelProcesses::scan(&dir), records))
}

/// .what = reads the live state: all bastions in one DescribeInstances (two when some are named by id), all
/// clusters in one DescribeDBClusters, concurrently; every process of ours from /proc
/// .why = every missing bastion or cluster is reported at once, each at the line that names it
pub async fn read_live_state(
    manifest: &Manifest,
    references: &References,
    context: &ContextAwsApi,
) -> Result<LiveState, Vec<miette::Report>> {
    let first = FieldAt {
        resource: 0,
        path: &[],
    };
    let bastion_keys: Vec<Ec2InstanceRef> = references
        .bastions
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    let cluster_keys: Vec<RdsClusterRef> = references
        .clusters
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    let (bastions, clusters) = futures::join!(
        get_ec2_instances(&bastion_keys, context),
        get_rds_clusters(&cluster_keys, context)
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
    let clusters = clusters.unwrap_or_else(|error| {
        if errors.is_empty() {
            errors.push(first.locate(manifest, error, "while reading this resource"));
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
    for (reference, at) in &references.bastions {
        if !bastions.contains_key(reference) {
            let error = AwsError::BastionNotFound {
                reference: reference.to_string(),
                region: region.clone(),
            };
            errors.push(at.locate(manifest, error, "no such instance"));
        }
    }
    for (reference, at) in &references.clusters {
        if !clusters.contains_key(reference) {
            let closest = closest_cluster_names(&reference.name, context)
                .await
                .unwrap_or_default();
            let error = AwsError::ClusterNotFound {
                name: reference.name.clone(),
                region: region.clone(),
                closest,
            };
            errors.push(at.locate(manifest, error, "no such cluster"));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (processes, records) =
        read_local_tunnels(context).map_err(|error| vec![miette::Report::new(error)])?;
    Ok(LiveState {
        bastions,
        clusters,
        processes,
        records,
        owner: context.owner.clone(),
    })
}
