use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::TunnelFiles;
use crate::error::TunnelError;
use crate::platform::{TUNNEL_MARKER, tunnel_marker};

/// the descriptor number the supervisor reads readiness from
pub const READY_FD: i32 = 3;

/// .what = where a session goes: the bastion, the remote host and port, the local port, region and profile
/// .why = the contract's session command is built from exactly these
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTarget {
    /// the bastion's instance id
    pub instance_id: String,
    /// the remote host the bastion forwards to
    pub host: String,
    /// the remote port
    pub port: u16,
    /// the local port
    pub local_port: u16,
    /// `--region`, when known
    pub region: Option<String>,
    /// `--profile`, when the manifest names one
    pub profile: Option<String>,
}

/// .what = the contract's session command
/// .why = exactly what a user would type: `aws ssm start-session ... --parameters '{...}' [--region R]
/// [--profile P]`; the profile selects the session's credentials as it selects the SDK's
pub fn session_command(program: &Path, target: &SessionTarget) -> Vec<OsString> {
    let parameters = serde_json::json!({
        "host": [target.host],
        "portNumber": [target.port.to_string()],
        "localPortNumber": [target.local_port.to_string()],
    });
    let mut command: Vec<OsString> = vec![
        program.into(),
        "ssm".into(),
        "start-session".into(),
        "--target".into(),
        target.instance_id.clone().into(),
        "--document-name".into(),
        "AWS-StartPortForwardingSessionToRemoteHost".into(),
        "--parameters".into(),
        parameters.to_string().into(),
    ];
    if let Some(region) = &target.region {
        command.push("--region".into());
        command.push(region.into());
    }
    if let Some(profile) = &target.profile {
        command.push("--profile".into());
        command.push(profile.into());
    }
    command
}

/// .what = the program as a path: as given when it has a slash, else the first match on PATH
/// .why = "the AWS CLI is not installed" is reported before anything starts
pub fn find_program(program: &OsString) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        std::fs::metadata(path)
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    };
    let given = Path::new(program);
    if given.components().count() > 1 {
        return executable(given).then(|| given.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|folder| folder.join(given))
        .find(|candidate| executable(candidate))
}

/// .what = a tunnel process just started, and the pipe on which it is told that the tunnel is ready
/// .why = dropping `ready` without writing to it tells the supervisor that nobody saw the tunnel ready
#[derive(Debug)]
pub struct StartedTunnelProcess {
    /// the process
    pub child: Child,
    /// the write end of the readiness pipe, when the process is a supervisor
    pub ready: Option<File>,
}

impl StartedTunnelProcess {
    /// .what = tells the supervisor the tunnel was seen ready, and lets go of the pipe
    /// .why = from then on the supervisor keeps the tunnel open on its own
    pub fn confirm_ready(&mut self) {
        use std::io::Write;
        if let Some(mut ready) = self.ready.take() {
            let _ = ready.write_all(b"R");
        }
    }
}

/// glibc's variable for its allocator's settings, read once at a process's start
const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";
/// what a tunnel process is started with unless the user sets `GLIBC_TUNABLES` (other C libraries ignore it)
const LONG_LIVED_TUNABLES: &str = "glibc.malloc.arena_max=1:glibc.malloc.trim_threshold=131072";

/// .what = starts a tunnel process detached: its own session and process group, stdin from /dev/null, stdout
/// and stderr appended to the log, the tunnel's marker in its environment, and (for a supervisor) the read
/// end of a readiness pipe as descriptor 3
/// .why = it must outlive declastruct, never write into a pipe that declastruct closes (the plugin dies of
/// SIGPIPE on the first client connection otherwise: the blueprint's bug), and be recognisable as ours from
/// `/proc` alone, together with every process it starts. The variables named in `withheld` (a password the
/// manifest reads from the environment) are left out of its environment: the session never needs them, and a
/// long-lived process should not carry a secret it does not use
pub fn start_tunnel_process(
    command: &[OsString],
    files: &TunnelFiles,
    with_ready_pipe: bool,
    withheld: &[&str],
) -> Result<StartedTunnelProcess, TunnelError> {
    let log = files.open_log()?;
    let log_for_stderr = log
        .try_clone()
        .map_err(|source| crate::state_io("open", &files.log_path(), source))?;
    let mut process = Command::new(&command[0]);
    process
        .args(&command[1..])
        .env(TUNNEL_MARKER, tunnel_marker(&files.dir, &files.id))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr));
    for name in withheld {
        process.env_remove(name);
    }
    // glibc's allocator, for a process that lives for hours: one arena, and freed memory above 128 KiB given back
    // (a heavy upload's buffers otherwise stay resident); a user's own setting wins
    if std::env::var_os(GLIBC_TUNABLES).is_none() {
        process.env(GLIBC_TUNABLES, LONG_LIVED_TUNABLES);
    }
    let pipe = if with_ready_pipe {
        // both ends close on exec: only the descriptor that `detach` copies to 3 reaches the child, so the
        // supervisors of other tunnels started at the same time never hold this pipe open
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| {
            crate::state_io(
                "create a pipe for",
                &files.log_path(),
                std::io::Error::from(errno),
            )
        })?;
        Some((read, write))
    } else {
        None
    };
    detach(&mut process, pipe.as_ref().map(|(read, _)| read));
    let child = process
        .spawn()
        .map_err(|source| crate::state_io("start", std::path::Path::new(&command[0]), source))?;
    Ok(StartedTunnelProcess {
        child,
        ready: pipe.map(|(_, write)| File::from(write)),
    })
}

