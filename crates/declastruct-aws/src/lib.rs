//! .what = declarative AWS bastions, RDS clusters and SSM port-forwarding tunnels: the domain objects and
//! their operations
//! .why = the same code serves the `declastruct` command line and Rust programs that need a database
//! through a bastion
//!
//! ```no_run
//! use declastruct_aws::{AwsSettings, ContextAwsApi, Ec2InstanceLookup, get_ec2_instance};
//!
//! # async fn example() -> Result<(), declastruct_aws::AwsError> {
//! let context = ContextAwsApi::load(&AwsSettings { region: Some("us-east-1".into()), profile: None }).await;
//! let bastion = get_ec2_instance(Ec2InstanceLookup::Unique { exid: "vpc-main-bastion".into() }, &context).await?;
//! println!("{bastion:?}");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod domain_objects;
mod domain_operations;
mod error;

pub use domain_objects::*;
pub use domain_operations::ec2_instance::{
    DesiredInstanceStatus, Ec2InstanceLookup, cast_to_declared_aws_ec2_instance, get_ec2_instance,
    get_ec2_instances, set_ec2_instance_status,
};
pub use domain_operations::rds_cluster::{
    cast_to_declared_aws_rds_cluster, closest_cluster_names, get_rds_cluster, get_rds_clusters,
};
pub use domain_operations::vpc_tunnel::supervisor::run_supervisor_if_requested;
pub use domain_operations::vpc_tunnel::utils;
pub use domain_operations::vpc_tunnel::{
    ResolvedVpcTunnel, VpcTunnelObservation, get_vpc_tunnel, inspect_vpc_tunnel, set_vpc_tunnel,
    set_vpc_tunnel_resolved,
};
pub use error::AwsError;
