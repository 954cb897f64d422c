//! .what = the tunnel supervisor: the detached process that keeps a tunnel's session alive
//! .why = real sessions die (idle timeouts, network drops, an agent not yet connected); the supervisor starts
//! the session again with capped exponential backoff and logs every restart with its cause

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::domain_operations::vpc_tunnel::utils::process_group_members;

/// the first argument that turns a program into a tunnel supervisor
pub const SUPERVISE_ARGUMENT: &str = "__declastruct_supervise";
/// how restart lines start in the tunnel's log
pub const RESTART_MARKER: &str = "[declastruct] restart ";

const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// a session that ran this long was healthy: the next failure starts the backoff over
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(3);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// .what = runs the tunnel supervisor and exits, when this process was started as one; otherwise returns
/// .why = the supervisor is the same program as its caller (the `declastruct` binary, or an SDK user's own);
/// call this first thing in `main`
pub fn run_supervisor_if_requested() {
    let arguments: Vec<OsString> = std::env::args_os().collect();
    if arguments.get(1).and_then(|argument| argument.to_str()) != Some(SUPERVISE_ARGUMENT) {
        return;
    }
    let code = match parse(&arguments[2..]) {
        Some((log, command)) => supervise(&log, &command),
        None => {
            eprintln!("usage: {SUPERVISE_ARGUMENT} --log FILE -- COMMAND...");
            2
        }
    };
    std::process::exit(code);
}

/// .what = the supervisor's command line around a session command
/// .why = `set_vpc_tunnel` starts it; `run_supervisor_if_requested` reads it back
pub fn supervisor_command(program: &Path, log: &Path, session: &[OsString]) -> Vec<OsString> {
    let mut command: Vec<OsString> = vec![
        program.into(),
        SUPERVISE_ARGUMENT.into(),
        "--log".into(),
        log.into(),
        "--".into(),
    ];
    command.extend(session.iter().cloned());
    command
}

fn parse(arguments: &[OsString]) -> Option<(PathBuf, Vec<OsString>)> {
    match arguments {
        [flag, log, separator, command @ ..]
            if flag == "--log" && separator == "--" && !command.is_empty() =>
        {
            Some((PathBuf::from(log), command.to_vec()))
        }
        _ => None,
    }
}

#[allow(unsafe_code)]
fn install_stop_handlers() {
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(request_stop),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// sleeps up to `duration`, returning early when a stop is requested
fn pause(duration: Duration) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// ends every other process of our group: the session and the plugin it started
fn end_others(signals: &[Signal]) {
    let me = std::process::id();
    let group = u32::try_from(nix::unistd::getpgrp().as_raw()).unwrap_or(me);
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

enum Waited {
    /// the session ended with this status (it is reaped)
    Exited(std::process::ExitStatus),
    /// a signal arrived first: look at STOP, then wait again
    Interrupted,
    /// there is no such child any more
    Gone,
}

/// .what = blocks until the session ends or a signal arrives
/// .why = an open tunnel's supervisor sleeps in the kernel instead of waking a hundred times a second; the stop
/// handlers are installed without SA_RESTART, so SIGINT, SIGTERM and SIGHUP interrupt this wait
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
    let text = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(text.len());
    String::from_utf8_lossy(&text[start..])
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("it printed nothing")
        .to_string()
}

/// the supervisor's loop; returns its exit code
fn supervise(log: &Path, command: &[OsString]) -> i32 {
    install_stop_handlers();
    let mut delay = FIRST_DELAY;
    let mut restarts: u64 = 0;
    loop {
        let offset = std::fs::metadata(log)
            .map(|metadata| metadata.len())
            .unwrap_or(0);
        let started = Instant::now();
        let mut child = match Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => {
                say(&format!(
                    "[declastruct] cannot start {}: {error}",
                    command[0].to_string_lossy()
                ));
                return 127;
            }
        };
        let status = loop {
            if STOP.load(Ordering::SeqCst) {
                // the session gets SIGINT (the plugin then ends its AWS session) and a grace period; whatever
                // of the group is left after it gets firmer signals
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
                }
                let deadline = Instant::now() + STOP_GRACE;
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                end_others(&[Signal::SIGTERM, Signal::SIGKILL]);
                let _ = child.wait();
                return 0;
            }
            match wait_for_exit(child.id()) {
                Waited::Exited(status) => break status,
                Waited::Interrupted => {}
                Waited::Gone => break std::process::ExitStatus::default(),
            }
        };
        // a plugin left behind by its CLI still holds the port: end it before starting again
        end_others(&[Signal::SIGTERM, Signal::SIGKILL]);
        if STOP.load(Ordering::SeqCst) {
            return 0;
        }
        if started.elapsed() >= HEALTHY_RUN {
            delay = FIRST_DELAY;
        }
        restarts += 1;
        let cause = last_line_since(log, offset);
        say(&format!(
            "{RESTART_MARKER}{restarts} in {:.1} s: the session ended ({status}): {cause}",
            delay.as_secs_f64()
        ));
        pause(delay);
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// .what = how often a tunnel's session was restarted and the last restart's line, read from its log
/// .why = `status` shows restarts and their cause
pub fn read_restarts(log: &Path) -> (u64, Option<String>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let restarts: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with(RESTART_MARKER))
        .collect();
    let last = restarts.last().map(|line| {
        line.split_once(": ")
            .map_or(*line, |(_, cause)| cause)
            .to_string()
    });
    (restarts.len() as u64, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_round_trips() {
        let session: Vec<OsString> = vec!["aws".into(), "ssm".into(), "start-session".into()];
        let command = supervisor_command(
            Path::new("/bin/declastruct"),
            Path::new("/tmp/x.log"),
            &session,
        );
        assert_eq!(command[1], SUPERVISE_ARGUMENT);
        let (log, parsed) = parse(&command[2..]).expect("parses");
        assert_eq!(log, PathBuf::from("/tmp/x.log"));
        assert_eq!(parsed, session);
    }

    #[test]
    fn restarts_are_counted_from_the_log() {
        let folder = tempfile::tempdir().expect("tempdir");
        let log = folder.path().join("t.log");
        std::fs::write(
            &log,
            "Waiting for connections...\n[declastruct] restart 1 in 0.5 s: the session ended (exit status: 0): Session: x timed out.\nWaiting for connections...\n[declastruct] restart 2 in 1.0 s: the session ended (signal: 9 (SIGKILL)): it printed nothing\n",
        )
        .expect("write");
        let (count, last) = read_restarts(&log);
        assert_eq!(count, 2);
        assert_eq!(
            last.as_deref(),
            Some("the session ended (signal: 9 (SIGKILL)): it printed nothing")
        );
    }
}
