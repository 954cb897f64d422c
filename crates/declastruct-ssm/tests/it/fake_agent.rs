//! .what = a minimal in-process stand-in for the Session Manager service and the SSM agent: the three API calls,
//! the websocket, the agent's handshake, its data channel, its smux server (mux) or single connection (basic)
//! .why = the native transport's integration tests until the workspace's SSM simulator serves them; each behaviour
//! follows the agent's source (aws/amazon-ssm-agent `agent/session/datachannel/datachannel.go`,
//! `agent/session/plugins/port/port_mux.go`, `port_basic.go`), and knobs break it on purpose (abort the websocket,
//! drop messages, reorder them, refuse the destination, ask for KMS)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use declastruct_ssm::channel::{DataChannelState, Window};
use declastruct_ssm::message::{ClientMessage, Flag, PayloadType, message_type};
use declastruct_ssm::payloads::{AcknowledgeContent, OpenDataChannelInput};
use declastruct_ssm::smux::{self, Command, FrameReader};
use declastruct_ssm::{ResumedSession, SessionApi, SsmError, StartSessionInput, StartedSession};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// how the fake agent behaves
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub agent_version: String,
    pub destination: SocketAddr,
    pub kms_key: Option<String>,
    /// the client's n-th stream message (1-based, counted over the session) is dropped unprocessed, unacknowledged
    pub drop_every: Option<usize>,
    /// send each pair of output messages in swapped order
    pub reorder: bool,
    /// ResumeSession answers without a token
    pub resume_without_token: bool,
}

impl AgentConfig {
    pub fn new(agent_version: &str, destination: SocketAddr) -> Self {
        Self {
            agent_version: agent_version.to_owned(),
            destination,
            kms_key: None,
            drop_every: None,
            reorder: false,
            resume_without_token: false,
        }
    }
}

/// what the fake saw, for assertions
#[derive(Debug, Default)]
pub struct Observed {
    pub start_sessions: AtomicU32,
    pub resume_sessions: AtomicU32,
    pub terminate_sessions: AtomicU32,
    pub terminate_flags: AtomicU32,
    pub disconnect_flags: AtomicU32,
    pub websockets: AtomicU32,
    pub handshake_response: Mutex<Option<serde_json::Value>>,
    pub open_messages: Mutex<Vec<OpenDataChannelInput>>,
    pub client_sequence_seen: AtomicUsize,
    pub resends_seen: AtomicUsize,
    pub uploaded_bytes: AtomicUsize,
}

enum Control {
    Abort,
    CloseChannel(String),
}

/// the service and the agent of one session
pub struct FakeAgent {
    pub url: String,
    pub observed: Arc<Observed>,
    control: mpsc::UnboundedSender<Control>,
    tokens: Arc<std::sync::Mutex<Vec<String>>>,
    config: AgentConfig,
    local_port: Arc<std::sync::Mutex<String>>,
}

impl FakeAgent {
    pub async fn start(config: AgentConfig) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let url = format!("ws://{address}/v1/data-channel/session-1?role=publish_subscribe");
        let observed = Arc::new(Observed::default());
        let tokens = Arc::new(std::sync::Mutex::new(vec!["token-0".to_owned()]));
        let (control, control_receiver) = mpsc::unbounded_channel();
        let (sockets, socket_receiver) = mpsc::unbounded_channel();
        let accept_observed = Arc::clone(&observed);
        let accept_tokens = Arc::clone(&tokens);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                // streaming.go `FinalizeDataChannelHandshake`: the first frame is the open message
                let Some(Ok(Message::Text(text))) = socket.next().await else {
                    continue;
                };
                let Ok(open) = serde_json::from_str::<OpenDataChannelInput>(&text) else {
                    continue;
                };
                let known = accept_tokens
                    .lock()
                    .is_ok_and(|tokens| tokens.contains(&open.token_value));
                accept_observed.open_messages.lock().await.push(open);
                if !known {
                    continue;
                }
                accept_observed.websockets.fetch_add(1, Ordering::SeqCst);
                if sockets.send(socket).is_err() {
                    return;
                }
            }
        });
        let local_port = Arc::new(std::sync::Mutex::new("0".to_owned()));
        let agent = AgentSession::new(
            config.clone(),
            Arc::clone(&observed),
            Arc::clone(&local_port),
        );
        tokio::spawn(agent.run(socket_receiver, control_receiver));
        Arc::new(Self {
            local_port,
            url,
            observed,
            control,
            tokens,
            config,
        })
    }

    /// drop the current websocket without a close frame, as a network failure does
    pub fn abort_websocket(&self) {
        let _ = self.control.send(Control::Abort);
    }

    /// the agent ends the session with a channel_closed message
    pub fn close_channel(&self, output: &str) {
        let _ = self.control.send(Control::CloseChannel(output.to_owned()));
    }
}

