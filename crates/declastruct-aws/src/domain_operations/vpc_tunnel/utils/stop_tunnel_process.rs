use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{TunnelMeta, is_port_in_use, is_process_alive, process_start_time};
use crate::error::AwsError;

/// .what = the live (non-zombie) processes whose process group is `group` (Linux /proc)
/// .why = closing a tunnel is done when its whole group is gone: the AWS CLI and the plugin it started
pub fn process_group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(after_command) = stat.rfind(')').map(|end| &stat[end + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = after_command.split_whitespace().collect();
            // fields: state, ppid, pgrp, ...
            fields.first() != Some(&"Z")
                && fields.get(2).and_then(|pgrp| pgrp.parse::<u32>().ok()) == Some(group)
        })
        .collect()
}

/// .what = whether the recorded tunnel process may be signalled: it is alive and started when recorded, or it
/// is gone but processes of its group remain (the kernel does not reuse a pid while its group lives)
/// .why = declastruct never signals a process it did not start
pub fn is_our_tunnel_process(meta: &TunnelMeta) -> bool {
    if is_process_alive(meta.pid) {
        return match meta.process_start_time {
            Some(recorded) => process_start_time(meta.pid) == Some(recorded),
            None => false,
        };
    }
    !process_group_members(meta.process_group).is_empty()
}

/// .what = ends a tunnel's whole process group: SIGINT (the plugin ends its AWS session), then SIGTERM, then
/// SIGKILL, each after a grace period, until no process of the group is left and the port is free
/// .why = killing only the `aws` parent leaves the plugin child holding the port
pub async fn stop_tunnel_process(meta: &TunnelMeta, grace: Duration) -> Result<(), AwsError> {
    if !is_our_tunnel_process(meta) {
        return Ok(());
    }
    let Ok(group) = i32::try_from(meta.process_group) else {
        return Err(AwsError::Unexpected(format!(
            "process group {} is out of range",
            meta.process_group
        )));
    };
    for (signal, wait) in [
        (Signal::SIGINT, grace),
        (Signal::SIGTERM, grace),
        (Signal::SIGKILL, grace),
    ] {
        let _ = killpg(Pid::from_raw(group), signal);
        let deadline = Instant::now() + wait;
        // the leader (the supervisor) ends its own group before it exits: watch it, which costs one small
        // read, and scan the whole group only once it is gone
        while Instant::now() < deadline && is_process_alive(meta.pid) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        while Instant::now() < deadline {
            if process_group_members(meta.process_group).is_empty() {
                wait_for_port_release(meta.local_port, grace).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    Err(AwsError::TunnelCloseFailed {
        port: meta.local_port,
        pid: meta.pid,
    })
}

/// .what = waits until nothing listens on `port`, up to `limit`
/// .why = the listening socket may linger a moment after its process is gone
pub async fn wait_for_port_release(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !is_port_in_use(port) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
