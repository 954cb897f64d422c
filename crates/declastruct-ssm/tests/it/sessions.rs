//! .what = sessions through the fake agent, end to end over real sockets on loopback
//! .why = every path of the session task: handshake, mux, basic, resume, retransmission, close, refusals

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use declastruct_ssm::{
    ForwardingMode, NativeOptions, NativeSession, PortForwardRequest, SessionEnd, SessionEvent,
    SsmError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::fake_agent::{AgentConfig, FakeAgent, echo_server, refusing_address};

const NEW_AGENT: &str = "3.3.1142.0";
const MUX_KEEP_ALIVE_AGENT: &str = "3.1.1000.0";
const OLD_AGENT: &str = "3.0.196.0";

fn request(addresses: Vec<IpAddr>) -> PortForwardRequest {
    PortForwardRequest {
        target: "i-0abc1234".to_owned(),
        remote_host: Some("db.internal".to_owned()),
        remote_port: 5432,
        local_port: 0,
        local_addresses: addresses,
    }
}

fn loopback() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
}

async fn open(agent: &Arc<FakeAgent>) -> (NativeSession, mpsc::UnboundedReceiver<SessionEvent>) {
    open_with(agent, NativeOptions::default(), loopback()).await
}

async fn open_with(
    agent: &Arc<FakeAgent>,
    mut options: NativeOptions,
    addresses: Vec<IpAddr>,
) -> (NativeSession, mpsc::UnboundedReceiver<SessionEvent>) {
    let (events, receiver) = mpsc::unbounded_channel();
    options.events = Some(events);
    let session = tokio::time::timeout(
        Duration::from_secs(10),
        NativeSession::start_with_api(agent.clone(), request(addresses), options),
    )
    .await
    .expect("opens within 10 s")
    .expect("opens");
    (session, receiver)
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// writes `data` and reads the echo back concurrently; returns what came back
async fn echo_through(address: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(address).await.expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let length = data.len();
    let writing = tokio::spawn(async move {
        writer.write_all(&data).await.expect("writes");
        writer
    });
    let mut back = vec![0u8; length];
    tokio::time::timeout(Duration::from_secs(30), reader.read_exact(&mut back))
        .await
        .expect("echo within 30 s")
        .expect("reads");
    drop(writing.await);
    back
}

async fn next_event(
    events: &mut mpsc::UnboundedReceiver<SessionEvent>,
    matches: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.expect("events go on");
            if matches(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the event within 10 s")
}

#[tokio::test]
async fn mux_mode_forwards_both_ways_and_says_the_port_opened_as_the_plugin_does() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let (session, mut events) = open(&agent).await;
    assert_eq!(
        session.forwarding_mode(),
        ForwardingMode::Mux { keep_alive: false }
    );
    assert_eq!(session.agent_version(), NEW_AGENT);
    let address = session.local_addresses()[0];
    let started = next_event(&mut events, |event| {
        matches!(event, SessionEvent::Started { .. })
    })
    .await;
    assert_eq!(
        started.to_string(),
        "Starting session with SessionId: session-1"
    );
    let opened = next_event(&mut events, |event| {
        matches!(event, SessionEvent::PortOpened { .. })
    })
    .await;
    assert!(
        opened.to_string().starts_with(&format!(
            "Port {} opened for sessionId session-1.",
            address.port()
        )),
        "{opened}"
    );
    let data = pattern(1 << 20, 1);
    assert_eq!(echo_through(address, data.clone()).await, data);
    // the handshake response processed SessionType and named this client's version
    let response = agent
        .observed
        .handshake_response
        .lock()
        .await
        .clone()
        .expect("answered");
    assert_eq!(response["ClientVersion"], "1.2.650.0");
    assert_eq!(
        response["ProcessedClientActions"][0]["ActionType"],
        "SessionType"
    );
    assert_eq!(response["ProcessedClientActions"][0]["ActionStatus"], 1);
    // the open message carried the token and a client id
    let open = agent.observed.open_messages.lock().await[0].clone();
    assert_eq!(
        (
            open.token_value.as_str(),
            open.message_schema_version.as_str()
        ),
        ("token-0", "1.0")
    );
    session.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_concurrent_connections_each_get_their_own_bytes_back() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let (session, _events) = open(&agent).await;
    let address = session.local_addresses()[0];
    let transfers: Vec<_> = (0..6u8)
        .map(|seed| {
            tokio::spawn(async move {
                let data = pattern(300_000 + usize::from(seed) * 1000, seed);
                (echo_through(address, data.clone()).await, data)
            })
        })
        .collect();
    for transfer in transfers {
        let (back, sent) = transfer.await.expect("joins");
        assert!(
            back == sent,
            "a connection got another's bytes or lost some"
        );
    }
    session.close().await.expect("closes");
}

#[tokio::test]
async fn agents_up_to_3_1_1511_get_smux_keep_alive() {
    let agent = FakeAgent::start(AgentConfig::new(MUX_KEEP_ALIVE_AGENT, echo_server().await)).await;
    let (session, _events) = open(&agent).await;
    assert_eq!(
        session.forwarding_mode(),
        ForwardingMode::Mux { keep_alive: true }
    );
    session.close().await.expect("closes");
}

#[tokio::test]
async fn basic_mode_serves_one_connection_at_a_time_and_says_when_it_closes() {
    let agent = FakeAgent::start(AgentConfig::new(OLD_AGENT, echo_server().await)).await;
    let (session, _events) = open(&agent).await;
    assert_eq!(session.forwarding_mode(), ForwardingMode::Basic);
    let address = session.local_addresses()[0];
    let first = pattern(200_000, 3);
    assert_eq!(echo_through(address, first.clone()).await, first);
    // the first connection is closed by now (dropped in echo_through): DisconnectToPort follows its last bytes
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent.observed.disconnect_flags.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no DisconnectToPort flag");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = pattern(50_000, 4);
    assert_eq!(echo_through(address, second.clone()).await, second);
    session.close().await.expect("closes");
    assert_eq!(
        agent.observed.terminate_flags.load(Ordering::SeqCst),
        1,
        "agents after 2.3.722.0 get the flag"
    );
}

#[tokio::test]
async fn a_refusing_destination_is_reported_and_the_session_stays_up() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, refusing_address().await)).await;
    let (session, mut events) = open(&agent).await;
    let address = session.local_addresses()[0];
    let mut stream = TcpStream::connect(address)
        .await
        .expect("the local port accepts");
    stream.write_all(b"hello").await.expect("writes");
    let failed = next_event(&mut events, |event| {
        matches!(event, SessionEvent::DestinationFailed)
    })
    .await;
    assert_eq!(
        failed.to_string(),
        "Connection to destination port failed, check SSM Agent logs."
    );
    // the agent closes the stream: the local connection ends
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the local connection is closed: {read:?}"
    );
    // and the session still accepts
    let _again = TcpStream::connect(address).await.expect("still accepts");
    next_event(&mut events, |event| {
        matches!(event, SessionEvent::DestinationFailed)
    })
    .await;
    session.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_websocket_is_resumed_without_dropping_the_local_connection() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let (session, mut events) = open(&agent).await;
    let address = session.local_addresses()[0];
    let stream = TcpStream::connect(address).await.expect("connects");
    let (mut reader, mut writer) = stream.into_split();
    let data = pattern(4 << 20, 9);
    let sent = data.clone();
    let writing = tokio::spawn(async move {
        for chunk in sent.chunks(64 * 1024) {
            writer.write_all(chunk).await.expect("writes");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer
    });
    let aborting = {
        let agent = agent.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                agent.abort_websocket();
            }
        })
    };
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(Duration::from_secs(60), reader.read_exact(&mut back))
        .await
        .expect("all bytes back within 60 s")
        .expect("reads");
    aborting.await.expect("joins");
    drop(writing.await);
    assert!(
        back == data,
        "bytes were lost or reordered across the resumes"
    );
    assert!(
        agent.observed.resume_sessions.load(Ordering::SeqCst) >= 1,
        "ResumeSession was called"
    );
    assert!(
        agent.observed.websockets.load(Ordering::SeqCst) >= 2,
        "a new websocket was opened"
    );
    let resumed = next_event(&mut events, |event| {
        matches!(event, SessionEvent::Resumed { .. })
    })
    .await;
    assert!(
        resumed
            .to_string()
            .starts_with("Session session-1 resumed after "),
        "{resumed}"
    );
    // the new websockets opened with the new tokens and the same client id
    let opens = agent.observed.open_messages.lock().await.clone();
    assert!(
        opens
            .iter()
            .skip(1)
            .all(|open| open.client_id == opens[0].client_id && open.token_value != "token-0")
    );
    session.close().await.expect("closes");
}

