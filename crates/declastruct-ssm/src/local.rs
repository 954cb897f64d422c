//! .what = the local side of a tunnel: the listeners on the tunnel's port and one pair of tasks per accepted
//! connection
//! .why = the plugin listens on `localhost:PORT` (one address family, whichever the resolver gives) and copies
//! each connection to an smux stream (muxportforwarding.go `handleClientConnections`, `handleDataTransfer`); here
//! every given address is listened on (127.0.0.1 and ::1 for `localhost`) and the copying is bounded both ways

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

use crate::SsmError;

/// .what = the addresses `localhost` means
/// .why = issue 24: "`from.host: localhost` listens on 127.0.0.1 and ::1"
pub fn localhost_addresses() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
}

/// .what = the listeners of a session, and the addresses that could not be listened on
/// .why = a machine without IPv6 has no ::1; that is said, not an error, while another address is listened on
#[derive(Debug)]
pub(crate) struct BoundListeners {
    pub listeners: Vec<TcpListener>,
    pub skipped: Vec<(IpAddr, String)>,
}

/// .what = listens on `port` at every address; port 0 takes a free port on the first and the same on the rest
/// .why = the tunnel's port must be served before the session is started, so a taken port fails before any AWS call
pub(crate) async fn bind_listeners(
    addresses: &[IpAddr],
    port: u16,
) -> Result<BoundListeners, SsmError> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut skipped = Vec::new();
    let mut port = port;
    for address in addresses {
        let socket_address = SocketAddr::new(*address, port);
        match TcpListener::bind(socket_address).await {
            Ok(listener) => {
                if port == 0 {
                    port = listener.local_addr().map_or(0, |bound| bound.port());
                }
                listeners.push(listener);
            }
            // no such address here (IPv6 off): skipped while another address serves
            Err(error)
                if (error.kind() == ErrorKind::AddrNotAvailable
                    || error.raw_os_error() == Some(97 /* EAFNOSUPPORT */))
                    && addresses.len() > 1 =>
            {
                skipped.push((*address, error.to_string()));
            }
            Err(error) => {
                return Err(SsmError::LocalListener {
                    address: socket_address,
                    reason: error.to_string(),
                });
            }
        }
    }
    if listeners.is_empty() {
        let address = addresses.first().map_or_else(
            || SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            |address| SocketAddr::new(*address, port),
        );
        let reason = skipped.first().map_or_else(
            || "no address to listen on".to_owned(),
            |(_, why)| why.clone(),
        );
        return Err(SsmError::LocalListener { address, reason });
    }
    Ok(BoundListeners { listeners, skipped })
}

/// .what = accepts connections on every listener and hands them to the session
/// .why = the session takes them when it can (basic mode: one at a time); the bounded channel leaves the rest in
/// the listen backlog
pub(crate) fn spawn_acceptors(
    listeners: Vec<TcpListener>,
    accepted: &mpsc::Sender<TcpStream>,
) -> Vec<AbortHandle> {
    listeners
        .into_iter()
        .map(|listener| {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _peer)) => {
                            let _ = stream.set_nodelay(true);
                            if accepted.send(stream).await.is_err() {
                                return;
                            }
                        }
                        Err(error) => {
                            // out of descriptors and the like: the plugin logs and accepts again
                            // (muxportforwarding.go `handleClientConnections`); a pause keeps it from spinning
                            tracing::warn!("accepting a local connection failed: {error}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            })
            .abort_handle()
        })
        .collect()
}

/// .what = what a local connection's reader tells the session
/// .why = data to forward, or the end of the connection
#[derive(Debug)]
pub(crate) enum Upstream {
    /// bytes read from the local connection
    Data { connection: u32, bytes: Bytes },
    /// the local connection ended (EOF or error)
    Closed { connection: u32 },
}

/// .what = the bytes queued towards local connections, across all of them, and a wake-up when they drain
/// .why = smux v1 has no flow control: when a local client reads slower than the agent sends, the session stops
/// reading the websocket instead of queueing without bound (the plugin's smux stops at 4 MiB, `MaxReceiveBuffer`)
#[derive(Debug, Default)]
pub(crate) struct DownstreamBudget {
    queued: AtomicUsize,
    drained: Notify,
}

impl DownstreamBudget {
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub async fn wait_below(&self, limit: usize) {
        loop {
            let notified = self.drained.notified();
            if self.queued() < limit {
                return;
            }
            notified.await;
        }
    }

    fn add(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::AcqRel);
    }

    fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.drained.notify_waiters();
    }
}

/// .what = the session's handle on one local connection
/// .why = dropping it closes the connection once what was queued to it is written
#[derive(Debug)]
pub(crate) struct LocalConnection {
    downstream: mpsc::UnboundedSender<Bytes>,
    reader: AbortHandle,
    budget: Arc<DownstreamBudget>,
    pub peer: Option<SocketAddr>,
}

impl LocalConnection {
    /// .what = queues bytes to write to the local connection
    /// .why = the writer task writes them in order
    pub fn write(&self, bytes: Bytes) {
        let length = bytes.len();
        self.budget.add(length);
        if self.downstream.send(bytes).is_err() {
            self.budget.release(length);
        }
    }
}

impl Drop for LocalConnection {
    fn drop(&mut self) {
        // the reader stops now; the writer ends when its queue is empty (the sender is dropped with self)
        self.reader.abort();
    }
}

/// .what = starts the reader and the writer of an accepted connection
/// .why = the reader forwards what the local client sends (waiting while the session's window is full); the
/// writer writes what the agent sends, then closes
pub(crate) fn spawn_connection(
    connection: u32,
    stream: TcpStream,
    read_size: usize,
    upstream: mpsc::Sender<Upstream>,
    budget: Arc<DownstreamBudget>,
) -> LocalConnection {
    let peer = stream.peer_addr().ok();
    let (mut read_half, mut write_half) = stream.into_split();
    let reader = tokio::spawn(async move {
        loop {
            let mut buffer = BytesMut::with_capacity(read_size);
            match read_half.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => {
                    let _ = upstream.send(Upstream::Closed { connection }).await;
                    return;
                }
                Ok(_) => {
                    if upstream
                        .send(Upstream::Data {
                            connection,
                            bytes: buffer.freeze(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
    .abort_handle();
    let (downstream, mut queue) = mpsc::unbounded_channel::<Bytes>();
    let writer_budget = Arc::clone(&budget);
    tokio::spawn(async move {
        let mut failed = false;
        while let Some(bytes) = queue.recv().await {
            if !failed && write_half.write_all(&bytes).await.is_err() {
                failed = true;
            }
            writer_budget.release(bytes.len());
        }
        if !failed {
            let _ = write_half.shutdown().await;
        }
    });
    LocalConnection {
        downstream,
        reader,
        budget,
        peer,
    }
}
