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

pub use declastruct_tunnel::run_supervisor_if_requested;
pub use declastruct_tunnel::{HoldingProcess, ManifestEnvironment, TunnelHolder, TunnelId};
pub use domain_objects::{
    AwsSettings, ClusterEndpoint, ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster,
    DeclaredAwsRdsInstance, DeclaredAwsVpcTunnel, Ec2InstanceRef, Ec2InstanceStatus, EndpointRole,
    HostEngine, IN_USE_TAG, IdleDuration, LoopbackHost, PasswordSource, ProgressReporter,
    RdsClusterHost, RdsClusterRef, RdsInstanceRef, TunnelHealth, TunnelMechanism, VpcTunnelConnect,
    VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia,
};
pub use domain_operations::ec2_instance::{
    BastionActivity, DesiredInstanceStatus, Ec2InstanceLookup, count_active_sessions,
    get_ec2_instance, judge_bastion_activity, mark_bastion_in_use, set_ec2_instance_status,
};
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
        cast_to_declared_aws_ec2_instance, closest_exids, get_ec2_instances,
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
