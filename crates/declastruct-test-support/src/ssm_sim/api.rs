//! .what = the HTTP side: the SSM JSON 1.1 API on `POST /` and the data channel's websocket upgrade on
//! `/v1/data-channel/{SessionId}`, on one listener
//! .why = the AWS CLI calls StartSession (and DescribeSessions), the plugin calls ResumeSession and
//! TerminateSession at the endpoint it is given, and dials the StreamUrl; shapes from botocore's
//! `botocore/data/ssm/2014-11-06/service-2.json` (protocol `json`, `jsonVersion` 1.1, `targetPrefix` AmazonSSM)

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{SessionEntry, SessionRecord, SessionStatus, Shared, channel, lock};

/// the documents of a port-forwarding session the simulated agent serves
const REMOTE_HOST_DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
const INSTANCE_PORT_DOCUMENT: &str = "AWS-StartPortForwardingSession";

/// .what = accepts connections until the runtime stops
/// .why = one port for the API and the data channel, as the StreamUrl the simulator hands out says
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(route(request, shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

type Body = Full<Bytes>;

async fn route(request: Request<Incoming>, shared: Arc<Shared>) -> Response<Body> {
    if let Some(session_id) = request.uri().path().strip_prefix("/v1/data-channel/") {
        let session_id = session_id.to_string();
        return upgrade(request, session_id, shared);
    }
    if request.method() != Method::POST {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    let target = header(&request, "x-amz-target");
    let authorization = header(&request, "authorization");
    let Ok(body) = request.into_body().collect().await else {
        return plain(StatusCode::BAD_REQUEST, "unreadable body");
    };
    let input: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or(Value::Null);
    let caller = Caller::from_authorization(&authorization);
    let operation = target.strip_prefix("AmazonSSM.").unwrap_or_default();
    if lock(&shared.faults)
        .denied_operations
        .iter()
        .any(|denied| denied == operation)
    {
        // IAM's refusal: HTTP 400, `AccessDeniedException`, and the message IAM words for a call no policy allows
        // (the shape of the "not authorized to perform" errors in the IAM user guide's troubleshooting page)
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "__type": "AccessDeniedException",
                "message": format!(
                    "User: arn:aws:iam::123456789012:user/{} is not authorized to perform: ssm:{operation} on resource: arn:aws:ssm:{}:123456789012:* because no identity-based policy allows the ssm:{operation} action",
                    caller.access_key, caller.region
                ),
            }),
        );
    }
    let result = match target.strip_prefix("AmazonSSM.") {
        Some("StartSession") => start_session(&input, &caller, &shared).await,
        Some("ResumeSession") => resume_session(&input, &shared),
        Some("TerminateSession") => terminate_session(&input, &shared),
        Some("DescribeSessions") => describe_sessions(&input, &shared),
        _ => Err(ApiError::new(
            "UnknownOperationException",
            &format!("the simulator does not serve {target}"),
        )),
    };
    match result {
        Ok(output) => json_response(StatusCode::OK, &output),
        Err(error) => json_response(
            error.status,
            // the JSON 1.1 error shape: `__type` and `message` (botocore `parsers.py` `BaseJSONParser`)
            &json!({"__type": error.code, "message": error.message}),
        ),
    }
}

fn header<T>(request: &Request<T>, name: &str) -> String {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(request_id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response
            .headers_mut()
            .insert("x-amzn-requestid", request_id);
    }
    response
}

struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: &'static str, message: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.to_string(),
        }
    }
}

/// who called, from the SigV4 `Authorization` header (signatures are not verified)
struct Caller {
    access_key: String,
    region: String,
}

impl Caller {
    /// `Credential=AKID/DATE/REGION/ssm/aws4_request` of a SigV4 header
    fn from_authorization(authorization: &str) -> Self {
        let scope: Vec<&str> = authorization
            .split("Credential=")
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .map(|credential| credential.split('/').collect())
            .unwrap_or_default();
        Self {
            access_key: scope.first().copied().unwrap_or("session").to_string(),
            region: scope.get(2).copied().unwrap_or("us-east-1").to_string(),
        }
    }
}

