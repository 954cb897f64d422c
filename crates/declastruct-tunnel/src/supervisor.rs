//! .what = the tunnel supervisor: the detached process that keeps a tunnel's session alive
//! .why = real sessions die (idle timeouts, network drops, an agent not yet connected); the supervisor starts
//! the session again with capped exponential backoff and logs every restart with its cause, stamped in UTC

use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::unistd::Pid;

use crate::{
    LOG_READ_LIMIT, TunnelFiles, TunnelHolder, TunnelLock, open_for_reading, process_group_members,
    read_tail, try_lock_tunnel,
};

/// the first argument that turns a program into a tunnel supervisor
pub const SUPERVISE_ARGUMENT: &str = "__declastruct_supervise";
/// how every line declastruct itself writes into a tunnel's log starts, before its UTC time
pub const LOG_PREFIX: &str = "[declastruct ";

const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// a session that ran this long was healthy: the next failure starts the backoff over
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(3);
/// how often an idle supervisor's main loop wakes, in case a stop signal landed between its look and its wait
const WAKE_SECONDS: u32 = 60;
/// the most the session may write into its log: beyond it, its writes fail (RLIMIT_FSIZE, with SIGXFSZ
/// ignored), so the log is bounded by bytes written, however fast the session prints
pub const LOG_LIMIT: u64 = 1024 * 1024;
/// the log is cut back to its tail once it grows beyond this (looked at every second)
pub const LOG_CUT_AT: u64 = 512 * 1024;
/// how much of the log's tail is kept when it is cut back
pub const LOG_KEEP: u64 = 256 * 1024;
/// what `cap_log` writes at once when it puts the kept lines back: the most the log may pass `LOG_LIMIT` by
const CUT_PIECE: usize = 1024;
/// one cut at a time: the heartbeat thread cuts every second, the main loop after each session
static CUTTING: Mutex<()> = Mutex::new(());

/// how often the supervisor renews its heartbeat and looks whether its holders still hold
const BEAT_INTERVAL: Duration = Duration::from_secs(1);
/// how often a serving tunnel lets go of the code pages it ran (`release_code_once_serving`)
const RELEASE_CODE_EVERY: Duration = Duration::from_secs(60);

/// before the tunnel is first ready, tries come this often at most: a bastion's agent that connects at 32 s is
/// noticed within a few seconds, not at the next step of a doubling backoff
const OPENING_MAX_DELAY: Duration = Duration::from_secs(2);

static STOP: AtomicBool = AtomicBool::new(false);
/// the `apply` that started this supervisor saw the tunnel ready: from then on an ended session is a restart
static READY: AtomicBool = AtomicBool::new(false);
/// the tunnel's lock, taken when the last holder was found gone and kept until the files are removed, so that no
/// command adds a hold to a tunnel that is closing
static RELEASE_LOCK: Mutex<Option<TunnelLock>> = Mutex::new(None);
/// the tunnel closed for idleness: its record stays, as a tombstone saying why
static KEEP_RECORD: AtomicBool = AtomicBool::new(false);
/// the `apply` that started this supervisor went away before the tunnel was ready
static ABANDONED: AtomicBool = AtomicBool::new(false);
/// the session now running, 0 between sessions
static SESSION: AtomicU32 = AtomicU32::new(0);

extern "C" fn request_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn wake_up(_: nix::libc::c_int) {}

/// .what = what the supervisor asks of its program besides the session: renewing a bastion's `declastruct:in-use`
/// tag (`idleStop`), which needs AWS, which this crate does not speak
/// .why = the AWS crate passes its own renewer; a program with no AWS passes none
#[derive(Default)]
pub struct SupervisorHooks {
    /// renews the bastion's in-use tag; called every `IN_USE_RENEWAL` while the tunnel is ready and its session
    /// runs
    pub renew_in_use: Option<RenewInUse>,
    /// called once this supervisor closed its tunnel by itself (every holder gone, or idle): starts the bastion's
    /// idle timer when no other tunnel of this machine uses it
    pub closed_by_itself: Option<ClosedByItself>,
    /// runs a native session (the AWS crate's, through `declastruct-ssm`)
    pub run_native: Option<RunNative>,
}

/// .what = a session the supervisor runs in its own process (the native transport): where it goes and where it
/// listens, and the region and profile to reach AWS with
/// .why = no AWS CLI and no plugin: the supervisor holds the websocket and the local listener itself
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeSpec {
    /// the bastion's instance id
    pub target: String,
    /// the far end's host, as the bastion resolves it
    pub remote_host: String,
    /// the far end's port
    pub remote_port: u16,
    /// the local port
    pub local_port: u16,
    /// the local addresses to listen on (127.0.0.1 and ::1 for `localhost`)
    pub listen: Vec<std::net::IpAddr>,
    /// the region
    pub region: Option<String>,
    /// the profile
    pub profile: Option<String>,
}

/// .what = what the supervisor runs as its session: a command (the AWS CLI and the plugin), or a native session
/// .why = the tunnel machinery talks to either transport the same way: restarts, readiness, log, stop
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSpec {
    /// a child process, whose output goes into the log
    Command(Vec<OsString>),
    /// a session this process runs itself, through the `run_native` hook
    Native(NativeSpec),
}

/// runs a native session until it ends or `stop` turns true, writing its events as lines through `say`; returns
/// how it ended, or the failure (in the AWS CLI's words where it has them, so the open's wait reads it)
pub type RunNative =
    Box<dyn Fn(&NativeSpec, &AtomicBool, &dyn Fn(&str)) -> Result<String, String> + Send + Sync>;

