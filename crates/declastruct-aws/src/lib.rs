//! .what = declarative AWS bastions, RDS clusters and SSM port-forwarding tunnels: the domain objects and
//! their operations
//! .why = the same code serves the `declastruct` command line and Rust programs that need a private database
//! through a bastion: a test harness, a migration runner, a dev script
//!
//! The model is the blueprint's: a [`DeclaredAwsEc2Instance`] (the bastion, referenced by its `exid` tag or
//! its instance id), a [`DeclaredAwsRdsCluster`] (referenced by identifier) and a [`DeclaredAwsVpcTunnel`]
//! from a local port through the bastion into the cluster. Every operation takes `(input, context)`, where
//! [`ContextAwsApi`] carries the AWS clients, the region and the state folder.
//!
//! ```no_run
//! use declastruct_aws::{
//!     AwsSettings, ContextAwsApi, DeclaredAwsVpcTunnel, Ec2InstanceRef, LoopbackHost, RdsClusterRef,
//!     TunnelMechanism, VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia, get_vpc_tunnel,
//!     set_vpc_tunnel,
//! };
//!
//! # async fn example() -> Result<(), declastruct_aws::AwsError> {
//! let context = ContextAwsApi::load(&AwsSettings { region: Some("us-east-1".into()), profile: None }).await?;
//! let tunnel = DeclaredAwsVpcTunnel {
//!     via: VpcTunnelVia { mechanism: TunnelMechanism::AwsSsm, bastion: Ec2InstanceRef::by_exid("vpc-main-bastion") },
//!     into: VpcTunnelInto::cluster(RdsClusterRef::by_name("ahbodedb")),
//!     from: VpcTunnelFrom { host: LoopbackHost::Localhost, port: 7775 },
//!     status: None,
//!     pid: None,
//!     health: None,
//!     connect: None,
//!     idle_close: None,
//! };
//! // open the tunnel (starts the bastion if needed, waits until the database answers)
//! set_vpc_tunnel(&tunnel.with_status(VpcTunnelStatus::Open, None), &context).await?;
//! // ... use the database at localhost:7775; the tunnel outlives this process ...
//! let current = get_vpc_tunnel(&tunnel, &context).await?;
//! assert_eq!(current.status, Some(VpcTunnelStatus::Open));
//! set_vpc_tunnel(&tunnel.with_status(VpcTunnelStatus::Closed, None), &context).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A program that opens tunnels must call [`run_supervisor_if_requested`] first thing in `main`: the tunnel's
//! detached supervisor is the program itself, started again with a marker argument.
#![deny(missing_docs)]
// a library never writes to the terminal: only the binary renders
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod domain_objects;
mod domain_operations;
mod env_vars;
mod error;
#[cfg(test)]
mod test_support;

pub use declastruct_tunnel::{HoldingProcess, ManifestEnvironment, TunnelHolder, TunnelId};
pub use domain_objects::{
    AwsSettings, ClusterEndpoint, ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster,
    DeclaredAwsRdsInstance, DeclaredAwsVpcTunnel, Ec2InstanceRef, Ec2InstanceStatus, EndpointRole,
    HostEngine, IN_USE_TAG, IdleDuration, LoopbackHost, PasswordSource, ProgressReporter,
    RdsClusterHost, RdsClusterRef, RdsInstanceRef, TunnelHealth, TunnelMechanism, VpcTunnelConnect,
    VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia,
};
pub use domain_operations::ec2_instance::{
    BastionActivity, DesiredInstanceStatus, Ec2InstanceLookup, IdleTimerRecord,
    count_active_sessions, get_ec2_instance, judge_bastion_activity, mark_bastion_in_use,
    recorded_idle_timers, set_ec2_instance_status, start_idle_timer,
};

/// .what = runs the tunnel supervisor (with the AWS crate's in-use renewer) or a bastion's idle timer and exits,
/// when this process was started as one; otherwise returns
/// .why = both are this program started again: call this first thing in `main`
pub fn run_supervisor_if_requested() {
    domain_operations::ec2_instance::run_idle_timer_if_requested();
    declastruct_tunnel::supervisor::run_supervisor_if_requested_with(
        declastruct_tunnel::supervisor::SupervisorHooks {
            renew_in_use: Some(Box::new(renew_in_use)),
            closed_by_itself: Some(Box::new(start_idle_timer_after_self_close)),
        },
    );
}

/// starts the bastion's idle timer once a supervisor closed the last tunnel of this machine through it
fn start_idle_timer_after_self_close(target: &declastruct_tunnel::supervisor::InUseTarget) {
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let (Ok(state_dir), Ok(tunnels_dir)) = (
        ContextAwsApi::default_state_dir(),
        ContextAwsApi::default_tunnels_dir(),
    ) else {
        return;
    };
    if domain_operations::ec2_instance::local_tunnels_through(&tunnels_dir, &target.instance_id) > 0
    {
        return;
    }
    let _ = start_idle_timer(
        &program,
        &state_dir,
        &target.instance_id,
        target.idle_stop,
        &AwsSettings {
            region: target.region.clone(),
            profile: target.profile.clone(),
        },
    );
}

/// renews a bastion's in-use tag from the supervisor, which has no runtime of its own: one current-thread runtime
/// for the supervisor's life, and the AWS configuration loaded on each renewal (credentials are never held longer)
fn renew_in_use(target: &declastruct_tunnel::supervisor::InUseTarget) -> Result<(), String> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
        .ok_or_else(|| "no async runtime".to_string())?;
    runtime.block_on(async {
        let settings = AwsSettings {
            region: target.region.clone(),
            profile: target.profile.clone(),
        };
        let context = ContextAwsApi::load(&settings)
            .await
            .map_err(|error| error.to_string())?;
        mark_bastion_in_use(&target.instance_id, &context)
            .await
            .map_err(|error| error.to_string())
    })
}
pub use domain_operations::rds_cluster::get_rds_cluster;
pub use domain_operations::rds_instance::get_rds_instance;
pub use domain_operations::vpc_tunnel::TunnelMeta;
pub use domain_operations::vpc_tunnel::{
    ConnectionVariables, TargetKind, TunnelTarget, get_connection_variables, get_tunnel_target,
    get_vpc_tunnel, iam_auth_token, set_vpc_tunnel,
};
pub use env_vars::EnvVars;
pub use error::AwsError;

/// .what = the plumbing under the operations: batched reads, tunnel inspection, tunnel files and utilities
/// .why = the `declastruct` command line plans a hundred tunnels in a few AWS calls with these; they are not
/// part of the SDK's stable surface and may change in any release
#[doc(hidden)]
pub mod internal {
    pub use crate::domain_operations::ec2_instance::{
        cast_to_declared_aws_ec2_instance, closest_exids, get_ec2_instances, local_tunnels_through,
    };
    pub use crate::domain_operations::rds_cluster::{
        RdsClusterEndpoint, cast_to_declared_aws_rds_cluster, closest_cluster_names,
        get_rds_cluster_endpoints, get_rds_clusters,
    };
    pub use crate::domain_operations::rds_instance::{
        cast_to_declared_aws_rds_instance, closest_instance_names, get_rds_instances,
    };
    pub use crate::domain_operations::vpc_tunnel::{
        Released, ResolvedVpcTunnel, TargetLookups, VpcTunnelObservation, inspect_local_tunnel,
        inspect_vpc_tunnel, release_tunnel_identity, resolve_tunnel_target,
        set_vpc_tunnel_resolved,
    };
}
