use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// .what = whether the database answers through a tunnel whose process is alive, and if not, why
/// .why = a live process that does not serve is reported as OPEN and unhealthy, with its cause: a CLOSED
/// manifest closes it, an OPEN one heals it; it is never taken for CLOSED
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelHealth {
    /// the database answered (or, without a protocol probe, the listener did)
    pub healthy: bool,
    /// why not, when not; what was not verified, when healthy without a protocol probe
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl TunnelHealth {
    /// .what = healthy, with nothing to add
    /// .why = the database answered its protocol's probe
    pub fn ok() -> Self {
        Self {
            healthy: true,
            reason: None,
        }
    }

    /// .what = unhealthy, with the cause
    /// .why = every failed check says why
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            healthy: false,
            reason: Some(reason.into()),
        }
    }

    /// .what = the health in a few words: `healthy`, or `unhealthy: cause`
    /// .why = tables and plan differences show it the same way
    pub fn describe(&self) -> String {
        match (self.healthy, &self.reason) {
            (true, None) => "healthy".into(),
            (true, Some(note)) => format!("healthy ({note})"),
            (false, reason) => format!(
                "unhealthy: {}",
                reason.as_deref().unwrap_or("no reason given")
            ),
        }
    }
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// .what = checks that the database answers through the local port: PostgreSQL's SSLRequest, MySQL's greeting,
/// otherwise a TCP connect
/// .why = verifies the tunnel is functional beyond just port binding
pub async fn is_tunnel_healthy(port: u16, engine: Option<&str>, limit: Duration) -> TunnelHealth {
    probe_tunnel(port, engine, limit)
        .await
        .unwrap_or_else(NoAnswer::into_health)
}

/// .what = the probe got a connection but no answer within its limit
/// .why = through a basic-mode session that serves another client, that is what a healthy tunnel looks like
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoAnswer {
    /// the limit waited
    pub limit: Duration,
}

impl NoAnswer {
    /// .what = the failed health this is, when nothing explains the silence
    /// .why = the usual cause is a bastion that cannot reach the database
    pub fn into_health(self) -> TunnelHealth {
        TunnelHealth::failed(format!(
            "the tunnel is up but the database does not answer through it within {} s: check the bastion's security group and the cluster",
            self.limit.as_secs()
        ))
    }
}

/// .what = the probe's verdict, or `NoAnswer` when it waited its whole limit
/// .why = callers that know the session serves one client at a time tell silence from failure
pub async fn probe_tunnel(
    port: u16,
    engine: Option<&str>,
    limit: Duration,
) -> Result<TunnelHealth, NoAnswer> {
    probe_tunnel_at(Ipv4Addr::LOCALHOST.into(), port, engine, limit).await
}

/// .what = `probe_tunnel` through `address` (a tunnel exposed on an address of its own)
/// .why = see `probe_tunnel`
pub async fn probe_tunnel_at(
    address: std::net::IpAddr,
    port: u16,
    engine: Option<&str>,
    limit: Duration,
) -> Result<TunnelHealth, NoAnswer> {
    tokio::time::timeout(limit, probe(address, port, engine))
        .await
        .map_err(|_| NoAnswer { limit })
}