/// renews a bastion's in-use tag; an error says why it could not
pub type RenewInUse = Box<dyn Fn(&InUseTarget) -> Result<(), String> + Send + Sync>;
/// told that the supervisor closed its tunnel by itself
pub type ClosedByItself = Box<dyn Fn(&InUseTarget) + Send + Sync>;

/// how often a supervisor whose session runs renews its bastion's in-use tag
pub const IN_USE_RENEWAL: Duration = Duration::from_secs(60);

/// .what = the bastion whose in-use tag a supervisor renews, and the region and profile to reach it with
/// .why = other machines read the tag before stopping an idle bastion
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUseTarget {
    /// the bastion's instance id
    pub instance_id: String,
    /// the region
    pub region: Option<String>,
    /// the profile
    pub profile: Option<String>,
    /// the bastion's `idleStop`: when this supervisor closes the last tunnel through it, its idle timer starts
    pub idle_stop: Duration,
}

/// .what = runs the tunnel supervisor and exits, when this process was started as one; otherwise returns
/// .why = the supervisor is the same program as its caller (the `declastruct` binary, or an SDK user's own);
/// call this first thing in `main`
pub fn run_supervisor_if_requested() {
    run_supervisor_if_requested_with(SupervisorHooks::default());
}

/// .what = as `run_supervisor_if_requested`, with hooks (the AWS crate's in-use renewer)
/// .why = the supervisor needs AWS only for the in-use tag, and this crate stays free of it
pub fn run_supervisor_if_requested_with(hooks: SupervisorHooks) {
    let arguments: Vec<OsString> = std::env::args_os().collect();
    if arguments.get(1).and_then(|argument| argument.to_str()) != Some(SUPERVISE_ARGUMENT) {
        return;
    }
    let code = match parse(&arguments[2..]) {
        Some(request) => supervise(&request, hooks),
        None => {
            let mut stderr = std::io::stderr();
            let _ = writeln!(
                stderr,
                "usage: {SUPERVISE_ARGUMENT} --log FILE [--ready-fd N] [--idle-close SECONDS] [--in-use INSTANCE --in-use-idle-stop SECONDS [--in-use-region R] [--in-use-profile P]] -- COMMAND..."
            );
            2
        }
    };
    std::process::exit(code);
}

/// .what = what a supervisor is asked to do: its log, the pipe that tells it the tunnel is ready, the session
/// .why = `set_vpc_tunnel` writes it as a command line; `run_supervisor_if_requested` reads it back
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorRequest {
    /// the tunnel's log, `{hash}.log`, which also names the tunnel
    pub log: PathBuf,
    /// the file descriptor on which `apply` confirms readiness; its end without a confirmation means `apply`
    /// died, and the supervisor gives up
    pub ready_fd: Option<i32>,
    /// close the tunnel after this long without a client connection and without a live process holder
    pub idle_close: Option<Duration>,
    /// the bastion whose in-use tag to renew while the session runs (`idleStop`)
    pub in_use: Option<InUseTarget>,
    /// the session: a command, or a native session
    pub session: SessionSpec,
}

/// .what = the supervisor's command line around a session command
/// .why = `set_vpc_tunnel` starts it; the log path in it names the tunnel's hash, so `ps` shows which tunnel
pub fn supervisor_command(program: &Path, request: &SupervisorRequest) -> Vec<OsString> {
    let mut command: Vec<OsString> = vec![
        program.into(),
        SUPERVISE_ARGUMENT.into(),
        "--log".into(),
        request.log.clone().into(),
    ];
    if let Some(fd) = request.ready_fd {
        command.push("--ready-fd".into());
        command.push(fd.to_string().into());
    }
    if let Some(idle) = request.idle_close {
        command.push("--idle-close".into());
        command.push(idle.as_secs().to_string().into());
    }
    if let Some(target) = &request.in_use {
        command.push("--in-use".into());
        command.push(target.instance_id.clone().into());
        command.push("--in-use-idle-stop".into());
        command.push(target.idle_stop.as_secs().to_string().into());
        if let Some(region) = &target.region {
            command.push("--in-use-region".into());
            command.push(region.into());
        }
        if let Some(profile) = &target.profile {
            command.push("--in-use-profile".into());
            command.push(profile.into());
        }
    }
    match &request.session {
        SessionSpec::Command(session) => {
            command.push("--".into());
            command.extend(session.iter().cloned());
        }
        SessionSpec::Native(spec) => {
            command.push("--native".into());
            command.push(spec.target.clone().into());
            command.push("--native-to".into());
            command.push(format!("{}:{}", spec.remote_host, spec.remote_port).into());
            command.push("--native-local".into());
            command.push(spec.local_port.to_string().into());
            for address in &spec.listen {
                command.push("--native-listen".into());
                command.push(address.to_string().into());
            }
            if let Some(region) = &spec.region {
                command.push("--native-region".into());
                command.push(region.into());
            }
            if let Some(profile) = &spec.profile {
                command.push("--native-profile".into());
                command.push(profile.into());
            }
        }
    }
    command
}

