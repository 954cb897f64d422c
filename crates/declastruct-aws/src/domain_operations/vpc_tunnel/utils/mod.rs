mod get_tunnel_hash;
mod is_port_in_use;
mod is_process_alive;
mod is_tunnel_healthy;
mod stop_tunnel_process;
mod tunnel_files;
mod tunnel_lock;

pub use get_tunnel_hash::get_tunnel_hash;
pub use is_port_in_use::{PortHolder, find_port_holder, is_port_in_use};
pub use is_process_alive::{is_process_alive, process_start_time};
pub use is_tunnel_healthy::{TunnelHealth, is_tunnel_healthy};
pub use stop_tunnel_process::{
    is_our_tunnel_process, process_group_members, stop_tunnel_process, wait_for_port_release,
};
pub use tunnel_files::{TunnelFiles, TunnelMeta};
pub use tunnel_lock::{TunnelLock, lock_tunnel};