#[tokio::test]
async fn lost_messages_are_resent_until_acknowledged() {
    let mut config = AgentConfig::new(NEW_AGENT, echo_server().await);
    config.drop_every = Some(7);
    let agent = FakeAgent::start(config).await;
    let (session, _events) = open(&agent).await;
    let data = pattern(300_000, 5);
    assert_eq!(
        echo_through(session.local_addresses()[0], data.clone()).await,
        data
    );
    assert!(
        agent.observed.resends_seen.load(Ordering::SeqCst) > 0,
        "dropped messages came again"
    );
    session.close().await.expect("closes");
}

#[tokio::test]
async fn reordered_messages_from_the_agent_are_delivered_in_order() {
    let mut config = AgentConfig::new(NEW_AGENT, echo_server().await);
    config.reorder = true;
    let agent = FakeAgent::start(config).await;
    let (session, _events) = open(&agent).await;
    let data = pattern(500_000, 6);
    assert_eq!(
        echo_through(session.local_addresses()[0], data.clone()).await,
        data
    );
    session.close().await.expect("closes");
}

#[tokio::test]
async fn close_sends_the_terminate_flag_and_calls_terminate_session() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let (session, _events) = open(&agent).await;
    let address = session.local_addresses()[0];
    assert_eq!(session.close().await.expect("closes"), SessionEnd::Closed);
    assert_eq!(agent.observed.terminate_flags.load(Ordering::SeqCst), 1);
    assert_eq!(agent.observed.terminate_sessions.load(Ordering::SeqCst), 1);
    assert!(
        TcpStream::connect(address).await.is_err(),
        "the port is no longer served"
    );
}