fn parse(arguments: &[OsString]) -> Option<SupervisorRequest> {
    let mut log = None;
    let mut ready_fd = None;
    let mut idle_close = None;
    let mut in_use: Option<InUseTarget> = None;
    let mut native: Option<NativeSpec> = None;
    let mut rest = arguments;
    loop {
        match rest {
            [separator, command @ ..] if separator == "--" => {
                if command.is_empty() || native.is_some() {
                    return None;
                }
                return Some(SupervisorRequest {
                    log: log?,
                    ready_fd,
                    idle_close,
                    in_use,
                    session: SessionSpec::Command(command.to_vec()),
                });
            }
            [] => {
                return Some(SupervisorRequest {
                    log: log?,
                    ready_fd,
                    idle_close,
                    in_use,
                    session: SessionSpec::Native(native?),
                });
            }
            [flag, value, more @ ..] => {
                let text = value.to_str()?;
                match flag.to_str()? {
                    "--log" => log = Some(PathBuf::from(value)),
                    "--ready-fd" => ready_fd = Some(text.parse().ok()?),
                    "--idle-close" => idle_close = Some(Duration::from_secs(text.parse().ok()?)),
                    "--in-use" => {
                        in_use = Some(InUseTarget {
                            instance_id: text.to_string(),
                            region: None,
                            profile: None,
                            idle_stop: Duration::ZERO,
                        });
                    }
                    "--in-use-idle-stop" => {
                        in_use.as_mut()?.idle_stop = Duration::from_secs(text.parse().ok()?);
                    }
                    "--native" => {
                        native = Some(NativeSpec {
                            target: text.to_string(),
                            remote_host: String::new(),
                            remote_port: 0,
                            local_port: 0,
                            listen: Vec::new(),
                            region: None,
                            profile: None,
                        });
                    }
                    "--native-to" => {
                        let (host, port) = text.rsplit_once(':')?;
                        let spec = native.as_mut()?;
                        spec.remote_host = host.to_string();
                        spec.remote_port = port.parse().ok()?;
                    }
                    "--native-local" => native.as_mut()?.local_port = text.parse().ok()?,
                    "--native-listen" => native.as_mut()?.listen.push(text.parse().ok()?),
                    "--native-region" => native.as_mut()?.region = Some(text.to_string()),
                    "--native-profile" => native.as_mut()?.profile = Some(text.to_string()),
                    "--in-use-region" => in_use.as_mut()?.region = Some(text.to_string()),
                    "--in-use-profile" => in_use.as_mut()?.profile = Some(text.to_string()),
                    _ => return None,
                }
                rest = more;
            }
            _ => return None,
        }
    }
}

/// the signals that stop the supervisor, and the alarm that wakes it to check its log
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGALRM,
    ] {
        set.add(signal);
    }
    set
}

#[allow(unsafe_code)]
fn install_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, sigaction};
    // no SA_RESTART: each of these interrupts the blocking wait for the session
    let stop = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::empty(),
        SigSet::empty(),
    );
    let wake = SigAction::new(
        SigHandler::Handler(wake_up),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe
        let _ = unsafe { sigaction(signal, &stop) };
    }
    // SAFETY: the handler does nothing; it only interrupts the wait
    let _ = unsafe { sigaction(Signal::SIGALRM, &wake) };
}

/// .what = a line for the tunnel's log: `[declastruct 2026-11-27T03:00:00Z] text`
/// .why = every line declastruct writes is stamped with a UTC time, so a restart can be matched to an event
pub fn stamped(text: &str) -> String {
    format!(
        "{LOG_PREFIX}{}] {text}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// .what = the text of a line declastruct wrote, without its stamp; `None` for the session's own lines
/// .why = restarts and their causes are read back from the log
pub fn unstamped(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(LOG_PREFIX)?;
    Some(rest.split_once("] ")?.1)
}

fn say(text: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", stamped(text));
    let _ = out.flush();
}

/// sleeps up to `duration`, returning early when a stop is requested
fn pause(duration: Duration) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ends every other process of our group (the session and the plugin it started), with each signal in turn;
/// the group is the one this supervisor created, so every member is ours
fn end_others(signals: &[Signal]) {
    let me = std::process::id();
    let group = u32::try_from(nix::unistd::getpgrp().as_raw()).unwrap_or(me);
    if group != me {
        // not a group of our own (started without setsid): only the session we started is ours
        let session = SESSION.load(Ordering::SeqCst);
        if let (Some(signal), Ok(pid)) = (signals.first(), i32::try_from(session))
            && session != 0
        {
            let _ = kill(Pid::from_raw(pid), *signal);
        }
        return;
    }
    let others = || -> Vec<u32> {
        process_group_members(group)
            .into_iter()
            .filter(|pid| *pid != me)
            .collect()
    };
    for signal in signals {
        let remaining = others();
        if remaining.is_empty() {
            return;
        }
        for pid in remaining {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), *signal);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(25));
            if others().is_empty() {
                return;
            }
        }
    }
}

/// .what = the session's command: stdin from /dev/null, and its writes bounded at `LOG_LIMIT` bytes of file
/// (RLIMIT_FSIZE) with SIGXFSZ ignored, so a write past the bound fails (EFBIG) instead of killing it
/// .why = the log is bounded by bytes written, not by the clock: a session that prints 4 MB a second cannot grow
/// it past its bound between two cuts. The plugin (Go) and the AWS CLI (Python) ignore SIGXFSZ and a failed
/// write to their output; the supervisor's own lines are not limited
fn session_command(command: &[OsString]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut session = Command::new(&command[0]);
    session.args(&command[1..]).stdin(Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: between fork and exec only async-signal-safe calls are made: setrlimit(2) and signal(2)
    unsafe {
        session.pre_exec(|| {
            let _ = nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_FSIZE,
                LOG_LIMIT,
                LOG_LIMIT,
            );
            let _ = nix::sys::signal::signal(Signal::SIGXFSZ, nix::sys::signal::SigHandler::SigIgn);
            Ok(())
        });
    }
    session
}

