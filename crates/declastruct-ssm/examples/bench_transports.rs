//! .what = the plugin path and the native path side by side through one SSM simulator (`ssm-sim`), in one run:
//! the time to open the local port, the resident memory of every process the tunnel keeps, a 50 MB upload and a
//! 50 MB download through it; then the ratios against issue 24's targets
//! .why = the decision "native or plugin" and "own implementation or aws-ssm-bridge" rests on these numbers;
//! `scripts/bench-transports` builds the release binaries and runs this (docs/performance.md has its last run)
//!
//! ```text
//! bench_transports --ssm-sim PATH --native-forward PATH --aws PATH --plugin-dir DIR
//!                  [--bridge-forward PATH] [--megabytes 50] [--modes mux,basic] [--opens 5]
//!                  [--clients aws-cli,plugin,native,bridge]
//! ```
//!
//! The open time is the median of `--opens` openings (each a new process and session, from its start to the
//! plugin's line `Port N opened for sessionId S.`); memory and transfers are measured on the last one.
//!
//! The clients, each a fresh session of its own:
//! - `aws CLI + plugin`: today's plugin path, `aws ssm start-session` (the AWS CLI from `.venv`) which runs the
//!   session-manager-plugin from `--plugin-dir`; its footprint is both processes;
//! - `plugin alone`: StartSession made here, then the plugin run with the answer as the CLI runs it (what a
//!   transport without the CLI would do); its footprint is the plugin;
//! - `native`: `examples/native_forward`, one process (StartSession through the SDK, the data channel in Rust);
//! - `aws-ssm-bridge` (mux only, with `--bridge-forward`): a program on the aws-ssm-bridge crate built outside
//!   this repository, taking `TARGET HOST PORT LOCAL_PORT CHUNK` and printing the plugin's `Port N opened` line.
//!
//! Behind the simulator, a destination of this program's own: `U` + length (u64, big-endian) + that many bytes
//! is answered `ok` once all arrived (an upload); `D` + length is answered with that many bytes (a download).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const TARGET: &str = "i-0123456789abcdef0";
const HOST: &str = "db.internal";
const REMOTE_PORT: &str = "5432";
const REGION: &str = "eu-west-1";
const DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// how long a client may take to open, or a transfer to finish
const LIMIT: Duration = Duration::from_secs(900);
/// a settled tunnel: its memory after the port opened is read this long after
const SETTLE: Duration = Duration::from_millis(500);
/// the issue's memory target for a native tunnel's whole footprint, in bytes (8 MB)
const MEMORY_TARGET_BYTES: u64 = 8_000_000;

type Failure = String;

struct Options {
    ssm_sim: String,
    native_forward: String,
    aws: String,
    plugin_dir: String,
    bridge_forward: Option<String>,
    megabytes: u64,
    modes: Vec<String>,
    opens: usize,
    clients: Vec<String>,
}

fn parse(arguments: &[String]) -> Result<Options, Failure> {
    let mut values: HashMap<&str, String> = HashMap::new();
    let mut words = arguments.iter();
    while let Some(flag) = words.next() {
        let name = flag.as_str();
        if !matches!(
            name,
            "--ssm-sim"
                | "--native-forward"
                | "--aws"
                | "--plugin-dir"
                | "--bridge-forward"
                | "--megabytes"
                | "--modes"
                | "--opens"
                | "--clients"
        ) {
            return Err(format!("unknown argument {flag}"));
        }
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        values.insert(name, value.clone());
    }
    let mut required = |name: &str| {
        values
            .remove(name)
            .ok_or_else(|| format!("{name} is required"))
    };
    Ok(Options {
        ssm_sim: required("--ssm-sim")?,
        native_forward: required("--native-forward")?,
        aws: required("--aws")?,
        plugin_dir: required("--plugin-dir")?,
        bridge_forward: values.remove("--bridge-forward"),
        megabytes: values
            .remove("--megabytes")
            .map_or(Ok(50), |value| value.parse())
            .map_err(|_| "--megabytes takes a whole number".to_owned())?,
        modes: values
            .remove("--modes")
            .unwrap_or_else(|| "mux,basic".to_owned())
            .split(',')
            .map(str::to_owned)
            .collect(),
        opens: values
            .remove("--opens")
            .map_or(Ok(5), |value| value.parse())
            .map_err(|_| "--opens takes a whole number".to_owned())?
            .max(1),
        clients: values
            .remove("--clients")
            .unwrap_or_else(|| "aws-cli,plugin,native,bridge".to_owned())
            .split(',')
            .map(str::to_owned)
            .collect(),
    })
}

