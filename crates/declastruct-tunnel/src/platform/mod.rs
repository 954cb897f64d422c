//! .what = the platform boundary: what the tunnel machinery needs to know about processes and ports, with one
//! implementation an operating system (Linux reads `/proc`); on any other system the boundary is an error
//! (`ensure_supported`), never silence
//! .why = process identity (the marker in a process's environment), process groups, start times and the holder of
//! a port are the only operating-system questions; a port to macOS answers these in one more module

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::TunnelId;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(not(target_os = "linux"))]
mod unsupported;
#[cfg(not(target_os = "linux"))]
use unsupported as os;

pub use os::{all_pids, established_connections, read_stat};
pub(crate) use os::{listening_pids, read_command, read_tunnel_marker};

/// .what = fails on an operating system whose processes this crate cannot read
/// .why = on such a system a scan would find no process and say nothing, and a tunnel would look closed while it
/// serves: the boundary says so instead. Every tunnel operation passes through it (the state folder's check)
pub fn ensure_supported() -> Result<(), crate::TunnelError> {
    if os::SUPPORTED {
        Ok(())
    } else {
        Err(crate::TunnelError::UnsupportedPlatform {
            os: std::env::consts::OS,
        })
    }
}

/// .what = the environment variable that marks every process of a tunnel: `{tunnels folder}/{hash}`
/// .why = the supervisor, the AWS CLI and the plugin all inherit it, so each one can be proven ours and
/// attributed to its tunnel from `/proc` alone, whatever happened to the tunnel's files
pub const TUNNEL_MARKER: &str = "DECLASTRUCT_TUNNEL";

/// .what = the fields of `/proc/PID/stat` that declastruct reads
/// .why = liveness, process group and session, and the start time that tells a reused pid apart
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStat {
    /// the one-letter state; `Z` is a zombie
    pub state: char,
    /// the parent's pid
    pub parent: u32,
    /// the process group
    pub group: u32,
    /// the session
    pub session: u32,
    /// when the process started, in clock ticks since boot
    pub start_time: u64,
}

/// .what = one live process as `/proc` describes it, with the tunnel its environment names
/// .why = what a close signals and what `status` shows, proven ours by the marker rather than by a pid file
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// the pid
    pub pid: u32,
    /// `/proc/PID/stat`
    pub stat: ProcessStat,
    /// the command line's words
    pub command: Vec<String>,
    /// the tunnel the process belongs to (`{tunnels folder}/{hash}`), when its environment names one
    pub tunnel: Option<PathBuf>,
}

impl ProcessInfo {
    /// .what = whether this process is a tunnel supervisor
    /// .why = a tunnel whose session lives on without its supervisor is not watched, and says so
    pub fn is_supervisor(&self) -> bool {
        self.command
            .iter()
            .any(|word| word == crate::supervisor::SUPERVISE_ARGUMENT)
    }

    /// .what = the command line as one line
    /// .why = messages name a process by pid and command
    pub fn command_line(&self) -> String {
        self.command.join(" ")
    }
}

/// .what = a live (non-zombie) process, with its command line and tunnel marker, or `None`
/// .why = one read of everything declastruct needs to know about one process
pub fn read_process(pid: u32) -> Option<ProcessInfo> {
    let stat = read_stat(pid).filter(|stat| stat.state != 'Z')?;
    let command = read_command(pid);
    Some(ProcessInfo {
        pid,
        stat,
        command,
        tunnel: read_tunnel_marker(pid),
    })
}

/// .what = the live (non-zombie) processes whose process group is `group`
/// .why = closing a tunnel is done when no process of its groups is left
pub fn process_group_members(group: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| read_stat(*pid).is_some_and(|stat| stat.state != 'Z' && stat.group == group))
        .collect()
}

/// .what = checks if a process with the given pid is still running (a zombie counts as dead)
/// .why = enables detection of crashed tunnel processes
pub fn is_process_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|stat| stat.state != 'Z')
}

/// .what = when the process started, in clock ticks since boot, or `None` when unknown
/// .why = a pid reused by another program must never pass for our tunnel: the start time tells them apart
pub fn process_start_time(pid: u32) -> Option<u64> {
    read_stat(pid).map(|stat| stat.start_time)
}

/// .what = the marker value of tunnel `id` in `tunnels_dir`
/// .why = the supervisor is started with it; scans compare against it
pub fn tunnel_marker(tunnels_dir: &Path, id: &TunnelId) -> PathBuf {
    tunnels_dir.join(id.as_str())
}

/// .what = the process `pid` when it is alive and its environment names tunnel `id` of `tunnels_dir`
/// .why = the guard before any signal: declastruct never signals a process it did not start, and a pid file
/// or a record can be edited, reused after a reboot, or point anywhere; the marker cannot be put on a process
/// after it started
pub fn proven_tunnel_process(pid: u32, tunnels_dir: &Path, id: &TunnelId) -> Option<ProcessInfo> {
    let process = read_process(pid)?;
    (process.tunnel.as_deref() == Some(tunnel_marker(tunnels_dir, id).as_path())).then_some(process)
}

