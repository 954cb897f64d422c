//! .what = a native port-forwarding session: StartSession, the websocket, the handshake, forwarding in mux or
//! basic mode, ResumeSession when the websocket is lost, and TerminateSession on close
//! .why = what the AWS CLI and the session-manager-plugin do for `aws ssm start-session`, in one task of this
//! process (`src/sessionmanagerplugin/session/session.go`, `sessionhandler.go`, `portsession/*.go`,
//! `src/datachannel/streaming.go` in aws/session-manager-plugin)

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use crate::SsmError;
use crate::api::{SdkSessionApi, SessionApi, StartSessionInput};
use crate::channel::{DataChannelState, RESEND_CHECK_INTERVAL, Window};
use crate::local::{self, DownstreamBudget, LocalConnection, Upstream};
use crate::message::{ClientMessage, Flag, PayloadType, message_type};
use crate::payloads::{
    ACTION_KMS_ENCRYPTION, ACTION_SESSION_TYPE, AcknowledgeContent, ActionStatus, ChannelClosed,
    HandshakeCompletePayload, HandshakeRequestPayload, HandshakeResponsePayload,
    KmsEncryptionRequest, LOCAL_PORT_FORWARDING, PortParameters, ProcessedClientAction,
    SessionTypeRequest,
};
use crate::smux::{self, Command as SmuxCommand, FrameReader, StreamIds};
use crate::version::{CLIENT_VERSION, ForwardingMode, TERMINATE_SESSION_FLAG_AFTER, is_newer_than};
use crate::websocket::{DataChannelSocket, displayable_url, open_data_channel};

/// .what = the default largest payload of one message this client sends
/// .why = the plugin sends 1024 bytes and sleeps 1 ms after each (`config.StreamDataPayloadSize`,
/// muxportforwarding.go `transferDataToServer`), ~0.66 MB/s; the agent reads a message of any size (gorilla's
/// `ReadMessage` without a read limit, agent `communicator/websocketchannel.go`) and writes its whole payload to the
/// smux socket (agent `port_mux.go` `HandleStreamMessage`), so larger messages cost no round trips; see
/// docs/architecture.md for the measurement that chose the size
pub const DEFAULT_MAX_MESSAGE_PAYLOAD: usize = 16 * 1024;

/// .what = how long the agent has to complete the handshake
/// .why = the agent gives the client 15 s (`handshakeTimeout`, agent datachannel.go); this side waits a little longer
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// .what = websocket pings, to keep idle connections through proxies and NATs
/// .why = config.go `PingTimeInterval` (5 min), websocketchannel.go `StartPings`
pub const PING_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// .what = how long ResumeSession is retried after the websocket is lost, when the service cannot be reached
/// .why = the plugin tries 5 times in ~3 s (`DataChannelNumMaxRetries`, `DataChannelRetryInitialDelayMillis` 100,
/// `RetryBase` 2, `DataChannelRetryMaxIntervalMillis` 5000) and then stays broken; a laptop changing networks needs
/// longer, and the agent keeps resending for 5 minutes (its 3000 attempts at ≤ 100 ms)
pub const RESUME_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// .what = how many refusals by the service (an error answer to ResumeSession) end the session
/// .why = config.go `DataChannelNumMaxRetries`
pub const RESUME_REFUSALS: u32 = 5;

/// .what = the most bytes queued towards local connections before the websocket is no longer read
/// .why = smux's `MaxReceiveBuffer` (4 MiB, mux.go `DefaultConfig`), the plugin's bound on the same queue
pub const DOWNSTREAM_LIMIT: usize = 4 * 1024 * 1024;

/// .what = how long a close waits for the TerminateSession flag's acknowledgement
/// .why = the flag should reach the agent before the websocket closes; a silent agent does not hold a close
pub const CLOSE_FLAG_WAIT: Duration = Duration::from_secs(1);

/// .what = what to forward, and where to listen
/// .why = the input of [`NativeSession::start`]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardRequest {
    /// the bastion's instance id
    pub target: String,
    /// the host the bastion connects to (the database), or None for the bastion's own port
    pub remote_host: Option<String>,
    /// the destination port
    pub remote_port: u16,
    /// the local port (0: any free port)
    pub local_port: u16,
    /// the local addresses to listen on; [`crate::localhost_addresses`] for `localhost`
    pub local_addresses: Vec<IpAddr>,
}

/// .what = the tunables of a native session
/// .why = defaults for declastruct, changeable for measurements and tests
#[derive(Debug, Clone)]
pub struct NativeOptions {
    /// the largest payload of one message sent (default [`DEFAULT_MAX_MESSAGE_PAYLOAD`])
    pub max_message_payload: usize,
    /// the window of unacknowledged messages
    pub window: Window,
    /// how long the handshake may take
    pub handshake_timeout: Duration,
    /// where progress events go, if anywhere
    pub events: Option<mpsc::UnboundedSender<SessionEvent>>,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            max_message_payload: DEFAULT_MAX_MESSAGE_PAYLOAD,
            window: Window::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            events: None,
        }
    }
}