enum Waited {
    /// the session ended with this status (it is reaped)
    Exited(std::process::ExitStatus),
    /// a signal arrived first: look at STOP, then wait again
    Interrupted,
    /// there is no such child any more
    Gone,
}

/// .what = blocks until the session ends or a signal arrives
/// .why = an open tunnel's supervisor sleeps in the kernel instead of waking a hundred times a second; the
/// handlers are installed without SA_RESTART, so SIGINT, SIGTERM, SIGHUP and the log alarm interrupt this wait
fn wait_for_exit(pid: u32) -> Waited {
    use nix::sys::wait::{WaitStatus, waitpid};
    use std::os::unix::process::ExitStatusExt;
    let Ok(raw) = i32::try_from(pid) else {
        return Waited::Gone;
    };
    match waitpid(Pid::from_raw(raw), None) {
        // the raw wait status: the exit code in the second byte, or the signal number
        Ok(WaitStatus::Exited(_, code)) => {
            Waited::Exited(std::process::ExitStatus::from_raw((code & 0xff) << 8))
        }
        Ok(WaitStatus::Signaled(_, signal, _)) => {
            Waited::Exited(std::process::ExitStatus::from_raw(signal as i32))
        }
        Ok(_) | Err(nix::errno::Errno::EINTR) => Waited::Interrupted,
        Err(_) => Waited::Gone,
    }
}

fn last_line_since(log: &Path, offset: u64) -> String {
    let length = std::fs::symlink_metadata(log).map_or(0, |metadata| metadata.len());
    // what this session printed: from `offset`, unless the log was cut meanwhile
    let since = if offset <= length {
        length - offset
    } else {
        length
    };
    let text = read_tail(log, since.min(LOG_READ_LIMIT));
    String::from_utf8_lossy(&text)
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("it printed nothing")
        .to_string()
}

/// .what = cuts the log back to its last `keep` bytes (from a line start) once it is longer than `limit`, through
/// `log`, the descriptor the supervisor writes it with (never by its path, so never through a link planted there)
/// .why = a session that prints fast or restarts forever must not fill the disk; the count of restarts so far is
/// carried into the line that marks the cut
pub fn cap_log(log: &std::fs::File, path: &Path, limit: u64, keep: u64) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let _cutting = CUTTING.lock();
    let metadata = log.metadata()?;
    if !metadata.is_file() || metadata.len() <= limit {
        return Ok(false);
    }
    // the descriptor writes only: the tail is read through the path, once it is proven the same file
    let mut reader = open_for_reading(path)?;
    let opened = reader.metadata()?;
    if (opened.dev(), opened.ino()) != (metadata.dev(), metadata.ino()) {
        return Ok(false);
    }
    let (restarts, _) = read_restarts(path);
    reader.seek(SeekFrom::Start(metadata.len().saturating_sub(keep)))?;
    let mut tail = Vec::new();
    reader.take(keep).read_to_end(&mut tail)?;
    let from_line = tail
        .iter()
        .position(|byte| *byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let kept = &tail[from_line..];
    log.set_len(0)?;
    let marker = stamped(&format!(
        "the log grew beyond {} KiB: earlier lines were dropped, the last {} KiB kept (restarts so far: {restarts})",
        limit / 1024,
        keep / 1024
    ));
    // appended: the descriptor was opened O_APPEND, as the session's is. A session that keeps printing refills
    // the file meanwhile, up to its own bound (RLIMIT_FSIZE at LOG_LIMIT); so this writes a little at a time,
    // each piece only while it fits under that bound too: the log never passes it by more than one piece
    let mut writer = log;
    let mut kept_lines = format!("{marker}\n").into_bytes();
    kept_lines.extend_from_slice(kept);
    for piece in kept_lines.chunks(CUT_PIECE) {
        if log.metadata()?.len() + piece.len() as u64 > LOG_LIMIT {
            break;
        }
        writer.write_all(piece)?;
    }
    Ok(true)
}

/// the log as the supervisor writes it: its own standard output, which `start_tunnel_process` opened on the log
fn own_log() -> Option<std::fs::File> {
    use std::os::fd::AsFd;
    let owned = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    let file = std::fs::File::from(owned);
    file.metadata()
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|_| file)
}

