//! .what = a side-by-side measurement of port-forwarding clients through the same fake agent: the native
//! transport (`examples/native_forward`), the real session-manager-plugin, and aws-ssm-bridge (a scratch binary)
//! .why = issue 24 asks for the decision "own implementation or aws-ssm-bridge" by measurement, and for rates
//! beside the plugin's; each client is a separate process (its RSS is its whole footprint), opened on a fresh
//! fake session, then an upload and a download of the same size through it
//!
//! Run (release, so the fake agent is not the bottleneck):
//! ```sh
//! cargo build --release -p declastruct-ssm --example native_forward
//! NATIVE_FORWARD_BIN=target/release/examples/native_forward \
//! PLUGIN_BIN=../shared/bin/session-manager-plugin BRIDGE_FORWARD_BIN=/path/to/bridge_forward \
//! MEASURE_MB=50 cargo test --release -p declastruct-ssm --test it measure -- --ignored --nocapture
//! ```

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::fake_agent::{AgentConfig, FakeAgent, bench_server};
use crate::fake_ssm_http::serve;

struct Measured {
    name: String,
    open: Duration,
    upload: f64,
    download: f64,
    open_rss_kib: u64,
    rss_kib: u64,
    peak_kib: u64,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| {
                    line.split_whitespace()
                        .nth(1)
                        .and_then(|value| value.parse().ok())
                })
        })
        .unwrap_or(0)
}

async fn wait_for_port(child: &mut Child) -> (u16, Duration, Instant) {
    let started = Instant::now();
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.trim().strip_prefix("Port ") {
                if let Some(port) = rest
                    .split_whitespace()
                    .next()
                    .and_then(|port| port.parse::<u16>().ok())
                {
                    return port;
                }
            }
        }
        panic!("the client ended before opening its port");
    })
    .await
    .expect("the port opens within 30 s");
    let opened = started.elapsed();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (port, opened, started)
}

async fn upload(address: SocketAddr, bytes: u64) -> f64 {
    let mut stream = TcpStream::connect(address).await.expect("connects");
    let started = Instant::now();
    let mut command = vec![b'U'];
    command.extend_from_slice(&bytes.to_be_bytes());
    stream.write_all(&command).await.expect("writes");
    let chunk = vec![0x5au8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let count = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        stream.write_all(&chunk[..count]).await.expect("writes");
        left -= count as u64;
    }
    let mut ok = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(600), stream.read_exact(&mut ok))
        .await
        .expect("in time")
        .expect("reads");
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

async fn download(address: SocketAddr, bytes: u64) -> f64 {
    let mut stream = TcpStream::connect(address).await.expect("connects");
    let started = Instant::now();
    let mut command = vec![b'D'];
    command.extend_from_slice(&bytes.to_be_bytes());
    stream.write_all(&command).await.expect("writes");
    let mut buffer = vec![0u8; 256 * 1024];
    let mut left = bytes;
    while left > 0 {
        let count = tokio::time::timeout(Duration::from_secs(600), stream.read(&mut buffer))
            .await
            .expect("in time")
            .expect("reads");
        assert!(count > 0, "the download ended early");
        left = left.saturating_sub(count as u64);
    }
    bytes as f64 / started.elapsed().as_secs_f64() / 1e6
}

fn client_command(program: &str, endpoint: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env("AWS_ENDPOINT_URL_SSM", endpoint)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .env_remove("AWS_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn measure_one(
    name: &str,
    mode_agent: &str,
    bytes: u64,
    spawn: impl FnOnce(&str, &FakeAgent, u16) -> Child,
) -> Measured {
    let agent = FakeAgent::start(AgentConfig::new(mode_agent, bench_server().await)).await;
    let (endpoint, _requests) = serve(agent.clone(), None).await;
    let port = free_port();
    let mut child = spawn(&endpoint, &agent, port);
    let pid = child.id().expect("running");
    let (port, open, _) = wait_for_port(&mut child).await;
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open_rss_kib = status_kib(pid, "VmRSS:");
    let upload = upload(address, bytes).await;
    eprintln!("{name}: upload {upload:.2} MB/s");
    let download = download(address, bytes).await;
    eprintln!("{name}: download {download:.2} MB/s");
    let rss_kib = status_kib(pid, "VmRSS:");
    let peak_kib = status_kib(pid, "VmHWM:");
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Measured {
        name: name.to_owned(),
        open,
        upload,
        download,
        open_rss_kib,
        rss_kib,
        peak_kib,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_or(0, |address| address.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: see the module's documentation"]
async fn measure_clients_side_by_side() {
    let megabytes: u64 = std::env::var("MEASURE_MB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let bytes = megabytes * 1_000_000;
    let mut results = Vec::new();
    if let Ok(program) = std::env::var("PLUGIN_BIN") {
        results.push(
            measure_one("session-manager-plugin 1.2.650.0", "3.3.1142.0", bytes, |endpoint, agent, port| {
                let response = serde_json::json!({"SessionId": "session-1", "StreamUrl": agent.url, "TokenValue": "token-0"});
                let request = serde_json::json!({"Target": "i-0abc1234", "DocumentName": "AWS-StartPortForwardingSessionToRemoteHost",
                    "Parameters": {"host": ["db.internal"], "portNumber": ["5432"], "localPortNumber": [port.to_string()]}});
                // the plugin does not call StartSession (the CLI does): tell the fake which port was asked for
                let input = declastruct_ssm::StartSessionInput::port_forwarding("i-0abc1234", Some("db.internal"), 5432, port);
                futures::executor::block_on(declastruct_ssm::SessionApi::start_session(agent, &input)).expect("starts");
                client_command(&program, endpoint)
                    .args([response.to_string(), "eu-west-1".into(), "StartSession".into(), String::new(), request.to_string(), endpoint.to_owned()])
                    .spawn()
                    .expect("the plugin starts")
            })
            .await,
        );
    }
    if let Ok(program) = std::env::var("NATIVE_FORWARD_BIN") {
        for (name, agent_version) in [
            ("native (mux)", "3.3.1142.0"),
            ("native (basic)", "3.0.196.0"),
        ] {
            results.push(
                measure_one(name, agent_version, bytes, |endpoint, _agent, port| {
                    client_command(&program, endpoint)
                        .args(["i-0abc1234", "db.internal", "5432", &port.to_string()])
                        .spawn()
                        .expect("native_forward starts")
                })
                .await,
            );
        }
    }
    if let Ok(program) = std::env::var("BRIDGE_FORWARD_BIN") {
        for chunk in ["1024", "16384"] {
            results.push(
                measure_one(
                    &format!("aws-ssm-bridge 0.6 (chunk {chunk})"),
                    "3.3.1142.0",
                    bytes,
                    |endpoint, _agent, port| {
                        client_command(&program, endpoint)
                            .args([
                                "i-0abc1234",
                                "db.internal",
                                "5432",
                                &port.to_string(),
                                chunk,
                            ])
                            .spawn()
                            .expect("bridge_forward starts")
                    },
                )
                .await,
            );
        }
    }
    println!(
        "\n{megabytes} MB each way through the fake agent (1024-byte agent messages downstream)"
    );
    println!(
        "| client | open (ms) | upload (MB/s) | download (MB/s) | RSS after (MiB) | peak RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|");
    for result in &results {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            result.name,
            result.open.as_millis(),
            result.upload,
            result.download,
            result.open_rss_kib as f64 / 1024.0,
            result.rss_kib as f64 / 1024.0,
            result.peak_kib as f64 / 1024.0
        );
    }
}