/// .what = what happens in a session, as it happens
/// .why = the supervisor logs them; their `Display` is the plugin's wording where the plugin has one, so the
/// tunnel's log reads the same whichever transport wrote it (`declastruct-tunnel` `session_output.rs`)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// StartSession answered (session.go `Execute`)
    Started {
        /// the session id
        session_id: String,
    },
    /// the handshake is done and the port is served (muxportforwarding.go `handleClientConnections`)
    PortOpened {
        /// the session id
        session_id: String,
        /// the local port
        port: u16,
        /// the addresses listened on
        addresses: Vec<SocketAddr>,
        /// addresses that could not be listened on (e.g. ::1 without IPv6), with why
        skipped: Vec<(IpAddr, String)>,
        /// how connections are forwarded
        mode: ForwardingMode,
        /// the agent's version
        agent_version: String,
    },
    /// the agent's handshake carried a message for the user (streaming.go `handleHandshakeComplete`)
    CustomerMessage(String),
    /// a local connection was accepted
    ConnectionAccepted {
        /// the session id
        session_id: String,
        /// the local client's address
        peer: Option<SocketAddr>,
    },
    /// the agent could not connect to the destination (flag ConnectToPortError)
    DestinationFailed,
    /// the websocket was lost; the session is being resumed
    Disconnected {
        /// why
        reason: String,
    },
    /// the session was resumed on a new websocket
    Resumed {
        /// the session id
        session_id: String,
        /// the ResumeSession calls it took
        attempts: u32,
        /// messages sent again on the new websocket
        resent: usize,
    },
}

impl fmt::Display for SessionEvent {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Started { session_id } => {
                write!(formatter, "Starting session with SessionId: {session_id}")
            }
            Self::PortOpened {
                session_id,
                port,
                addresses,
                skipped,
                mode,
                agent_version,
            } => {
                write!(formatter, "Port {port} opened for sessionId {session_id}.")?;
                let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                let mode = match mode {
                    ForwardingMode::Mux { .. } => "mux",
                    ForwardingMode::Basic => "basic",
                };
                write!(
                    formatter,
                    " (native: listening on {}; {mode} mode, agent {agent_version}",
                    addresses.join(", ")
                )?;
                for (address, why) in skipped {
                    write!(formatter, "; not on {address}: {why}")?;
                }
                write!(formatter, ")")
            }
            Self::CustomerMessage(message) => write!(formatter, "{message}"),
            Self::ConnectionAccepted { session_id, peer } => match peer {
                Some(peer) => write!(
                    formatter,
                    "Connection accepted for session [{session_id}] from {peer}"
                ),
                None => write!(formatter, "Connection accepted for session [{session_id}]"),
            },
            Self::DestinationFailed => {
                write!(
                    formatter,
                    "Connection to destination port failed, check SSM Agent logs."
                )
            }
            Self::Disconnected { reason } => write!(
                formatter,
                "Data channel lost ({reason}); resuming the session"
            ),
            Self::Resumed {
                session_id,
                attempts,
                resent,
            } => write!(
                formatter,
                "Session {session_id} resumed after {attempts} ResumeSession call(s); {resent} unacknowledged message(s) resent"
            ),
        }
    }
}

/// .what = how a session ended, when it ended without an error
/// .why = the supervisor restarts on some and not on others
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// closed by [`NativeSession::close`] or a [`SessionCloser`]; TerminateSession was called
    Closed,
    /// the service or the agent closed the channel (channel_closed); `output` is its reason, if any
    ChannelClosed {
        /// the reason
        output: String,
    },
    /// ResumeSession answered without a token: the session is over (idle timeout, terminated elsewhere)
    TimedOut,
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => write!(formatter, "closed"),
            Self::ChannelClosed { output } if output.is_empty() => {
                write!(formatter, "the channel was closed")
            }
            Self::ChannelClosed { output } => write!(formatter, "the channel was closed: {output}"),
            Self::TimedOut => write!(formatter, "timed out"),
        }
    }
}

#[derive(Debug)]
enum DriverCommand {
    Close,
}

/// .what = asks a running session to close, from anywhere (a signal handler, another task)
/// .why = [`NativeSession::serve`] holds the session mutably while it waits
#[derive(Debug, Clone)]
pub struct SessionCloser {
    commands: mpsc::Sender<DriverCommand>,
}

impl SessionCloser {
    /// .what = asks the session to close (TerminateSession flag, then the TerminateSession call)
    /// .why = `serve` then returns [`SessionEnd::Closed`]; asking twice, or after the end, does nothing
    pub fn close(&self) {
        let _ = self.commands.try_send(DriverCommand::Close);
    }
}

struct Ready {
    agent_version: String,
    mode: ForwardingMode,
}

/// .what = an open native port-forwarding session
/// .why = the public face of this crate: start it, serve it until it ends, close it
pub struct NativeSession {
    api: Arc<dyn SessionApi>,
    session_id: String,
    local_addresses: Vec<SocketAddr>,
    agent_version: String,
    mode: ForwardingMode,
    commands: mpsc::Sender<DriverCommand>,
    driver: Option<JoinHandle<Result<SessionEnd, SsmError>>>,
    acceptors: Vec<AbortHandle>,
}

