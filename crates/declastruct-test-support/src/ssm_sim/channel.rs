//! .what = the data channel, as the gateway and the SSM agent serve it: the open message and its token, the
//! handshake, sequence numbers, acknowledgements, retransmission, resumption on a new websocket, channel_closed
//! .why = the plugin's side of all this is `src/datachannel/streaming.go`; the agent's, which this follows, is
//! `agent/session/datachannel/datachannel.go` and `agent/session/plugins/sessionplugin/sessionplugin.go`

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::messages::{
    self, ACKNOWLEDGE, ClientMessage, Flag, INPUT_STREAM_DATA, OUTPUT_STREAM_DATA, PayloadType,
};
use super::port::{Port, PortEvent};
use super::{EndedBy, IDLE_TIMEOUT_MESSAGE, SessionStatus, Shared, lock};

/// `config.go` (agent): `ResendSleepInterval`
const RESEND_SLEEP_INTERVAL: Duration = Duration::from_millis(100);
/// `config.go` (agent): `DefaultTransmissionTimeout`, `DefaultRoundTripTime`, `ClockGranularity`,
/// `MaxTransmissionTimeout`, `RTTConstant`, `RTTVConstant`
const DEFAULT_TRANSMISSION_TIMEOUT: Duration = Duration::from_millis(200);
const DEFAULT_ROUND_TRIP_TIME: f64 = 100_000_000.0;
const CLOCK_GRANULARITY: f64 = 10_000_000.0;
const MAX_TRANSMISSION_TIMEOUT: Duration = Duration::from_secs(1);
const RTT_CONSTANT: f64 = 1.0 / 8.0;
const RTTV_CONSTANT: f64 = 1.0 / 4.0;
/// `config.go` (agent): `StreamDataPayloadSize`: the port plugins read at most this much per message
pub(crate) const STREAM_DATA_PAYLOAD_SIZE: usize = 1024;
/// `config.go` (agent): `IncomingMessageBufferCapacity`
const INCOMING_MESSAGE_BUFFER_CAPACITY: usize = 100_000;

/// .what = what a session's agent is told
/// .why = one mailbox per session; the websockets, the API, the port plugin and the test write to it
pub(crate) enum Event {
    /// a websocket presented this session's token
    Attach {
        connection: u64,
        sender: mpsc::UnboundedSender<WebsocketCommand>,
    },
    /// that websocket is gone
    Detach { connection: u64 },
    /// a binary frame from the plugin
    Incoming(Vec<u8>),
    /// the port plugin's output
    Port(PortEvent),
    /// the `abort_websocket_after` timer of a connection rang
    AbortConnection(u64),
    /// abort the websocket now (no close frame)
    AbortWebsocket,
    /// close the channel with this message
    CloseChannel(String),
    /// the TerminateSession API was called
    Terminate,
}

/// .what = what a websocket's task is told to do
/// .why = the agent decides, the connection's task writes
pub(crate) enum WebsocketCommand {
    Send(Vec<u8>),
    /// a close frame, then the end
    Close,
    /// the end, without a close frame
    Abort,
}

static CONNECTIONS: AtomicU64 = AtomicU64::new(1);

/// the port plugin's name, which is the handshake's SessionType (agent `appconfig/constants.go` `PluginNamePort`)
const PORT_SESSION_TYPE: &str = "Port";

/// .what = whether the agent asks the client for KMS encryption
/// .why = agent `sessionplugin.go` `isEncryptionEnabled`: `kmsKeyId != "" && pluginName != appconfig.PluginNamePort`
fn encryption_requested(kms_key_id: Option<&str>, session_type: &str) -> bool {
    kms_key_id.is_some_and(|key| !key.is_empty()) && session_type != PORT_SESSION_TYPE
}

