use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use declastruct_tunnel::{all_pids, read_process};

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

    /// .what = opens tunnels through the real `aws` CLI (.venv) and the real session-manager-plugin
    /// (`../shared/bin`, first on PATH) against the SSM simulator at `ssm_endpoint`
    /// .why = issue 22: the tests run what users run; `DECLASTRUCT_AWS_CLI` stays unset, as on a user's machine
    pub fn use_real_chain(&mut self, ssm_endpoint: &str) {
        let path = std::env::var("PATH").unwrap_or_default();
        self.set_env(
            "PATH",
            &format!(
                "{}:{}:{path}",
                real_plugin_folder().display(),
                venv_bin().display()
            ),
        );
        self.set_env("AWS_ENDPOINT_URL_SSM", ssm_endpoint);
        self.remove_env("DECLASTRUCT_AWS_CLI");
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

    /// .what = `sh -c script` in the sandbox, with its environment and `$DECLASTRUCT` naming the binary
    /// .why = a command under a shell's limits (`ulimit -v`) or redirections (`> /dev/full`)
    pub fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .current_dir(self.dir.path())
            .env_clear()
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .env("DECLASTRUCT", env!("CARGO_BIN_EXE_declastruct"))
            .stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run declastruct")
    }
}

impl Drop for Sandbox {
    /// every tunnel process a test started is killed, whatever the test's outcome: each carries the marker of
    /// this sandbox's tunnels folder
    fn drop(&mut self) {
        let tunnels = self.home().join("tunnels");
        for pid in all_pids() {
            let ours = read_process(pid)
                .and_then(|process| process.tunnel)
                .is_some_and(|marker| marker.starts_with(&tunnels));
            if let (true, Ok(pid)) = (ours, i32::try_from(pid)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// .what = the folder of the real session-manager-plugin: `../shared/bin` beside the checkout
/// .why = the tests run the plugin users run; a machine without it cannot run them, and is told so
pub fn real_plugin_folder() -> PathBuf {
    let folder = workspace_root().join("../shared/bin");
    assert!(
        folder.join("session-manager-plugin").is_file(),
        "the real session-manager-plugin is not at {}: the tests run it (see ../shared/plugin-facts.md)",
        folder.display()
    );
    folder.canonicalize().unwrap_or(folder)
}

/// .what = the folder of the real AWS CLI that `scripts/setup` installs: `.venv/bin`
/// .why = `aws ssm start-session` is what declastruct runs on a user's machine
pub fn venv_bin() -> PathBuf {
    let folder = workspace_root().join(".venv/bin");
    assert!(
        folder.join("aws").is_file(),
        "no AWS CLI at {}: run scripts/setup, which installs awscli into .venv",
        folder.display()
    );
    folder
}

/// .what = the SSM simulator for a test's own sandbox: targets checked against `moto` (a stopped instance gets
/// `TargetNotConnected`), each `(destination, port)` route dialled at 127.0.0.1:port (`*` for any destination)
/// .why = with `Sandbox::use_real_chain`, a sandbox's tunnels run through the real AWS CLI and plugin
pub fn simulator(
    moto: &declastruct_test_support::Moto,
    routes: &[(&str, u16)],
) -> declastruct_test_support::ssm_sim::SsmSimulator {
    declastruct_test_support::ssm_sim::SsmSimulator::start(
        declastruct_test_support::ssm_sim::SimConfig {
            routes: routes
                .iter()
                .map(|(destination, port)| {
                    (
                        (*destination).to_string(),
                        std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                    )
                })
                .collect(),
            ec2_endpoint: Some(moto.endpoint()),
            ..declastruct_test_support::ssm_sim::SimConfig::default()
        },
    )
}

/// the running `aws ssm start-session` whose session forwards local port `port`: its command line
pub fn session_command_line(port: u16) -> Option<String> {
    let parameter = format!("\"localPortNumber\":[\"{port}\"]");
    processes_mentioning("start-session")
        .into_iter()
        .map(|(_, command)| command)
        .find(|command| {
            command.contains(&parameter) && !command.contains("__declastruct_supervise")
        })
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

/// .what = what bash completes for `words` (the last one is completed) in `sandbox`'s folder, through the script
/// `declastruct completions bash` prints
/// .why = completions ask `declastruct` itself for the manifest's addresses; tested as a shell meets them
pub fn complete_words(sandbox: &Sandbox, words: &str) -> Vec<String> {
    let binary = Path::new(env!("CARGO_BIN_EXE_declastruct"));
    let folder = binary.parent().expect("the binary's folder");
    let script = format!(
        "source <(declastruct completions bash)\n\
         COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMP_TYPE=9\n\
         _clap_complete_declastruct declastruct \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(sandbox.dir.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                folder.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("DECLASTRUCT_HOME", sandbox.home().display().to_string())
        .output()
        .expect("bash");
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output).lines().map(str::to_string).collect()
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

/// insta settings that hide what changes from run to run: ids, endpoints, hashes, times, durations, pids,
/// temporary paths, and the given `ports` (a test's free ports)
pub fn stable_settings() -> insta::Settings {
    settings_for_ports(&[])
}

/// see `stable_settings`
pub fn settings_for_ports(ports: &[u16]) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    for port in ports {
        settings.add_filter(&format!(r"\b{port}\b"), "[PORT]");
    }
    // the checkout's own folder, wherever it is cloned
    let root: String = workspace_root()
        .display()
        .to_string()
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '/' {
                character.to_string()
            } else {
                format!("\\{character}")
            }
        })
        .collect();
    settings.add_filter(&root, "[WORKSPACE]");
    // a plain progress line of a long wait comes or not with the machine's speed
    settings.add_filter(r"(?m)^… [^\n]*: still waiting after \d+ s[^\n]*\n", "");
    settings.add_filter(r"i-[0-9a-f]{8,17}", "i-[ID]");
    settings.add_filter(r"cluster-(ro-)?[0-9a-z]{12}", "cluster-$1[ID]");
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[HASH]");
    settings.add_filter(r"\b[0-9a-f]{16}\b", "[TUNNEL]");
    settings.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    settings.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(r"after \d+\.\d s", "after [DURATION]");
    settings.add_filter(r"\bpid \d+", "pid [PID]");
    settings.add_filter(r#""(pid|uptimeSeconds)": \d+"#, r#""$1": [N]"#);
    settings.add_filter(r"declastruct-test-[0-9a-f]{16}", "[SESSION]");
    // the SSM simulator's session ids: the caller's access key and 17 hex digits, as AWS makes them
    settings.add_filter(r"\btesting-[0-9a-f]{17}\b", "[SESSION]");
    settings.add_filter(r"\b10\.\d+\.\d+\.\d+\b", "[IP]");
    settings.add_filter(r"/\S*/(python3|psql|sleep)\b", "$1");
    // the status table's pid and uptime columns
    settings.add_filter(
        r"(OPEN(?: \(unhealthy\))?\s+)\d+(\s+\S+\s+)\d+[smh]\S*",
        "$1[PID]$2[UPTIME]",
    );
    // the narrow table's uptime, after the port
    settings.add_filter(
        r"(OPEN(?: \(unhealthy\))?\s+\[PORT\]\s+)\d+[smhd]\S*",
        "$1[UPTIME]",
    );
    settings
}

/// .what = what one run of the binary showed, as one text: its exit code, stdout and stderr
/// .why = output people read is checked whole, as uv's `uv_snapshot!` does, never by substrings alone
pub fn shown(output: &Output) -> String {
    format!(
        "exit: {}\n----- stdout -----\n{}----- stderr -----\n{}",
        output
            .status
            .code()
            .map_or_else(|| "signal".to_string(), |code| code.to_string()),
        stdout(output),
        stderr(output)
    )
}

/// .what = a table's lines with each run of padding made two spaces
/// .why = a table's padding follows the widths of its pid and uptime cells, which change from run to run: its
/// columns are compared, not their alignment
pub fn without_padding(output: &mut Output) {
    let text = stdout(output);
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
                .join("  ")
        })
        .collect();
    output.stdout = format!("{}\n", lines.join("\n")).into_bytes();
}

/// .what = snapshots a run of the binary (exit code, stdout, stderr) under `name`, with `ports` filtered
/// .why = the one helper every output test goes through
#[macro_export]
macro_rules! assert_shown {
    ($name:expr, $output:expr) => {
        $crate::assert_shown!($name, $output, &[])
    };
    ($name:expr, $output:expr, $ports:expr) => {
        $crate::support::settings_for_ports($ports)
            .bind(|| insta::assert_snapshot!($name, $crate::support::shown(&$output)))
    };
}

/// processes whose command line mentions `needle` (e.g. the sandbox's folder)
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    all_pids()
        .into_iter()
        .filter_map(read_process)
        .map(|process| (process.pid, process.command_line()))
        .filter(|(_, command)| command.contains(needle))
        .collect()
}

/// the live children of `parent`
pub fn children_of(parent: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter_map(read_process)
        .filter(|process| process.stat.parent == parent)
        .map(|process| process.pid)
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

/// .what = the lines a terminal shows after receiving `bytes`: carriage returns, line feeds, backspaces, cursor
/// moves and erasures applied, other escape sequences dropped
/// .why = a progress spinner redraws its line; what the user is left looking at is what the doc shows
pub fn terminal_lines(bytes: &[u8]) -> Vec<String> {
    terminal_lines_of_width(bytes, usize::MAX)
}

/// .what = `terminal_lines` on a terminal `width` columns wide, which wraps a line that reaches its right edge at
/// the next character, as xterm does (a line exactly as wide leaves the cursor waiting at the edge)
/// .why = indicatif pads each spinner line to the terminal's width and counts on that wrap when it moves back up
pub fn terminal_lines_of_width(bytes: &[u8], width: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut screen: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut column) = (0_usize, 0_usize);
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\n' => {
                row += 1;
                if screen.len() <= row {
                    screen.push(Vec::new());
                }
            }
            '\r' => column = 0,
            '\u{8}' => column = column.saturating_sub(1),
            '\u{1b}' => match characters.next() {
                Some('[') => {
                    let mut parameters = String::new();
                    let mut command = None;
                    for next in characters.by_ref() {
                        if ('@'..='~').contains(&next) {
                            command = Some(next);
                            break;
                        }
                        parameters.push(next);
                    }
                    let count = parameters
                        .trim_start_matches('?')
                        .split(';')
                        .next()
                        .and_then(|value| value.parse::<usize>().ok());
                    match command {
                        Some('A') => row = row.saturating_sub(count.unwrap_or(1).max(1)),
                        Some('B') => {
                            row += count.unwrap_or(1).max(1);
                            if screen.len() <= row {
                                screen.resize(row + 1, Vec::new());
                            }
                        }
                        Some('G') => column = count.unwrap_or(1).saturating_sub(1),
                        Some('K') => match count.unwrap_or(0) {
                            0 => screen[row].truncate(column),
                            1 => screen[row]
                                .iter_mut()
                                .take(column)
                                .for_each(|cell| *cell = ' '),
                            _ => screen[row].clear(),
                        },
                        Some('J') if count.unwrap_or(0) == 0 => {
                            screen[row].truncate(column);
                            screen.truncate(row + 1);
                        }
                        _ => {}
                    }
                }
                // an operating system command (a title, a link) ends with BEL or ESC \
                Some(']') => {
                    while let Some(next) = characters.next() {
                        if next == '\u{7}'
                            || (next == '\u{1b}' && characters.next_if_eq(&'\\').is_some())
                        {
                            break;
                        }
                    }
                }
                _ => {}
            },
            control if control.is_control() => {}
            printable => {
                if column >= width {
                    row += 1;
                    column = 0;
                    if screen.len() <= row {
                        screen.push(Vec::new());
                    }
                }
                let line = &mut screen[row];
                while line.len() < column {
                    line.push(' ');
                }
                if column < line.len() {
                    line[column] = printable;
                } else {
                    line.push(printable);
                }
                column += 1;
            }
        }
    }
    let mut lines: Vec<String> = screen
        .into_iter()
        .map(|line| line.into_iter().collect::<String>().trim_end().to_string())
        .collect();
    // the `stty` before the command, and the empty lines after its end
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// .what = a program that is not ours (python's http.server) listening on `port` on loopback, once it accepts
/// .why = the port-conflict tests need a foreign holder that declastruct must name and never stop
pub fn hold_port(port: u16) -> std::process::Child {
    let holder = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    assert!(
        declastruct_test_support::wait_for_port(port, std::time::Duration::from_secs(10)),
        "python3 -m http.server did not listen on {port} within 10 s"
    );
    holder
}