impl fmt::Debug for NativeSession {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NativeSession")
            .field("session_id", &self.session_id)
            .field("local_addresses", &self.local_addresses)
            .field("agent_version", &self.agent_version)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl NativeSession {
    /// .what = opens a port-forwarding session through the AWS SDK's configuration
    /// .why = listens on the local addresses first (a taken port fails before any AWS call), then StartSession,
    /// the websocket, the handshake; returns once the port is served. Needs a Tokio runtime with `net`, `time`
    /// and `io`; it spawns its tasks on the current runtime
    pub async fn start(
        config: &aws_types::SdkConfig,
        request: PortForwardRequest,
        options: NativeOptions,
    ) -> Result<Self, SsmError> {
        Self::start_with_api(Arc::new(SdkSessionApi::new(config)), request, options).await
    }

    /// .what = [`NativeSession::start`] with any implementation of the SSM calls
    /// .why = tests and callers with their own client
    pub async fn start_with_api(
        api: Arc<dyn SessionApi>,
        request: PortForwardRequest,
        options: NativeOptions,
    ) -> Result<Self, SsmError> {
        let events = EventSink(options.events.clone());
        let bound = local::bind_listeners(&request.local_addresses, request.local_port).await?;
        let local_addresses: Vec<SocketAddr> = bound
            .listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect();
        let port = local_addresses
            .first()
            .map_or(request.local_port, SocketAddr::port);
        let input = StartSessionInput::port_forwarding(
            &request.target,
            request.remote_host.as_deref(),
            request.remote_port,
            port,
        );
        let started = api.start_session(&input).await?;
        events.emit(SessionEvent::Started {
            session_id: started.session_id.clone(),
        });
        let client_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let socket =
            match open_with_retries(&started.stream_url, &started.token_value, &client_id).await {
                Ok(socket) => socket,
                Err(error) => {
                    let _ = api.terminate_session(&started.session_id).await;
                    return Err(error);
                }
            };
        let (accepted_sender, accepted) = mpsc::channel(16);
        let acceptors = local::spawn_acceptors(bound.listeners, &accepted_sender);
        drop(accepted_sender);
        let (commands, command_receiver) = mpsc::channel(4);
        let (ready_sender, ready_receiver) = oneshot::channel();
        let (upstream_sender, upstream) = mpsc::channel(8);
        let driver = Driver {
            api: Arc::clone(&api),
            target: request.target.clone(),
            session_id: started.session_id.clone(),
            stream_url: started.stream_url.clone(),
            client_id,
            socket,
            channel: DataChannelState::new(options.window),
            max_payload: options.max_message_payload.max(1),
            handshake_timeout: options.handshake_timeout,
            events: events.clone(),
            phase: Phase::Handshaking(Handshake::default()),
            mux_streams: HashMap::new(),
            mux_ids: StreamIds::default(),
            mux_reader: FrameReader::default(),
            basic_connection: None,
            next_basic_connection: 0,
            pending: BytesMut::new(),
            outbox: Vec::new(),
            upstream_sender,
            upstream,
            accepted,
            commands: command_receiver,
            budget: Arc::new(DownstreamBudget::default()),
            paused: false,
            ready: Some(ready_sender),
        };
        let driver = tokio::spawn(driver.run());
        let ready = match ready_receiver.await {
            Ok(ready) => ready,
            Err(_ended) => {
                abort_all(&acceptors);
                let ended = driver.await;
                let _ = api.terminate_session(&started.session_id).await;
                return Err(match ended {
                    Ok(Err(error)) => error,
                    Ok(Ok(end)) => {
                        SsmError::Protocol(format!("the session ended during the handshake: {end}"))
                    }
                    Err(join) => SsmError::Internal(join.to_string()),
                });
            }
        };
        events.emit(SessionEvent::PortOpened {
            session_id: started.session_id.clone(),
            port,
            addresses: local_addresses.clone(),
            skipped: bound.skipped,
            mode: ready.mode,
            agent_version: ready.agent_version.clone(),
        });
        Ok(Self {
            api,
            session_id: started.session_id,
            local_addresses,
            agent_version: ready.agent_version,
            mode: ready.mode,
            commands,
            driver: Some(driver),
            acceptors,
        })
    }

    /// .what = the session id
    /// .why = logs, records, TerminateSession by hand
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// .what = the addresses served, with the port
    /// .why = a port of 0 was chosen here
    pub fn local_addresses(&self) -> &[SocketAddr] {
        &self.local_addresses
    }

    /// .what = the agent's version from the handshake
    /// .why = logs; it decides the mode
    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }

    /// .what = mux or basic
    /// .why = basic mode serves one connection at a time
    pub fn forwarding_mode(&self) -> ForwardingMode {
        self.mode
    }

    /// .what = a handle that closes this session from elsewhere
    /// .why = a signal handler closes while `serve` waits
    pub fn closer(&self) -> SessionCloser {
        SessionCloser {
            commands: self.commands.clone(),
        }
    }

    /// .what = forwards until the session ends: closed by a [`SessionCloser`], closed by the service or the
    /// agent, timed out, or failed
    /// .why = the supervisor's main wait. A close calls TerminateSession (its failure is the error returned); a
    /// failure of the channel terminates the session as the plugin does, without hiding the failure
    pub async fn serve(&mut self) -> Result<SessionEnd, SsmError> {
        let Some(driver) = self.driver.take() else {
            return Ok(SessionEnd::Closed);
        };
        let ended = driver
            .await
            .unwrap_or_else(|join| Err(SsmError::Internal(join.to_string())));
        abort_all(&self.acceptors);
        match &ended {
            Ok(SessionEnd::Closed) => self.api.terminate_session(&self.session_id).await?,
            Ok(SessionEnd::ChannelClosed { .. } | SessionEnd::TimedOut) => {}
            Err(_) => {
                let _ = self.api.terminate_session(&self.session_id).await;
            }
        }
        ended
    }

    /// .what = closes the session: the TerminateSession flag to the agent, the websocket closed, then the
    /// TerminateSession call
    /// .why = what Ctrl-C does to the plugin (muxportforwarding.go `handleControlSignals`), plus the API call the
    /// plugin leaves out, so the session is gone at once rather than after the idle timeout
    pub async fn close(mut self) -> Result<SessionEnd, SsmError> {
        self.closer().close();
        self.serve().await
    }
}

impl Drop for NativeSession {
    fn drop(&mut self) {
        abort_all(&self.acceptors);
        if let Some(driver) = &self.driver {
            driver.abort();
        }
    }
}

