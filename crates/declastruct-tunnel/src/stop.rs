use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::error::TunnelError;
use crate::is_port_in_use;
use crate::platform::{ProcessInfo, read_process};

/// .what = whether `process` is still the very process that was proven ours: same pid, same start time, same
/// tunnel marker
/// .why = between two signals a process may exit and its pid be taken by another program
fn still_ours(process: &ProcessInfo) -> bool {
    read_process(process.pid).is_some_and(|now| {
        now.stat.start_time == process.stat.start_time && now.tunnel == process.tunnel
    })
}

/// .what = ends the given processes of a tunnel, each proven ours by its marker: SIGINT to their process
/// groups (the plugin then ends its AWS session), then SIGTERM, then SIGKILL, each after `grace`, until none
/// is left and nothing listens on `local_port`
/// .why = declastruct never signals a process it did not start: a group is signalled only while one of its
/// members is proven ours (a tunnel's group is the one its supervisor created with `setsid`), never our own
/// group, and the proof is renewed before every signal
pub async fn stop_tunnel_process(
    processes: &[ProcessInfo],
    local_port: Option<u16>,
    grace: Duration,
) -> Result<(), TunnelError> {
    let own_group = u32::try_from(nix::unistd::getpgrp().as_raw()).unwrap_or(0);
    let remaining = || -> Vec<&ProcessInfo> {
        processes
            .iter()
            .filter(|process| process.tunnel.is_some() && still_ours(process))
            .collect()
    };
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL] {
        let alive = remaining();
        if alive.is_empty() {
            break;
        }
        let groups: BTreeSet<u32> = alive.iter().map(|process| process.stat.group).collect();
        for group in groups {
            match i32::try_from(group) {
                Ok(raw) if group != own_group && group > 1 => {
                    let _ = killpg(Pid::from_raw(raw), signal);
                    // a stopped (SIGSTOP) supervisor handles the signal only once it runs again
                    let _ = killpg(Pid::from_raw(raw), Signal::SIGCONT);
                }
                // never our own group: such a process is signalled alone
                _ => {
                    for process in alive.iter().filter(|process| process.stat.group == group) {
                        if let Ok(raw) = i32::try_from(process.pid) {
                            let _ = kill(Pid::from_raw(raw), signal);
                            let _ = kill(Pid::from_raw(raw), Signal::SIGCONT);
                        }
                    }
                }
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !remaining().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if let Some(process) = remaining().first() {
        return Err(TunnelError::TunnelCloseFailed {
            port: local_port.unwrap_or_default(),
            pid: process.pid,
        });
    }
    if let Some(port) = local_port {
        wait_for_port_release(port, grace).await;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TunnelId;
    use crate::platform::{TUNNEL_MARKER, proven_tunnel_process};
    use std::os::unix::process::CommandExt;

    fn sleeper_in_own_group(marker: Option<&std::path::Path>) -> std::process::Child {
        let mut command = std::process::Command::new("sleep");
        command.arg("30").process_group(0);
        if let Some(marker) = marker {
            command.env(TUNNEL_MARKER, marker);
        }
        command.spawn().expect("spawn sleep")
    }

    #[tokio::test]
    async fn stops_a_proven_process_and_its_group() {
        let folder = tempfile::tempdir().expect("tempdir");
        let id = TunnelId::compute("i-1", "h", 1, 2);
        let marker = folder.path().join(id.as_str());
        let mut ours = sleeper_in_own_group(Some(&marker));
        // until it has exec'd `sleep`: before that, its environment is still this test's, without the marker
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let process = loop {
            match proven_tunnel_process(ours.id(), folder.path(), &id) {
                Some(process) => break process,
                None if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                None => panic!("sleep never carried the marker within 5 s"),
            }
        };
        stop_tunnel_process(&[process], None, Duration::from_secs(2))
            .await
            .expect("stopped");
        let status = ours.wait().expect("reaped");
        assert!(!status.success(), "it ended by a signal");
    }

    /// a record can name any pid: without the marker nothing is signalled, even when told to
    #[tokio::test]
    async fn never_signals_an_unmarked_process_even_when_named() {
        let mut foreign = sleeper_in_own_group(None);
        let named = read_process(foreign.id()).expect("alive");
        stop_tunnel_process(&[named], None, Duration::from_millis(200))
            .await
            .expect("nothing to stop");
        assert!(
            foreign.try_wait().expect("try_wait").is_none(),
            "the foreign process lives"
        );
        let _ = foreign.kill();
        let _ = foreign.wait();
    }
}
