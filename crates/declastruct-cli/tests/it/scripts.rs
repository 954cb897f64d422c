//! `scripts/setup` and `scripts/demo` as a new user meets them: setup says what it installs, through sudo when it
//! is not root, and installs nothing the second time; the demo on a terminal shows its build, its manifest and how
//! to connect, runs psql without a pager, and ends quietly on Ctrl-C with 130, leaving nothing it started behind.
//! What the demo shows after the tunnel is open (the edit that closes it), scripts/test checks in the log of the
//! demo's full run.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use declastruct_tunnel::{all_pids, read_process};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::support::{stderr, stdout, terminal_lines, wait_for, workspace_root};

const NOTHING_TO_INSTALL: &str =
    "setup: moto and awscli (.venv), PostgreSQL and psql are present; nothing to install";

/// the programs that install things; stand-ins for them record each call in the folder's `calls` file
const INSTALLERS: [&str; 5] = ["apt-get", "apt", "sudo", "pip", "pip3"];

/// .what = writes an executable shell script `name` into `folder`
/// .why = stand-ins for the programs setup would run
fn write_program(folder: &Path, name: &str, body: &str) {
    let path = folder.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// .what = stand-ins for apt-get, apt, sudo, pip and pip3 in `folder`, each appending its command line to
/// `folder/calls` and exiting with `status`
/// .why = proves which installers setup ran, without letting it install anything
fn recording_installers(folder: &Path, status: u8) -> PathBuf {
    let calls = folder.join("calls");
    for name in INSTALLERS {
        write_program(
            folder,
            name,
            &format!("echo \"{name} $*\" >> '{}'\nexit {status}", calls.display()),
        );
    }
    calls
}

fn calls_made(calls: &Path) -> String {
    std::fs::read_to_string(calls).unwrap_or_default()
}

/// .what = held by each test that runs the workspace's own scripts/setup (the demo sources it)
/// .why = on a fresh clone the first of them makes .venv; two at once would make it together
fn workspace_setup() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// .what = a folder holding a copy of scripts/setup, and, when `with_venv`, a .venv in which moto and awscli are
/// installed (stand-ins for its python3, moto_server and aws)
/// .why = setup acts on the .venv beside it: tests of what it installs must not touch the workspace's
fn repo_with_setup(with_venv: bool) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(repo.path().join("scripts")).expect("mkdir");
    std::fs::copy(
        workspace_root().join("scripts/setup"),
        repo.path().join("scripts/setup"),
    )
    .expect("copy scripts/setup");
    if with_venv {
        let bin = repo.path().join(".venv/bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        for program in ["python3", "pip", "moto_server", "aws"] {
            write_program(&bin, program, "exit 0");
        }
    }
    repo
}

/// runs `bash ARGS` in `folder` with PATH `path`
fn bash_in(folder: &Path, args: &[&str], path: &str) -> Output {
    Command::new(which("bash"))
        .args(args)
        .current_dir(folder)
        .env("PATH", path)
        .env("PS4", "+ ")
        .stdin(Stdio::null())
        .output()
        .expect("run bash")
}

/// runs `bash ARGS` in the workspace with PATH `path`
fn bash_in_workspace(args: &[&str], path: &str) -> Output {
    bash_in(workspace_root(), args, path)
}