/// .what = the client's answer to the agent's HandshakeRequest, and the error that ends the session when an action
/// is refused
/// .why = streaming.go `handleHandshakeRequest` (`ProcessSessionTypeHandshakeAction`,
/// `ProcessKMSEncryptionHandshakeAction`): a `Port` session is taken, any other session type and KMS encryption
/// are answered Failed (2) and refused by name, an unknown action is answered Unsupported (3)
fn answer_handshake(
    request: &HandshakeRequestPayload,
    handshake: &mut Handshake,
) -> (HandshakeResponsePayload, Option<SsmError>) {
    handshake.agent_version.clone_from(&request.agent_version);
    let mut refusal = None;
    let mut processed = Vec::new();
    let mut errors = Vec::new();
    for action in &request.requested_client_actions {
        let (status, error) = match action.action_type.as_str() {
            ACTION_SESSION_TYPE => {
                let session: SessionTypeRequest = serde_json::from_value(
                    action.action_parameters.clone(),
                )
                .unwrap_or(SessionTypeRequest {
                    session_type: String::new(),
                    properties: serde_json::Value::Null,
                });
                handshake.session_type = Some(session.session_type.clone());
                // streaming.go `ProcessSessionTypeHandshakeAction`: "Port" carries the port plugin's properties
                if session.session_type == "Port" {
                    handshake.port =
                        Some(serde_json::from_value(session.properties).unwrap_or_default());
                    (ActionStatus::Success, String::new())
                } else {
                    let error = format!(
                        "Failed to process action {ACTION_SESSION_TYPE}: Unknown session type {}",
                        session.session_type
                    );
                    refusal.get_or_insert(SsmError::UnsupportedSession {
                        session_type: session.session_type,
                        detail: "the native transport forwards ports only".to_owned(),
                    });
                    (ActionStatus::Failed, error)
                }
            }
            ACTION_KMS_ENCRYPTION => {
                let request: KmsEncryptionRequest =
                    serde_json::from_value(action.action_parameters.clone()).unwrap_or_default();
                refusal = Some(SsmError::KmsEncryptionRequested {
                    kms_key_id: request.kms_key_id,
                });
                (
                    ActionStatus::Failed,
                    format!(
                        "Failed to process action {ACTION_KMS_ENCRYPTION}: KMS encryption is not supported by this client (declastruct native transport)"
                    ),
                )
            }
            other => (
                ActionStatus::Unsupported,
                format!("Unsupported action {other}"),
            ),
        };
        if !error.is_empty() {
            errors.push(error.clone());
        }
        processed.push(ProcessedClientAction {
            action_type: action.action_type.clone(),
            action_status: status as i32,
            action_result: serde_json::Value::Null,
            error,
        });
    }
    let response = HandshakeResponsePayload {
        client_version: CLIENT_VERSION.to_owned(),
        processed_client_actions: processed,
        errors: if errors.is_empty() {
            None
        } else {
            Some(errors)
        },
    };
    (response, refusal)
}

fn abort_all(handles: &[AbortHandle]) {
    for handle in handles {
        handle.abort();
    }
}

