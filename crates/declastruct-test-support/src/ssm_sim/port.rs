//! .what = the SSM agent's port plugin: mux mode (an smux server, one destination connection per stream) and
//! basic mode (one destination connection, redialled after DisconnectToPort)
//! .why = what the agent does with the bytes of a port-forwarding session: `agent/session/plugins/port/port.go`,
//! `port_mux.go`, `port_basic.go`; destinations are dialled through the simulator's routes. Towards the client the
//! agent reads at most `StreamDataPayloadSize` (1024) bytes and then sleeps a millisecond, in both modes
//! (`port_mux.go` `transferDataToMgs`, `port_basic.go` `WritePump`): downloads through it stay near 1 MB/s, and so
//! they do through the simulator

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::channel::{Event, STREAM_DATA_PAYLOAD_SIZE};
use super::messages::Flag;
use super::smux::{self, FrameReader};
use super::{Mode, Shared};

/// the pause after each read towards the client: `time.Sleep(time.Millisecond)` in `port_mux.go`
/// `transferDataToMgs` and `port_basic.go` `WritePump`
const READ_PAUSE: Duration = Duration::from_millis(1);
/// how many writes may wait for the paced reader before the writers wait (mux: the agent's smux session writes
/// into a connection that `transferDataToMgs` drains, and a full one holds the streams)
const MGS_CONNECTION_WRITES: usize = 8;

/// .what = what the port plugin tells its data channel
/// .why = bytes and flags to send, readiness, and the end of the plugin with its output
pub(crate) enum PortEvent {
    /// bytes for Output messages (cut into `StreamDataPayloadSize` pieces by the channel)
    Data(Vec<u8>),
    /// a flag message (`ConnectToPortError`)
    Flag(Flag),
    /// basic mode: the first destination connection is up (`IsConnectionAvailable`)
    Ready,
    /// the plugin ended; its output goes to the client's channel_closed
    Ended(String),
}

/// .what = the port plugin of one session
/// .why = started after the handshake (`sessionplugin.go` `Execute`); dropping it closes every connection
pub(crate) enum Port {
    Mux(MuxPort),
    Basic(BasicPort),
}

/// `port_mux.go` `MuxPortSession`: the smux server side
pub(crate) struct MuxPort {
    reader: FrameReader,
    streams: HashMap<u32, (mpsc::UnboundedSender<Vec<u8>>, AbortHandle)>,
    context: Context,
}

/// `port_basic.go` `BasicPortSession`
pub(crate) struct BasicPort {
    input: mpsc::UnboundedSender<BasicInput>,
    task: AbortHandle,
    ready: bool,
}

enum BasicInput {
    Data(Vec<u8>),
    Disconnect,
}

#[derive(Clone)]
struct Context {
    session_id: String,
    destination: String,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    /// bytes towards the client (mux: the smux session's connection), drained by `pace_towards_client`
    towards_client: mpsc::Sender<Vec<u8>>,
}

impl Context {
    fn send(&self, event: PortEvent) {
        let _ = self.events.send(Event::Port(event));
    }

    /// bytes for the client (mux: smux frames), waiting while the paced reader is behind
    async fn write_towards_client(&self, bytes: Vec<u8>) {
        let _ = self.towards_client.send(bytes).await;
    }

    /// `port.go` `DialCall`: the destination's addresses in turn; the simulator's routes stand in for DNS. With
    /// no route the lookup found no address, and `DialCall` fails with "missing address"
    async fn dial(&self) -> Result<TcpStream, String> {
        let result = match self.shared.route(&self.destination) {
            None => Err("missing address".to_string()),
            Some(address) => TcpStream::connect(address)
                .await
                .map_err(|error| go_dial_error(address, &error)),
        };
        self.shared
            .update_record(&self.session_id, |record| match &result {
                Ok(_) => record.destination_connections += 1,
                Err(_) => record.destination_failures += 1,
            });
        result
    }
}

/// Go's wording of a failed dial, e.g. `dial tcp 127.0.0.1:5432: connect: connection refused`
fn go_dial_error(address: SocketAddr, error: &std::io::Error) -> String {
    let reason = match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => error.to_string(),
    };
    format!("dial tcp {address}: connect: {reason}")
}