impl SessionApi for FakeAgent {
    fn start_session<'a>(
        &'a self,
        input: &'a StartSessionInput,
    ) -> BoxFuture<'a, Result<StartedSession, SsmError>> {
        Box::pin(async move {
            self.observed.start_sessions.fetch_add(1, Ordering::SeqCst);
            assert!(
                input
                    .document_name
                    .starts_with("AWS-StartPortForwardingSession")
            );
            if let (Some(port), Ok(mut local_port)) = (
                input
                    .parameters
                    .get("localPortNumber")
                    .and_then(|ports| ports.first()),
                self.local_port.lock(),
            ) {
                local_port.clone_from(port);
            }
            Ok(StartedSession {
                session_id: "session-1".to_owned(),
                stream_url: self.url.clone(),
                token_value: "token-0".to_owned(),
            })
        })
    }

    fn resume_session<'a>(
        &'a self,
        _session_id: &'a str,
    ) -> BoxFuture<'a, Result<ResumedSession, SsmError>> {
        Box::pin(async move {
            let count = self.observed.resume_sessions.fetch_add(1, Ordering::SeqCst) + 1;
            if self.config.resume_without_token {
                return Ok(ResumedSession::default());
            }
            let token = format!("token-{count}");
            if let Ok(mut tokens) = self.tokens.lock() {
                tokens.push(token.clone());
            }
            Ok(ResumedSession {
                stream_url: Some(self.url.clone()),
                token_value: Some(token),
            })
        })
    }

    fn terminate_session<'a>(
        &'a self,
        _session_id: &'a str,
    ) -> BoxFuture<'a, Result<(), SsmError>> {
        Box::pin(async move {
            self.observed
                .terminate_sessions
                .fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

/// what a destination connection's reader reports
enum FromDestination {
    Data(u32, Bytes),
    Closed(u32),
    Refused(u32),
}

struct AgentSession {
    config: AgentConfig,
    local_port: Arc<std::sync::Mutex<String>>,
    observed: Arc<Observed>,
    channel: DataChannelState,
    handshake_done: bool,
    mux: bool,
    frames: FrameReader,
    destinations: HashMap<u32, OwnedWriteHalf>,
    pending: BytesMut,
    outbox: Vec<Bytes>,
    held: Option<Bytes>,
    arrivals: usize,
    dropped: std::collections::HashSet<i64>,
    basic_generation: u32,
}

impl AgentSession {
    fn new(
        config: AgentConfig,
        observed: Arc<Observed>,
        local_port: Arc<std::sync::Mutex<String>>,
    ) -> Self {
        let mux = declastruct_ssm::version::is_newer_than(
            &config.agent_version,
            declastruct_ssm::version::TCP_MULTIPLEXING_AFTER,
        );
        Self {
            config,
            local_port,
            observed,
            channel: DataChannelState::sending(
                message_type::OUTPUT_STREAM_DATA,
                Window {
                    max_messages: 100_000,
                    max_bytes: usize::MAX,
                },
            ),
            handshake_done: false,
            mux,
            frames: FrameReader::default(),
            destinations: HashMap::new(),
            pending: BytesMut::new(),
            outbox: Vec::new(),
            held: None,
            arrivals: 0,
            dropped: std::collections::HashSet::new(),
            basic_generation: 0,
        }
    }

    fn send_stream(&mut self, payload_type: PayloadType, payload: Bytes) {
        let encoded =
            self.channel
                .send_stream_message(payload_type as u32, payload, Instant::now());
        if self.config.reorder {
            match self.held.take() {
                None => self.held = Some(encoded),
                Some(first) => {
                    self.outbox.push(encoded);
                    self.outbox.push(first);
                }
            }
        } else {
            self.outbox.push(encoded);
        }
    }

    async fn run(
        mut self,
        mut sockets: mpsc::UnboundedReceiver<WebSocketStream<TcpStream>>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let (from_destination_sender, mut from_destination) = mpsc::unbounded_channel();
        let mut socket: Option<WebSocketStream<TcpStream>> = None;
        let mut resend = tokio::time::interval(Duration::from_millis(100));
        let mut flush_held = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                new_socket = sockets.recv() => {
                    let Some(new_socket) = new_socket else { return };
                    let first = socket.is_none() && !self.handshake_done && self.channel.next_sequence_number() == 0;
                    socket = Some(new_socket);
                    if first {
                        self.send_handshake_request();
                    } else {
                        let resent = self.channel.resend_all(Instant::now());
                        self.outbox.extend(resent);
                    }
                }
                incoming = async { match socket.as_mut() { Some(socket) => socket.next().await, None => std::future::pending().await } } => {
                    match incoming {
                        Some(Ok(Message::Binary(bytes))) => self.on_message(&bytes, &from_destination_sender).await,
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => socket = None,
                    }
                }
                from = from_destination.recv() => {
                    match from {
                        Some(FromDestination::Data(stream, bytes)) => {
                            if self.mux {
                                smux::put_data(&mut self.pending, stream, &bytes);
                            } else if stream == self.basic_generation {
                                self.pending.extend_from_slice(&bytes);
                            }
                        }
                        Some(FromDestination::Closed(stream)) if self.mux && self.destinations.remove(&stream).is_some() => {
                            smux::put_frame(&mut self.pending, Command::Fin, stream, &[]);
                        }
                        Some(FromDestination::Refused(stream)) => {
                            // port_mux.go `handleServerConnections`: ConnectToPortError, then the stream is closed
                            self.cut_pending();
                            self.send_stream(PayloadType::Flag, Flag::ConnectToPortError.to_payload());
                            smux::put_frame(&mut self.pending, Command::Fin, stream, &[]);
                        }
                        Some(FromDestination::Closed(_)) | None => {}
                    }
                }
                command = control.recv() => match command {
                    Some(Control::Abort) => socket = None,
                    Some(Control::CloseChannel(output)) => {
                        let payload = serde_json::json!({"MessageId": "m", "SessionId": "session-1", "Output": output, "MessageType": "channel_closed", "SchemaVersion": 1, "CreatedDate": "", "DestinationId": ""});
                        let message = ClientMessage::new(message_type::CHANNEL_CLOSED, 0, 0, 0, Bytes::from(payload.to_string()));
                        self.outbox.push(message.encode());
                    }
                    None => return,
                },
                _ = resend.tick() => {
                    if let Ok(Some(message)) = self.channel.due_retransmission(Instant::now()) {
                        self.outbox.push(message);
                    }
                }
                _ = flush_held.tick() => {
                    if let Some(held) = self.held.take() {
                        self.outbox.push(held);
                    }
                }
            }
            self.cut_pending();
            if let Some(current) = socket.as_mut() {
                let mut failed = false;
                for message in self.outbox.drain(..) {
                    if current.feed(Message::Binary(message)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || current.flush().await.is_err() {
                    socket = None;
                }
            } else {
                // while no websocket is connected, what would have been sent waits in the retransmission buffer
                self.outbox.clear();
            }
        }
    }

    /// the agent reads its smux socket in 1024-byte packets (port_mux.go `transferDataToMgs`)
    fn cut_pending(&mut self) {
        while !self.pending.is_empty() {
            let chunk = self.pending.split_to(self.pending.len().min(1024)).freeze();
            self.send_stream(PayloadType::Output, chunk);
        }
    }

    fn send_handshake_request(&mut self) {
        let local_port = self
            .local_port
            .lock()
            .map(|port| port.clone())
            .unwrap_or_default();
        let mut actions = vec![serde_json::json!({
            "ActionType": "SessionType",
            "ActionParameters": {"SessionType": "Port", "Properties": {"portNumber": self.config.destination.port().to_string(), "type": "LocalPortForwarding", "localPortNumber": local_port}}
        })];
        if let Some(key) = &self.config.kms_key {
            actions.push(serde_json::json!({"ActionType": "KMSEncryption", "ActionParameters": {"KMSKeyId": key}}));
        }
        let request = serde_json::json!({"AgentVersion": self.config.agent_version, "RequestedClientActions": actions});
        self.send_stream(
            PayloadType::HandshakeRequest,
            Bytes::from(request.to_string()),
        );
    }

    async fn on_message(
        &mut self,
        bytes: &Bytes,
        from_destination: &mpsc::UnboundedSender<FromDestination>,
    ) {
        let Ok(message) = ClientMessage::decode(bytes) else {
            return;
        };
        match message.message_type.as_str() {
            message_type::ACKNOWLEDGE => {
                if let Ok(content) = serde_json::from_slice::<AcknowledgeContent>(&message.payload)
                {
                    self.channel.on_acknowledge(&content, Instant::now());
                }
            }
            message_type::INPUT_STREAM_DATA => {
                let sequence = message.sequence_number;
                self.arrivals += 1;
                if let Some(every) = self.config.drop_every {
                    // lost on the way: neither processed nor acknowledged, so the client must resend it
                    if self.arrivals % every == 0 && self.dropped.insert(sequence) {
                        return;
                    }
                }
                if self.dropped.contains(&sequence) {
                    self.observed.resends_seen.fetch_add(1, Ordering::SeqCst);
                }
                self.observed.client_sequence_seen.fetch_max(
                    usize::try_from(message.sequence_number).unwrap_or(0),
                    Ordering::SeqCst,
                );
                let received = self.channel.on_stream_message(message);
                self.outbox.extend(received.acknowledgements);
                for delivered in received.delivered {
                    self.on_client_payload(&delivered, from_destination).await;
                }
            }
            _ => {}
        }
    }

    async fn on_client_payload(
        &mut self,
        message: &ClientMessage,
        from_destination: &mpsc::UnboundedSender<FromDestination>,
    ) {
        match PayloadType::from_u32(message.payload_type) {
            Some(PayloadType::HandshakeResponse) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&message.payload).unwrap_or_default();
                *self.observed.handshake_response.lock().await = Some(value.clone());
                let failed = value["ProcessedClientActions"]
                    .as_array()
                    .is_some_and(|actions| {
                        actions.iter().any(|action| action["ActionStatus"] != 1)
                    });
                if failed {
                    // agent `handleHandshakeResponse`: the session is cancelled
                    return;
                }
                self.handshake_done = true;
                let complete = serde_json::json!({"HandshakeTimeToComplete": 1_000_000, "CustomerMessage": ""});
                self.send_stream(
                    PayloadType::HandshakeComplete,
                    Bytes::from(complete.to_string()),
                );
            }
            Some(PayloadType::Flag) => match Flag::from_payload(&message.payload) {
                Some(Flag::TerminateSession) => {
                    self.observed.terminate_flags.fetch_add(1, Ordering::SeqCst);
                }
                Some(Flag::DisconnectToPort) => {
                    // port_basic.go: the destination connection is closed; the next data dials again
                    self.observed
                        .disconnect_flags
                        .fetch_add(1, Ordering::SeqCst);
                    self.destinations.clear();
                    self.basic_generation += 1;
                }
                _ => {}
            },
            Some(PayloadType::Output) if self.handshake_done => {
                self.observed
                    .uploaded_bytes
                    .fetch_add(message.payload.len(), Ordering::SeqCst);
                if self.mux {
                    self.frames.push(&message.payload);
                    while let Ok(Some(frame)) = self.frames.next_frame() {
                        match frame.command {
                            Command::Syn => self.dial(frame.stream_id, from_destination).await,
                            Command::Psh => {
                                if let Some(destination) =
                                    self.destinations.get_mut(&frame.stream_id)
                                {
                                    let _ = destination.write_all(&frame.data).await;
                                }
                            }
                            Command::Fin => {
                                if let Some(mut destination) =
                                    self.destinations.remove(&frame.stream_id)
                                {
                                    let _ = destination.shutdown().await;
                                }
                            }
                            Command::Nop | Command::Upd => {}
                        }
                    }
                } else {
                    let generation = self.basic_generation;
                    if !self.destinations.contains_key(&generation) {
                        self.dial(generation, from_destination).await;
                    }
                    if let Some(destination) = self.destinations.get_mut(&generation) {
                        let _ = destination.write_all(&message.payload).await;
                    }
                }
            }
            _ => {}
        }
    }

    async fn dial(
        &mut self,
        stream: u32,
        from_destination: &mpsc::UnboundedSender<FromDestination>,
    ) {
        match TcpStream::connect(self.config.destination).await {
            Ok(connection) => {
                let (mut read_half, write_half) = connection.into_split();
                self.destinations.insert(stream, write_half);
                let sender = from_destination.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 32 * 1024];
                    loop {
                        match read_half.read(&mut buffer).await {
                            Ok(0) | Err(_) => {
                                let _ = sender.send(FromDestination::Closed(stream));
                                return;
                            }
                            Ok(count) => {
                                if sender
                                    .send(FromDestination::Data(
                                        stream,
                                        Bytes::copy_from_slice(&buffer[..count]),
                                    ))
                                    .is_err()
                                {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            Err(_) => {
                let _ = from_destination.send(FromDestination::Refused(stream));
            }
        }
    }
}

/// an echo server on loopback: the destination
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

/// a loopback address where nothing listens
pub async fn refusing_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    address
}

/// a destination for measurements: `U` + u64 length receives that many bytes and answers `ok`; `D` + u64 length
/// sends that many bytes
pub async fn bench_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut command = [0u8; 9];
                if stream.read_exact(&mut command).await.is_err() {
                    return;
                }
                let mut length_bytes = [0u8; 8];
                length_bytes.copy_from_slice(&command[1..9]);
                let mut remaining = u64::from_be_bytes(length_bytes);
                let mut buffer = vec![0u8; 64 * 1024];
                if command[0] == b'U' {
                    while remaining > 0 {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(count) => remaining = remaining.saturating_sub(count as u64),
                        }
                    }
                    let _ = stream.write_all(b"ok").await;
                } else {
                    while remaining > 0 {
                        let count = usize::try_from(remaining.min(buffer.len() as u64))
                            .unwrap_or(buffer.len());
                        if stream.write_all(&buffer[..count]).await.is_err() {
                            return;
                        }
                        remaining -= count as u64;
                    }
                }
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
            });
        }
    });
    address
}