/// .what = dials the websocket, retrying as the plugin does
/// .why = session.go `OpenDataChannel`: a failed open is retried with the `RepeatableExponentialRetryer` (5
/// attempts, 100–200 ms doubling, at most 5 s apart)
async fn open_with_retries(
    stream_url: &str,
    token_value: &str,
    client_id: &str,
) -> Result<DataChannelSocket, SsmError> {
    let mut delay = first_retry_delay();
    let mut attempt = 1;
    loop {
        match open_data_channel(stream_url, token_value, client_id).await {
            Ok(socket) => return Ok(socket),
            Err(error) if attempt >= RESUME_REFUSALS => return Err(error),
            Err(error) => {
                tracing::debug!("opening the data channel failed (attempt {attempt}): {error}");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    }
}

/// .what = the first pause between retries: 100 to 200 ms
/// .why = sessionhandler.go: `rand.Intn(DataChannelRetryInitialDelayMillis) + DataChannelRetryInitialDelayMillis`
fn first_retry_delay() -> Duration {
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 100 / 256;
    Duration::from_millis(100 + jitter)
}

#[derive(Clone, Default)]
struct EventSink(Option<mpsc::UnboundedSender<SessionEvent>>);

impl EventSink {
    fn emit(&self, event: SessionEvent) {
        tracing::info!("{event}");
        if let Some(sender) = &self.0 {
            let _ = sender.send(event);
        }
    }
}

#[derive(Debug, Default)]
struct Handshake {
    agent_version: String,
    port: Option<PortParameters>,
    session_type: Option<String>,
}

enum Phase {
    Handshaking(Handshake),
    Forwarding {
        mode: ForwardingMode,
        agent_version: String,
    },
}

/// the session's task: owns the websocket, the channel state and the local connections
struct Driver {
    api: Arc<dyn SessionApi>,
    target: String,
    session_id: String,
    stream_url: String,
    client_id: String,
    socket: DataChannelSocket,
    channel: DataChannelState,
    max_payload: usize,
    handshake_timeout: Duration,
    events: EventSink,
    phase: Phase,
    mux_streams: HashMap<u32, LocalConnection>,
    mux_ids: StreamIds,
    mux_reader: FrameReader,
    basic_connection: Option<(u32, LocalConnection)>,
    next_basic_connection: u32,
    /// bytes of local connections (smux frames in mux mode) not yet cut into messages
    pending: BytesMut,
    /// websocket messages to send at the end of this turn
    outbox: Vec<Message>,
    upstream_sender: mpsc::Sender<Upstream>,
    upstream: mpsc::Receiver<Upstream>,
    accepted: mpsc::Receiver<TcpStream>,
    commands: mpsc::Receiver<DriverCommand>,
    budget: Arc<DownstreamBudget>,
    paused: bool,
    ready: Option<oneshot::Sender<Ready>>,
}

/// what one turn of the loop decided
enum Turn {
    Continue,
    End(SessionEnd),
    Lost(String),
    /// the session fails once what is queued is sent (a refused handshake's answer reaches the agent)
    Fail(SsmError),
}

impl Driver {
    /// the task's body; when it ends before the handshake completes, `ready` is dropped unsent and `start`
    /// reports this result
    async fn run(mut self) -> Result<SessionEnd, SsmError> {
        self.run_loop().await
    }

    async fn run_loop(&mut self) -> Result<SessionEnd, SsmError> {
        let mut resend = tokio::time::interval(RESEND_CHECK_INTERVAL);
        resend.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut keep_alive = tokio::time::interval(smux::KEEP_ALIVE_INTERVAL);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        let handshake_deadline = tokio::time::sleep(self.handshake_timeout);
        tokio::pin!(handshake_deadline);
        loop {
            let forwarding = match &self.phase {
                Phase::Forwarding { mode, .. } => Some(*mode),
                Phase::Handshaking(_) => None,
            };
            let can_accept = match forwarding {
                Some(ForwardingMode::Mux { .. }) => true,
                Some(ForwardingMode::Basic) => self.basic_connection.is_none(),
                None => false,
            };
            let can_pull = forwarding.is_some()
                && !self.paused
                && self.pending.len() < self.max_payload
                && self.channel.has_room_for(self.max_payload);
            let can_read_socket = self.budget.queued() < DOWNSTREAM_LIMIT;
            let keep_alive_on =
                matches!(forwarding, Some(ForwardingMode::Mux { keep_alive: true }));
            let budget = Arc::clone(&self.budget);
            let turn = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(DriverCommand::Close) | None => return self.close_gracefully().await,
                },
                incoming = self.socket.next(), if can_read_socket => match incoming {
                    Some(Ok(Message::Binary(bytes))) => self.on_binary(&bytes).unwrap_or_else(Turn::Fail),
                    Some(Ok(Message::Close(frame))) => Turn::Lost(format!("the service closed the websocket ({frame:?})")),
                    Some(Ok(_text_or_control)) => Turn::Continue,
                    Some(Err(error)) => Turn::Lost(error.to_string()),
                    None => Turn::Lost("the websocket ended".to_owned()),
                },
                () = budget.wait_below(DOWNSTREAM_LIMIT), if !can_read_socket => Turn::Continue,
                upstream = self.upstream.recv(), if can_pull => {
                    if let Some(upstream) = upstream {
                        self.on_upstream(upstream);
                        while self.pending.len() < self.max_payload {
                            match self.upstream.try_recv() {
                                Ok(more) => self.on_upstream(more),
                                Err(_) => break,
                            }
                        }
                    }
                    Turn::Continue
                },
                accepted = self.accepted.recv(), if can_accept => {
                    if let Some(stream) = accepted {
                        self.on_accepted(stream);
                    }
                    Turn::Continue
                },
                _ = resend.tick() => {
                    if !self.paused {
                        match self.channel.due_retransmission(Instant::now()) {
                            Ok(Some(message)) => self.outbox.push(Message::Binary(message)),
                            Ok(None) => {}
                            Err(exhausted) => return Err(SsmError::RetransmissionTimeout {
                                session_id: self.session_id.clone(),
                                sequence_number: exhausted.sequence_number,
                            }),
                        }
                    }
                    Turn::Continue
                },
                _ = keep_alive.tick(), if keep_alive_on => {
                    // session.go `keepalive`: a NOP on stream 0 every KeepAliveInterval
                    smux::put_frame(&mut self.pending, SmuxCommand::Nop, 0, &[]);
                    Turn::Continue
                },
                _ = ping.tick() => {
                    self.outbox.push(Message::Ping(Bytes::from_static(b"keepalive")));
                    Turn::Continue
                },
                () = &mut handshake_deadline, if forwarding.is_none() => {
                    return Err(SsmError::HandshakeTimeout {
                        target: self.target.clone(),
                        seconds: self.handshake_timeout.as_secs(),
                    });
                },
            };
            let turn = match turn {
                Turn::Continue => {
                    self.pump_upstream(false);
                    match self.flush().await {
                        Ok(()) => Turn::Continue,
                        Err(reason) => Turn::Lost(reason),
                    }
                }
                Turn::Fail(error) => {
                    let _ = self.flush().await;
                    return Err(error);
                }
                other => other,
            };
            match turn {
                Turn::Continue => {}
                Turn::Fail(error) => return Err(error),
                Turn::End(end) => return Ok(end),
                Turn::Lost(reason) => {
                    if let Some(end) = self.resume(reason).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// sends the outbox: fed one by one, flushed once
    async fn flush(&mut self) -> Result<(), String> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        for message in self.outbox.drain(..) {
            self.socket
                .feed(message)
                .await
                .map_err(|error| error.to_string())?;
        }
        self.socket.flush().await.map_err(|error| error.to_string())
    }

    /// cuts pending local bytes into stream messages while the window has room (or always, `force`)
    fn pump_upstream(&mut self, force: bool) {
        let now = Instant::now();
        while !self.pending.is_empty() {
            let length = self.pending.len().min(self.max_payload);
            if !force && (self.paused || !self.channel.has_room_for(length)) {
                break;
            }
            let chunk = self.pending.split_to(length).freeze();
            let encoded = self
                .channel
                .send_stream_message(PayloadType::Output as u32, chunk, now);
            self.outbox.push(Message::Binary(encoded));
        }
    }

    fn send_stream(&mut self, payload_type: PayloadType, payload: Bytes) {
        let encoded =
            self.channel
                .send_stream_message(payload_type as u32, payload, Instant::now());
        self.outbox.push(Message::Binary(encoded));
    }

    fn on_binary(&mut self, bytes: &Bytes) -> Result<Turn, SsmError> {
        let message = match ClientMessage::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                // streaming.go `OutputMessageHandler` logs and drops an invalid message; the peer resends it
                tracing::warn!("dropped an invalid data channel message: {error}");
                return Ok(Turn::Continue);
            }
        };
        match message.message_type.as_str() {
            message_type::OUTPUT_STREAM_DATA => {
                // agent datachannel.go `handleStreamDataMessage`: any stream data ends a pause
                self.paused = false;
                let received = self.channel.on_stream_message(message);
                self.outbox
                    .extend(received.acknowledgements.into_iter().map(Message::Binary));
                for delivered in received.delivered {
                    if let Turn::End(end) = self.on_stream_payload(&delivered)? {
                        return Ok(Turn::End(end));
                    }
                }
                Ok(Turn::Continue)
            }
            message_type::ACKNOWLEDGE => {
                self.paused = false;
                match serde_json::from_slice::<AcknowledgeContent>(&message.payload) {
                    Ok(content) => self.channel.on_acknowledge(&content, Instant::now()),
                    Err(error) => tracing::warn!("dropped an unreadable acknowledgement: {error}"),
                }
                Ok(Turn::Continue)
            }
            message_type::CHANNEL_CLOSED => {
                // streaming.go `HandleChannelClosedMessage`: the session ends, with the output as its reason
                let closed: ChannelClosed =
                    serde_json::from_slice(&message.payload).unwrap_or_default();
                Ok(Turn::End(SessionEnd::ChannelClosed {
                    output: closed.output,
                }))
            }
            message_type::PAUSE_PUBLICATION => {
                // agent datachannel.go `handlePausePublicationMessage`: hold stream data (the plugin ignores it)
                self.paused = true;
                Ok(Turn::Continue)
            }
            message_type::START_PUBLICATION => {
                self.paused = false;
                Ok(Turn::Continue)
            }
            other => {
                tracing::debug!("ignored a data channel message of type {other:?}");
                Ok(Turn::Continue)
            }
        }
    }

    fn on_stream_payload(&mut self, message: &ClientMessage) -> Result<Turn, SsmError> {
        match message.known_payload_type() {
            Some(PayloadType::HandshakeRequest) => self.on_handshake_request(&message.payload)?,
            Some(PayloadType::HandshakeComplete) => self.on_handshake_complete(&message.payload)?,
            Some(PayloadType::Output) => self.on_port_data(&message.payload)?,
            Some(PayloadType::Flag) => {
                if Flag::from_payload(&message.payload) == Some(Flag::ConnectToPortError) {
                    // muxportforwarding.go `WriteStream`
                    self.events.emit(SessionEvent::DestinationFailed);
                }
            }
            Some(PayloadType::EncryptionChallengeRequest) => {
                return Err(SsmError::Protocol(
                    "the agent sent an encryption challenge although encryption was refused"
                        .to_owned(),
                ));
            }
            _ => tracing::debug!(
                "ignored a stream message of payload type {}",
                message.payload_type
            ),
        }
        Ok(Turn::Continue)
    }

    /// streaming.go `handleHandshakeRequest`: each requested action is processed and answered
    fn on_handshake_request(&mut self, payload: &[u8]) -> Result<(), SsmError> {
        let request: HandshakeRequestPayload =
            serde_json::from_slice(payload).map_err(|error| {
                SsmError::Protocol(format!("an unreadable handshake request: {error}"))
            })?;
        let Phase::Handshaking(handshake) = &mut self.phase else {
            return Ok(());
        };
        let (response, refusal) = answer_handshake(&request, handshake);
        let payload =
            serde_json::to_vec(&response).map_err(|error| SsmError::Internal(error.to_string()))?;
        self.send_stream(PayloadType::HandshakeResponse, Bytes::from(payload));
        match refusal {
            // the answer goes out first, so the agent ends the session itself (agent `handleHandshakeResponse`)
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    /// streaming.go `handleHandshakeComplete`, portsession.go `Initialize`: the mode follows the agent's version
    fn on_handshake_complete(&mut self, payload: &[u8]) -> Result<(), SsmError> {
        let Phase::Handshaking(handshake) = &mut self.phase else {
            return Ok(());
        };
        let complete: HandshakeCompletePayload =
            serde_json::from_slice(payload).unwrap_or_default();
        if !complete.customer_message.is_empty() {
            self.events
                .emit(SessionEvent::CustomerMessage(complete.customer_message));
        }
        let handshake = std::mem::take(handshake);
        let Some(port) = handshake.port else {
            return Err(SsmError::UnsupportedSession {
                session_type: handshake.session_type.unwrap_or_default(),
                detail: "the handshake named no port session".to_owned(),
            });
        };
        if port.forwarding_type != LOCAL_PORT_FORWARDING {
            return Err(SsmError::UnsupportedSession {
                session_type: "Port".to_owned(),
                detail: format!(
                    "forwarding type {:?}, not {LOCAL_PORT_FORWARDING}",
                    port.forwarding_type
                ),
            });
        }
        let mode = ForwardingMode::for_agent(&handshake.agent_version);
        self.phase = Phase::Forwarding {
            mode,
            agent_version: handshake.agent_version.clone(),
        };
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Ready {
                agent_version: handshake.agent_version,
                mode,
            });
        }
        Ok(())
    }

    fn on_port_data(&mut self, payload: &Bytes) -> Result<(), SsmError> {
        match &self.phase {
            Phase::Forwarding {
                mode: ForwardingMode::Mux { .. },
                ..
            } => {
                self.mux_reader.push(payload);
                while let Some(frame) = self
                    .mux_reader
                    .next_frame()
                    .map_err(|error| SsmError::Protocol(error.to_string()))?
                {
                    match frame.command {
                        SmuxCommand::Psh => {
                            if let Some(connection) = self.mux_streams.get(&frame.stream_id) {
                                connection.write(frame.data);
                            }
                        }
                        SmuxCommand::Fin => {
                            // the agent closed its end: the plugin's copy loop closes the local connection, and
                            // closing its smux stream sends FIN back (muxportforwarding.go `handleDataTransfer`,
                            // smux stream.go `Close`)
                            if self.mux_streams.remove(&frame.stream_id).is_some() {
                                smux::put_frame(
                                    &mut self.pending,
                                    SmuxCommand::Fin,
                                    frame.stream_id,
                                    &[],
                                );
                            }
                        }
                        SmuxCommand::Syn | SmuxCommand::Nop | SmuxCommand::Upd => {}
                    }
                }
            }
            Phase::Forwarding {
                mode: ForwardingMode::Basic,
                ..
            } => {
                // basicportforwarding.go `WriteStream`; with no connection the bytes have nowhere to go
                if let Some((_, connection)) = &self.basic_connection {
                    connection.write(payload.clone());
                }
            }
            Phase::Handshaking(_) => {
                tracing::debug!("ignored port data before the handshake completed");
            }
        }
        Ok(())
    }

    fn on_accepted(&mut self, stream: TcpStream) {
        let Phase::Forwarding { mode, .. } = &self.phase else {
            return;
        };
        match mode {
            ForwardingMode::Mux { .. } => {
                // muxportforwarding.go `handleClientConnections`: one smux stream (SYN) per connection
                let Some(stream_id) = self.mux_ids.next_id() else {
                    tracing::warn!("smux stream ids are used up; refusing a local connection");
                    return;
                };
                smux::put_frame(&mut self.pending, SmuxCommand::Syn, stream_id, &[]);
                let connection = local::spawn_connection(
                    stream_id,
                    stream,
                    smux::MAX_FRAME_DATA,
                    self.upstream_sender.clone(),
                    Arc::clone(&self.budget),
                );
                self.events.emit(SessionEvent::ConnectionAccepted {
                    session_id: self.session_id.clone(),
                    peer: connection.peer,
                });
                self.mux_streams.insert(stream_id, connection);
            }
            ForwardingMode::Basic => {
                // basicportforwarding.go `startLocalConn`/`reconnect`: one connection at a time
                self.next_basic_connection = self.next_basic_connection.wrapping_add(1);
                let id = self.next_basic_connection;
                let connection = local::spawn_connection(
                    id,
                    stream,
                    self.max_payload,
                    self.upstream_sender.clone(),
                    Arc::clone(&self.budget),
                );
                self.events.emit(SessionEvent::ConnectionAccepted {
                    session_id: self.session_id.clone(),
                    peer: connection.peer,
                });
                self.basic_connection = Some((id, connection));
            }
        }
    }

    fn on_upstream(&mut self, upstream: Upstream) {
        let Phase::Forwarding { mode, .. } = &self.phase else {
            return;
        };
        match (mode, upstream) {
            (ForwardingMode::Mux { .. }, Upstream::Data { connection, bytes }) => {
                if self.mux_streams.contains_key(&connection) {
                    smux::put_data(&mut self.pending, connection, &bytes);
                }
            }
            (ForwardingMode::Mux { .. }, Upstream::Closed { connection }) => {
                // muxportforwarding.go `handleDataTransfer`: the local end closed, the stream is closed (FIN)
                if self.mux_streams.remove(&connection).is_some() {
                    smux::put_frame(&mut self.pending, SmuxCommand::Fin, connection, &[]);
                }
            }
            (ForwardingMode::Basic, Upstream::Data { connection, bytes }) => {
                if self
                    .basic_connection
                    .as_ref()
                    .is_some_and(|(id, _)| *id == connection)
                {
                    self.pending.extend_from_slice(&bytes);
                }
            }
            (ForwardingMode::Basic, Upstream::Closed { connection }) => {
                if self
                    .basic_connection
                    .as_ref()
                    .is_some_and(|(id, _)| *id == connection)
                {
                    self.basic_connection = None;
                    // basicportforwarding.go `ReadStream`: DisconnectToPort after the connection's last bytes
                    self.pump_upstream(true);
                    self.send_stream(PayloadType::Flag, Flag::DisconnectToPort.to_payload());
                }
            }
        }
    }

    /// session.go `OnError` → `ResumeSessionHandler`: a new token, the same session, the same numbering
    async fn resume(&mut self, reason: String) -> Result<Option<SessionEnd>, SsmError> {
        self.events.emit(SessionEvent::Disconnected { reason });
        self.outbox.clear();
        let started = Instant::now();
        let mut delay = first_retry_delay();
        let mut attempts = 0;
        let mut refusals = 0;
        loop {
            attempts += 1;
            let failure = match self.api.resume_session(&self.session_id).await {
                Ok(resumed) => {
                    let Some(token) = resumed.token_value else {
                        // sessionhandler.go: "Session: S timed out."
                        return Ok(Some(SessionEnd::TimedOut));
                    };
                    let url = resumed
                        .stream_url
                        .unwrap_or_else(|| self.stream_url.clone());
                    match open_data_channel(&url, &token, &self.client_id).await {
                        Ok(socket) => {
                            self.socket = socket;
                            self.stream_url = url;
                            let resent = self.channel.resend_all(Instant::now());
                            let count = resent.len();
                            self.outbox.extend(resent.into_iter().map(Message::Binary));
                            match self.flush().await {
                                Ok(()) => {
                                    self.events.emit(SessionEvent::Resumed {
                                        session_id: self.session_id.clone(),
                                        attempts,
                                        resent: count,
                                    });
                                    return Ok(None);
                                }
                                Err(error) => SsmError::WebSocket {
                                    url: displayable_url(&self.stream_url).to_owned(),
                                    reason: error,
                                },
                            }
                        }
                        Err(error) => error,
                    }
                }
                Err(error) => {
                    if matches!(&error, SsmError::ResumeSession { code, .. } if code != "Unknown") {
                        refusals += 1;
                    }
                    error
                }
            };
            if refusals >= RESUME_REFUSALS || started.elapsed() >= RESUME_DEADLINE {
                return Err(failure);
            }
            tracing::debug!(
                "resuming session {} failed (attempt {attempts}): {failure}",
                self.session_id
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                command = self.commands.recv() => match command {
                    // closing while the websocket is down: nothing to tell the agent, only the API call remains
                    Some(DriverCommand::Close) | None => return Ok(Some(SessionEnd::Closed)),
                },
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// muxportforwarding.go `handleControlSignals`: the TerminateSession flag (basic mode: agents after
    /// 2.3.722.0 only, basicportforwarding.go), its acknowledgement awaited briefly, then the websocket closed
    async fn close_gracefully(&mut self) -> Result<SessionEnd, SsmError> {
        if let Phase::Forwarding {
            mode,
            agent_version,
        } = &self.phase
        {
            let flag = match mode {
                ForwardingMode::Mux { .. } => true,
                ForwardingMode::Basic => is_newer_than(agent_version, TERMINATE_SESSION_FLAG_AFTER),
            };
            self.pump_upstream(true);
            if flag {
                self.send_stream(PayloadType::Flag, Flag::TerminateSession.to_payload());
            }
        }
        if self.flush().await.is_ok() {
            let deadline = tokio::time::Instant::now() + CLOSE_FLAG_WAIT;
            while self.channel.unacknowledged() > 0 {
                let incoming = tokio::select! {
                    incoming = self.socket.next() => incoming,
                    () = tokio::time::sleep_until(deadline) => break,
                };
                match incoming {
                    Some(Ok(Message::Binary(bytes))) => {
                        if let Ok(Turn::End(_)) = self.on_binary(&bytes) {
                            break;
                        }
                        if self.flush().await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                }
            }
            let _ = self.socket.close(None).await;
        }
        Ok(SessionEnd::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(actions: &serde_json::Value) -> HandshakeRequestPayload {
        serde_json::from_value(serde_json::json!({
            "AgentVersion": "3.3.1142.0",
            "RequestedClientActions": actions,
        }))
        .unwrap_or_else(|error| panic!("a handshake request: {error}"))
    }

    #[test]
    fn a_port_session_is_taken_with_its_properties() {
        let mut handshake = Handshake::default();
        let (response, refusal) = answer_handshake(
            &request(&serde_json::json!([{
                "ActionType": "SessionType",
                "ActionParameters": {"SessionType": "Port", "Properties": {
                    "portNumber": "5432", "type": "LocalPortForwarding", "localPortNumber": "7775", "host": "db"}},
            }])),
            &mut handshake,
        );
        assert!(refusal.is_none(), "{refusal:?}");
        assert_eq!(handshake.agent_version, "3.3.1142.0");
        assert_eq!(
            handshake.port.map(|port| port.forwarding_type),
            Some(LOCAL_PORT_FORWARDING.to_owned())
        );
        assert_eq!(response.client_version, CLIENT_VERSION);
        assert_eq!(response.processed_client_actions.len(), 1);
        assert_eq!(
            response.processed_client_actions[0].action_status,
            ActionStatus::Success as i32
        );
        assert_eq!(response.errors, None);
    }

    /// the agent asks for KMSEncryption with the key of the account's preferences (agent datachannel.go
    /// `buildHandshakeRequestPayload`), today for sessions other than `Port` only (sessionplugin.go
    /// `isEncryptionEnabled`); should a future agent ask it of a port session, the native transport refuses it
    /// by name and answers Failed, so the agent ends the session (datachannel.go `handleHandshakeResponse`)
    #[test]
    fn kms_encryption_is_answered_failed_and_refused_naming_the_setting_and_the_plugin() {
        let mut handshake = Handshake::default();
        let (response, refusal) = answer_handshake(
            &request(&serde_json::json!([
                {"ActionType": "SessionType", "ActionParameters": {"SessionType": "Port", "Properties": {
                    "portNumber": "5432", "type": "LocalPortForwarding", "localPortNumber": "7775"}}},
                {"ActionType": "KMSEncryption", "ActionParameters": {"KMSKeyId": "alias/session-key", "Challenge": "c2FsdA=="}},
            ])),
            &mut handshake,
        );
        let Some(error) = refusal else {
            panic!("KMS encryption was not refused");
        };
        assert!(
            matches!(&error, SsmError::KmsEncryptionRequested { kms_key_id } if kms_key_id == "alias/session-key"),
            "{error:?}"
        );
        let help = miette::Diagnostic::help(&error)
            .map(|help| help.to_string())
            .unwrap_or_default();
        assert!(
            help.contains("KMS encryption") && help.contains("via.transport: plugin"),
            "{help}"
        );
        let kms = &response.processed_client_actions[1];
        assert_eq!(
            (kms.action_type.as_str(), kms.action_status),
            (ACTION_KMS_ENCRYPTION, ActionStatus::Failed as i32)
        );
        assert_eq!(response.errors.map(|errors| errors.len()), Some(1));
    }

    #[test]
    fn another_session_type_is_refused_and_an_unknown_action_is_unsupported() {
        let mut handshake = Handshake::default();
        let (response, refusal) = answer_handshake(
            &request(&serde_json::json!([
                {"ActionType": "SessionType", "ActionParameters": {"SessionType": "Standard_Stream", "Properties": {}}},
                {"ActionType": "Teleport", "ActionParameters": {}},
            ])),
            &mut handshake,
        );
        assert!(
            matches!(&refusal, Some(SsmError::UnsupportedSession { session_type, .. }) if session_type == "Standard_Stream"),
            "{refusal:?}"
        );
        let statuses: Vec<i32> = response
            .processed_client_actions
            .iter()
            .map(|action| action.action_status)
            .collect();
        assert_eq!(
            statuses,
            [
                ActionStatus::Failed as i32,
                ActionStatus::Unsupported as i32
            ]
        );
    }
}