/// .what = the destination behind the simulator: uploads counted and answered, downloads served
/// .why = the bytes of a transfer cross the tunnel once, in the direction measured
async fn serve_destination(listener: TcpListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            loop {
                let mut command = [0u8; 9];
                if stream.read_exact(&mut command).await.is_err() {
                    return;
                }
                let mut length_bytes = [0u8; 8];
                length_bytes.copy_from_slice(&command[1..]);
                let mut left = u64::from_be_bytes(length_bytes);
                let mut buffer = vec![0u8; 256 * 1024];
                match command[0] {
                    b'U' => {
                        while left > 0 {
                            let wanted = buffer
                                .len()
                                .min(usize::try_from(left).unwrap_or(usize::MAX));
                            match stream.read(&mut buffer[..wanted]).await {
                                Ok(0) | Err(_) => return,
                                Ok(count) => left -= count as u64,
                            }
                        }
                        if stream.write_all(b"ok").await.is_err() {
                            return;
                        }
                    }
                    b'D' => {
                        buffer.fill(0xa5);
                        while left > 0 {
                            let count = buffer
                                .len()
                                .min(usize::try_from(left).unwrap_or(usize::MAX));
                            if stream.write_all(&buffer[..count]).await.is_err() {
                                return;
                            }
                            left -= count as u64;
                        }
                    }
                    _ => return,
                }
            }
        });
    }
}

/// MB/s of an upload of `bytes` through the tunnel at `address`
async fn upload(address: SocketAddr, bytes: u64) -> Result<f64, Failure> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let started = Instant::now();
    let mut command = vec![b'U'];
    command.extend_from_slice(&bytes.to_be_bytes());
    let chunk = vec![0x5au8; 256 * 1024];
    let transfer = async {
        stream.write_all(&command).await?;
        let mut left = bytes;
        while left > 0 {
            let count = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            stream.write_all(&chunk[..count]).await?;
            left -= count as u64;
        }
        let mut answer = [0u8; 2];
        stream.read_exact(&mut answer).await?;
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(LIMIT, transfer)
        .await
        .map_err(|_| "the upload did not finish in time".to_owned())?
        .map_err(|error| format!("upload: {error}"))?;
    Ok(bytes as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// MB/s of a download of `bytes` through the tunnel at `address`
async fn download(address: SocketAddr, bytes: u64) -> Result<f64, Failure> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let started = Instant::now();
    let mut command = vec![b'D'];
    command.extend_from_slice(&bytes.to_be_bytes());
    let transfer = async {
        stream.write_all(&command).await?;
        let mut buffer = vec![0u8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let count = stream.read(&mut buffer).await?;
            if count == 0 {
                return Err(std::io::Error::other("the download ended early"));
            }
            left = left.saturating_sub(count as u64);
        }
        Ok(())
    };
    tokio::time::timeout(LIMIT, transfer)
        .await
        .map_err(|_| "the download did not finish in time".to_owned())?
        .map_err(|error| format!("download: {error}"))?;
    Ok(bytes as f64 / started.elapsed().as_secs_f64() / 1e6)
}

/// a process's parent, from `/proc/PID/stat` (the field after the name in parentheses)
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// a process and all its descendants
fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
                && let Some(parent) = parent_of(pid)
            {
                children.entry(parent).or_default().push(pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        if let Some(more) = children.get(&tree[index]) {
            tree.extend(more);
        }
        index += 1;
    }
    tree
}

/// a `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`)
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map_or_else(|_| pid.to_string(), |name| name.trim().to_owned())
}

/// the resident memory of a process tree, in bytes, with each process's share
fn tree_memory(root: u32, field: &str) -> (u64, Vec<Share>) {
    let parts: Vec<Share> = process_tree(root)
        .into_iter()
        .map(|pid| Share {
            name: process_name(pid),
            bytes: status_kib(pid, field) * 1024,
            anonymous: status_kib(pid, "RssAnon:") * 1024,
            file: status_kib(pid, "RssFile:") * 1024,
        })
        .filter(|share| share.bytes > 0)
        .collect();
    (parts.iter().map(|share| share.bytes).sum(), parts)
}