fn path_with_first(folder: &Path) -> String {
    format!(
        "{}:{}",
        folder.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// the issue's "must show": `scripts/setup` run twice is a no-op the second time. The second run is traced
/// (`bash -x`: every command the script runs) with recording stand-ins first on PATH; it says only that nothing
/// is missing, and neither runs pip (also not as `python -m pip` from .venv), venv, apt nor sudo
#[test]
fn setup_run_twice_installs_nothing_the_second_time() {
    let _setup = workspace_setup();
    let path = std::env::var("PATH").unwrap_or_default();
    // the first run installs whatever is missing
    let first = bash_in_workspace(&["scripts/setup"], &path);
    assert!(first.status.success(), "{}", stderr(&first));

    let folder = tempfile::tempdir().expect("tempdir");
    let calls = recording_installers(folder.path(), 1);
    let second = bash_in_workspace(&["-x", "scripts/setup"], &path_with_first(folder.path()));
    let shown = stderr(&second);
    assert!(second.status.success(), "{shown}");
    let (trace, said): (Vec<&str>, Vec<&str>) =
        shown.lines().partition(|line| line.starts_with('+'));
    assert_eq!(said, [NOTHING_TO_INSTALL], "{shown}");
    assert!(
        trace.len() > 5,
        "the trace shows the commands the script ran: {shown}"
    );
    let installing: Vec<&str> = trace
        .iter()
        .copied()
        .filter(|line| {
            let words: Vec<&str> = line.trim_start_matches('+').split_whitespace().collect();
            let runs_an_installer = words.first() != Some(&"command")
                && words
                    .iter()
                    .any(|word| INSTALLERS.contains(&word.rsplit('/').next().unwrap_or(word)));
            let runs_a_module = words
                .windows(2)
                .any(|pair| pair == ["-m", "pip"] || pair == ["-m", "venv"]);
            runs_an_installer || runs_a_module
        })
        .collect();
    assert!(
        installing.is_empty(),
        "the second run ran installers: {installing:#?}"
    );
    assert_eq!(calls_made(&calls), "", "{shown}");
}

/// scripts/demo and scripts/test `source` setup under `set -euo pipefail`: it returns to them with .venv/bin first
/// on PATH (its moto_server, and its python3, which has boto3)
#[test]
fn setup_sourced_puts_the_venv_first_on_path_and_returns() {
    let _setup = workspace_setup();
    let output = bash_in_workspace(
        &[
            "-c",
            "set -euo pipefail; source scripts/setup; echo returned; command -v moto_server python3; \
             python3 -c 'import boto3, moto'",
        ],
        &std::env::var("PATH").unwrap_or_default(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let venv = workspace_root().join(".venv/bin");
    assert_eq!(
        stdout(&output),
        format!(
            "returned\n{}\n{}\n",
            venv.join("moto_server").display(),
            venv.join("python3").display()
        )
    );
}

/// a PATH of stand-ins where psql is missing and `id -u` says 1000: setup must install PostgreSQL's server and
/// client with apt-get, through sudo when there is one; with recording installers that do nothing
fn path_without_psql_as_a_user(folder: &Path, with_sudo: bool) -> (String, PathBuf) {
    let calls = recording_installers(folder, 0);
    if !with_sudo {
        std::fs::remove_file(folder.join("sudo")).expect("remove sudo");
    }
    write_program(folder, "id", "echo 1000");
    for program in ["dirname", "python3"] {
        let real = which(program);
        std::os::unix::fs::symlink(real, folder.join(program)).expect("symlink");
    }
    (folder.display().to_string(), calls)
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|folder| folder.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| panic!("{program} on PATH"))
}

/// not root: apt-get runs through sudo, and setup says so, naming what it installs
#[test]
fn setup_installs_postgresql_through_sudo_when_not_root() {
    let repo = repo_with_setup(true);
    let folder = tempfile::tempdir().expect("tempdir");
    let (path, calls) = path_without_psql_as_a_user(folder.path(), true);
    let output = bash_in(repo.path(), &["scripts/setup"], &path);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "setup: installing postgresql postgresql-client (apt-get, through sudo)\n"
    );
    assert_eq!(
        calls_made(&calls),
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq\n\
         sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         postgresql postgresql-client\n"
    );
}

/// what Debian 12's `python3 -m venv` prints when python3.11-venv is not installed (seen on this project's Debian 12
/// machine with that package's files hidden); Ubuntu 24.04's names python3.12-venv
const VENV_WITHOUT_ENSUREPIP: &str =
    "The virtual environment was not created successfully because ensurepip is not
available.  On Debian/Ubuntu systems, you need to install the python3-venv
package using the following command.

    apt install python3.11-venv

You may need to use sudo with that command.  After installing the python3-venv
package, recreate your virtual environment.";

/// a fresh Debian as a user (not root, with sudo) meets it: `python3 -m venv` fails for want of python3.11-venv;
/// setup installs that package through sudo, makes .venv, installs moto[server] into it with pip (never the
/// system pip, which PEP 668 forbids), says each step in one line, and installs nothing when run again. Setup runs
/// from a copy in a fresh folder (its own .venv), with stand-ins for `id`, sudo, apt-get and python3
#[test]
fn setup_on_a_fresh_machine_installs_python3_venv_then_moto_into_its_own_venv() {
    let repo = repo_with_setup(false);
    let programs = tempfile::tempdir().expect("tempdir");
    let calls = recording_installers(programs.path(), 0);
    write_program(programs.path(), "id", "echo 1000");
    let venv = repo.path().join(".venv");
    // python3: `-m venv` fails the first time as Debian's does, then makes a venv whose python3 records its calls
    // and, asked to pip install, makes moto_server
    let first_time = programs.path().join("venv-failed-once");
    write_program(
        programs.path(),
        "python3",
        &format!(
            r#"echo "python3 $*" >> '{calls}'
[ "$1 $2" = "-m venv" ] || exit 0
if [ ! -e '{first_time}' ]; then
  touch '{first_time}'
  cat >&2 <<'MESSAGE'
{VENV_WITHOUT_ENSUREPIP}
MESSAGE
  exit 1
fi
mkdir -p '{venv}/bin'
cat > '{venv}/bin/python3' <<'PYTHON'
#!/bin/sh
echo "venv python3 $*" >> '{calls}'
[ "$1 $2 $3 $6" = "-m pip install moto[server]" ] && printf '#!/bin/sh\n' > '{venv}/bin/moto_server' && chmod +x '{venv}/bin/moto_server'
[ "$1 $2 $3 $6" = "-m pip install awscli" ] && printf '#!/bin/sh\n' > '{venv}/bin/aws' && chmod +x '{venv}/bin/aws'
exit 0
PYTHON
cp '{venv}/bin/python3' '{venv}/bin/pip'
chmod +x '{venv}/bin/python3' '{venv}/bin/pip'"#,
            calls = calls.display(),
            first_time = first_time.display(),
            venv = venv.display(),
        ),
    );
    let path = path_with_first(programs.path());
    let setup = |script: &str| bash_in(repo.path(), &["-c", script], &path);

    let first = setup("scripts/setup");
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stderr(&first),
        "setup: creating the virtual environment .venv (python3 -m venv)\n\
         setup: python3 -m venv cannot make a virtual environment without the python3.11-venv package\n\
         setup: installing python3.11-venv (apt-get, through sudo)\n\
         setup: installing moto[server] into .venv (pip)\n\
         setup: installing awscli into .venv (pip)\n"
    );
    let venv_shown = venv.display();
    assert_eq!(
        calls_made(&calls),
        format!(
            "python3 -m venv --clear {venv_shown}\n\
             sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq\n\
             sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3.11-venv\n\
             python3 -m venv --clear {venv_shown}\n\
             venv python3 -m pip install --quiet --disable-pip-version-check moto[server]\n\
             venv python3 -c import botocore; print(botocore.__version__)\n\
             venv python3 -m pip install --quiet --disable-pip-version-check awscli\n"
        )
    );

    std::fs::remove_file(&calls).expect("forget the calls");
    let second = setup("source scripts/setup && command -v moto_server");
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stderr(&second), format!("{NOTHING_TO_INSTALL}\n"));
    assert_eq!(
        stdout(&second),
        format!("{}\n", venv.join("bin/moto_server").display())
    );
    assert_eq!(calls_made(&calls), "");
}

