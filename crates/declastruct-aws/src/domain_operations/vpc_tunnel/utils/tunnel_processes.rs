//! .what = the one reader of `/proc`: a process's state, group, session, start time, command line and the
//! tunnel it belongs to
//! .why = every question about processes (is it alive, is it ours, who is in its group, which tunnel runs)
//! is answered from the same few files, read the same way

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// .what = the environment variable that marks every process of a tunnel: `{tunnels folder}/{hash}`
/// .why = the supervisor, the AWS CLI and the plugin all inherit it, so each one can be proven ours and
/// attributed to its tunnel from `/proc` alone, whatever happened to the tunnel's files
pub const TUNNEL_MARKER: &str = crate::EnvVars::DECLASTRUCT_TUNNEL;

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
            .any(|word| word == super::super::supervisor::SUPERVISE_ARGUMENT)
    }

    /// .what = the command line as one line
    /// .why = messages name a process by pid and command
    pub fn command_line(&self) -> String {
        self.command.join(" ")
    }
}

/// .what = `/proc/PID/stat` of a process, or `None` when there is no such process
/// .why = the fields after the parenthesised command name, which may itself hold spaces or parentheses
pub fn read_stat(pid: u32) -> Option<ProcessStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<ProcessStat> {
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // after the command: state (field 3), ppid (4), pgrp (5), session (6), ..., starttime (22)
    Some(ProcessStat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(22 - 3)?.parse().ok()?,
    })
}

