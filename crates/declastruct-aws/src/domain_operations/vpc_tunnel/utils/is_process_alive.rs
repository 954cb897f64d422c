/// .what = checks if a process with the given pid is still running (a zombie counts as dead)
/// .why = enables detection of crashed tunnel processes
pub fn is_process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).and_then(|fields| fields.first().copied()) != Some("Z"),
        Err(_) if std::path::Path::new("/proc/self/stat").exists() => false,
        // no procfs: fall back to signal 0, which checks existence only
        Err(_) => i32::try_from(pid)
            .map(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
            .unwrap_or(false),
    }
}

/// .what = when the process started, in clock ticks since boot (Linux), or `None` when unknown
/// .why = a pid reused by another program must never pass for our tunnel: the start time tells them apart
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command: state is field 3, starttime is field 22
    stat_fields(&stat)?.get(22 - 3)?.parse().ok()
}

/// the fields of /proc/PID/stat after the parenthesised command, which may itself hold spaces
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let after_command = &stat[stat.rfind(')')? + 1..];
    Some(after_command.split_whitespace().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_has_a_start_time() {
        assert!(is_process_alive(std::process::id()));
        assert!(process_start_time(std::process::id()).is_some());
    }

    #[test]
    fn an_exited_child_is_dead_even_before_it_is_reaped() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!is_process_alive(pid), "a zombie is not alive");
        child.wait().expect("reap");
        assert!(!is_process_alive(pid));
    }
}