/// neither root nor sudo: setup says what to install by hand, and a script that sources it gets the failure (and
/// decides), instead of being ended by it
#[test]
fn setup_without_root_or_sudo_names_the_packages_and_returns_the_failure() {
    let repo = repo_with_setup(true);
    let folder = tempfile::tempdir().expect("tempdir");
    let (path, calls) = path_without_psql_as_a_user(folder.path(), false);
    let output = bash_in(
        repo.path(),
        &[
            "-c",
            "source scripts/setup || echo \"setup failed: $?\"; echo still here",
        ],
        &path,
    );
    assert_eq!(stdout(&output), "setup failed: 1\nstill here\n");
    assert_eq!(
        stderr(&output),
        "setup: cannot install postgresql postgresql-client: this is not root and sudo is missing; as root, \
         run: apt-get update && apt-get install -y postgresql postgresql-client\n"
    );
    assert_eq!(calls_made(&calls), "");
}

/// the processes whose environment holds `marker` (`NAME=value`): everything a run started, however detached
fn processes_marked(marker: &str) -> Vec<(u32, String)> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|entry| entry == marker.as_bytes())
            })
        })
        .filter_map(read_process)
        .filter(|process| process.stat.state != 'Z')
        .map(|process| (process.pid, process.command_line()))
        .collect()
}

