use miette::Diagnostic;
use thiserror::Error;

/// .what = everything the tunnel machinery can fail with: its state folder, its lock, its processes, the platform
/// .why = the AWS crate and the command line wrap it (`AwsError::Tunnel`), and each variant says what to do
#[derive(Debug, Error, Diagnostic)]
pub enum TunnelError {
    /// another command held the tunnel's lock for longer than any of its own waits
    #[error(
        "another declastruct command has held this tunnel's lock ({path}) for more than {seconds} s"
    )]
    #[diagnostic(
        code(declastruct::tunnel::busy),
        help(
            "find that command (`ps -ef | grep declastruct`) and let it finish or stop it, then run this one again"
        )
    )]
    TunnelBusy {
        /// the lock file
        path: String,
        /// how long was waited
        seconds: u64,
    },

    /// the tunnel's process did not go away
    #[error("the tunnel on local port {port} (pid {pid}) did not stop")]
    #[diagnostic(
        code(declastruct::tunnel::close_failed),
        help("look at the process with `ps -o pid,pgid,cmd -g {pid}`; run the command again")
    )]
    TunnelCloseFailed {
        /// the local port
        port: u16,
        /// the tunnel's process
        pid: u32,
    },

    /// the disk that holds the state folder is full
    #[error("cannot write {path}: the disk is full (ENOSPC)")]
    #[diagnostic(
        code(declastruct::state::disk_full),
        help(
            "free some space on the disk that holds it (`df -h {path}`), or point DECLASTRUCT_HOME at a folder on another disk; nothing was left half-written"
        )
    )]
    DiskFull {
        /// the file that could not be written
        path: String,
    },

    /// a state folder another user owns or can write to
    #[error("the state folder {path} {problem}")]
    #[diagnostic(
        code(declastruct::state::not_private),
        help(
            "declastruct keeps tunnel records there and starts processes from them: it must be a folder of yours that nobody else can write, as ssh requires of ~/.ssh. Fix it with `chmod go-w {path}` (or `chown` it), or point DECLASTRUCT_HOME at a private folder"
        )
    )]
    StateNotPrivate {
        /// the folder
        path: String,
        /// what is wrong with it
        problem: String,
    },

    /// reading or writing the tunnel files failed
    #[error("cannot {action} {path}: {source}")]
    #[diagnostic(
        code(declastruct::tunnel::state_io),
        help(
            "check that DECLASTRUCT_HOME points at a folder you own and that the disk is not full"
        )
    )]
    StateIo {
        /// what was being done
        action: &'static str,
        /// the file or folder
        path: String,
        /// the system's error
        #[source]
        source: std::io::Error,
    },

    /// the tunnels folder exists but cannot be read
    #[error("cannot read the tunnels folder {path}: {source}")]
    #[diagnostic(
        code(declastruct::tunnel::state_unreadable),
        help(
            "declastruct cannot tell which tunnels are open without it: give your user read and search access to it (`ls -ld {path}`), or point DECLASTRUCT_HOME at the state folder you use"
        )
    )]
    StateUnreadable {
        /// the folder
        path: String,
        /// the system's error
        #[source]
        source: std::io::Error,
    },

    /// the user interrupted a wait; what it had started was stopped
    #[error("interrupted while {waiting_for}")]
    #[diagnostic(
        code(declastruct::interrupted),
        help("nothing of it is left running; run the command again to finish it")
    )]
    Interrupted {
        /// what was being waited for
        waiting_for: String,
    },

    /// the tunnel machinery does not run on this operating system
    #[error(
        "declastruct's tunnels are not supported on {os}: finding, watching and stopping a tunnel's processes is implemented for Linux only"
    )]
    #[diagnostic(
        code(declastruct::platform::unsupported),
        help(
            "run declastruct on Linux (a Linux machine, WSL 2, or a Linux container with the AWS credentials you use); `validate`, `plan --json` over no tunnel, `schema` and `show` work everywhere"
        )
    )]
    UnsupportedPlatform {
        /// the operating system, as Rust names it
        os: &'static str,
    },

    /// a record could not be encoded: a bug
    #[error("unexpected: {0}")]
    #[diagnostic(
        code(declastruct::bug),
        help("this is a bug in declastruct; please report it with the command and manifest")
    )]
    Unexpected(String),
}
