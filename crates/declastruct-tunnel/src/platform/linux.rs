//! .what = the Linux side of the platform boundary: the one reader of `/proc` (a process's state, group, start
//! time, command line and tunnel marker; who listens on a port)
//! .why = every question about processes is answered from the same few files, read the same way

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{ProcessStat, TUNNEL_MARKER};

/// this system's processes can be read
pub const SUPPORTED: bool = true;

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

/// the command line's words of a process
pub fn read_command(pid: u32) -> Vec<String> {
    read_words(pid, "cmdline")
        .unwrap_or_default()
        .into_iter()
        .map(|word| String::from_utf8_lossy(&word).into_owned())
        .collect()
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

/// .what = the processes that hold a listening socket on local `port`, from /proc/net/tcp{,6} and each process's
/// descriptors
/// .why = "port in use" must name the holder, so the user can stop it themselves
pub fn listening_pids(port: u16) -> Vec<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let targets: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    all_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            descriptors.flatten().any(|descriptor| {
                std::fs::read_link(descriptor.path())
                    .ok()
                    .is_some_and(|target| {
                        target
                            .to_str()
                            .is_some_and(|target| targets.iter().any(|wanted| wanted == target))
                    })
            })
        })
        .collect()
}

/// .what = how many TCP connections on this machine have local port `port` and are established: the clients a
/// local listener on `port` has accepted
/// .why = `idleClose`: a tunnel with a client connection (a query running, a pool holding one) is in use
pub fn established_connections(port: u16) -> usize {
    let wanted = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.get(1).and_then(|local| local.rsplit(':').next())
                        == Some(wanted.as_str())
                        && fields.get(3) == Some(&"01")
                })
                .count()
        })
        .sum()
}

/// inodes of sockets in LISTEN state (0A) on `port` in a /proc/net/tcp table
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let wanted = format!("{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            (local_port == wanted && *fields.get(3)? == "0A")
                .then(|| fields.get(9).map(std::string::ToString::to_string))?
        })
        .collect()
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
    fn parses_listening_sockets_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1E5F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n   1: 0100007F:1E5F 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n";
        assert_eq!(listening_inodes(table, 0x1E5F), vec!["4242".to_string()]);
    }
}