/// .what = starts `program` with `arguments` detached (its own session, stdin, stdout and stderr from and to
/// /dev/null)
/// .why = a timer that outlives the command that started it, like a tunnel's supervisor, but with nothing to log
pub fn start_detached(program: &Path, arguments: &[OsString]) -> Result<Child, TunnelError> {
    let mut process = Command::new(program);
    process
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    detach(&mut process, None);
    process
        .spawn()
        .map_err(|source| crate::state_io("start", program, source))
}

/// .what = the child calls setsid before it runs (its own session and process group, no controlling terminal),
/// and gets the readiness pipe's read end as descriptor 3
/// .why = the contract runs the session "detached in its own session": no terminal's Ctrl-C or hangup reaches
/// it, and closing signals exactly its group
#[allow(unsafe_code)]
fn detach(process: &mut Command, ready: Option<&OwnedFd>) {
    let ready = ready.map(AsRawFd::as_raw_fd);
    // SAFETY: setsid, dup2 and fcntl are async-signal-safe and touch no memory of the parent; they are the only
    // calls made between fork and exec
    unsafe {
        process.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if let Some(fd) = ready {
                if fd == READY_FD {
                    // already in place: only its close-on-exec flag must go
                    let flags = nix::fcntl::FdFlag::empty();
                    nix::fcntl::fcntl(
                        std::os::fd::BorrowedFd::borrow_raw(fd),
                        nix::fcntl::FcntlArg::F_SETFD(flags),
                    )
                    .map_err(std::io::Error::from)?;
                } else if nix::libc::dup2(fd, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_command_is_the_contracts() {
        let target = SessionTarget {
            instance_id: "i-0abc".into(),
            host: "db.cluster-x.us-east-1.rds.amazonaws.com".into(),
            port: 5432,
            local_port: 7775,
            region: Some("us-east-1".into()),
            profile: Some("dev".into()),
        };
        let command = session_command(Path::new("aws"), &target);
        let words: Vec<String> = command
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            words,
            vec![
                "aws",
                "ssm",
                "start-session",
                "--target",
                "i-0abc",
                "--document-name",
                "AWS-StartPortForwardingSessionToRemoteHost",
                "--parameters",
                r#"{"host":["db.cluster-x.us-east-1.rds.amazonaws.com"],"portNumber":["5432"],"localPortNumber":["7775"]}"#,
                "--region",
                "us-east-1",
                "--profile",
                "dev",
            ]
        );
    }

    #[test]
    fn a_missing_program_is_not_found() {
        assert_eq!(
            find_program(&OsString::from("declastruct-no-such-program")),
            None
        );
        assert!(find_program(&OsString::from("sh")).is_some());
    }

    #[test]
    fn the_process_is_marked_detached_and_gets_the_pipe_as_descriptor_3() {
        let folder = tempfile::tempdir().expect("tempdir");
        let id = crate::TunnelId::compute("i-1", "h", 1, 2);
        let files = TunnelFiles::new(folder.path(), id.clone());
        let command: Vec<OsString> = vec![
            "sh".into(),
            "-c".into(),
            "echo \"$DECLASTRUCT_TUNNEL\"; read -r answer <&3; echo \"got $answer\"".into(),
        ];
        let mut started = start_tunnel_process(&command, &files, true, &[]).expect("started");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(started.child.id()).expect("pid"));
        assert_eq!(nix::unistd::getsid(Some(pid)).expect("session"), pid);
        started.confirm_ready();
        let status = started.child.wait().expect("wait");
        assert!(status.success());
        let log = std::fs::read_to_string(files.log_path()).expect("log");
        assert_eq!(
            log,
            format!("{}\ngot R\n", folder.path().join(id.as_str()).display())
        );
    }
}
