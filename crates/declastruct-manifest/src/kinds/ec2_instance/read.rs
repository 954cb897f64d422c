//! .what = the bastions a manifest names, read in one batch; what is said of a missing one; the activity of each
//! running bastion declared with `idleStop`
//! .why = a plan over a hundred tunnels costs one DescribeInstances for all of their bastions

use std::collections::BTreeMap;

use declastruct_aws::internal::{closest_exids, get_ec2_instances};
use declastruct_aws::{
    AwsError, BastionActivity, ContextAwsApi, DeclaredAwsEc2Instance, Ec2InstanceRef,
    Ec2InstanceStatus,
};

use crate::kinds::ResourceDeclaration;
use crate::manifest::Manifest;
use crate::resources::{FieldAt, Missing, References};

/// .what = every bastion the manifest names, in one DescribeInstances (two when some are named by id)
/// .why = a plan over a hundred tunnels costs one call for all of their bastions
pub(crate) async fn read(
    references: &References,
    context: &ContextAwsApi,
) -> Result<BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>, AwsError> {
    let keys: Vec<Ec2InstanceRef> = references
        .bastions
        .iter()
        .map(|(reference, _)| reference.clone())
        .collect();
    get_ec2_instances(&keys, context).await
}

/// .what = where a failed read of the bastions points: an `exid` that names more than one instance, at the
/// reference that names it
/// .why = otherwise the failure is shown at the manifest's first resource
pub(crate) fn failure_at(
    error: &AwsError,
    references: &References,
) -> Option<(FieldAt, &'static str)> {
    match error {
        AwsError::AmbiguousExid { exid, .. } => references
            .bastions
            .iter()
            .find(|(reference, _)| reference.key() == exid)
            .map(|(_, at)| (*at, "more than one instance")),
        _ => None,
    }
}

/// .what = every named bastion that does not exist, with the `exid`s closest to what was named (from one listing,
/// however many are missing)
/// .why = a typo in an `exid` is answered with what the user probably meant
pub(crate) async fn report_missing(
    references: &References,
    found: &BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    missing: &mut Missing<'_>,
    context: &ContextAwsApi,
) {
    let missing_bastions: Vec<_> = references
        .bastions
        .iter()
        .filter(|(reference, _)| !found.contains_key(reference))
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
            region: missing.region.clone(),
            closest,
        };
        missing.gone(reference, at, error, "no such instance");
    }
}

/// .what = the activity of every running bastion the manifest declares with `idleStop`: its Active SSM sessions
/// (one DescribeSessions each, concurrently), its in-use tag and this machine's tunnels through it
/// .why = an idle bastion is planned to stop, with the reason; one a colleague uses, or whose sessions cannot be
/// seen, is not
pub(crate) async fn read_activity(
    manifest: &Manifest,
    bastions: &BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>,
    context: &ContextAwsApi,
) -> BTreeMap<String, BastionActivity> {
    let tunnels_dir = context.checked_tunnels_dir().ok();
    let watched: Vec<(DeclaredAwsEc2Instance, std::time::Duration)> = manifest
        .resources
        .iter()
        .filter_map(|declared| match &declared.declaration {
            ResourceDeclaration::DeclaredAwsEc2Instance(instance) => {
                let live = bastions.get(&Ec2InstanceRef::by_exid(&instance.exid))?;
                let running = live.status == Some(Ec2InstanceStatus::Running);
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
