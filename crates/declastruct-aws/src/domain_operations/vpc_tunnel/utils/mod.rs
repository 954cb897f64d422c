mod get_tunnel_hash;
mod is_port_in_use;
mod is_process_alive;
mod is_tunnel_healthy;
mod start_tunnel_process;
mod state_files;
mod stop_tunnel_process;
mod tunnel_files;
mod tunnel_holders;
mod tunnel_lock;
mod tunnel_processes;

pub use get_tunnel_hash::get_tunnel_hash;
pub use is_port_in_use::{PortHolder, find_port_holder, is_port_in_use};
pub use is_process_alive::{is_process_alive, process_start_time};
pub use is_tunnel_healthy::{NoAnswer, TunnelHealth, is_tunnel_healthy, probe_tunnel};
pub use start_tunnel_process::{
    READY_FD, SessionTarget, StartedTunnelProcess, find_program, session_command,
    start_tunnel_process,
};
pub use state_files::{
    BoundedReadError, META_LIMIT, PID_LIMIT, check_private_folder, ensure_private_folder,
    open_for_appending, open_for_reading, read_bounded, read_tail, state_io, write_replacing,
};
pub use stop_tunnel_process::{stop_tunnel_process, wait_for_port_release};
pub use tunnel_files::{LOG_READ_LIMIT, RecordDamage, RecordedTunnel, TunnelFiles, TunnelMeta};
pub use tunnel_holders::{HoldingProcess, ManifestEnvironment, TunnelHolder, other_live_holders};
pub use tunnel_lock::{TunnelLock, lock_tunnel, try_lock_tunnel};
pub use tunnel_processes::{
    ProcessInfo, ProcessStat, TUNNEL_MARKER, TunnelProcesses, all_pids, process_group_members,
    proven_tunnel_process, read_process, read_stat, tunnel_marker,
};