impl Port {
    /// .what = the port plugin for `mode`, dialling `destination` (`HOST:PORT`) through the routes
    /// .why = mux: ready at once, a dial per stream; basic: dials now (`InitializeSession`) and ends the
    /// session with the error when it cannot
    pub(crate) fn start(
        mode: Mode,
        session_id: String,
        destination: String,
        shared: Arc<Shared>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        let (towards_client, written) = mpsc::channel(MGS_CONNECTION_WRITES);
        pace_towards_client(written, events.clone());
        let context = Context {
            session_id,
            destination,
            shared,
            events,
            towards_client,
        };
        match mode {
            Mode::Mux => Self::Mux(MuxPort {
                reader: FrameReader::default(),
                streams: HashMap::new(),
                context,
            }),
            Mode::Basic => {
                let (input, receiver) = mpsc::unbounded_channel();
                let task = tokio::spawn(serve_basic(context, receiver)).abort_handle();
                Self::Basic(BasicPort {
                    input,
                    task,
                    ready: false,
                })
            }
        }
    }

    /// .what = whether Output messages can be handled now (`IsConnectionAvailable`)
    /// .why = before that the agent neither handles nor acknowledges them, and the client resends
    pub(crate) fn is_ready(&self) -> bool {
        match self {
            Self::Mux(_) => true,
            Self::Basic(basic) => basic.ready,
        }
    }

    pub(crate) fn set_ready(&mut self) {
        if let Self::Basic(basic) = self {
            basic.ready = true;
        }
    }

    /// .what = an Output payload from the plugin
    /// .why = mux: smux bytes to demultiplex; basic: bytes for the destination
    pub(crate) fn output(&mut self, payload: &[u8]) {
        match self {
            Self::Mux(mux) => mux.output(payload),
            Self::Basic(basic) => {
                let _ = basic.input.send(BasicInput::Data(payload.to_vec()));
            }
        }
    }