/// a parameter of a StartSession request: the first string of its list
fn parameter(input: &Value, name: &str) -> Option<String> {
    input
        .get("Parameters")?
        .get(name)?
        .as_array()?
        .first()?
        .as_str()
        .map(str::to_string)
}

fn session_id_of(input: &Value) -> Result<String, ApiError> {
    input
        .get("SessionId")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::new("ValidationException", "SessionId is required"))
}

/// .what = StartSession: checks the target, records the session, hands out its StreamUrl and token
/// .why = the response the CLI passes to the plugin (`session/session.go` reads SessionId, StreamUrl,
/// TokenValue); the errors the CLI prints (`TargetNotConnected`: `{target} is not connected.`)
async fn start_session(
    input: &Value,
    caller: &Caller,
    shared: &Arc<Shared>,
) -> Result<Value, ApiError> {
    let target = input
        .get("Target")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new("ValidationException", "Target is required"))?
        .to_string();
    let document_name = input
        .get("DocumentName")
        .and_then(Value::as_str)
        .unwrap_or("SSM-SessionManagerRunShell")
        .to_string();
    // the documents' parameters and defaults: portNumber "80", localPortNumber "0"; host only for the remote one
    let host = match document_name.as_str() {
        REMOTE_HOST_DOCUMENT => parameter(input, "host")
            .ok_or_else(|| ApiError::new("InvalidParameters", "Parameter \"host\" is required."))?,
        INSTANCE_PORT_DOCUMENT => "localhost".to_string(),
        other => {
            return Err(ApiError::new(
                "InvalidDocument",
                &format!("the simulator serves only port forwarding, not {other}"),
            ));
        }
    };
    let port_number = parameter(input, "portNumber").unwrap_or_else(|| "80".into());
    let local_port_number = parameter(input, "localPortNumber").unwrap_or_else(|| "0".into());
    check_target(&target, &caller.region, shared).await?;

    let session_id = format!(
        "{}-{}",
        caller.access_key,
        &uuid::Uuid::new_v4().simple().to_string()[..17]
    );
    let token = uuid::Uuid::new_v4().to_string();
    // the document's properties, which the agent passes as the handshake's SessionType Properties
    // (`sessionplugin.go`: `Properties: p.sessionPlugin.GetPluginParameters(config.Properties)`)
    let mut properties = json!({
        "portNumber": port_number,
        "type": "LocalPortForwarding",
        "localPortNumber": local_port_number,
    });
    if document_name == REMOTE_HOST_DOCUMENT {
        properties["host"] = json!(host);
    }
    let (agent, mailbox) = mpsc::unbounded_channel();
    let record = SessionRecord {
        session_id: session_id.clone(),
        target: target.clone(),
        document_name,
        parameters: input.get("Parameters").cloned().unwrap_or(Value::Null),
        status: SessionStatus::Connecting,
        start_date: SystemTime::now(),
        end_date: None,
        ended_by: None,
        resumes: 0,
        websocket_connections: 0,
        destination_connections: 0,
        destination_failures: 0,
        handshake_response: None,
    };
    lock(&shared.sessions).insert(
        session_id.clone(),
        SessionEntry {
            record,
            token: Some(token.clone()),
            agent,
            destination: format!("{host}:{port_number}"),
        },
    );
    lock(&shared.counts).sessions_started += 1;
    tokio::spawn(channel::run_agent(
        session_id.clone(),
        properties,
        Arc::clone(shared),
        mailbox,
    ));
    Ok(json!({
        "SessionId": session_id,
        "TokenValue": token,
        "StreamUrl": stream_url(shared, &session_id),
    }))
}

/// `wss://ssmmessages.REGION.amazonaws.com/v1/data-channel/ID?role=publish_subscribe`, on loopback
fn stream_url(shared: &Shared, session_id: &str) -> String {
    format!(
        "ws://127.0.0.1:{}/v1/data-channel/{session_id}?role=publish_subscribe",
        shared.port
    )
}

