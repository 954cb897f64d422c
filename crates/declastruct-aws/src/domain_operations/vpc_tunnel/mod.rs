mod close_vpc_tunnel;
mod get_connection_variables;
mod get_tunnel_target;
mod get_vpc_tunnel;
mod open_vpc_tunnel;
mod set_vpc_tunnel;

pub use close_vpc_tunnel::{Released, release_tunnel_identity};
pub use get_connection_variables::{ConnectionVariables, get_connection_variables, iam_auth_token};
pub use get_tunnel_target::{
    TargetKind, TargetLookups, TunnelTarget, get_tunnel_target, resolve_tunnel_target,
};
pub use get_vpc_tunnel::{
    VpcTunnelObservation, get_vpc_tunnel, inspect_local_tunnel, inspect_vpc_tunnel,
};
pub use set_vpc_tunnel::{ResolvedVpcTunnel, set_vpc_tunnel, set_vpc_tunnel_resolved};

/// .what = a tunnel's record, with its declared tunnel as the AWS crate's domain object
/// .why = the tunnel crate keeps records of any declaration; this crate reads and writes this one
pub type TunnelMeta = declastruct_tunnel::TunnelRecord<crate::DeclaredAwsVpcTunnel>;
