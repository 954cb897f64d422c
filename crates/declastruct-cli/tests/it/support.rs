use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use declastruct_aws::internal::utils::is_process_alive;

use declastruct_test_support::Moto;

/// a temporary folder with its own DECLASTRUCT_HOME, where the binary runs
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

pub const REGION: &str = "us-east-1";

impl Sandbox {
    pub fn new(moto: Option<&Moto>) -> Self {
        Self::in_region(moto, REGION)
    }

    pub fn in_region(moto: Option<&Moto>, region: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = vec![
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            ),
            ("HOME".to_string(), dir.path().display().to_string()),
            (
                "DECLASTRUCT_HOME".to_string(),
                dir.path().join("state").display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
        ];
        if let Some(moto) = moto {
            env.extend(moto.env(region));
        }
        Self { dir, env }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write");
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(existing, _)| existing != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(existing, _)| existing != key);
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_declastruct"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run declastruct")
    }
}

impl Drop for Sandbox {
    /// every tunnel process a test started is killed, whatever the test's outcome
    fn drop(&mut self) {
        // supervisors that mention this sandbox, recorded or not
        let home = self.home().display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            let command = String::from_utf8_lossy(
                &std::fs::read(entry.path().join("cmdline")).unwrap_or_default(),
            )
            .replace('\0', " ");
            if command.contains("__declastruct_supervise") && command.contains(&home) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for entry in std::fs::read_dir(self.home().join("tunnels"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().and_then(|extension| extension.to_str()) != Some("meta") {
                continue;
            }
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap_or_default())
                    .unwrap_or_default();
            if let Some(group) = meta["processGroup"]
                .as_i64()
                .and_then(|group| i32::try_from(group).ok())
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// the session stand-in, built beside the test binaries by `cargo test --workspace`
pub fn fake_aws_cli() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|folder| folder.join("fake-aws-cli"))
        .expect("target folder");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `scripts/test`, or `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// the contract's manifest with a bastion status, a tunnel status and a port
pub fn manifest(bastion_status: &str, tunnel_status: &str, port: u16) -> String {
    format!(
        "# yaml-language-server: $schema=../schemas/declastruct.schema.json
resources:
  - kind: DeclaredAwsEc2Instance
    exid: vpc-main-bastion
    status: {bastion_status}
  - kind: DeclaredAwsRdsCluster
    name: ahbodedb
  - kind: DeclaredAwsVpcTunnel
    via:
      mechanism: aws.ssm
      bastion: {{ exid: vpc-main-bastion }}
    into:
      cluster: {{ name: ahbodedb }}
    from:
      host: localhost
      port: {port}
    status: {tunnel_status}
"
    )
}

/// the contract's manifest with one tunnel on each of `ports`
pub fn manifest_with_ports(bastion_status: &str, tunnel_status: &str, ports: &[u16]) -> String {
    let mut text = manifest(bastion_status, tunnel_status, ports[0]);
    let first = manifest(bastion_status, tunnel_status, 0);
    let tunnel = &first[first.find("  - kind: DeclaredAwsVpcTunnel").unwrap_or(0)..];
    for port in &ports[1..] {
        text.push_str(&tunnel.replace("port: 0\n", &format!("port: {port}\n")));
    }
    text
}

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("workspace root")
}

/// insta settings that hide what changes from run to run
pub fn stable_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"i-[0-9a-f]{8,17}", "i-[ID]");
    settings.add_filter(r"cluster-(ro-)?[0-9a-z]{12}", "cluster-$1[ID]");
    settings.add_filter(r#""hash": "[0-9a-f]{64}""#, r#""hash": "[HASH]""#);
    settings.add_filter(r#""createdAt": "[0-9TZ:-]+""#, r#""createdAt": "[TIME]""#);
    settings
}

/// processes whose command line mentions `needle` (e.g. the sandbox's folder)
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let raw = std::fs::read(entry.path().join("cmdline")).ok()?;
            let command = String::from_utf8_lossy(&raw).replace('\0', " ");
            (command.contains(needle) && is_process_alive(pid)).then_some((pid, command))
        })
        .collect()
}

pub fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            (fields.get(1)?.parse::<u32>().ok()? == parent && fields.first()? != &"Z")
                .then_some(pid)
        })
        .collect()
}

pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}