/// .what = with an EC2 endpoint: unknown instance → InvalidTarget; not running, or its agent not registered yet
/// → TargetNotConnected
/// .why = a stopped bastion, and one whose agent needs a while after it starts
async fn check_target(target: &str, region: &str, shared: &Arc<Shared>) -> Result<(), ApiError> {
    let Some(endpoint) = &shared.ec2_endpoint else {
        return Ok(());
    };
    let not_connected = || {
        lock(&shared.counts).target_not_connected += 1;
        ApiError::new("TargetNotConnected", &format!("{target} is not connected."))
    };
    match instance_state(endpoint, region, target).await {
        InstanceState::Unknown => {
            lock(&shared.counts).invalid_target += 1;
            Err(ApiError::new(
                "InvalidTarget",
                &format!("{target} is not a valid target."),
            ))
        }
        InstanceState::Other => {
            // a stopped instance's agent registers again after its next start
            lock(&shared.first_seen_running).remove(target);
            Err(not_connected())
        }
        InstanceState::Running => {
            let first_seen = *lock(&shared.first_seen_running)
                .entry(target.to_string())
                .or_insert_with(Instant::now);
            if first_seen.elapsed() < shared.registration_delay {
                Err(not_connected())
            } else {
                Ok(())
            }
        }
    }
}

enum InstanceState {
    Unknown,
    Running,
    Other,
}

async fn instance_state(endpoint: &str, region: &str, instance_id: &str) -> InstanceState {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing", "testing", None, None, "ssm-sim",
        ))
        .load()
        .await;
    let client = aws_sdk_ec2::Client::new(&config);
    let Ok(response) = client
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
    else {
        return InstanceState::Unknown;
    };
    let state = response
        .reservations()
        .iter()
        .flat_map(aws_sdk_ec2::types::Reservation::instances)
        .find(|instance| instance.instance_id() == Some(instance_id))
        .and_then(|instance| instance.state())
        .and_then(|state| state.name())
        .map(|name| name.as_str().to_string());
    match state.as_deref() {
        None => InstanceState::Unknown,
        Some("running") => InstanceState::Running,
        Some(_) => InstanceState::Other,
    }
}

/// .what = ResumeSession: a new token for a session that can be resumed; none for one that is over
/// .why = `sessionhandler.go` `ResumeSessionHandler`: no TokenValue → `Session: S timed out.`, exit 0
fn resume_session(input: &Value, shared: &Arc<Shared>) -> Result<Value, ApiError> {
    let session_id = session_id_of(input)?;
    let refuse = lock(&shared.faults).refuse_resume;
    let mut sessions = lock(&shared.sessions);
    let entry = sessions.get_mut(&session_id).ok_or_else(|| {
        ApiError::new(
            "DoesNotExistException",
            &format!("Session {session_id} does not exist."),
        )
    })?;
    if refuse || !entry.record.status.is_active() {
        drop(sessions);
        shared.end_session(
            &session_id,
            SessionStatus::Terminated,
            super::EndedBy::ResumeRefused,
        );
        lock(&shared.counts).refused_resumes += 1;
        return Ok(json!({"SessionId": session_id}));
    }
    let token = uuid::Uuid::new_v4().to_string();
    entry.token = Some(token.clone());
    entry.record.resumes += 1;
    drop(sessions);
    lock(&shared.counts).resumes += 1;
    Ok(json!({
        "SessionId": session_id,
        "TokenValue": token,
        "StreamUrl": stream_url(shared, &session_id),
    }))
}

/// .what = TerminateSession: ends the session; its agent closes the channel
/// .why = the API a user or the old basic-mode plugin calls (`basicportforwarding.go` `handleControlSignals`)
fn terminate_session(input: &Value, shared: &Arc<Shared>) -> Result<Value, ApiError> {
    let session_id = session_id_of(input)?;
    lock(&shared.counts).terminations_by_api += 1;
    if let Some(entry) = lock(&shared.sessions).get(&session_id) {
        let _ = entry.agent.send(channel::Event::Terminate);
    }
    shared.end_session(
        &session_id,
        SessionStatus::Terminated,
        super::EndedBy::TerminateSessionApi,
    );
    Ok(json!({"SessionId": session_id}))
}

fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// .what = DescribeSessions: the sessions of a State (Active: connecting, connected or resumable; History:
/// ended), filtered by Target, Status, SessionId, Owner, InvokedAfter, InvokedBefore
/// .why = `aws ssm describe-sessions --state Active` lists the open tunnels
fn describe_sessions(input: &Value, shared: &Arc<Shared>) -> Result<Value, ApiError> {
    lock(&shared.counts).describe_sessions += 1;
    let active = match input.get("State").and_then(Value::as_str) {
        Some("Active") => true,
        Some("History") => false,
        _ => {
            return Err(ApiError::new(
                "ValidationException",
                "State must be Active or History",
            ));
        }
    };
    let filters: Vec<(String, String)> = input
        .get("Filters")
        .and_then(Value::as_array)
        .map(|filters| {
            filters
                .iter()
                .map(|filter| {
                    let field = |name: &str| {
                        filter
                            .get(name)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    (field("key"), field("value"))
                })
                .collect()
        })
        .unwrap_or_default();
    const KEYS: [&str; 7] = [
        "InvokedAfter",
        "InvokedBefore",
        "Target",
        "Owner",
        "Status",
        "SessionId",
        "AccessType",
    ];
    if let Some((key, _)) = filters
        .iter()
        .find(|(key, _)| !KEYS.contains(&key.as_str()))
    {
        // the model's InvalidFilterKey has no members
        return Err(ApiError::new(
            "InvalidFilterKey",
            &format!("invalid filter key {key}"),
        ));
    }
    let mut records: Vec<SessionRecord> = lock(&shared.sessions)
        .values()
        .map(|entry| entry.record.clone())
        .filter(|record| record.status.is_active() == active)
        .collect();
    records.sort_by_key(|record| record.start_date);
    let owner = "arn:aws:iam::123456789012:user/testing";
    let sessions: Vec<Value> = records
        .iter()
        .filter(|record| {
            filters.iter().all(|(key, value)| match key.as_str() {
                "Target" => &record.target == value,
                "Status" => record.status.as_str() == value,
                "SessionId" => &record.session_id == value,
                "Owner" => owner == value,
                "AccessType" => value == "Standard",
                "InvokedAfter" | "InvokedBefore" => {
                    let Ok(when) = chrono::DateTime::parse_from_rfc3339(value) else {
                        return false;
                    };
                    let started = chrono::DateTime::<chrono::Utc>::from(record.start_date);
                    if key == "InvokedAfter" {
                        started >= when
                    } else {
                        started <= when
                    }
                }
                _ => false,
            })
        })
        .map(|record| {
            let mut session = json!({
                "SessionId": record.session_id,
                "Target": record.target,
                "Status": record.status.as_str(),
                "StartDate": epoch_seconds(record.start_date),
                "DocumentName": record.document_name,
                "Owner": owner,
            });
            if let Some(end) = record.end_date {
                session["EndDate"] = json!(epoch_seconds(end));
            }
            session
        })
        .collect();
    Ok(json!({"Sessions": sessions}))
}

/// .what = the websocket upgrade of the data channel: 101, then the connection goes to the session's agent
/// .why = the plugin dials the StreamUrl with gorilla/websocket (`websocketutil.go` `OpenConnection`)
fn upgrade(
    mut request: Request<Incoming>,
    session_id: String,
    shared: Arc<Shared>,
) -> Response<Body> {
    let key = header(&request, "sec-websocket-key");
    let wants_websocket = header(&request, "upgrade").eq_ignore_ascii_case("websocket");
    if !wants_websocket || key.is_empty() {
        return plain(StatusCode::BAD_REQUEST, "expected a websocket upgrade");
    }
    if !lock(&shared.sessions).contains_key(&session_id) {
        return plain(StatusCode::NOT_FOUND, "no such session");
    }
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(&mut request).await {
            let websocket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            channel::serve_websocket(websocket, session_id, shared).await;
        }
    });
    let mut response = plain(StatusCode::SWITCHING_PROTOCOLS, "");
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    response
}
