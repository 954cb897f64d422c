use std::net::{Ipv4Addr, TcpListener};

use super::tunnel_processes::{all_pids, read_process};

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

/// .what = finds the process listening on `port` through /proc (Linux), or `None` when the system does not tell
/// .why = lets errors name who holds a port instead of guessing or killing it
pub fn find_port_holder(port: u16) -> Option<PortHolder> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    all_pids().into_iter().find_map(|pid| {
        let descriptors = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        let holds = descriptors.flatten().any(|descriptor| {
            std::fs::read_link(descriptor.path())
                .ok()
                .and_then(|target| {
                    target
                        .to_str()
                        .map(|target| targets.iter().any(|wanted| wanted == target))
                })
                .unwrap_or(false)
        });
        holds.then(|| PortHolder {
            pid,
            command: read_process(pid)
                .map(|process| process.command_line())
                .unwrap_or_default(),
        })
    })
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

    #[test]
    fn parses_listening_sockets_only() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1E5F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n   1: 0100007F:1E5F 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n";
        assert_eq!(listening_inodes(table, 0x1E5F), vec!["4242".to_string()]);
    }
}
