//! .what = the live state a manifest refers to: its bastions and clusters from AWS in a few batched calls, and
//! every process of ours from one pass over /proc
//! .why = a plan over a hundred tunnels costs a handful of AWS calls, not hundreds; each lookup is keyed by the
//! reference that asked for it, and remembers where in the manifest it was asked, for errors

use std::collections::BTreeMap;

use declastruct_aws::internal::{RdsClusterEndpoint, TargetLookups};
use declastruct_aws::{
    AwsError, BastionActivity, ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster,
    DeclaredAwsRdsInstance, Ec2InstanceRef, RdsClusterRef, RdsInstanceRef,
};
use declastruct_tunnel::{RecordedTunnel, TunnelFiles, TunnelProcesses};

use crate::kinds::{ec2_instance, rds_cluster, rds_instance};
use crate::located::Located;
use crate::manifest::Manifest;

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
pub struct Need {
    /// an OPEN tunnel names it
    pub open: bool,
    /// a CLOSED tunnel names it
    pub closed: bool,
    /// a declaration acts on it (a bastion declared `running`), or is only that declaration
    pub declared: bool,
}

impl Need {
    fn required(self) -> bool {
        self.open || (self.declared && !self.closed)
    }
}

fn need_key(reference: &dyn std::fmt::Debug) -> String {
    format!("{reference:?}")
}

impl References {
    /// .what = the references of every declared resource
    /// .why = declared bastions and clusters are looked up by their keys, tunnels by what they name
    pub fn of(manifest: &Manifest) -> Self {
        let mut references = Self::default();
        for (index, declared) in manifest.resources.iter().enumerate() {
            declared.declaration.references(index, &mut references);
        }
        references
    }

    /// .what = what needs `reference` to exist, for a kind to mark
    /// .why = see `Need`
    pub fn need(&mut self, reference: &dyn std::fmt::Debug) -> &mut Need {
        self.needs.entry(need_key(reference)).or_default()
    }

    /// .what = whether a missing `reference` is an error: something must act on it
    /// .why = otherwise its absence is a warning, and the tunnels naming it are closed by their records
    pub fn is_required(&self, reference: &dyn std::fmt::Debug) -> bool {
        self.needs
            .get(&need_key(reference))
            .is_none_or(|need| need.required())
    }

    /// .what = a bastion named at `at`, unless it was named before
    /// .why = each reference is read once, and located where it is first named
    pub fn add_bastion(&mut self, reference: Ec2InstanceRef, at: FieldAt) {
        if !self.bastions.iter().any(|(known, _)| *known == reference) {
            self.bastions.push((reference, at));
        }
    }

    /// .what = a cluster named at `at`, unless it was named before
    /// .why = as `add_bastion`
    pub fn add_cluster(&mut self, reference: RdsClusterRef, at: FieldAt) {
        if !self.clusters.iter().any(|(known, _)| *known == reference) {
            self.clusters.push((reference, at));
        }
    }

    /// .what = a DB instance named at `at`, unless it was named before
    /// .why = as `add_bastion`
    pub fn add_instance(&mut self, reference: RdsInstanceRef, at: FieldAt) {
        if !self.instances.iter().any(|(known, _)| *known == reference) {
            self.instances.push((reference, at));
        }
    }

    /// .what = a custom endpoint of a cluster named at `at`, unless it was named before
    /// .why = as `add_bastion`
    pub fn add_endpoint(&mut self, key: (RdsClusterRef, String), at: FieldAt) {
        if !self.endpoints.iter().any(|(known, _)| *known == key) {
            self.endpoints.push((key, at));
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
    pub activity: BTreeMap<String, BastionActivity>,
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
    let (bastions, clusters, instances, endpoints) = futures::join!(
        ec2_instance::read(references, context),
        rds_cluster::read(references, context),
        rds_instance::read(references, context),
        rds_cluster::read_endpoints(references, context)
    );
    let mut errors = Vec::new();
    let bastions = bastions.unwrap_or_else(|error| {
        let (at, label) = ec2_instance::failure_at(&error, references)
            .unwrap_or((first, "while reading this resource"));
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

    // what the user probably meant, from one listing a kind however many of it are missing
    let mut missing = Missing::new(manifest, references, context);
    ec2_instance::report_missing(references, &bastions, &mut missing, context).await;
    rds_cluster::report_missing(references, &clusters, &mut missing, context).await;
    rds_instance::report_missing(references, &instances, &mut missing, context).await;
    rds_cluster::report_missing_endpoints(references, &clusters, &endpoints, &mut missing);
    let (errors, warnings) = missing.into_errors_and_warnings();
    if !errors.is_empty() {
        return Err(errors);
    }
    let (processes, records) =
        read_local_tunnels(context).map_err(|error| vec![miette::Report::new(error)])?;
    let activity = ec2_instance::read_activity(manifest, &bastions, context).await;
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

/// .what = what the batched reads did not find, each located where the manifest names it: an error when something
/// must act on it, a warning when only CLOSED tunnels name it
/// .why = every kind reports its missing references the same way, all at once
pub struct Missing<'a> {
    manifest: &'a Manifest,
    references: &'a References,
    /// the region read, as errors name it
    pub region: String,
    /// each missing reference, and whether it is an error
    found: Vec<(bool, miette::Report)>,
}

impl<'a> Missing<'a> {
    fn new(manifest: &'a Manifest, references: &'a References, context: &ContextAwsApi) -> Self {
        Missing {
            manifest,
            references,
            region: context
                .region
                .clone()
                .unwrap_or_else(|| "the configured region".into()),
            found: Vec::new(),
        }
    }

    /// .what = `reference`, named at `at`, does not exist: an error when something must act on it, a warning
    /// otherwise
    /// .why = a tunnel declared CLOSED can be closed by its record whatever is gone
    pub fn gone(
        &mut self,
        reference: &dyn std::fmt::Debug,
        at: &FieldAt,
        error: AwsError,
        label: &str,
    ) {
        self.found.push(if self.references.is_required(reference) {
            (true, at.locate(self.manifest, error, label))
        } else {
            (
                false,
                at.warn(
                    self.manifest,
                    error,
                    &format!(
                        "{label}: only CLOSED tunnels name it, and they are closed by their records"
                    ),
                ),
            )
        });
    }

    /// .what = what is named at `at` exists but cannot be used (a DB instance that is a member of a cluster): always
    /// an error
    /// .why = the user must name something else
    pub fn refused(&mut self, at: &FieldAt, error: AwsError, label: &str) {
        self.found
            .push((true, at.locate(self.manifest, error, label)));
    }

    fn into_errors_and_warnings(self) -> (Vec<miette::Report>, Vec<miette::Report>) {
        let (errors, warnings): (Vec<_>, Vec<_>) =
            self.found.into_iter().partition(|(is_error, _)| *is_error);
        (
            errors.into_iter().map(|(_, report)| report).collect(),
            warnings.into_iter().map(|(_, report)| report).collect(),
        )
    }
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

impl LiveState {
    /// .what = the live instance id a bastion reference resolves to
    /// .why = two references (by `exid`, by `instanceId`) to one instance are one bastion of the plan
    pub fn instance_id(&self, reference: &Ec2InstanceRef) -> Option<String> {
        self.bastions.get(reference)?.instance_id.clone()
    }
}
