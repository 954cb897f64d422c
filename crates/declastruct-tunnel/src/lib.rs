//! .what = the tunnel machinery of declastruct: a tunnel's identity, its files in the state folder, its holders and
//! lock, the processes that serve it (found by their marker), its supervisor, the session's output and its health
//! .why = one home for everything a tunnel is on this machine, whatever resolves its ends (the AWS crate) or
//! whatever reads the manifest (the command line): a new transport or a new platform changes this crate only
//!
//! - `id`: [`TunnelId`], computed in one place
//! - `record`, `state_files`, `holders`, `lock`: the files of `$DECLASTRUCT_HOME/tunnels/`, read and written safely
//! - `platform`: what is specific to an operating system (processes, ports, detaching), behind one interface
//! - `start`, `stop`, `supervisor`: starting a tunnel's process detached and recorded, stopping only what is
//!   proven ours, and the supervisor that keeps a session alive
//! - `session_output`, `health`: what the session prints, and whether the database answers
#![deny(missing_docs)]
// a library never writes to the terminal: only the binary renders
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod error;
pub mod footprint;
mod health;
mod holders;
mod id;
mod lock;
pub mod platform;
mod port;
mod record;
pub mod session_output;
mod start;
mod state_files;
mod stop;
pub mod supervisor;

pub use error::TunnelError;
pub use health::{NoAnswer, TunnelHealth, is_tunnel_healthy, probe_tunnel, probe_tunnel_at};
pub use holders::{HoldingProcess, ManifestEnvironment, TunnelHolder, other_live_holders};
pub use id::TunnelId;
pub use lock::{LOCK_WAIT, TunnelLock, lock_tunnel, try_lock_tunnel};
pub use platform::{
    ProcessInfo, ProcessStat, TUNNEL_MARKER, TunnelProcesses, all_pids, ensure_supported,
    is_process_alive, process_group_members, process_start_time, proven_tunnel_process,
    read_process, read_stat, tunnel_marker,
};
pub use port::{PortHolder, find_port_holder, is_port_in_use};
pub use record::{
    ClosedRecord, LOG_READ_LIMIT, RecordDamage, RecordedTunnel, TunnelFiles, TunnelRecord,
};
pub use start::{
    READY_FD, SessionTarget, StartedTunnelProcess, find_program, session_command, start_detached,
    start_tunnel_process,
};
pub use state_files::{
    BoundedReadError, META_LIMIT, PID_LIMIT, check_private_folder, ensure_private_folder,
    open_for_appending, open_for_reading, read_bounded, read_tail, state_io, write_replacing,
};
pub use stop::{stop_tunnel_process, wait_for_port_release};
pub use supervisor::run_supervisor_if_requested;
