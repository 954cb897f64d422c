mod close_vpc_tunnel;
mod get_connection_variables;
mod get_tunnel_target;
mod get_vpc_tunnel;
mod open_vpc_tunnel;
pub mod session_output;
mod set_vpc_tunnel;
pub mod supervisor;
/// .what = the tunnel utilities: identity, port, process and health checks, and the tunnel files
/// .why = each is small and testable on its own, and SDK users may check a port or a process the same way
pub mod utils;

pub use close_vpc_tunnel::{Released, release_tunnel_identity};
pub use get_connection_variables::{ConnectionVariables, get_connection_variables, iam_auth_token};
pub use get_tunnel_target::{
    TargetKind, TargetLookups, TunnelTarget, get_tunnel_target, resolve_tunnel_target,
};
pub use get_vpc_tunnel::{
    VpcTunnelObservation, get_vpc_tunnel, inspect_local_tunnel, inspect_vpc_tunnel,
};
pub use set_vpc_tunnel::{ResolvedVpcTunnel, set_vpc_tunnel, set_vpc_tunnel_resolved};
