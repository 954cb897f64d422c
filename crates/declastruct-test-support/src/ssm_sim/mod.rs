//! .what = a simulator of the AWS side of a Session Manager port-forwarding session: the SSM API (StartSession,
//! ResumeSession, TerminateSession, DescribeSessions), the gateway's data channel, and the SSM agent's port
//! plugin, on one loopback port
//! .why = moto has none of this, and the real `aws` CLI and session-manager-plugin need all of it; the simulator
//! is correct when the real plugin works against it. Each behaviour cites the file of aws/session-manager-plugin
//! (client side) or aws/amazon-ssm-agent (agent side) it follows.
//!
//! ```no_run
//! use declastruct_test_support::ssm_sim::{Mode, SimConfig, SsmSimulator};
//! let simulator = SsmSimulator::start(SimConfig {
//!     mode: Mode::Mux,
//!     routes: vec![("db.example:5432".into(), "127.0.0.1:5432".parse().unwrap())],
//!     ..SimConfig::default()
//! });
//! // AWS_ENDPOINT_URL_SSM=simulator.endpoint() for the aws CLI; simulator.sessions() afterwards
//! ```

mod api;
mod channel;
mod faults;
mod messages;
mod port;
mod smux;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

pub use faults::{Faults, IDLE_TIMEOUT_MESSAGE};

/// .what = the port-forwarding mode the simulated agent speaks
/// .why = the plugin picks smux multiplexing for agents newer than 3.0.196.0 and the basic mode otherwise
/// (`version/versionutil.go` `DoesAgentSupportTCPMultiplexing`, `portsession.go` `Initialize`), from the
/// AgentVersion of the handshake
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// advertises `MUX_AGENT_VERSION`: smux v1, many connections at once, keep-alive off on both sides
    #[default]
    Mux,
    /// advertises `BASIC_AGENT_VERSION`: one connection at a time, DisconnectToPort between them
    Basic,
}

/// an agent release newer than 3.1.1511.0, so the plugin multiplexes with smux keep-alive disabled
/// (`config.go` `TCPMultiplexingWithSmuxKeepAliveDisabledAfterThisAgentVersion`)
pub const MUX_AGENT_VERSION: &str = "3.3.1142.0";
/// an agent release at or before 3.0.196.0 (basic mode) and after 2.3.722.0 (so the plugin sends the
/// TerminateSession flag on Ctrl-C, `config.go` `TerminateSessionFlagSupportedAfterThisAgentVersion`)
pub const BASIC_AGENT_VERSION: &str = "3.0.161.0";

impl Mode {
    /// .what = the AgentVersion the simulated agent puts in its HandshakeRequest
    /// .why = the version is what makes the plugin choose its mode
    pub fn agent_version(self) -> &'static str {
        match self {
            Self::Mux => MUX_AGENT_VERSION,
            Self::Basic => BASIC_AGENT_VERSION,
        }
    }
}

/// .what = how to start the simulator
/// .why = the mode, where destinations lead, the optional EC2 check, and the faults in force from the start
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// where to listen; `127.0.0.1:0` picks a free port
    pub listen: SocketAddr,
    /// the agent's port-forwarding mode
    pub mode: Mode,
    /// `HOST:PORT` (or `*` for any destination) to the local address the agent dials instead
    pub routes: Vec<(String, SocketAddr)>,
    /// with a URL (moto), StartSession looks the target up there: unknown → `InvalidTarget`, not running or
    /// running for less than `registration_delay` → `TargetNotConnected`
    pub ec2_endpoint: Option<String>,
    /// how long after the simulator first sees an instance running its agent "registers"
    pub registration_delay: Duration,
    /// the faults in force from the start
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            mode: Mode::Mux,
            routes: Vec::new(),
            ec2_endpoint: None,
            registration_delay: Duration::ZERO,
            faults: Faults::default(),
        }
    }
}

/// .what = a session's status, with the names of the API's `SessionStatus`
/// .why = DescribeSessions reports it; tests check it
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// started, no websocket yet
    Connecting,
    /// a websocket is open
    Connected,
    /// its websocket is gone and it can be resumed
    Disconnected,
    /// ended
    Terminated,
    /// ended by a failure of the agent's plugin
    Failed,
}

