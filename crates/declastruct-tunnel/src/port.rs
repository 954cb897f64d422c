use std::net::{Ipv4Addr, TcpListener};

use crate::platform::{listening_pids, read_process};

/// .what = checks if a local loopback port is currently in use
/// .why = enables detection of existing tunnels or port conflicts before opening one
pub fn is_port_in_use(port: u16) -> bool {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(_listener) => false,
        Err(error) => error.kind() == std::io::ErrorKind::AddrInUse,
    }
}

/// .what = the process that listens on a local port, as far as the system tells
/// .why = "port in use" must name the holder, so the user can stop it themselves
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortHolder {
    /// the process id
    pub pid: u32,
    /// its command line
    pub command: String,
}

impl std::fmt::Display for PortHolder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "pid {} ({})", self.pid, self.command)
    }
}

/// .what = finds the process listening on `port` (the platform boundary reads it), or `None` when the system does
/// not tell
/// .why = lets errors name who holds a port instead of guessing or killing it
pub fn find_port_holder(port: u16) -> Option<PortHolder> {
    listening_pids(port)
        .into_iter()
        .next()
        .map(|pid| PortHolder {
            pid,
            command: read_process(pid)
                .map(|process| process.command_line())
                .unwrap_or_default(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_held_port_and_its_holder() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert!(is_port_in_use(port));
        // another test of this binary may fork meanwhile: until its child execs, that child holds a copy of the
        // socket too, so the holder is looked for again until it is this process (within 5 s)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let holder = loop {
            let holder = find_port_holder(port).expect("this test process holds it");
            if holder.pid == std::process::id() || std::time::Instant::now() > deadline {
                break holder;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(holder.pid, std::process::id());
        drop(listener);
        // the same: a forked sibling's copy keeps the socket listening until that child execs
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while is_port_in_use(port) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!is_port_in_use(port));
        assert_eq!(find_port_holder(port), None);
    }
}