async fn probe(address: std::net::IpAddr, port: u16, engine: Option<&str>) -> TunnelHealth {
    let mut stream = match TcpStream::connect((address, port)).await {
        Ok(stream) => stream,
        Err(error) => {
            return TunnelHealth::failed(format!("nothing answers on local port {port}: {error}"));
        }
    };
    let unreachable = "the tunnel is up but the database does not answer through it: check the bastion's security group and the cluster";
    let engine = engine.unwrap_or_default();
    if engine.contains("postgres") {
        if stream.write_all(&SSL_REQUEST).await.is_err() {
            return TunnelHealth::failed(unreachable);
        }
        let mut answer = [0u8; 1];
        return match stream.read_exact(&mut answer).await {
            Ok(_) if answer[0] == b'S' || answer[0] == b'N' => TunnelHealth::ok(),
            Ok(_) => TunnelHealth::failed(format!(
                "something answers on local port {port}, but not as PostgreSQL does"
            )),
            Err(_) => TunnelHealth::failed(unreachable),
        };
    }
    if engine.contains("mysql") {
        let mut greeting = [0u8; 5];
        return match stream.read_exact(&mut greeting).await {
            // a MySQL packet header (3-byte length, sequence 0) followed by protocol version 10
            Ok(_) if greeting[3] == 0 && greeting[4] == 10 => TunnelHealth::ok(),
            Ok(_) => TunnelHealth::failed(format!(
                "something answers on local port {port}, but not as MySQL does"
            )),
            Err(_) => TunnelHealth::failed(unreachable),
        };
    }
    if engine.contains("redis") || engine.contains("valkey") {
        // RESP: an inline PING is answered `+PONG`, or `-NOAUTH ...` by a server that wants a password: either way
        // Redis answers
        if stream.write_all(b"PING\r\n").await.is_err() {
            return TunnelHealth::failed(unreachable);
        }
        let mut answer = [0u8; 1];
        return match stream.read_exact(&mut answer).await {
            Ok(_) if answer[0] == b'+' || answer[0] == b'-' => TunnelHealth::ok(),
            Ok(_) => TunnelHealth::failed(format!(
                "something answers on local port {port}, but not as Redis does"
            )),
            Err(_) => TunnelHealth::failed(unreachable),
        };
    }
    // no protocol to speak: the listener accepted; a far end that refuses ends the connection at once, while a
    // service waits for its client to speak
    let mut first = [0u8; 1];
    if let Ok(Ok(0) | Err(_)) =
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut first)).await
    {
        return TunnelHealth::failed(
            "the tunnel accepts but the far end closed the connection at once: the bastion cannot reach the host and port (check its security group, and that the service listens)",
        );
    }
    TunnelHealth {
        healthy: true,
        reason: Some(format!(
            "listener only, database not verified: no protocol probe for {}",
            if engine.is_empty() {
                "an unknown engine".to_string()
            } else {
                format!("engine `{engine}`")
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve(reply: Option<&'static [u8]>) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = [0u8; 8];
                let _ = socket.read(&mut request).await;
                match reply {
                    Some(reply) => {
                        let _ = socket.write_all(reply).await;
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    None => drop(socket),
                }
            }
        });
        port
    }

    #[tokio::test]
    async fn postgres_answering_ssl_request_is_healthy() {
        let port = serve(Some(b"N")).await;
        let health =
            is_tunnel_healthy(port, Some("aurora-postgresql"), Duration::from_secs(2)).await;
        assert_eq!(health, TunnelHealth::ok());
    }

    #[tokio::test]
    async fn a_listener_that_hangs_up_is_not_a_database() {
        let port = serve(None).await;
        let health = is_tunnel_healthy(port, Some("postgres"), Duration::from_secs(2)).await;
        assert!(!health.healthy);
        assert!(health.reason.unwrap_or_default().contains("security group"));
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy() {
        let port = {
            let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            listener.local_addr().expect("address").port()
        };
        let health = is_tunnel_healthy(port, None, Duration::from_secs(2)).await;
        assert!(!health.healthy);
    }

    #[tokio::test]
    async fn redis_answers_ping() {
        let port = serve(Some(b"+PONG\r\n")).await;
        let health = is_tunnel_healthy(port, Some("redis"), Duration::from_secs(2)).await;
        assert_eq!(health, TunnelHealth::ok());
    }

    #[tokio::test]
    async fn a_far_end_that_hangs_up_at_once_is_not_a_listener() {
        // what the plugin does to a client when the bastion cannot reach the destination
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let health = is_tunnel_healthy(port, None, Duration::from_secs(2)).await;
        assert!(!health.healthy, "{health:?}");
        assert!(health.describe().contains("closed the connection at once"));
    }

    #[tokio::test]
    async fn without_a_protocol_probe_a_listener_is_only_a_listener() {
        let port = serve(Some(b"+PONG\r\n")).await;
        let health = is_tunnel_healthy(port, Some("docdb"), Duration::from_secs(2)).await;
        assert!(health.healthy);
        assert_eq!(
            health.describe(),
            "healthy (listener only, database not verified: no protocol probe for engine `docdb`)"
        );
    }
}