/// .what = waits on the readiness pipe: a byte means `apply` saw the tunnel ready; its end without one means
/// `apply` died before that (killed, or its terminal closed), and this supervisor gives up
/// .why = a tunnel that nobody saw ready must not open the port later behind everyone's back
fn watch_readiness(fd: i32) {
    #[allow(unsafe_code)]
    // SAFETY: `fd` is the read end of the readiness pipe, inherited at exec and owned by nobody else here
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let mut pipe = std::fs::File::from(owned);
    // the stop signals and the alarm must interrupt the main thread's wait, never this read
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        let confirmed = loop {
            match pipe.read(&mut byte) {
                Ok(0) => break false,
                Ok(_) => break true,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break false,
            }
        };
        if confirmed {
            READY.store(true, Ordering::SeqCst);
        } else {
            ABANDONED.store(true, Ordering::SeqCst);
            // this thread blocks the stop signals, so the kernel hands this one to the main thread, whose wait
            // it interrupts; the stop then ends the whole group, gently first. Sent again each second until the
            // process ends: one that lands between the main loop's look at STOP and its wait interrupts nothing
            loop {
                let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
}

/// the tunnel's files, named by its log `{tunnels folder}/{hash}.log`
fn files_of(log: &Path) -> Option<TunnelFiles> {
    let dir = log.parent()?;
    let hash = log.file_stem()?.to_str()?;
    Some(TunnelFiles::new(dir, crate::TunnelId::parse(hash)?))
}

/// .what = a thread that renews the heartbeat `{hash}.beat` every second and drops the holds of commands that
/// ended; when no holder is left, it stops the supervisor, which closes the tunnel
/// .why = "alive" is not "working": a stopped or hung supervisor stops beating and is replaced; and a killed
/// `exec` must not leave its tunnel open forever
fn watch_heartbeat_and_holders(log_path: &Path, idle_close: Option<Duration>) {
    use std::os::unix::fs::OpenOptionsExt;
    let Some(files) = files_of(log_path) else {
        return;
    };
    // opened once, never following a symlink; renewed through the descriptor
    let beat = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(files.beat_path());
    let log = own_log();
    let log_path = log_path.to_path_buf();
    std::thread::spawn(move || {
        let mut idle = IdleClock::new(idle_close);
        loop {
            if let Ok(beat) = &beat {
                let _ = beat.set_modified(std::time::SystemTime::now());
            }
            if let Some(log) = &log {
                let _ = cap_log(log, &log_path, LOG_CUT_AT, LOG_KEEP);
            }
            let closing = release_dead_holds(&files)
                .map(|last| {
                    format!("every holder let go (the last, {last}, has ended): closing the tunnel")
                })
                .or_else(|| idle.expired(&files));
            if let Some(why) = closing {
                say(&why);
                // handed to the main thread, whose wait it interrupts; sent again each second, as for an
                // abandoned tunnel, until the process ends
                loop {
                    let _ = kill(nix::unistd::getpid(), Signal::SIGTERM);
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            std::thread::sleep(BEAT_INTERVAL);
        }
    });
}

/// .what = runs the session command once, until it ends (its status and the last line it printed) or a stop is
/// asked (`None`, its group ended gently first); an error is the exit code when it cannot start
/// .why = the plugin transport: the AWS CLI and the plugin are this supervisor's children
fn run_command_session(
    command: &[OsString],
    log: &Path,
    offset: u64,
) -> Result<Option<(String, String)>, i32> {
    let child = match session_command(command).spawn() {
        Ok(child) => child,
        Err(error) => {
            say(&format!(
                "cannot start {}: {error}",
                command[0].to_string_lossy()
            ));
            return Err(127);
        }
    };
    SESSION.store(child.id(), Ordering::SeqCst);
    let status = loop {
        if STOP.load(Ordering::SeqCst) {
            break None;
        }
        // armed before every wait: an alarm that went off outside it (between restarts) is not lost, and a
        // stop signal that lands between the check above and the wait is seen at the latest when it rings
        nix::unistd::alarm::set(WAKE_SECONDS);
        match wait_for_exit(child.id()) {
            Waited::Exited(status) => break Some(status),
            Waited::Interrupted => {}
            Waited::Gone => break Some(std::process::ExitStatus::default()),
        }
    };
    let Some(status) = status else {
        // asked to stop: SIGINT to the whole group first (the plugin then ends its AWS session; the AWS CLI
        // itself ignores SIGINT while the plugin runs), then firmer signals for whatever is left
        if ABANDONED.load(Ordering::SeqCst) {
            say("the apply that started this tunnel ended before the tunnel was ready: giving up");
        }
        end_others(&[Signal::SIGINT, Signal::SIGTERM, Signal::SIGKILL]);
        return Ok(None);
    };
    SESSION.store(0, Ordering::SeqCst);
    // a plugin left behind by its CLI still holds the port: end it before starting again
    end_others(&[Signal::SIGTERM, Signal::SIGKILL]);
    Ok(Some((status.to_string(), last_line_since(log, offset))))
}

/// .what = runs a native session once, in this process, until it ends (how, and its last words) or a stop is
/// asked (`None`; the session is closed with TerminateSession)
/// .why = the native transport: one process per tunnel, holding the websocket and the listener itself
fn run_native_session(spec: &NativeSpec, run: &RunNative) -> Option<(String, String)> {
    SESSION.store(std::process::id(), Ordering::SeqCst);
    let ended = run(spec, &STOP, &|line| {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    });
    SESSION.store(0, Ordering::SeqCst);
    if STOP.load(Ordering::SeqCst) {
        if ABANDONED.load(Ordering::SeqCst) {
            say("the apply that started this tunnel ended before the tunnel was ready: giving up");
        }
        return None;
    }
    Some(match ended {
        Ok(how) => ("native session ended".to_string(), how),
        Err(failure) => {
            // in the AWS CLI's words, as a line of the session's own: the open's wait reads it
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{failure}");
            let _ = out.flush();
            ("native session failed".to_string(), failure)
        }
    })
}

/// .what = a thread that releases the code pages this process has run (`footprint::release_code_pages`): a few
/// seconds after its session first serves, then every `RELEASE_CODE_EVERY`
/// .why = an open tunnel's resident memory is what it runs from then on, not what it ran to start, nor the code
/// of a burst of traffic long over; pages it runs again come back from the page cache
fn release_code_once_serving() {
    std::thread::spawn(|| {
        loop {
            if READY.load(Ordering::SeqCst) && SESSION.load(Ordering::SeqCst) != 0 {
                // the open's last steps (apply's probe through the port) run in these seconds
                std::thread::sleep(Duration::from_secs(3));
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        loop {
            crate::footprint::release_code_pages();
            std::thread::sleep(RELEASE_CODE_EVERY);
        }
    });
}

/// .what = a thread that renews the bastion's in-use tag every `IN_USE_RENEWAL` while the tunnel is ready and its
/// session runs, the first time as soon as it is ready
/// .why = `idleStop` on any machine reads the tag: a bastion whose tunnel serves here is never stopped there
fn renew_in_use_while_serving(target: InUseTarget, renew: RenewInUse) {
    std::thread::spawn(move || {
        let mut last: Option<Instant> = None;
        let mut failing = false;
        loop {
            let serving = READY.load(Ordering::SeqCst) && SESSION.load(Ordering::SeqCst) != 0;
            if serving && last.is_none_or(|last| last.elapsed() >= IN_USE_RENEWAL) {
                match renew(&target) {
                    // said once, and again when it works again: the log is not filled with one failure
                    Err(problem) if !failing => {
                        failing = true;
                        say(&format!(
                            "cannot renew the declastruct:in-use tag of {}: {problem}",
                            target.instance_id
                        ));
                    }
                    Ok(()) if failing => {
                        failing = false;
                        say(&format!(
                            "the declastruct:in-use tag of {} is renewed again",
                            target.instance_id
                        ));
                    }
                    _ => {}
                }
                last = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    });
}

/// .what = how long the tunnel has gone without a client connection and without a live process holder
/// .why = `idleClose`: a tunnel nobody uses closes by itself; a running query keeps its connection, and a running
/// `exec` or `connect` holds it, so neither is ever closed under
struct IdleClock {
    limit: Option<Duration>,
    /// since when nothing has used the tunnel: the first look that saw no connection after one that did (the
    /// connection ended between the two, so idleness is never counted from before its end)
    idle_since: Instant,
    in_use: bool,
}

impl IdleClock {
    fn new(limit: Option<Duration>) -> Self {
        Self {
            limit,
            idle_since: Instant::now(),
            in_use: true,
        }
    }

    fn used(&mut self) {
        self.in_use = true;
    }

    fn unused(&mut self) {
        if self.in_use {
            self.in_use = false;
            self.idle_since = Instant::now();
        }
    }

    /// when the tunnel has been idle for its limit: records why in its record (a tombstone that `status --all`
    /// and `plan` read), keeps the lock for the main thread, and returns the line to log
    fn expired(&mut self, files: &TunnelFiles) -> Option<String> {
        let limit = self.limit?;
        let Ok(Some(mut meta)) = files.read_meta::<serde_json::Value>() else {
            return None;
        };
        if meta.pid != std::process::id() || !meta.ready {
            self.used();
            return None;
        }
        let held_by_a_process = meta
            .holders()
            .iter()
            .any(|holder| matches!(holder, TunnelHolder::Process(_)) && holder.is_alive());
        if held_by_a_process || crate::platform::established_connections(meta.local_port) > 0 {
            self.used();
            return None;
        }
        self.unused();
        if self.idle_since.elapsed() < limit {
            return None;
        }
        // another command at work on the tunnel: look again in a second
        let lock = try_lock_tunnel(files)?;
        let reason = format!(
            "closed after {} s without a client connection (idleClose)",
            limit.as_secs()
        );
        meta.closed = Some(crate::ClosedRecord {
            reason: reason.clone(),
            at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        });
        meta.holders = Some(Vec::new());
        if files.write_meta(&meta).is_err() {
            return None;
        }
        if let Ok(mut kept) = RELEASE_LOCK.lock() {
            *kept = Some(lock);
        }
        KEEP_RECORD.store(true, Ordering::SeqCst);
        Some(format!("{reason}: closing the tunnel"))
    }
}

/// .what = drops the holds of commands that ended from this supervisor's ready record; when no holder is left,
/// keeps the tunnel's lock (for the main thread, which removes the files) and returns the last holder
/// .why = a dead `exec`'s hold is dropped within seconds, not only by the next command
fn release_dead_holds(files: &TunnelFiles) -> Option<String> {
    let ours = |files: &TunnelFiles| match files.read_meta::<serde_json::Value>() {
        Ok(Some(meta))
            if meta.pid == std::process::id() && meta.ready && meta.holders.is_some() =>
        {
            Some(meta)
        }
        _ => None,
    };
    let meta = ours(files)?;
    if meta.holders().iter().all(TunnelHolder::is_alive) {
        return None;
    }
    // another command at work on the tunnel settles its holders itself; we look again in a second
    let lock = try_lock_tunnel(files)?;
    let mut meta = ours(files)?;
    let (alive, dead): (Vec<TunnelHolder>, Vec<TunnelHolder>) =
        meta.holders().into_iter().partition(TunnelHolder::is_alive);
    if !alive.is_empty() {
        meta.holders = Some(alive);
        let _ = files.write_meta(&meta);
        return None;
    }
    if let Ok(mut kept) = RELEASE_LOCK.lock() {
        *kept = Some(lock);
    }
    Some(
        dead.last()
            .map_or_else(|| "a holder".to_string(), TunnelHolder::describe),
    )
}

/// removes this supervisor's record when nobody else is at work on the tunnel and the record is still ours
fn forget_own_record(log: &Path) {
    let Some(files) = files_of(log) else {
        return;
    };
    let Some(lock) = try_lock_tunnel(&files) else {
        return;
    };
    if matches!(files.read_meta::<serde_json::Value>(), Ok(Some(meta)) if meta.pid == std::process::id())
    {
        let _ = files.remove_all();
        let _ = lock.remove();
    }
}

/// the supervisor's loop; returns its exit code
fn supervise(request: &SupervisorRequest, hooks: SupervisorHooks) -> i32 {
    install_handlers();
    // the watcher threads inherit a mask that blocks the handled signals, so the kernel hands every one of them
    // to this thread, whose waits they interrupt; this thread unblocks them after
    let set = handled_signals();
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    match request.ready_fd {
        Some(fd) => watch_readiness(fd),
        // nobody waits for readiness: the tunnel counts as ready from the start
        None => READY.store(true, Ordering::SeqCst),
    }
    watch_heartbeat_and_holders(&request.log, request.idle_close);
    release_code_once_serving();
    let SupervisorHooks {
        renew_in_use,
        closed_by_itself,
        run_native: hooks_run_native,
    } = hooks;
    if let (Some(target), Some(renew)) = (request.in_use.clone(), renew_in_use) {
        renew_in_use_while_serving(target, renew);
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let log = &request.log;
    let own = own_log();
    let run_native = hooks_run_native;
    let mut delay = FIRST_DELAY;
    let mut restarts: u64 = 0;
    let mut attempts: u64 = 0;
    let code = loop {
        if STOP.load(Ordering::SeqCst) {
            break 0;
        }
        let offset = std::fs::metadata(log).map_or(0, |metadata| metadata.len());
        let started = Instant::now();
        let ended = match &request.session {
            SessionSpec::Command(command) => run_command_session(command, log, offset),
            SessionSpec::Native(spec) => match &run_native {
                Some(run) => Ok(run_native_session(spec, run)),
                None => Err(127),
            },
        };
        let (status, cause) = match ended {
            Ok(Some(ended)) => ended,
            // asked to stop: what the session started is ended
            Ok(None) => break 0,
            Err(code) => break code,
        };
        if STOP.load(Ordering::SeqCst) {
            break 0;
        }
        if started.elapsed() >= HEALTHY_RUN {
            delay = FIRST_DELAY;
        }
        let ready = READY.load(Ordering::SeqCst);
        if ready {
            restarts += 1;
            say(&format!(
                "restart {restarts} in {:.1} s: the session ended ({status}): {cause}",
                delay.as_secs_f64()
            ));
        } else {
            // opening: a try that ended is no restart of a tunnel that was never up, and the next comes soon
            attempts += 1;
            delay = delay.min(OPENING_MAX_DELAY);
            say(&format!(
                "attempt {attempts} ended, the next in {:.1} s: the session ended ({status}): {cause}",
                delay.as_secs_f64()
            ));
        }
        if let Some(own) = &own {
            let _ = cap_log(own, log, LOG_CUT_AT, LOG_KEEP);
        }
        pause(delay);
        delay = (delay * 2).min(if ready { MAX_DELAY } else { OPENING_MAX_DELAY });
    };
    let release_lock = RELEASE_LOCK.lock().ok().and_then(|mut kept| kept.take());
    let closed_itself = release_lock.is_some();
    if let (Some(lock), Some(files)) = (release_lock, files_of(log)) {
        if KEEP_RECORD.load(Ordering::SeqCst) {
            // closed for idleness: the record stays and says why; the rest goes
            for path in [files.pid_path(), files.log_path(), files.beat_path()] {
                let _ = std::fs::remove_file(path);
            }
            drop(lock);
        } else {
            // closed because every holder let go: its files go, then its lock
            let _ = files.remove_all();
            let _ = lock.remove();
        }
    } else if ABANDONED.load(Ordering::SeqCst) {
        forget_own_record(log);
    }
    if let (true, Some(target), Some(closed)) = (closed_itself, &request.in_use, &closed_by_itself)
    {
        closed(target);
    }
    code
}

/// .what = how many tries of opening the tunnel ended before it was first ready, and the last one's cause, read
/// from its log
/// .why = opening waits while the bastion's agent connects, and stops at once on any other failure
pub fn read_attempts(log: &Path) -> (u64, Option<String>) {
    let text = String::from_utf8_lossy(&read_tail(log, LOG_READ_LIMIT)).into_owned();
    let mut count = 0;
    let mut last = None;
    for text in text.lines().filter_map(unstamped) {
        if let Some(rest) = text.strip_prefix("attempt ") {
            let (number, cause) = rest.split_once(' ').unwrap_or((rest, ""));
            count = number.parse().unwrap_or(count + 1).max(count);
            last = Some(
                cause
                    .split_once(": ")
                    .map_or(cause, |(_, cause)| cause)
                    .to_string(),
            );
        }
    }
    (count, last)
}

/// .what = how often a tunnel's session was restarted and the last restart's cause, read from its log
/// .why = `status` shows restarts and their cause; a log cut back to its tail still carries the count
pub fn read_restarts(log: &Path) -> (u64, Option<String>) {
    let text = String::from_utf8_lossy(&read_tail(log, LOG_READ_LIMIT)).into_owned();
    let mut count = 0;
    let mut last = None;
    for text in text.lines().filter_map(unstamped) {
        if let Some(rest) = text.strip_prefix("restart ") {
            let (number, cause) = rest.split_once(' ').unwrap_or((rest, ""));
            count = number.parse().unwrap_or(count + 1).max(count);
            last = Some(
                cause
                    .split_once(": ")
                    .map_or(cause, |(_, cause)| cause)
                    .to_string(),
            );
        } else if let Some(before) = text
            .split_once("(restarts so far: ")
            .and_then(|(_, rest)| rest.strip_suffix(')'))
        {
            count = count.max(before.parse().unwrap_or(0));
        }
    }
    (count, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_round_trips() {
        let request = SupervisorRequest {
            log: PathBuf::from("/tmp/x.log"),
            ready_fd: Some(3),
            idle_close: Some(Duration::from_secs(90)),
            in_use: Some(InUseTarget {
                instance_id: "i-0abc".into(),
                region: Some("us-east-1".into()),
                profile: None,
                idle_stop: Duration::from_secs(1800),
            }),
            session: SessionSpec::Command(vec!["aws".into(), "ssm".into(), "start-session".into()]),
        };
        let command = supervisor_command(Path::new("/bin/declastruct"), &request);
        assert_eq!(command[1], SUPERVISE_ARGUMENT);
        assert_eq!(parse(&command[2..]), Some(request.clone()));
        let without_pipe = SupervisorRequest {
            ready_fd: None,
            ..request
        };
        let command = supervisor_command(Path::new("/bin/declastruct"), &without_pipe);
        assert_eq!(parse(&command[2..]), Some(without_pipe));
    }

    #[test]
    fn a_native_session_round_trips_on_the_command_line() {
        let request = SupervisorRequest {
            log: PathBuf::from("/tmp/x.log"),
            ready_fd: Some(3),
            idle_close: None,
            in_use: None,
            session: SessionSpec::Native(NativeSpec {
                target: "i-0abc".into(),
                remote_host: "db.example".into(),
                remote_port: 5432,
                local_port: 7775,
                listen: vec![
                    std::net::IpAddr::from([127, 0, 0, 1]),
                    std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ],
                region: Some("us-east-1".into()),
                profile: Some("dev".into()),
            }),
        };
        let command = supervisor_command(Path::new("/bin/declastruct"), &request);
        assert!(!command.iter().any(|word| word == "--"), "{command:?}");
        assert_eq!(parse(&command[2..]), Some(request));
    }

    #[test]
    fn lines_are_stamped_in_utc_and_read_back() {
        let line = stamped("restart 1 in 0.5 s: the session ended (exit status: 0): x");
        assert!(line.starts_with("[declastruct 20"), "{line}");
        assert!(line.contains("Z] restart 1"), "{line}");
        assert_eq!(
            unstamped(&line),
            Some("restart 1 in 0.5 s: the session ended (exit status: 0): x")
        );
        assert_eq!(unstamped("Waiting for connections..."), None);
    }

    #[test]
    fn tries_before_the_tunnel_was_ready_are_attempts_not_restarts() {
        let folder = tempfile::tempdir().expect("tempdir");
        let log = folder.path().join("t.log");
        std::fs::write(
            &log,
            format!(
                "{}\n{}\nPort 7775 opened for sessionId s.\n",
                stamped("attempt 1 ended, the next in 0.5 s: the session ended (exit status: 254): An error occurred (TargetNotConnected)"),
                stamped("attempt 2 ended, the next in 1.0 s: the session ended (exit status: 254): An error occurred (TargetNotConnected)"),
            ),
        )
        .expect("write");
        assert_eq!(read_restarts(&log), (0, None));
        let (attempts, last) = read_attempts(&log);
        assert_eq!(attempts, 2);
        assert_eq!(
            last.as_deref(),
            Some("the session ended (exit status: 254): An error occurred (TargetNotConnected)")
        );
    }

    #[test]
    fn restarts_are_counted_from_the_log() {
        let folder = tempfile::tempdir().expect("tempdir");
        let log = folder.path().join("t.log");
        std::fs::write(
            &log,
            format!(
                "Waiting for connections...\n{}\nWaiting for connections...\n{}\n",
                stamped("restart 1 in 0.5 s: the session ended (exit status: 0): Session: x timed out."),
                stamped("restart 2 in 1.0 s: the session ended (signal: 9 (SIGKILL)): it printed nothing")
            ),
        )
        .expect("write");
        let (count, last) = read_restarts(&log);
        assert_eq!(count, 2);
        assert_eq!(
            last.as_deref(),
            Some("the session ended (signal: 9 (SIGKILL)): it printed nothing")
        );
    }

    #[test]
    fn a_long_log_is_cut_back_to_its_tail_and_keeps_the_count() {
        let folder = tempfile::tempdir().expect("tempdir");
        let log = folder.path().join("t.log");
        let mut text = String::new();
        for number in 1..=3000 {
            text.push_str(&stamped(&format!(
                "restart {number} in 30.0 s: the session ended (exit status: 254): An error occurred (TargetNotConnected)"
            )));
            text.push('\n');
        }
        std::fs::write(&log, &text).expect("write");
        let file = || {
            // write-only, as the supervisor's standard output is
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open")
        };
        assert!(cap_log(&file(), &log, 64 * 1024, 16 * 1024).expect("capped"));
        let length = std::fs::metadata(&log).expect("metadata").len();
        assert!(length <= 17 * 1024, "{length}");
        let capped = std::fs::read_to_string(&log).expect("read");
        assert!(
            capped.lines().all(|line| line.starts_with(LOG_PREFIX)),
            "whole lines only"
        );
        assert_eq!(read_restarts(&log).0, 3000);
        assert!(
            !cap_log(&file(), &log, 64 * 1024, 16 * 1024).expect("checked"),
            "small logs stay"
        );
    }
}