impl SessionStatus {
    /// .what = the API's name for it
    /// .why = the `Status` field of DescribeSessions
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "Connecting",
            Self::Connected => "Connected",
            Self::Disconnected => "Disconnected",
            Self::Terminated => "Terminated",
            Self::Failed => "Failed",
        }
    }

    /// .what = whether DescribeSessions lists it under `State: Active`
    /// .why = Active covers sessions that are running or can be resumed; History the ended ones
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Self::Connecting | Self::Connected | Self::Disconnected
        )
    }
}

/// .what = why a session ended
/// .why = tests tell a TerminateSession call from the plugin's flag, an idle timeout, and the agent's end
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndedBy {
    /// the TerminateSession API
    TerminateSessionApi,
    /// the plugin's TerminateSession flag (Ctrl-C)
    TerminateSessionFlag,
    /// the test closed its channel with this message
    ChannelClosed(String),
    /// the idle timeout
    IdleTimeout,
    /// ResumeSession was refused
    ResumeRefused,
    /// the agent's plugin ended with this output (e.g. basic mode's destination refused)
    AgentEnded(String),
}

/// .what = what the simulator holds about one session
/// .why = tests check what was asked and what happened
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// the session id
    pub session_id: String,
    /// StartSession's Target
    pub target: String,
    /// StartSession's DocumentName
    pub document_name: String,
    /// StartSession's Parameters, as sent
    pub parameters: serde_json::Value,
    /// the status now
    pub status: SessionStatus,
    /// when it started
    pub start_date: SystemTime,
    /// when it ended
    pub end_date: Option<SystemTime>,
    /// why it ended
    pub ended_by: Option<EndedBy>,
    /// how many tokens ResumeSession gave it
    pub resumes: u32,
    /// how many websockets it accepted (the first and each resumed one)
    pub websocket_connections: u32,
    /// how many smux streams (mux) or destination connections (basic) the agent opened
    pub destination_connections: u32,
    /// how many times the agent could not reach the destination
    pub destination_failures: u32,
    /// the HandshakeResponse the plugin sent (its ClientVersion, ProcessedClientActions)
    pub handshake_response: Option<serde_json::Value>,
}

/// .what = counts of the API calls and flags the simulator saw
/// .why = tests check that a resume happened, or that a session ended by API rather than by flag
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// StartSession calls answered with a session
    pub sessions_started: u32,
    /// StartSession calls refused with TargetNotConnected
    pub target_not_connected: u32,
    /// StartSession calls refused with InvalidTarget
    pub invalid_target: u32,
    /// ResumeSession calls answered with a token
    pub resumes: u32,
    /// ResumeSession calls answered without one
    pub refused_resumes: u32,
    /// TerminateSession calls
    pub terminations_by_api: u32,
    /// TerminateSession flags from the plugin
    pub terminations_by_flag: u32,
    /// DescribeSessions calls
    pub describe_sessions: u32,
}

/// one session as the simulator keeps it: its record, its valid token, and its agent's mailbox
pub(crate) struct SessionEntry {
    pub record: SessionRecord,
    pub token: Option<String>,
    pub agent: mpsc::UnboundedSender<channel::Event>,
    pub destination: String,
}

/// what every task of the simulator shares
pub(crate) struct Shared {
    pub port: u16,
    pub mode: Mode,
    pub routes: Mutex<Vec<(String, SocketAddr)>>,
    pub faults: Mutex<Faults>,
    pub sessions: Mutex<HashMap<String, SessionEntry>>,
    pub counts: Mutex<Counts>,
    pub ec2_endpoint: Option<String>,
    pub registration_delay: Duration,
    pub first_seen_running: Mutex<HashMap<String, Instant>>,
}

/// a lock that survives a panicked holder (a test's assertion never poisons the simulator)
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// .what = the local address a destination `HOST:PORT` leads to: its own route, else `*`
    /// .why = the test maps a cluster's endpoint to its own server
    pub fn route(&self, destination: &str) -> Option<SocketAddr> {
        let routes = lock(&self.routes);
        routes
            .iter()
            .find(|(pattern, _)| pattern == destination)
            .or_else(|| routes.iter().find(|(pattern, _)| pattern == "*"))
            .map(|(_, address)| *address)
    }

    /// .what = changes one session's record
    /// .why = the agent and the API both update what tests read
    pub fn update_record(&self, session_id: &str, change: impl FnOnce(&mut SessionRecord)) {
        if let Some(entry) = lock(&self.sessions).get_mut(session_id) {
            change(&mut entry.record);
        }
    }

    /// .what = ends a session: status, end date, cause; its token is gone, so it cannot be resumed
    /// .why = every way a session ends goes through here
    pub fn end_session(&self, session_id: &str, status: SessionStatus, ended_by: EndedBy) {
        if let Some(entry) = lock(&self.sessions).get_mut(session_id)
            && entry.record.status.is_active()
        {
            entry.record.status = status;
            entry.record.end_date = Some(SystemTime::now());
            entry.record.ended_by = Some(ended_by);
            entry.token = None;
        }
    }
}