#[tokio::test]
async fn a_closer_ends_serve_from_another_task() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let (mut session, _events) = open(&agent).await;
    let closer = session.closer();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        closer.close();
    });
    assert_eq!(session.serve().await.expect("serves"), SessionEnd::Closed);
    assert_eq!(agent.observed.terminate_sessions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_session_closed_by_the_agent_ends_serve_with_its_reason() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let (mut session, _events) = open(&agent).await;
    agent.close_channel("idle timeout");
    let end = tokio::time::timeout(Duration::from_secs(5), session.serve())
        .await
        .expect("ends")
        .expect("no error");
    assert_eq!(
        end,
        SessionEnd::ChannelClosed {
            output: "idle timeout".to_owned()
        }
    );
    assert_eq!(
        agent.observed.terminate_sessions.load(Ordering::SeqCst),
        0,
        "nothing to terminate"
    );
}

#[tokio::test]
async fn resume_without_a_token_means_the_session_timed_out() {
    let mut config = AgentConfig::new(NEW_AGENT, echo_server().await);
    config.resume_without_token = true;
    let agent = FakeAgent::start(config).await;
    let (mut session, _events) = open(&agent).await;
    agent.abort_websocket();
    let end = tokio::time::timeout(Duration::from_secs(5), session.serve())
        .await
        .expect("ends")
        .expect("no error");
    assert_eq!(end, SessionEnd::TimedOut);
}

#[tokio::test]
async fn kms_encryption_is_refused_naming_the_setting_and_the_plugin() {
    let mut config = AgentConfig::new(NEW_AGENT, echo_server().await);
    config.kms_key = Some("alias/session-key".to_owned());
    let agent = FakeAgent::start(config).await;
    let error =
        NativeSession::start_with_api(agent.clone(), request(loopback()), NativeOptions::default())
            .await
            .expect_err("refused");
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
    // the agent was told (ActionStatus 2, Failed) and the session terminated
    let deadline = Instant::now() + Duration::from_secs(5);
    let response = loop {
        if let Some(response) = agent.observed.handshake_response.lock().await.clone() {
            break response;
        }
        assert!(Instant::now() < deadline, "the refusal reached the agent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let kms = &response["ProcessedClientActions"][1];
    assert_eq!(
        (kms["ActionType"].as_str(), kms["ActionStatus"].as_i64()),
        (Some("KMSEncryption"), Some(2))
    );
    assert_eq!(agent.observed.terminate_sessions.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn localhost_listens_on_both_address_families() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let ipv6 = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
    let (session, _events) = open_with(
        &agent,
        NativeOptions::default(),
        declastruct_ssm::localhost_addresses(),
    )
    .await;
    let port = session.local_addresses()[0].port();
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    assert_eq!(echo_through(v4, b"over IPv4".to_vec()).await, b"over IPv4");
    if ipv6 {
        assert_eq!(session.local_addresses().len(), 2);
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        assert_eq!(echo_through(v6, b"over IPv6".to_vec()).await, b"over IPv6");
    }
    session.close().await.expect("closes");
}

#[tokio::test]
async fn a_taken_port_fails_before_any_aws_call() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binds");
    let mut wanted = request(loopback());
    wanted.local_port = taken.local_addr().expect("address").port();
    let error = NativeSession::start_with_api(agent.clone(), wanted, NativeOptions::default())
        .await
        .expect_err("refused");
    assert!(matches!(error, SsmError::LocalListener { .. }), "{error:?}");
    assert_eq!(agent.observed.start_sessions.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn small_messages_work_as_the_plugins_1024_byte_ones_do() {
    let agent = FakeAgent::start(AgentConfig::new(NEW_AGENT, echo_server().await)).await;
    let options = NativeOptions {
        max_message_payload: 1024,
        ..NativeOptions::default()
    };
    let (session, _events) = open_with(&agent, options, loopback()).await;
    let data = pattern(100_000, 8);
    assert_eq!(
        echo_through(session.local_addresses()[0], data.clone()).await,
        data
    );
    session.close().await.expect("closes");
}
