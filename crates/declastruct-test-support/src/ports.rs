use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// .what = a loopback port nothing listens on right now
/// .why = tests never use fixed ports, so they run in parallel and beside anything else
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map_or_else(
            |error| panic!("no free loopback port: {error}"),
            |address| address.port(),
        )
}

/// .what = waits until something accepts connections on a loopback port
/// .why = servers started by tests take a moment
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