/// .what = a running simulator; everything it started stops when it is dropped
/// .why = a test starts one, points the CLI or the plugin at `endpoint()`, sets faults, reads what happened
pub struct SsmSimulator {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SsmSimulator {
    /// .what = starts serving the API and the data channel on `config.listen`
    /// .why = one call in a test; panics when it cannot listen (a test fixture)
    pub fn start(config: SimConfig) -> Self {
        Self::try_start(config).unwrap_or_else(|error| panic!("ssm simulator: {error}"))
    }

    /// .what = `start`, with the failure to listen as an error
    /// .why = the `ssm-sim` binary reports it instead of panicking
    pub fn try_start(config: SimConfig) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ssm-sim")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(config.listen))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            port,
            mode: config.mode,
            routes: Mutex::new(config.routes),
            faults: Mutex::new(config.faults),
            sessions: Mutex::new(HashMap::new()),
            counts: Mutex::new(Counts::default()),
            ec2_endpoint: config.ec2_endpoint,
            registration_delay: config.registration_delay,
            first_seen_running: Mutex::new(HashMap::new()),
        });
        runtime.spawn(api::serve(listener, Arc::clone(&shared)));
        Ok(Self {
            shared,
            runtime: Some(runtime),
        })
    }

    /// .what = the port it serves on (127.0.0.1)
    /// .why = tests build URLs from it
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// .what = `http://127.0.0.1:PORT`, the SSM endpoint for `--endpoint-url` or `AWS_ENDPOINT_URL_SSM`
    /// .why = the CLI and the plugin (for ResumeSession) reach the API here
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// .what = adds or replaces the route of a destination `HOST:PORT` (or `*`)
    /// .why = a test can move a destination while sessions run
    pub fn set_route(&self, destination: &str, address: SocketAddr) {
        let mut routes = lock(&self.shared.routes);
        routes.retain(|(pattern, _)| pattern != destination);
        routes.push((destination.to_string(), address));
    }

    /// .what = changes the faults in force
    /// .why = faults at runtime: e.g. refuse the next resume
    pub fn set_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut lock(&self.shared.faults));
    }

    /// .what = aborts every open websocket now, without a close frame
    /// .why = a dropped connection: the plugin resumes the session
    pub fn abort_websockets(&self) {
        for entry in lock(&self.shared.sessions).values() {
            let _ = entry.agent.send(channel::Event::AbortWebsocket);
        }
    }

    /// .what = closes a session's channel with a message (every active session when `session_id` is None)
    /// .why = the service ending a session: the plugin prints `SessionId: S : message` and exits 0
    pub fn close_channel(&self, session_id: Option<&str>, message: &str) {
        for (id, entry) in lock(&self.shared.sessions).iter() {
            if session_id.is_none_or(|wanted| wanted == id) {
                let _ = entry
                    .agent
                    .send(channel::Event::CloseChannel(message.to_string()));
            }
        }
    }

    /// .what = every session it holds, oldest first
    /// .why = tests check targets, parameters, states and counts
    pub fn sessions(&self) -> Vec<SessionRecord> {
        let mut records: Vec<SessionRecord> = lock(&self.shared.sessions)
            .values()
            .map(|entry| entry.record.clone())
            .collect();
        records.sort_by_key(|record| record.start_date);
        records
    }

    /// .what = the counts of API calls and flags so far
    /// .why = tests check that a resume or a termination happened, and how
    pub fn counts(&self) -> Counts {
        *lock(&self.shared.counts)
    }

    /// .what = waits until `condition` holds on the sessions, or `limit` passes; whether it held
    /// .why = what the plugin does happens asynchronously
    pub fn wait_for(
        &self,
        limit: Duration,
        condition: impl Fn(&[SessionRecord], Counts) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if condition(&self.sessions(), self.counts()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SsmSimulator {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