    /// .what = a flag from the plugin other than TerminateSession (which the channel handles)
    /// .why = basic mode closes its destination connection on DisconnectToPort (`port_basic.go`
    /// `HandleStreamMessage`); mux mode ignores it (`port_mux.go` handles TerminateSession only)
    pub(crate) fn flag(&mut self, flag: Option<Flag>) {
        if let (Self::Basic(basic), Some(Flag::DisconnectToPort)) = (self, flag) {
            let _ = basic.input.send(BasicInput::Disconnect);
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        match self {
            Self::Mux(mux) => {
                for (_, task) in mux.streams.values() {
                    task.abort();
                }
            }
            Self::Basic(basic) => basic.task.abort(),
        }
    }
}

impl MuxPort {
    /// `port_mux.go` `handleServerConnections` (one dial per accepted stream) with smux's `recvLoop`
    fn output(&mut self, payload: &[u8]) {
        let Ok(frames) = self.reader.push(payload) else {
            // smux's errInvalidProtocol ends the smux session: every stream is gone
            for (_, task) in self.streams.values() {
                task.abort();
            }
            self.streams.clear();
            return;
        };
        for frame in frames {
            match frame.cmd {
                smux::CMD_SYN => {
                    if self.streams.contains_key(&frame.stream_id) {
                        continue;
                    }
                    let (sender, receiver) = mpsc::unbounded_channel();
                    let task = tokio::spawn(serve_stream(
                        self.context.clone(),
                        frame.stream_id,
                        receiver,
                    ))
                    .abort_handle();
                    self.streams.insert(frame.stream_id, (sender, task));
                }
                smux::CMD_PSH => {
                    if let Some((sender, _)) = self.streams.get(&frame.stream_id) {
                        let _ = sender.send(frame.data);
                    }
                }
                smux::CMD_FIN => {
                    // the stream's reader sees EOF: `handleDataTransfer` closes the destination connection
                    self.streams.remove(&frame.stream_id);
                }
                // keep-alives: both sides disable them for these versions (`port_mux.go`, `muxportforwarding.go`)
                smux::CMD_NOP => {}
                _ => {}
            }
        }
    }
}

/// one smux stream: dial, then copy both ways until either side ends (`port_mux.go` `handleDataTransfer`); a
/// failed dial sends the ConnectToPortError flag and closes the stream (`handleServerConnections`)
async fn serve_stream(
    context: Context,
    stream_id: u32,
    mut input: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let Ok(connection) = context.dial().await else {
        context.send(PortEvent::Flag(Flag::ConnectToPortError));
        context
            .write_towards_client(smux::encode(smux::CMD_FIN, stream_id, &[]))
            .await;
        return;
    };
    let (mut reader, mut writer) = connection.into_split();
    let mut buffer = vec![0u8; smux::MAX_FRAME_SIZE];
    loop {
        tokio::select! {
            data = input.recv() => match data {
                Some(data) => {
                    if writer.write_all(&data).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            read = reader.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(count) => context.write_towards_client(smux::encode_data(stream_id, &buffer[..count])).await,
            },
        }
    }
    context
        .write_towards_client(smux::encode(smux::CMD_FIN, stream_id, &[]))
        .await;
}

/// `port_mux.go` `transferDataToMgs` and `port_basic.go` `WritePump`: read at most `StreamDataPayloadSize` bytes
/// of what is waiting, send them as one Output message, sleep a millisecond, and again. A thread of its own, so the
/// millisecond is the operating system's (as Go's `time.Sleep`), not the async timer's coarser tick; it ends when
/// the port plugin is gone
fn pace_towards_client(mut written: mpsc::Receiver<Vec<u8>>, events: mpsc::UnboundedSender<Event>) {
    let pace = move || {
        let mut waiting: VecDeque<u8> = VecDeque::new();
        loop {
            if waiting.is_empty() {
                match written.blocking_recv() {
                    Some(bytes) => waiting.extend(bytes),
                    None => return,
                }
            }
            while waiting.len() < STREAM_DATA_PAYLOAD_SIZE {
                match written.try_recv() {
                    Ok(bytes) => waiting.extend(bytes),
                    Err(_) => break,
                }
            }
            let count = waiting.len().min(STREAM_DATA_PAYLOAD_SIZE);
            let packet: Vec<u8> = waiting.drain(..count).collect();
            if events.send(Event::Port(PortEvent::Data(packet))).is_err() {
                return;
            }
            std::thread::sleep(READ_PAUSE);
        }
    };
    if let Err(error) = std::thread::Builder::new()
        .name("ssm-sim-port-reader".into())
        .spawn(pace)
    {
        // a simulator that cannot start a thread says so; the session then carries nothing towards the client
        eprintln!("ssm-sim: no thread for the port's reader: {error}");
    }
}

/// `port_basic.go`: `InitializeSession` dials at once, and a failure ends the plugin with
/// `Unable to connect to specified port: ERR` as its output; `WritePump` reads the destination in
/// `StreamDataPayloadSize` pieces with a millisecond's sleep after each (`pace_towards_client`); a read error (the destination or
/// DisconnectToPort closed it) waits for the next Output from the client to dial again (`handlePortError`,
/// `reconnectToPort`)
async fn serve_basic(context: Context, mut input: mpsc::UnboundedReceiver<BasicInput>) {
    let mut connection = match context.dial().await {
        Ok(connection) => Some(connection),
        Err(error) => {
            context.send(PortEvent::Ended(format!(
                "Unable to connect to specified port: {error}"
            )));
            return;
        }
    };
    context.send(PortEvent::Ready);
    let mut buffer = vec![0u8; STREAM_DATA_PAYLOAD_SIZE];
    loop {
        let Some(current) = connection.as_mut() else {
            // waiting for the client's next data to dial again
            match input.recv().await {
                Some(BasicInput::Data(data)) => match context.dial().await {
                    Ok(mut fresh) => {
                        if fresh.write_all(&data).await.is_ok() {
                            connection = Some(fresh);
                        }
                    }
                    Err(_) => {
                        // `WritePump` returns the error exit code; no output was set
                        context.send(PortEvent::Ended(String::new()));
                        return;
                    }
                },
                Some(BasicInput::Disconnect) => {}
                None => return,
            }
            continue;
        };
        tokio::select! {
            data = input.recv() => match data {
                Some(BasicInput::Data(data)) => {
                    if current.write_all(&data).await.is_err() {
                        connection = None;
                    }
                }
                Some(BasicInput::Disconnect) => connection = None,
                None => return,
            },
            read = current.read(&mut buffer) => match read {
                Ok(0) | Err(_) => connection = None,
                Ok(count) => context.write_towards_client(buffer[..count].to_vec()).await,
            },
        }
    }
}
