//! .what = the platform boundary on an operating system whose processes declastruct cannot read: nothing is found,
//! and `ensure_supported` fails before anything would rely on that
//! .why = the crate builds everywhere; the tunnel commands say what is missing instead of seeing nothing

use std::path::PathBuf;

/// this system's processes cannot be read
pub const SUPPORTED: bool = false;

/// no process is known
pub fn read_stat(_pid: u32) -> Option<super::ProcessStat> {
    None
}

/// no command line is known
pub fn read_command(_pid: u32) -> Vec<String> {
    Vec::new()
}

/// no marker is known
pub fn read_tunnel_marker(_pid: u32) -> Option<PathBuf> {
    None
}

/// no process is listed
pub fn all_pids() -> Vec<u32> {
    Vec::new()
}

/// no holder is known
pub fn listening_pids(_port: u16) -> Vec<u32> {
    Vec::new()
}

/// no connection is known
pub fn established_connections(_port: u16) -> usize {
    0
}