/// the NUL-separated words of `/proc/PID/{file}`
fn read_words(pid: u32, file: &str) -> Option<Vec<Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/{file}")).ok()?;
    Some(
        raw.split(|byte| *byte == 0)
            .filter(|word| !word.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

/// .what = the tunnel named by a process's environment, if any
/// .why = the marker that proves a process is one of ours
pub fn read_tunnel_marker(pid: u32) -> Option<PathBuf> {
    let prefix = format!("{TUNNEL_MARKER}=");
    read_words(pid, "environ")?.into_iter().find_map(|word| {
        word.strip_prefix(prefix.as_bytes())
            .map(|value| PathBuf::from(OsStr::from_bytes(value)))
    })
}

/// .what = a live (non-zombie) process, with its command line and tunnel marker, or `None`
/// .why = one read of everything declastruct needs to know about one process
pub fn read_process(pid: u32) -> Option<ProcessInfo> {
    let stat = read_stat(pid).filter(|stat| stat.state != 'Z')?;
    let command = read_words(pid, "cmdline")
        .unwrap_or_default()
        .into_iter()
        .map(|word| String::from_utf8_lossy(&word).into_owned())
        .collect();
    Some(ProcessInfo {
        pid,
        stat,
        command,
        tunnel: read_tunnel_marker(pid),
    })
}

/// .what = every pid in `/proc`
/// .why = scans of groups, markers and port holders walk the same list
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// .what = the live (non-zombie) processes whose process group is `group`
/// .why = closing a tunnel is done when no process of its groups is left
pub fn process_group_members(group: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| read_stat(*pid).is_some_and(|stat| stat.state != 'Z' && stat.group == group))
        .collect()
}

/// .what = the marker value of tunnel `hash` in `tunnels_dir`
/// .why = the supervisor is started with it; scans compare against it
pub fn tunnel_marker(tunnels_dir: &Path, hash: &str) -> PathBuf {
    tunnels_dir.join(hash)
}

/// .what = the process `pid` when it is alive and its environment names tunnel `hash` of `tunnels_dir`
/// .why = the guard before any signal: declastruct never signals a process it did not start, and a pid file
/// or a record can be edited, reused after a reboot, or point anywhere; the marker cannot be put on a process
/// after it started
pub fn proven_tunnel_process(pid: u32, tunnels_dir: &Path, hash: &str) -> Option<ProcessInfo> {
    let process = read_process(pid)?;
    (process.tunnel.as_deref() == Some(tunnel_marker(tunnels_dir, hash).as_path()))
        .then_some(process)
}

/// .what = every live process of every tunnel of one tunnels folder, by tunnel hash, from one pass over /proc
/// .why = a tunnel is found from its processes, not only from its files: a damaged or deleted record, a killed
/// supervisor or a replaced folder never hides a process of ours that still serves a port
#[derive(Debug, Clone, Default)]
pub struct TunnelProcesses {
    by_hash: BTreeMap<String, Vec<ProcessInfo>>,
}

impl TunnelProcesses {
    /// .what = reads every process's marker once and keeps those of `tunnels_dir`
    /// .why = plan, status and apply ask about many tunnels; one pass answers them all
    pub fn scan(tunnels_dir: &Path) -> Self {
        let mut by_hash: BTreeMap<String, Vec<ProcessInfo>> = BTreeMap::new();
        for pid in all_pids() {
            // the environment first: most processes are not ours, and for them nothing else is read
            let Some(marker) = read_tunnel_marker(pid) else {
                continue;
            };
            if marker.parent() != Some(tunnels_dir) {
                continue;
            }
            let Some(hash) = marker.file_name().and_then(OsStr::to_str) else {
                continue;
            };
            if let Some(process) = read_process(pid) {
                by_hash.entry(hash.to_string()).or_default().push(process);
            }
        }
        Self { by_hash }
    }

    /// .what = the live processes of tunnel `hash`
    /// .why = a tunnel is open while any of them lives
    pub fn of(&self, hash: &str) -> &[ProcessInfo] {
        self.by_hash.get(hash).map_or(&[], Vec::as_slice)
    }

    /// .what = the hashes of every tunnel with a live process
    /// .why = `status --all` and "who holds this port" look beyond the declared tunnels
    pub fn hashes(&self) -> impl Iterator<Item = &str> {
        self.by_hash.keys().map(String::as_str)
    }

    /// .what = the tunnel that process `pid` belongs to, if it is one of ours
    /// .why = a port held by one of our processes names that tunnel, not "another program"
    pub fn tunnel_of(&self, pid: u32) -> Option<&str> {
        self.by_hash
            .iter()
            .find(|(_, processes)| processes.iter().any(|process| process.pid == pid))
            .map(|(hash, _)| hash.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        let parsed = parse_stat(stat).expect("parses");
        assert_eq!(
            parsed,
            ProcessStat {
                state: 'S',
                parent: 1,
                group: 4242,
                session: 4242,
                start_time: 987654,
            }
        );
    }

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
        let mut ours = sleeper(Some(&tunnel_marker(&dir, "aaaa")));
        let mut other_tunnel = sleeper(Some(&tunnel_marker(&dir, "bbbb")));
        let mut other_home = sleeper(Some(&tunnel_marker(folder.path(), "aaaa")));
        let mut unmarked = sleeper(None);
        assert!(proven_tunnel_process(ours.id(), &dir, "aaaa").is_some());
        assert!(proven_tunnel_process(other_tunnel.id(), &dir, "aaaa").is_none());
        assert!(proven_tunnel_process(other_home.id(), &dir, "aaaa").is_none());
        assert!(proven_tunnel_process(unmarked.id(), &dir, "aaaa").is_none());

        let scan = TunnelProcesses::scan(&dir);
        assert_eq!(
            scan.of("aaaa").iter().map(|p| p.pid).collect::<Vec<_>>(),
            vec![ours.id()]
        );
        assert_eq!(scan.tunnel_of(other_tunnel.id()), Some("bbbb"));
        assert_eq!(scan.tunnel_of(unmarked.id()), None);

        let pid = ours.id();
        for child in [&mut ours, &mut other_tunnel, &mut other_home, &mut unmarked] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            proven_tunnel_process(pid, &dir, "aaaa").is_none(),
            "a dead process is never proven ours"
        );
    }
}