/// .what = scripts/demo running on a pseudo-terminal of its own, as its session's leader (its controlling
/// terminal), every process it starts carrying `marker` in its environment
/// .why = Ctrl-C is typed on a terminal; when dropped, it ends the demo and everything it started
struct DemoOnTerminal {
    child: Child,
    terminal: File,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
    marker: String,
    _home: tempfile::TempDir,
}

impl DemoOnTerminal {
    fn start() -> Self {
        let home = tempfile::tempdir().expect("tempdir");
        let marker = format!("DECLASTRUCT_DEMO_UNDER_TEST={}", home.path().display());
        // one row: psql pages any output that has as many lines as the terminal has rows, so a psql that would
        // use a pager waits in it for a key and never answers; 250 columns: nothing the demo prints wraps
        let size = nix::pty::Winsize {
            ws_row: 1,
            ws_col: 250,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).expect("openpty");
        let child = {
            let mut command = Command::new("setsid");
            // --ctty: the terminal on stdin becomes the new session's controlling terminal, with the demo's
            // process group in the foreground, as a login shell's is
            command
                .args(["--ctty", "--wait", "bash", "scripts/demo"])
                .current_dir(workspace_root())
                .stdin(Stdio::from(pty.slave.try_clone().expect("dup")))
                .stdout(Stdio::from(pty.slave.try_clone().expect("dup")))
                .stderr(Stdio::from(pty.slave));
            // the variables cargo sets for this test binary are not the user's
            for (name, _) in std::env::vars_os() {
                let name = name.to_string_lossy();
                if [
                    "CARGO_PKG_",
                    "CARGO_MANIFEST_",
                    "CARGO_CRATE_",
                    "CARGO_BIN_",
                ]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                    || name == "CARGO_TARGET_TMPDIR"
                {
                    command.env_remove(name.as_ref());
                }
            }
            let (name, value) = marker.split_once('=').expect("NAME=value");
            command
                .env(name, value)
                .env("DECLASTRUCT_HOME", home.path().join("state"))
                .env("TERM", "xterm-256color")
                .env_remove("NO_COLOR")
                .spawn()
                .expect("setsid bash scripts/demo")
        };
        let terminal = File::from(pty.master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let mut terminal = terminal.try_clone().expect("dup");
            let screen = Arc::clone(&screen);
            // until every holder of the terminal's other side has closed it (EIO)
            std::thread::spawn(move || {
                let mut buffer = [0_u8; 8192];
                while let Ok(read @ 1..) = terminal.read(&mut buffer) {
                    screen
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(&buffer[..read]);
                }
            })
        };
        Self {
            child,
            terminal,
            screen,
            reader: Some(reader),
            marker,
            _home: home,
        }
    }

    fn screen(&self) -> String {
        terminal_lines(&self.bytes_shown()).join("\n")
    }

