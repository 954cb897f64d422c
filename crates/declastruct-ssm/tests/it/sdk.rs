//! .what = the SDK path: StartSession, ResumeSession and TerminateSession through `aws-sdk-ssm` to an HTTP
//! endpoint on loopback, and the endpoint chosen by the SDK's rules
//! .why = the calls' shape and the endpoint are what a real account sees; a fake `SessionApi` would hide them

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use declastruct_ssm::{NativeOptions, NativeSession, PortForwardRequest, SessionEnd, SsmError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fake_agent::{AgentConfig, FakeAgent, echo_server};
use crate::fake_ssm_http::{sdk_config, serve};

fn request() -> PortForwardRequest {
    PortForwardRequest {
        target: "i-0abc1234".to_owned(),
        remote_host: Some("db.internal".to_owned()),
        remote_port: 5432,
        local_port: 0,
        local_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    }
}

async fn echo_once(session: &NativeSession) {
    let mut stream = TcpStream::connect(session.local_addresses()[0])
        .await
        .expect("connects");
    stream
        .write_all(b"ping through the SDK path")
        .await
        .expect("writes");
    let mut back = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
        .await
        .expect("in time")
        .expect("reads");
    assert_eq!(&back, b"ping through the SDK path");
}

#[tokio::test]
async fn the_sdk_calls_start_resume_and_terminate_with_the_documents_parameters() {
    let agent = FakeAgent::start(AgentConfig::new("3.3.1142.0", echo_server().await)).await;
    let (endpoint, requests) = serve(agent.clone(), None).await;
    let session = NativeSession::start(&sdk_config(&endpoint), request(), NativeOptions::default())
        .await
        .expect("opens");
    echo_once(&session).await;
    agent.abort_websocket();
    echo_once(&session).await;
    assert_eq!(session.close().await.expect("closes"), SessionEnd::Closed);
    let calls = requests.calls.lock().await.clone();
    let targets: Vec<&str> = calls.iter().map(|(target, _)| target.as_str()).collect();
    assert_eq!(targets.first(), Some(&"AmazonSSM.StartSession"));
    assert!(targets.contains(&"AmazonSSM.ResumeSession"), "{targets:?}");
    assert_eq!(targets.last(), Some(&"AmazonSSM.TerminateSession"));
    let start = &calls[0].1;
    assert_eq!(start["Target"], "i-0abc1234");
    assert_eq!(
        start["DocumentName"],
        "AWS-StartPortForwardingSessionToRemoteHost"
    );
    assert_eq!(
        start["Parameters"]["host"],
        serde_json::json!(["db.internal"])
    );
    assert_eq!(
        start["Parameters"]["portNumber"],
        serde_json::json!(["5432"])
    );
    assert_eq!(
        start["Parameters"]["localPortNumber"],
        serde_json::json!([session_port_of(&calls)])
    );
    assert_eq!(
        calls.last().map(|(_, body)| body["SessionId"].clone()),
        Some(serde_json::json!("session-1"))
    );
    assert_eq!(agent.observed.terminate_flags.load(Ordering::SeqCst), 1);
}

fn session_port_of(calls: &[(String, serde_json::Value)]) -> String {
    calls[0].1["Parameters"]["localPortNumber"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_refused_start_session_names_its_code_as_the_cli_does() {
    let agent = FakeAgent::start(AgentConfig::new("3.3.1142.0", echo_server().await)).await;
    let (endpoint, _requests) = serve(
        agent.clone(),
        Some(("TargetNotConnected", "i-0abc1234 is not connected.")),
    )
    .await;
    let error = NativeSession::start(&sdk_config(&endpoint), request(), NativeOptions::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, SsmError::StartSession { code, message } if code == "TargetNotConnected" && message == "i-0abc1234 is not connected."),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "An error occurred (TargetNotConnected) when calling the StartSession operation: i-0abc1234 is not connected."
    );
}

/// runs in a child process with AWS_ENDPOINT_URL_SSM set (the environment cannot be changed safely in-process)
#[tokio::test]
#[ignore = "run by the_endpoint_follows_aws_endpoint_url_ssm_first in a child process"]
async fn child_opens_through_the_environments_endpoint() {
    if std::env::var_os("DECLASTRUCT_SSM_TEST_CHILD").is_none() {
        return;
    }
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let session = NativeSession::start(&config, request(), NativeOptions::default())
        .await
        .expect("opens");
    echo_once(&session).await;
    session.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_follows_aws_endpoint_url_ssm_first() {
    let agent = FakeAgent::start(AgentConfig::new("3.3.1142.0", echo_server().await)).await;
    let (endpoint, requests) = serve(agent.clone(), None).await;
    let executable = std::env::current_exe().expect("the test binary");
    let child = tokio::process::Command::new(executable)
        .args([
            "--exact",
            "sdk::child_opens_through_the_environments_endpoint",
            "--ignored",
            "--nocapture",
        ])
        .env("DECLASTRUCT_SSM_TEST_CHILD", "1")
        .env("AWS_ENDPOINT_URL_SSM", &endpoint)
        // the general endpoint is wrong: the service-specific one must win
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("runs");
    let output = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "{output}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(output.contains("1 passed"), "{output}");
    let targets: Vec<String> = requests
        .calls
        .lock()
        .await
        .iter()
        .map(|(target, _)| target.clone())
        .collect();
    assert_eq!(
        targets,
        ["AmazonSSM.StartSession", "AmazonSSM.TerminateSession"]
    );
}