/// .what = serves one websocket of a session: waits for the open message, checks its token, then relays
/// .why = the plugin's first frame is text: `{MessageSchemaVersion, RequestId, TokenValue, ClientId,
/// ClientVersion}` (`streaming.go` `FinalizeDataChannelHandshake`); every later one is a binary message
pub(crate) async fn serve_websocket(
    mut websocket: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    session_id: String,
    shared: Arc<Shared>,
) {
    let opened = loop {
        match websocket.next().await {
            Some(Ok(Message::Text(text))) => break serde_json::from_str::<Value>(&text).ok(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            _ => return,
        }
    };
    let token = opened
        .as_ref()
        .and_then(|open| open.get("TokenValue"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let agent = {
        let sessions = lock(&shared.sessions);
        sessions
            .get(&session_id)
            .filter(|entry| entry.token.as_deref() == Some(token.as_str()))
            .map(|entry| entry.agent.clone())
    };
    let Some(agent) = agent else {
        // a token that is not the session's current one: the gateway refuses the channel
        let _ = websocket.close(None).await;
        return;
    };
    let connection = CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    let (sender, mut commands) = mpsc::unbounded_channel();
    if agent.send(Event::Attach { connection, sender }).is_err() {
        let _ = websocket.close(None).await;
        return;
    }
    loop {
        tokio::select! {
            frame = websocket.next() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    let _ = agent.send(Event::Incoming(bytes.to_vec()));
                }
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            command = commands.recv() => match command {
                Some(WebsocketCommand::Send(bytes)) => {
                    if websocket.send(Message::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                Some(WebsocketCommand::Close) => {
                    let _ = websocket.close(None).await;
                    break;
                }
                Some(WebsocketCommand::Abort) | None => break,
            },
        }
    }
    // dropping the websocket closes its TCP connection without a close frame
    drop(websocket);
    let _ = agent.send(Event::Detach { connection });
}

/// a stream message sent and not yet acknowledged (`datachannel.go` `StreamingMessage`)
struct Unacknowledged {
    sequence_number: i64,
    bytes: Vec<u8>,
    last_sent: Instant,
}

#[derive(PartialEq, Eq)]
enum Handshake {
    NotStarted,
    Requested,
    Complete,
}

struct Agent {
    session_id: String,
    properties: Value,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    websocket: Option<(u64, mpsc::UnboundedSender<WebsocketCommand>)>,
    connections: u32,
    stream_sequence_number: i64,
    outgoing: VecDeque<Unacknowledged>,
    expected_sequence_number: i64,
    incoming: BTreeMap<i64, ClientMessage>,
    round_trip_time: f64,
    round_trip_time_variation: f64,
    retransmission_timeout: Duration,
    handshake: Handshake,
    handshake_at: Option<Instant>,
    port: Option<Port>,
    last_activity: Instant,
    ended: bool,
}

/// .what = the agent of one session, until the session ends and its last websocket is gone
/// .why = its state (sequence numbers, unacknowledged messages, the port plugin) outlives each websocket, so
/// a resumed connection carries on where the last one stopped
pub(crate) async fn run_agent(
    session_id: String,
    properties: Value,
    shared: Arc<Shared>,
    mut mailbox: mpsc::UnboundedReceiver<Event>,
) {
    let Some(events) = lock(&shared.sessions)
        .get(&session_id)
        .map(|entry| entry.agent.clone())
    else {
        return;
    };
    let mut agent = Agent {
        session_id,
        properties,
        shared,
        events,
        websocket: None,
        connections: 0,
        stream_sequence_number: 0,
        outgoing: VecDeque::new(),
        expected_sequence_number: 0,
        incoming: BTreeMap::new(),
        round_trip_time: DEFAULT_ROUND_TRIP_TIME,
        round_trip_time_variation: 0.0,
        retransmission_timeout: DEFAULT_TRANSMISSION_TIMEOUT,
        handshake: Handshake::NotStarted,
        handshake_at: None,
        port: None,
        last_activity: Instant::now(),
        ended: false,
    };
    let mut ticks = tokio::time::interval(RESEND_SLEEP_INTERVAL);
    loop {
        tokio::select! {
            event = mailbox.recv() => match event {
                Some(event) => agent.handle(event),
                None => break,
            },
            _ = ticks.tick() => agent.tick(),
        }
        if agent.ended && agent.websocket.is_none() {
            break;
        }
    }
    agent.port = None;
}

impl Agent {
    fn faults(&self) -> super::Faults {
        lock(&self.shared.faults).clone()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Attach { connection, sender } => self.attach(connection, sender),
            Event::Detach { connection } => {
                if self
                    .websocket
                    .as_ref()
                    .is_some_and(|(current, _)| *current == connection)
                {
                    self.websocket = None;
                    if !self.ended {
                        self.set_status(SessionStatus::Disconnected);
                    }
                }
            }
            Event::Incoming(bytes) if !self.ended => self.incoming_message(&bytes),
            Event::Port(event) if !self.ended => self.port_event(event),
            Event::AbortConnection(connection) => {
                if self
                    .websocket
                    .as_ref()
                    .is_some_and(|(current, _)| *current == connection)
                {
                    self.abort_websocket();
                }
            }
            Event::AbortWebsocket => self.abort_websocket(),
            Event::CloseChannel(message) => {
                self.close_channel(
                    &message,
                    SessionStatus::Terminated,
                    EndedBy::ChannelClosed(message.clone()),
                );
            }
            Event::Terminate => {
                // the service ends the session and closes the client's channel (`Exiting session with sessionId`)
                self.close_channel("", SessionStatus::Terminated, EndedBy::TerminateSessionApi);
            }
            Event::Incoming(_) | Event::Port(_) => {}
        }
    }

    fn attach(&mut self, connection: u64, sender: mpsc::UnboundedSender<WebsocketCommand>) {
        if let Some((_, previous)) = self.websocket.replace((connection, sender)) {
            let _ = previous.send(WebsocketCommand::Abort);
        }
        self.connections += 1;
        let first = self.connections == 1;
        self.shared.update_record(&self.session_id, |record| {
            record.websocket_connections += 1;
            if record.status.is_active() {
                record.status = SessionStatus::Connected;
            }
        });
        let faults = self.faults();
        if first && let Some(after) = faults.abort_websocket_after {
            let events = self.events.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = events.send(Event::AbortConnection(connection));
            });
        }
        if self.handshake == Handshake::NotStarted && self.handshake_at.is_none() {
            self.handshake_at = Some(Instant::now() + faults.handshake_delay.unwrap_or_default());
            self.tick();
        }
    }

    fn set_status(&self, status: SessionStatus) {
        self.shared.update_record(&self.session_id, |record| {
            if record.status.is_active() {
                record.status = status;
            }
        });
    }

    fn write(&self, bytes: Vec<u8>) {
        if let Some((_, websocket)) = &self.websocket {
            let _ = websocket.send(WebsocketCommand::Send(bytes));
        }
    }

    fn abort_websocket(&mut self) {
        if let Some((_, websocket)) = self.websocket.take() {
            let _ = websocket.send(WebsocketCommand::Abort);
            if !self.ended {
                self.set_status(SessionStatus::Disconnected);
            }
        }
    }

    /// the gateway's channel_closed, then a close frame; the session is over
    fn close_channel(&mut self, output: &str, status: SessionStatus, ended_by: EndedBy) {
        self.write(messages::channel_closed(&self.session_id, output).serialize());
        if let Some((_, websocket)) = self.websocket.take() {
            let _ = websocket.send(WebsocketCommand::Close);
        }
        self.end(status, ended_by);
    }

    fn end(&mut self, status: SessionStatus, ended_by: EndedBy) {
        self.shared.end_session(&self.session_id, status, ended_by);
        self.ended = true;
        self.port = None;
    }

    /// `datachannel.go` `SendStreamDataMessage`: numbered from 0, Flags 1 on the first, kept until acknowledged
    fn send_stream(&mut self, payload_type: PayloadType, payload: Vec<u8>) {
        if payload.is_empty() {
            return;
        }
        let flags = u64::from(self.stream_sequence_number == 0);
        let message = ClientMessage::new(
            OUTPUT_STREAM_DATA,
            self.stream_sequence_number,
            flags,
            payload_type as u32,
            payload,
        );
        let bytes = message.serialize();
        self.write(bytes.clone());
        self.outgoing.push_back(Unacknowledged {
            sequence_number: self.stream_sequence_number,
            bytes,
            last_sent: Instant::now(),
        });
        self.stream_sequence_number += 1;
    }

    /// every `ResendSleepInterval`: the handshake when due, the oldest unacknowledged message when its timeout
    /// passed (`datachannel.go` `ResendStreamDataMessageScheduler`), and the idle timeout
    fn tick(&mut self) {
        if self.ended {
            return;
        }
        let faults = self.faults();
        if self.handshake == Handshake::NotStarted
            && !faults.agent_silent
            && self.websocket.is_some()
            && self.handshake_at.is_some_and(|at| Instant::now() >= at)
        {
            self.send_handshake_request();
        }
        if self.websocket.is_some()
            && let Some(front) = self.outgoing.front_mut()
            && front.last_sent.elapsed() > self.retransmission_timeout
        {
            front.last_sent = Instant::now();
            let bytes = front.bytes.clone();
            self.write(bytes);
        }
        if let Some(idle) = faults.idle_timeout
            && self.last_activity.elapsed() > idle
        {
            self.close_channel(
                IDLE_TIMEOUT_MESSAGE,
                SessionStatus::Terminated,
                EndedBy::IdleTimeout,
            );
        }
    }

    /// `datachannel.go` `buildHandshakeRequestPayload`: the agent's version and one SessionType action whose
    /// parameters are the session type (`Port`) and the document's properties; a KMSEncryption action follows
    /// only when `encryption_requested`, which it never is for a port session
    fn send_handshake_request(&mut self) {
        let mut actions = vec![json!({
            "ActionType": "SessionType",
            "ActionParameters": {
                "SessionType": PORT_SESSION_TYPE,
                "Properties": self.properties,
            },
        })];
        let kms_key_id = self.faults().preferences_kms_key_id;
        if encryption_requested(kms_key_id.as_deref(), PORT_SESSION_TYPE) {
            // `KMSEncryptionRequest` (agent `contracts/model.go`): the key and a random challenge
            actions.push(json!({
                "ActionType": "KMSEncryption",
                "ActionParameters": {
                    "KMSKeyId": kms_key_id,
                    "Challenge": uuid::Uuid::new_v4().simple().to_string(),
                },
            }));
        }
        let request = json!({
            "AgentVersion": self.shared.mode.agent_version(),
            "RequestedClientActions": actions,
        });
        self.handshake = Handshake::Requested;
        self.send_stream(
            PayloadType::HandshakeRequest,
            request.to_string().into_bytes(),
        );
    }

    /// `datachannel.go` `dataChannelIncomingMessageHandler`
    fn incoming_message(&mut self, bytes: &[u8]) {
        let Ok(message) = ClientMessage::deserialize(bytes) else {
            return;
        };
        if self.faults().agent_silent {
            return;
        }
        match message.message_type.as_str() {
            INPUT_STREAM_DATA => self.stream_message(message),
            ACKNOWLEDGE => self.acknowledged(&message),
            _ => {}
        }
    }

    /// `datachannel.go` `ProcessAcknowledgedMessage` and `calculateRetransmissionTimeout`
    fn acknowledged(&mut self, message: &ClientMessage) {
        let Some(sequence_number) = messages::acknowledged_sequence(message) else {
            return;
        };
        let Some(index) = self
            .outgoing
            .iter()
            .position(|sent| sent.sequence_number == sequence_number)
        else {
            return;
        };
        if let Some(sent) = self.outgoing.remove(index) {
            let round_trip = sent.last_sent.elapsed().as_nanos() as f64;
            self.round_trip_time_variation = (1.0 - RTTV_CONSTANT) * self.round_trip_time_variation
                + RTTV_CONSTANT * (self.round_trip_time - round_trip).abs();
            self.round_trip_time =
                (1.0 - RTT_CONSTANT) * self.round_trip_time + RTT_CONSTANT * round_trip;
            let timeout =
                self.round_trip_time + CLOCK_GRANULARITY.max(4.0 * self.round_trip_time_variation);
            self.retransmission_timeout =
                Duration::from_nanos(timeout as u64).min(MAX_TRANSMISSION_TIMEOUT);
        }
    }

    /// `datachannel.go` `handleStreamDataMessage`: the expected one is processed and acknowledged (unless its
    /// handler is not ready: then neither, and the client sends it again), later ones are acknowledged and kept,
    /// earlier ones acknowledged again
    fn stream_message(&mut self, message: ClientMessage) {
        let sequence_number = message.sequence_number;
        if sequence_number == self.expected_sequence_number {
            if !self.process(&message) {
                return;
            }
            self.expected_sequence_number += 1;
            while let Some(buffered) = self.incoming.remove(&self.expected_sequence_number) {
                // `processIncomingMessageBufferItems`: a buffered message whose handler fails is not retried
                self.process(&buffered);
                self.expected_sequence_number += 1;
            }
        } else if sequence_number > self.expected_sequence_number {
            if self.incoming.len() < INCOMING_MESSAGE_BUFFER_CAPACITY {
                self.write(messages::acknowledgement(&message).serialize());
                self.incoming.insert(sequence_number, message);
            }
        } else {
            self.write(messages::acknowledgement(&message).serialize());
        }
    }

    /// `processStreamDataMessage`; false when the port plugin is not ready (`ErrHandlerNotReady`)
    fn process(&mut self, message: &ClientMessage) -> bool {
        if message.payload_type == PayloadType::HandshakeResponse as u32 {
            // the real agent acknowledges after `handleHandshakeResponse` has released `PerformHandshake`,
            // which then sends HandshakeComplete concurrently; the simulator always acknowledges first, the
            // order the plugin needs (a HandshakeComplete seen before this acknowledgement can make the
            // plugin's mux reader panic: `plugin-facts.md`)
            self.write(messages::acknowledgement(message).serialize());
            self.handshake_response(message);
            return true;
        }
        if self.handshake != Handshake::Complete {
            // "Handshake still in progress, ignore stream data message": acknowledged, dropped
            self.write(messages::acknowledgement(message).serialize());
            return true;
        }
        let Some(port) = self.port.as_mut() else {
            return false;
        };
        if message.payload_type == PayloadType::Flag as u32 {
            if Flag::from_payload(&message.payload) == Some(Flag::TerminateSession) {
                self.write(messages::acknowledgement(message).serialize());
                lock(&self.shared.counts).terminations_by_flag += 1;
                // the plugin's cancel: the port session ends, the plugin exits on its own
                self.end(SessionStatus::Terminated, EndedBy::TerminateSessionFlag);
                return true;
            }
            port.flag(Flag::from_payload(&message.payload));
        } else if message.payload_type == PayloadType::Output as u32 {
            if !port.is_ready() {
                return false;
            }
            self.last_activity = Instant::now();
            port.output(&message.payload);
        }
        self.write(messages::acknowledgement(message).serialize());
        true
    }

    /// `handleHandshakeResponse`, then `PerformHandshake`'s HandshakeComplete, then the port plugin starts
    /// (`sessionplugin.go` `Execute` → `port.go` `execute` → `InitializeSession`)
    fn handshake_response(&mut self, message: &ClientMessage) {
        let response: Value = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        self.shared.update_record(&self.session_id, |record| {
            record.handshake_response = Some(response.clone());
        });
        if self.handshake != Handshake::Requested {
            return;
        }
        let failed = response
            .get("ProcessedClientActions")
            .and_then(Value::as_array)
            .is_some_and(|actions| {
                actions
                    .iter()
                    .any(|action| action.get("ActionStatus").and_then(Value::as_i64) != Some(1))
            });
        if failed {
            // "Cancel the session because handshake FAILED"
            self.end(
                SessionStatus::Failed,
                EndedBy::AgentEnded("handshake failed".into()),
            );
            return;
        }
        self.handshake = Handshake::Complete;
        let complete = json!({"HandshakeTimeToComplete": 0, "CustomerMessage": ""});
        self.send_stream(
            PayloadType::HandshakeComplete,
            complete.to_string().into_bytes(),
        );
        let destination = lock(&self.shared.sessions)
            .get(&self.session_id)
            .map(|entry| entry.destination.clone())
            .unwrap_or_default();
        self.port = Some(Port::start(
            self.shared.mode,
            self.session_id.clone(),
            destination,
            Arc::clone(&self.shared),
            self.events.clone(),
        ));
    }

    fn port_event(&mut self, event: PortEvent) {
        match event {
            PortEvent::Data(bytes) => {
                self.last_activity = Instant::now();
                for chunk in bytes.chunks(STREAM_DATA_PAYLOAD_SIZE) {
                    self.send_stream(PayloadType::Output, chunk.to_vec());
                }
            }
            PortEvent::Flag(flag) => self.send_stream(PayloadType::Flag, flag.payload()),
            PortEvent::Ready => {
                if let Some(port) = self.port.as_mut() {
                    port.set_ready();
                }
            }
            PortEvent::Ended(output) => {
                // the plugin's result goes to the service, which closes the client's channel with its output
                self.close_channel(
                    &output,
                    SessionStatus::Failed,
                    EndedBy::AgentEnded(output.clone()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_encryption_is_asked_for_with_a_key_and_never_of_a_port_session() {
        assert!(encryption_requested(Some("alias/key"), "Standard_Stream"));
        assert!(!encryption_requested(Some("alias/key"), PORT_SESSION_TYPE));
        assert!(!encryption_requested(Some(""), "Standard_Stream"));
        assert!(!encryption_requested(None, "Standard_Stream"));
    }
}