/// one process's resident memory: all of it, and its anonymous and file-backed parts
struct Share {
    name: String,
    bytes: u64,
    anonymous: u64,
    file: u64,
}

fn in_megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// what was measured of one client
struct Measured {
    client: String,
    open: Duration,
    memory_open: u64,
    memory_after: u64,
    peak: u64,
    processes: Vec<Share>,
    upload: f64,
    download: f64,
}

/// a client started: its process (in its own process group) and when it was asked to start
struct Started {
    child: Child,
    asked: Instant,
}

fn environment(command: &mut std::process::Command, endpoint: &str, home: &std::path::Path) {
    command
        .env("HOME", home)
        .env("AWS_ENDPOINT_URL_SSM", endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
}

/// StartSession on the simulator as the CLI makes it (JSON 1.1; the simulator does not check signatures)
async fn start_session(endpoint: &str, local_port: u16) -> Result<(String, String), Failure> {
    let request = serde_json::json!({
        "Target": TARGET,
        "DocumentName": DOCUMENT,
        "Parameters": {"host": [HOST], "portNumber": [REMOTE_PORT], "localPortNumber": [local_port.to_string()]},
    })
    .to_string();
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|error| format!("StartSession: {error}"))?;
    let message = format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nX-Amz-Target: AmazonSSM.StartSession\r\nContent-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/ssm/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{request}",
        request.len()
    );
    stream
        .write_all(message.as_bytes())
        .await
        .map_err(|error| format!("StartSession: {error}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|error| format!("StartSession: {error}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    Ok((body.to_owned(), request))
}

fn free_port() -> Result<u16, Failure> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("no free port: {error}"))
}

/// waits for the plugin's line `Port N opened for sessionId S.` on the client's stdout; the port and when
async fn wait_for_port(started: &mut Started) -> Result<(u16, Duration), Failure> {
    let stdout = started
        .child
        .stdout
        .take()
        .ok_or_else(|| "no stdout".to_owned())?;
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("Port ")
                && line.contains(" opened for sessionId ")
                && let Some(port) = rest
                    .split_whitespace()
                    .next()
                    .and_then(|port| port.parse::<u16>().ok())
            {
                return Ok(port);
            }
        }
        Err("the client ended before opening its port".to_owned())
    })
    .await
    .map_err(|_| "the port did not open within 60 s".to_owned())??;
    let opened = started.asked.elapsed();
    // the rest of its output is read and dropped, so it never blocks on a full pipe
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((port, opened))
}

/// ends the client as Ctrl-C does (SIGINT to its process group), then for good
async fn stop(started: &mut Started) {
    if let Some(pid) = started.child.id().and_then(|pid| i32::try_from(pid).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGINT);
        if tokio::time::timeout(Duration::from_secs(10), started.child.wait())
            .await
            .is_err()
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = started.child.wait().await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Client {
    AwsCliAndPlugin,
    PluginAlone,
    Native,
    Bridge,
}

impl Client {
    /// the name `--clients` knows it by
    fn key(self) -> &'static str {
        match self {
            Self::AwsCliAndPlugin => "aws-cli",
            Self::PluginAlone => "plugin",
            Self::Native => "native",
            Self::Bridge => "bridge",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::AwsCliAndPlugin => "aws CLI + plugin",
            Self::PluginAlone => "plugin alone",
            Self::Native => "native",
            Self::Bridge => "aws-ssm-bridge",
        }
    }
}