/// .what = every live process of every tunnel of one tunnels folder, by tunnel identity, from one pass over the
/// system's processes
/// .why = a tunnel is found from its processes, not only from its files: a damaged or deleted record, a killed
/// supervisor or a replaced folder never hides a process of ours that still serves a port
#[derive(Debug, Clone, Default)]
pub struct TunnelProcesses {
    by_id: BTreeMap<TunnelId, Vec<ProcessInfo>>,
}

impl TunnelProcesses {
    /// .what = reads every process's marker once and keeps those of `tunnels_dir`
    /// .why = plan, status and apply ask about many tunnels; one pass answers them all
    pub fn scan(tunnels_dir: &Path) -> Self {
        let mut by_id: BTreeMap<TunnelId, Vec<ProcessInfo>> = BTreeMap::new();
        for pid in all_pids() {
            // the environment first: most processes are not ours, and for them nothing else is read
            let Some(marker) = read_tunnel_marker(pid) else {
                continue;
            };
            if marker.parent() != Some(tunnels_dir) {
                continue;
            }
            let Some(id) = marker
                .file_name()
                .and_then(OsStr::to_str)
                .and_then(TunnelId::parse)
            else {
                continue;
            };
            if let Some(process) = read_process(pid) {
                by_id.entry(id).or_default().push(process);
            }
        }
        Self { by_id }
    }

    /// .what = the live processes of tunnel `id`
    /// .why = a tunnel is open while any of them lives
    pub fn of(&self, id: &TunnelId) -> &[ProcessInfo] {
        self.by_id.get(id).map_or(&[], Vec::as_slice)
    }

    /// .what = the identities of every tunnel with a live process
    /// .why = `status --all` and "who holds this port" look beyond the declared tunnels
    pub fn ids(&self) -> impl Iterator<Item = &TunnelId> {
        self.by_id.keys()
    }

    /// .what = the tunnel that process `pid` belongs to, if it is one of ours
    /// .why = a port held by one of our processes names that tunnel, not "another program"
    pub fn tunnel_of(&self, pid: u32) -> Option<&TunnelId> {
        self.by_id
            .iter()
            .find(|(_, processes)| processes.iter().any(|process| process.pid == pid))
            .map(|(id, _)| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn this_process_is_read_and_carries_no_marker() {
        let me = read_process(std::process::id()).expect("this process");
        assert!(me.tunnel.is_none());
        assert!(!me.command.is_empty());
        assert!(process_group_members(me.stat.group).contains(&std::process::id()));
    }

    fn sleeper(marker: Option<&Path>) -> std::process::Child {
        let mut command = std::process::Command::new("sleep");
        command.arg("30");
        if let Some(marker) = marker {
            command.env(TUNNEL_MARKER, marker);
        }
        command.spawn().expect("spawn sleep")
    }

    /// the guard that stands before every signal: only the marker of this very tunnel proves a process ours
    #[test]
    fn only_a_process_marked_with_this_tunnel_is_proven_ours() {
        let folder = tempfile::tempdir().expect("tempdir");
        let dir = folder.path().join("tunnels");
        let (aaaa, bbbb) = (
            TunnelId::compute("i-a", "h", 1, 1),
            TunnelId::compute("i-b", "h", 1, 1),
        );
        let mut ours = sleeper(Some(&tunnel_marker(&dir, &aaaa)));
        let mut other_tunnel = sleeper(Some(&tunnel_marker(&dir, &bbbb)));
        let mut other_home = sleeper(Some(&tunnel_marker(folder.path(), &aaaa)));
        let mut unmarked = sleeper(None);
        assert!(proven_tunnel_process(ours.id(), &dir, &aaaa).is_some());
        assert!(proven_tunnel_process(other_tunnel.id(), &dir, &aaaa).is_none());
        assert!(proven_tunnel_process(other_home.id(), &dir, &aaaa).is_none());
        assert!(proven_tunnel_process(unmarked.id(), &dir, &aaaa).is_none());

        let scan = TunnelProcesses::scan(&dir);
        assert_eq!(
            scan.of(&aaaa).iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![ours.id()]
        );
        assert_eq!(scan.tunnel_of(other_tunnel.id()), Some(&bbbb));
        assert_eq!(scan.tunnel_of(unmarked.id()), None);

        let pid = ours.id();
        for child in [&mut ours, &mut other_tunnel, &mut other_home, &mut unmarked] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            proven_tunnel_process(pid, &dir, &aaaa).is_none(),
            "a dead process is never proven ours"
        );
    }
}
