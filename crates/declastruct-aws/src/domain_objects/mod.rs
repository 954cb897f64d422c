mod context_aws_api;
mod declared_aws_ec2_instance;
mod declared_aws_rds_cluster;
mod declared_aws_rds_instance;
mod declared_aws_vpc_tunnel;
mod idle_duration;
mod tunnel_name;
mod vpc_tunnel_connect;

pub use context_aws_api::{AwsSettings, ContextAwsApi, ProgressReporter};
pub use declared_aws_ec2_instance::{
    DeclaredAwsEc2Instance, Ec2InstanceRef, Ec2InstanceStatus, IN_USE_TAG,
};
pub use declared_aws_rds_cluster::{DeclaredAwsRdsCluster, RdsClusterHost, RdsClusterRef};
pub use declared_aws_rds_instance::{DeclaredAwsRdsInstance, RdsInstanceRef};
pub use declared_aws_vpc_tunnel::{
    ClusterEndpoint, DeclaredAwsVpcTunnel, EndpointRole, HostEngine, LoopbackHost, PORT_EXPECTED,
    TransportChoice, TunnelHealth, TunnelMechanism, VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus,
    VpcTunnelVia, tunnel_slug,
};
pub use idle_duration::IdleDuration;
pub use tunnel_name::{TUNNEL_NAME_EXPECTED, TunnelName};
pub use vpc_tunnel_connect::{PasswordSource, VpcTunnelConnect};