async fn start_client(
    client: Client,
    options: &Options,
    endpoint: &str,
    home: &std::path::Path,
) -> Result<Started, Failure> {
    let local_port = free_port()?;
    let parameters = serde_json::json!({"host": [HOST], "portNumber": [REMOTE_PORT], "localPortNumber": [local_port.to_string()]}).to_string();
    let asked = Instant::now();
    let mut command = match client {
        Client::AwsCliAndPlugin => {
            let mut command = std::process::Command::new(&options.aws);
            command.args([
                "ssm",
                "start-session",
                "--target",
                TARGET,
                "--document-name",
                DOCUMENT,
                "--parameters",
                &parameters,
                "--endpoint-url",
                endpoint,
                "--region",
                REGION,
            ]);
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", options.plugin_dir));
            command
        }
        Client::PluginAlone => {
            let (response, request) = start_session(endpoint, local_port).await?;
            let mut command = std::process::Command::new(
                std::path::Path::new(&options.plugin_dir).join("session-manager-plugin"),
            );
            command.args([
                response.as_str(),
                REGION,
                "StartSession",
                "",
                request.as_str(),
                endpoint,
            ]);
            command
        }
        Client::Native => {
            let mut command = std::process::Command::new(&options.native_forward);
            command.args([TARGET, HOST, REMOTE_PORT, &local_port.to_string()]);
            command
        }
        Client::Bridge => {
            let program = options
                .bridge_forward
                .as_deref()
                .ok_or_else(|| "no --bridge-forward".to_owned())?;
            let mut command = std::process::Command::new(program);
            command.args([TARGET, HOST, REMOTE_PORT, &local_port.to_string(), "16384"]);
            command
        }
    };
    environment(&mut command, endpoint, home);
    let child = Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("{}: {error}", client.name()))?;
    Ok(Started { child, asked })
}

/// one opening only: the time from the start to the port's line
async fn open_once(client: Client, options: &Options, endpoint: &str) -> Result<Duration, Failure> {
    let home = tempfile::tempdir().map_err(|error| format!("a HOME: {error}"))?;
    let mut started = start_client(client, options, endpoint, home.path()).await?;
    let opened = wait_for_port(&mut started).await;
    stop(&mut started).await;
    opened.map(|(_, open)| open)
}

async fn measure(client: Client, options: &Options, endpoint: &str) -> Result<Measured, Failure> {
    let mut opens = Vec::new();
    for _ in 1..options.opens {
        opens.push(open_once(client, options, endpoint).await?);
    }
    let home = tempfile::tempdir().map_err(|error| format!("a HOME: {error}"))?;
    let mut started = start_client(client, options, endpoint, home.path()).await?;
    let result = async {
        let (port, last_open) = wait_for_port(&mut started).await?;
        opens.push(last_open);
        opens.sort();
        let open = opens[opens.len() / 2];
        let root = started.child.id().ok_or_else(|| "exited".to_owned())?;
        tokio::time::sleep(SETTLE).await;
        let (memory_open, _) = tree_memory(root, "VmRSS:");
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let bytes = options.megabytes * 1_000_000;
        let upload = upload(address, bytes).await?;
        eprintln!("  {}: upload {upload:.2} MB/s", client.name());
        let download = download(address, bytes).await?;
        eprintln!("  {}: download {download:.2} MB/s", client.name());
        tokio::time::sleep(SETTLE).await;
        let (memory_after, processes) = tree_memory(root, "VmRSS:");
        let (peak, _) = tree_memory(root, "VmHWM:");
        Ok(Measured {
            client: client.name().to_owned(),
            open,
            memory_open,
            memory_after,
            peak,
            processes,
            upload,
            download,
        })
    }
    .await;
    stop(&mut started).await;
    result
}