    fn bytes_shown(&self) -> Vec<u8> {
        self.screen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// waits until `condition` holds for what the terminal shows; panics with the screen after `limit`
    fn wait_until(&mut self, limit: Duration, what: &str, condition: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if condition(&self.screen()) {
                return;
            }
            let ended = self.child.try_wait().ok().flatten();
            assert!(
                ended.is_none() && Instant::now() < deadline,
                "the demo did not show {what} ({}):\n{}",
                ended.map_or_else(|| "timed out".to_string(), |status| status.to_string()),
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// types Ctrl-C: the terminal sends SIGINT to its foreground process group
    fn type_ctrl_c(&mut self) {
        self.terminal.write_all(&[0x03]).expect("type Ctrl-C");
    }

    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "the demo did not end within {limit:?} of Ctrl-C:\n{}",
            self.screen()
        );
    }

    /// everything the terminal showed, once no one holds it any more (or after a few seconds)
    fn final_screen(&mut self) -> String {
        let finished = self
            .reader
            .take()
            .filter(|reader| wait_for(Duration::from_secs(5), || reader.is_finished()));
        if let Some(reader) = finished {
            let _ = reader.join();
        }
        self.screen()
    }
}

impl Drop for DemoOnTerminal {
    /// a test that failed midway: SIGTERM to the demo's process group (the demo and the step it runs, a pager
    /// included) lets it clean up as it does on Ctrl-C; whatever is left after that is killed
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let group = i32::try_from(self.child.id()).map(Pid::from_raw);
            if let Ok(group) = group {
                let _ = killpg(group, Signal::SIGTERM);
            }
            let _ = wait_for(Duration::from_secs(20), || {
                self.child.try_wait().ok().flatten().is_some()
            });
            if let Ok(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for (pid, _) in processes_marked(&self.marker) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// whether a command line's words are those of a kind of process
type IsOfKind = fn(&[&str]) -> bool;

/// Ctrl-C on the demo's terminal while the tunnel is open ends it quietly: one line saying so, the cleanup, exit
/// 130; nothing from a step cut short by the same SIGINT (before the fix, moto_server exited on it and the
/// interrupted apply reported "AWS could not be reached"); no moto, PostgreSQL or tunnel process left. On the way
/// there the terminal shows one line for the build, the manifest, how to connect (the Connect line, `declastruct env`,
/// `declastruct exec`), and psql's answers: the terminal has one row, so a psql that used a pager would wait in
/// it for a key and never answer
#[test]
fn ctrl_c_on_the_demo_ends_it_quietly_and_leaves_nothing_behind() {
    let setup = workspace_setup();
    let mut demo = DemoOnTerminal::start();
    // the first run builds every target of the workspace; after it, the demo takes seconds
    demo.wait_until(
        Duration::from_secs(1200),
        "the end of its build",
        |screen| screen.contains("==> Starting moto"),
    );
    drop(setup);
    demo.wait_until(
        Duration::from_secs(90),
        "psql's answer through the tunnel",
        |screen| {
            screen
                .split_once("==> psql through the tunnel")
                .is_some_and(|(_, after)| after.lines().any(|line| line == "1"))
        },
    );
    // Ctrl-C reaches the terminal's foreground process group: the demo and the step it runs, never the servers
    // and tunnels it started (moto_server exits on SIGINT, and a step the same Ctrl-C interrupts may still ask it
    // for something while it stops)
    let foreground = nix::unistd::tcgetpgrp(&demo.terminal).expect("tcgetpgrp");
    let started = processes_marked(&demo.marker);
    let kinds: [(&str, IsOfKind); 3] = [
        ("moto_server", |words| {
            words.iter().any(|word| word.ends_with("/moto_server"))
        }),
        ("the PostgreSQL server", |words| {
            words
                .first()
                .is_some_and(|word| word.ends_with("/postgres"))
        }),
        ("a tunnel supervisor", |words| {
            words.contains(&"__declastruct_supervise")
        }),
    ];
    for (kind, is_of_kind) in kinds {
        let of_kind: Vec<&(u32, String)> = started
            .iter()
            .filter(|(_, command)| is_of_kind(&command.split_whitespace().collect::<Vec<_>>()))
            .collect();
        assert!(
            !of_kind.is_empty(),
            "no {kind} among the demo's processes: {started:#?}"
        );
        for (pid, command) in of_kind {
            let group = read_process(*pid).map(|process| process.stat.group);
            assert!(
                group.is_some_and(|group| i64::from(group) != i64::from(foreground.as_raw())),
                "{command} is in the terminal's foreground process group, which Ctrl-C interrupts"
            );
        }
    }
    // the demo's work folder, from its PostgreSQL's data folder (WORK/pg/data)
    let work = started
        .iter()
        .find_map(|(_, command)| {
            let data = command.split_once(" -D ")?.1.split_whitespace().next()?;
            Some(Path::new(data).parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| panic!("no postgres -D among {started:#?}"));
    assert!(work.join("declastruct.yml").is_file(), "{}", work.display());
    let shown_before = demo.bytes_shown().len();
    demo.type_ctrl_c();
    let code = demo.wait(Duration::from_secs(60));
    let left = || processes_marked(&demo.marker);
    assert!(
        wait_for(Duration::from_secs(10), || left().is_empty()),
        "the demo left processes behind: {:#?}",
        left()
    );
    let screen = demo.final_screen();
    assert_eq!(code, Some(130), "{screen}");
    assert!(!work.exists(), "{} is left", work.display());

    let after =
        terminal_lines(demo.bytes_shown().get(shown_before..).unwrap_or_default()).join("\n");
    assert_eq!(
        after.trim_end().lines().last(),
        Some("demo interrupted; cleaning up"),
        "{screen}"
    );
    assert_eq!(screen.matches("demo interrupted").count(), 1, "{screen}");
    for spew in [
        "could not be reached",
        "Connection refused",
        "Traceback",
        "KeyboardInterrupt",
        "panicked",
        "Broken pipe",
    ] {
        assert!(!screen.contains(spew), "{spew:?} shown:\n{screen}");
    }

    // the build says how long it took in one line, not cargo's hundreds ("The second day", item 8)
    let build = screen
        .split_once("==> Building")
        .and_then(|(_, after)| after.split_once("==> Starting moto"))
        .map(|(build, _)| build)
        .unwrap_or_default();
    assert!(build.contains("built in "), "{screen}");
    assert!(
        build.lines().filter(|line| !line.trim().is_empty()).count() <= 2,
        "the build's lines:\n{build}"
    );
    assert!(!build.contains("Compiling"), "{build}");
    // the manifest it applies, whole
    let manifest = screen
        .split_once("==> The manifest: declastruct.yml")
        .and_then(|(_, after)| after.split_once("==> declastruct plan"))
        .map_or_else(
            || panic!("no manifest heading:\n{screen}"),
            |(manifest, _)| manifest,
        );
    for line in std::fs::read_to_string(workspace_root().join("examples/basic.yml"))
        .expect("examples/basic.yml")
        .lines()
        .filter(|line| !line.contains("7775"))
    {
        assert!(
            manifest.lines().any(|shown| shown == line),
            "the manifest shown lacks {line:?}:\n{manifest}"
        );
    }
    // how to connect: the Connect line, the variables of `declastruct env`, a command run by `declastruct exec`
    assert!(
        screen.lines().any(|line| line.starts_with("Connect:")),
        "{screen}"
    );
    assert!(
        screen.contains("psql -h 127.0.0.1 -p ") && screen.contains("-U postgres postgres"),
        "{screen}"
    );
    let env = screen.split_once("==> How to connect").map_or_else(
        || panic!("no connect heading:\n{screen}"),
        |(_, after)| after,
    );
    assert!(
        env.contains("declastruct env vpc-main-bastion.ahbodedb.")
            && env.contains("export PGHOST='127.0.0.1'"),
        "{screen}"
    );
    let exec = screen
        .split_once("declastruct exec -- psql")
        .map_or_else(|| panic!("no exec heading:\n{screen}"), |(_, after)| after);
    assert_eq!(exec.lines().nth(1), Some("1"), "{screen}");
}

/// "The second day", item 8: the published crates package (`cargo package`, offline, without the build that
/// `cargo publish` does), each with a description, a licence, a repository and a readme, so that
/// `cargo install declastruct-cli` from the registry is one `cargo publish` away; the test fixtures are not
/// published
#[test]
fn the_published_crates_package_with_their_metadata() {
    let target = tempfile::tempdir().expect("a target folder");
    let output = Command::new(env!("CARGO"))
        .args([
            "package",
            "--workspace",
            "--exclude",
            "declastruct-test-support",
            "--no-verify",
            "--allow-dirty",
            "--offline",
            "--target-dir",
        ])
        .arg(target.path())
        .current_dir(workspace_root())
        .output()
        .expect("cargo package");
    assert!(output.status.success(), "{}", stderr(&output));
    let metadata = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata");
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).expect("metadata");
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().unwrap_or_default();
        if name == "declastruct-test-support" {
            assert_eq!(
                package["publish"],
                serde_json::json!([]),
                "{name} is not published"
            );
            continue;
        }
        for field in [
            "description",
            "license",
            "repository",
            "readme",
            "rust_version",
        ] {
            assert!(
                package[field]
                    .as_str()
                    .is_some_and(|value| !value.is_empty()),
                "{name} lacks {field}"
            );
        }
        let packaged = target.path().join(format!("package/{name}-0.1.0.crate"));
        assert!(packaged.is_file(), "{} was not made", packaged.display());
    }
}
