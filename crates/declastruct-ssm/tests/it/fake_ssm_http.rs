//! .what = a tiny HTTP endpoint answering StartSession, ResumeSession and TerminateSession as JSON 1.1, in front
//! of a [`FakeAgent`]
//! .why = the SDK path (`SdkSessionApi`: request shape, endpoint, error mapping) is exercised for real, and other
//! clients that only speak through the SDK (aws-ssm-bridge) can be measured against the same fake agent

use std::net::SocketAddr;
use std::sync::Arc;

use declastruct_ssm::SessionApi;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::fake_agent::FakeAgent;

/// what the endpoint received
#[derive(Debug, Default)]
pub struct Requests {
    /// (X-Amz-Target, body) in order
    pub calls: Mutex<Vec<(String, serde_json::Value)>>,
}

/// serves the SSM JSON API on loopback; returns its URL
pub async fn serve(
    agent: Arc<FakeAgent>,
    refuse_start_with: Option<(&'static str, &'static str)>,
) -> (String, Arc<Requests>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    let requests = Arc::new(Requests::default());
    let served = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let agent = Arc::clone(&agent);
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut reader = BufReader::new(reader);
                loop {
                    let mut target = String::new();
                    let mut length = 0usize;
                    let mut line = String::new();
                    // request line, then headers
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            match name.trim().to_ascii_lowercase().as_str() {
                                "x-amz-target" => target = value.trim().to_owned(),
                                "content-length" => length = value.trim().parse().unwrap_or(0),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    served
                        .calls
                        .lock()
                        .await
                        .push((target.clone(), body.clone()));
                    let (status, answer) = answer(&agent, &target, &body, refuse_start_with).await;
                    let text = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: r\r\n\r\n{text}",
                        text.len()
                    );
                    if writer.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{address}"), requests)
}

async fn answer(
    agent: &Arc<FakeAgent>,
    target: &str,
    body: &serde_json::Value,
    refuse_start_with: Option<(&'static str, &'static str)>,
) -> (&'static str, serde_json::Value) {
    let session_id = body["SessionId"].as_str().unwrap_or_default().to_owned();
    match target {
        "AmazonSSM.StartSession" => {
            if let Some((code, message)) = refuse_start_with {
                return (
                    "400 Bad Request",
                    serde_json::json!({"__type": code, "message": message}),
                );
            }
            let input = declastruct_ssm::StartSessionInput {
                target: body["Target"].as_str().unwrap_or_default().to_owned(),
                document_name: body["DocumentName"].as_str().unwrap_or_default().to_owned(),
                parameters: serde_json::from_value(body["Parameters"].clone()).unwrap_or_default(),
            };
            match agent.start_session(&input).await {
                Ok(started) => (
                    "200 OK",
                    serde_json::json!({"SessionId": started.session_id, "StreamUrl": started.stream_url, "TokenValue": started.token_value}),
                ),
                Err(error) => (
                    "500 Internal Server Error",
                    serde_json::json!({"__type": "InternalServerError", "message": error.to_string()}),
                ),
            }
        }
        "AmazonSSM.ResumeSession" => match agent.resume_session(&session_id).await {
            Ok(resumed) => (
                "200 OK",
                serde_json::json!({"SessionId": session_id, "StreamUrl": resumed.stream_url, "TokenValue": resumed.token_value}),
            ),
            Err(error) => (
                "500 Internal Server Error",
                serde_json::json!({"__type": "InternalServerError", "message": error.to_string()}),
            ),
        },
        "AmazonSSM.TerminateSession" => {
            let _ = agent.terminate_session(&session_id).await;
            ("200 OK", serde_json::json!({"SessionId": session_id}))
        }
        _ => (
            "400 Bad Request",
            serde_json::json!({"__type": "UnknownOperationException", "message": target}),
        ),
    }
}

/// an SDK configuration that reaches `endpoint` with fake credentials
pub fn sdk_config(endpoint: &str) -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder()
        .region(aws_types::region::Region::new("eu-west-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"),
            ),
        )
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build()
}