/// `ssm-sim` in `mode`, every destination routed to `destination`; its endpoint once it says `ready`
async fn start_simulator(
    program: &str,
    mode: &str,
    destination: SocketAddr,
) -> Result<(Child, String), Failure> {
    let mut child = Command::new(program)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--route",
            &format!("*={destination}"),
            "--mode",
            mode,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("{program}: {error}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| "ssm-sim has no stdout".to_owned())?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .map_err(|error| format!("ssm-sim: {error}"))?;
    let endpoint = line
        .trim()
        .strip_prefix("ready ")
        .ok_or_else(|| format!("ssm-sim said {line:?}"))?
        .to_owned();
    Ok((child, endpoint))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn print_results(mode: &str, megabytes: u64, results: &[Measured]) {
    println!(
        "\n## {mode} mode: {megabytes} MB each way, each client on a fresh session; open: the median of its openings\n"
    );
    println!(
        "| client | open (ms) | RSS after open | RSS after the transfers | peak RSS | upload (MB/s) | download (MB/s) | processes after the transfers |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for result in results {
        let processes: Vec<String> = result
            .processes
            .iter()
            .map(|share| {
                format!(
                    "{} {} (anonymous {}, file-backed {})",
                    share.name,
                    in_megabytes(share.bytes),
                    in_megabytes(share.anonymous),
                    in_megabytes(share.file)
                )
            })
            .collect();
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} |",
            result.client,
            result.open.as_millis(),
            in_megabytes(result.memory_open),
            in_megabytes(result.memory_after),
            in_megabytes(result.peak),
            result.upload,
            result.download,
            processes.join(", ")
        );
    }
    let find = |name: &str| results.iter().find(|result| result.client == name);
    let Some(native) = find(Client::Native.name()) else {
        return;
    };
    for baseline in [Client::AwsCliAndPlugin, Client::PluginAlone] {
        let Some(plugin) = find(baseline.name()) else {
            continue;
        };
        println!("\nratios, native ÷ {} ({mode} mode):", plugin.client);
        println!(
            "- memory, every process of the tunnel, after open: {} ÷ {} = {:.3}×; after the transfers: {} ÷ {} = {:.3}×",
            in_megabytes(native.memory_open),
            in_megabytes(plugin.memory_open),
            native.memory_open as f64 / plugin.memory_open.max(1) as f64,
            in_megabytes(native.memory_after),
            in_megabytes(plugin.memory_after),
            native.memory_after as f64 / plugin.memory_after.max(1) as f64,
        );
        let upload = native.upload / plugin.upload;
        println!(
            "- upload {megabytes} MB: {:.2} ÷ {:.2} MB/s = {upload:.1}× (target ≥ 10×: {})",
            native.upload,
            plugin.upload,
            verdict(upload >= 10.0)
        );
        let download = native.download / plugin.download;
        println!(
            "- download {megabytes} MB: {:.2} ÷ {:.2} MB/s = {download:.2}× (target ≥ 1×: {})",
            native.download,
            plugin.download,
            verdict(download >= 1.0)
        );
        let open = native.open.as_secs_f64() / plugin.open.as_secs_f64();
        println!(
            "- open: {} ms ÷ {} ms = {open:.3}× (target ≤ 1/3: {})",
            native.open.as_millis(),
            plugin.open.as_millis(),
            verdict(open <= 1.0 / 3.0)
        );
    }
    let worst = native.memory_open.max(native.memory_after);
    println!(
        "- native footprint: {} after open, {} after the transfers (target ≤ 8 MB: {}{})",
        in_megabytes(native.memory_open),
        in_megabytes(native.memory_after),
        verdict(worst <= MEMORY_TARGET_BYTES),
        if worst > MEMORY_TARGET_BYTES {
            format!(", by {}", in_megabytes(worst - MEMORY_TARGET_BYTES))
        } else {
            String::new()
        }
    );
}

async fn run(options: Options) -> Result<(), Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("the destination: {error}"))?;
    let destination = listener
        .local_addr()
        .map_err(|error| format!("the destination: {error}"))?;
    tokio::spawn(serve_destination(listener));
    for mode in &options.modes {
        let (mut simulator, endpoint) =
            start_simulator(&options.ssm_sim, mode, destination).await?;
        eprintln!("{mode} mode: ssm-sim at {endpoint}");
        // aws-ssm-bridge speaks smux whatever the agent's version: mux mode only
        let clients: Vec<Client> = [
            Client::AwsCliAndPlugin,
            Client::PluginAlone,
            Client::Native,
            Client::Bridge,
        ]
        .into_iter()
        .filter(|client| options.clients.iter().any(|key| key == client.key()))
        .filter(|client| {
            *client != Client::Bridge || (mode == "mux" && options.bridge_forward.is_some())
        })
        .collect();
        let mut results = Vec::new();
        for client in clients {
            eprintln!("  {}: opening", client.name());
            match measure(client, &options, &endpoint).await {
                Ok(measured) => results.push(measured),
                Err(failure) => eprintln!("  {}: FAILED: {failure}", client.name()),
            }
        }
        let _ = simulator.kill().await;
        print_results(mode, options.megabytes, &results);
    }
    Ok(())
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&arguments) {
        Ok(options) => options,
        Err(failure) => {
            eprintln!("bench_transports: {failure}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_transports: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("bench_transports: {failure}");
            ExitCode::FAILURE
        }
    }
}
