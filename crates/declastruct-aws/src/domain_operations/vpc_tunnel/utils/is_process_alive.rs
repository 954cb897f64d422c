use super::tunnel_processes::read_stat;

/// .what = checks if a process with the given pid is still running (a zombie counts as dead)
/// .why = enables detection of crashed tunnel processes
pub fn is_process_alive(pid: u32) -> bool {
    if std::path::Path::new("/proc/self/stat").exists() {
        return read_stat(pid).is_some_and(|stat| stat.state != 'Z');
    }
    // no procfs: fall back to signal 0, which checks existence only
    i32::try_from(pid)
        .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}

/// .what = when the process started, in clock ticks since boot (Linux), or `None` when unknown
/// .why = a pid reused by another program must never pass for our tunnel: the start time tells them apart
pub fn process_start_time(pid: u32) -> Option<u64> {
    read_stat(pid).map(|stat| stat.start_time)
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
