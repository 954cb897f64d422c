use std::fs;
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::TunnelError;
use crate::{
    META_LIMIT, PID_LIMIT, TunnelHolder, TunnelId, ensure_private_folder, open_for_appending,
    read_bounded, read_tail, state_io, write_replacing,
};

/// .what = what `{id}.meta` records about an open tunnel; `D` is the declared tunnel (the AWS crate's
/// `DeclaredAwsVpcTunnel`), kept as JSON by readers that do not look into it (the supervisor)
/// .why = `status`, the pid-reuse guard and `close` need to know what was started, when, and how
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelRecord<D = serde_json::Value> {
    /// the declared tunnel
    pub tunnel: D,
    /// the bastion's resolved instance id
    pub instance_id: String,
    /// the cluster's resolved writer endpoint
    pub remote_host: String,
    /// the cluster's port
    pub remote_port: u16,
    /// the local port
    pub local_port: u16,
    /// the tunnel's process
    pub pid: u32,
    /// the tunnel's process group, signalled as a whole on close
    pub process_group: u32,
    /// the process's start time in clock ticks since boot: the pid-reuse guard
    pub process_start_time: Option<u64>,
    /// the command line that was started
    pub command: Vec<String>,
    /// when the tunnel was opened, RFC 3339 UTC
    pub opened_at: String,
    /// the region passed to the session command
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// the database engine, for the health probe
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// false from the moment the process is started until the session is ready and the database answers
    /// .why = a tunnel is recorded as soon as its process exists, so a killed `apply` leaves nothing unrecorded
    #[serde(default = "ready_by_default")]
    pub ready: bool,
    /// the absolute path of the manifest that opened the tunnel, when a manifest did
    /// .why = a tunnel its manifest no longer declares is planned as a DESTROY by that manifest, and by no other
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// how the session is carried: `plugin` or `native`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// the bastion's `idleStop` in seconds, when it has one: the last tunnel through it to close on this machine
    /// starts its idle timer
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bastion_idle_stop: Option<u64>,
    /// why the tunnel closed by itself, when it did (idleness): the record stays as a tombstone that says so
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<ClosedRecord>,
    /// who holds the tunnel open: manifest environments, running commands, SDK programs; `None` in a record
    /// written before holders were kept
    /// .why = the tunnel closes when its last holder lets go, never under another holder's feet
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holders: Option<Vec<TunnelHolder>>,
}

impl<D> TunnelRecord<D> {
    /// .what = the tunnel's holders, dead ones included; a record from before holders were kept is held by its
    /// opener
    /// .why = one reading of the record for plans, `status`, the supervisor and closing
    pub fn holders(&self) -> Vec<TunnelHolder> {
        match &self.holders {
            Some(holders) => holders.clone(),
            None => vec![TunnelHolder::Legacy {
                manifest: self.manifest.clone(),
            }],
        }
    }
}

fn ready_by_default() -> bool {
    true
}

/// .what = why and when a tunnel closed by itself
/// .why = `status --all` shows a tunnel closed for idleness as such, and the next plan says it reopens it
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedRecord {
    /// why, e.g. "closed after 300 s without a client connection (idleClose)"
    pub reason: String,
    /// when, RFC 3339 UTC
    pub at: String,
}

/// .what = a tunnel file that exists but cannot be read as what it should hold
/// .why = a damaged record is reported for what it is, and never taken for "no tunnel"
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDamage {
    /// the file
    pub path: PathBuf,
    /// what is wrong with it
    pub problem: String,
}

impl std::fmt::Display for RecordDamage {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.path.display(), self.problem)
    }
}

/// .what = one tunnel found in the tunnels folder: its files, and its record or what is wrong with it
/// .why = listings show damaged records too
pub type RecordedTunnel<D = serde_json::Value> =
    (TunnelFiles, Result<TunnelRecord<D>, RecordDamage>);

/// .what = the files of one tunnel in `$DECLASTRUCT_HOME/tunnels/`: `{hash}.pid`, `.meta`, `.log`, `.lock`
/// .why = one place that knows their names and their permissions (folder 0700, files 0600)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelFiles {
    /// the tunnels folder
    pub dir: PathBuf,
    /// the tunnel's identity
    pub id: TunnelId,
}

impl TunnelFiles {
    /// .what = every tunnel with a file in `dir`, by hash, with its record or what is wrong with it
    /// .why = `status --all`, `logs` and "port in use" look at every tunnel, damaged ones included; a folder that
    /// cannot be read is an error naming it, never "no tunnels"
    pub fn recorded_in<D: DeserializeOwned>(
        dir: &Path,
    ) -> Result<Vec<RecordedTunnel<D>>, TunnelError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(unreadable_folder(dir, source)),
        };
        let mut hashes = std::collections::BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| unreadable_folder(dir, source))?;
            let path = entry.path();
            let known = matches!(
                path.extension().and_then(|extension| extension.to_str()),
                Some("pid" | "meta" | "log")
            );
            // a name that is not an identity is no tunnel of ours
            if let (true, Some(id)) = (
                known,
                path.file_stem()
                    .and_then(|stem| stem.to_str())
                    .and_then(TunnelId::parse),
            ) {
                hashes.insert(id);
            }
        }
        Ok(hashes
            .into_iter()
            .map(|id| {
                let files = TunnelFiles::new(dir, id);
                let meta = files.read_meta().and_then(|meta| {
                    meta.ok_or_else(|| RecordDamage {
                        path: files.meta_path(),
                        problem: "is missing".into(),
                    })
                });
                (files, meta)
            })
            .collect())
    }

    /// .what = fails when the tunnels folder exists but cannot be read
    /// .why = a folder the user cannot read must never pass for "no tunnels" and "No changes"
    pub fn check_dir_readable(dir: &Path) -> Result<(), TunnelError> {
        match fs::read_dir(dir) {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(unreadable_folder(dir, source)),
        }
    }

    /// .what = the files of the tunnel `id` in `dir`
    /// .why = names them without touching the disk
    pub fn new(dir: impl Into<PathBuf>, id: TunnelId) -> Self {
        Self {
            dir: dir.into(),
            id,
        }
    }

    fn path(&self, extension: &str) -> PathBuf {
        self.dir.join(format!("{}.{extension}", self.id))
    }

    /// `{hash}.pid`
    pub fn pid_path(&self) -> PathBuf {
        self.path("pid")
    }

    /// `{hash}.meta`
    pub fn meta_path(&self) -> PathBuf {
        self.path("meta")
    }

    /// `{hash}.log`
    pub fn log_path(&self) -> PathBuf {
        self.path("log")
    }

    /// `{hash}.lock`
    pub fn lock_path(&self) -> PathBuf {
        self.path("lock")
    }

    /// `{hash}.beat`: the supervisor's heartbeat, whose modification time it renews every second
    pub fn beat_path(&self) -> PathBuf {
        self.path("beat")
    }

    /// .what = creates the tunnels folder, private to its owner, or checks the one there is
    /// .why = the log may hold session ids and endpoints, and records name processes: nobody else may read or
    /// plant them
    pub fn ensure_dir(&self) -> Result<(), TunnelError> {
        ensure_private_folder(&self.dir)
    }

    /// .what = the pid recorded in `{hash}.pid`: none when the file is missing, damage when it holds no pid
    /// .why = the pid file is a clue among others; a garbage one is reported, never trusted
    pub fn read_pid(&self) -> Result<Option<u32>, RecordDamage> {
        let Some(text) = read_if_present(&self.pid_path(), PID_LIMIT)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&text);
        match text.trim().parse::<u32>() {
            Ok(pid) if pid > 1 => Ok(Some(pid)),
            _ => Err(RecordDamage {
                path: self.pid_path(),
                problem: format!("does not hold a pid ({:?})", shorten(text.trim())),
            }),
        }
    }

    /// .what = the record in `{hash}.meta`: none when the file is missing, damage when it cannot be read as one
    /// .why = the record feeds `status`; a damaged one is reported, never taken for "no tunnel"
    pub fn read_meta<D: DeserializeOwned>(&self) -> Result<Option<TunnelRecord<D>>, RecordDamage> {
        let Some(bytes) = read_if_present(&self.meta_path(), META_LIMIT)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| RecordDamage {
                path: self.meta_path(),
                problem: format!("is not a tunnel record ({error})"),
            })
    }

    /// .what = writes `{hash}.meta` then `{hash}.pid`, each atomically and 0600
    /// .why = a reader never sees a pid without its record
    pub fn write_state<D: Serialize>(&self, meta: &TunnelRecord<D>) -> Result<(), TunnelError> {
        let record = serde_json::to_vec_pretty(meta)
            .map_err(|error| TunnelError::Unexpected(error.to_string()))?;
        write_replacing(&self.meta_path(), &record)?;
        write_replacing(&self.pid_path(), format!("{}\n", meta.pid).as_bytes())
    }

    /// .what = rewrites `{hash}.meta` atomically, leaving `{hash}.pid` as it is
    /// .why = holds are added and released while the tunnel runs; its pid does not change
    pub fn write_meta<D: Serialize>(&self, meta: &TunnelRecord<D>) -> Result<(), TunnelError> {
        let record = serde_json::to_vec_pretty(meta)
            .map_err(|error| TunnelError::Unexpected(error.to_string()))?;
        write_replacing(&self.meta_path(), &record)
    }

    /// .what = opens `{hash}.log` for appending, creating it 0600
    /// .why = the session's output goes there, never into a pipe to declastruct
    pub fn open_log(&self) -> Result<fs::File, TunnelError> {
        open_for_appending(&self.log_path())
            .map_err(|source| state_io("open", &self.log_path(), source))
    }

    /// .what = the log's last bytes (at most `LOG_READ_LIMIT`), as text with any invalid UTF-8 replaced
    /// .why = the session's output is read as bytes: a byte that is not UTF-8 must not hide the plugin's lines, and
    /// a huge or replaced log must not be read whole
    pub fn read_log(&self) -> String {
        String::from_utf8_lossy(&read_tail(&self.log_path(), LOG_READ_LIMIT)).into_owned()
    }

    /// .what = removes the pid, meta, log and heartbeat files; missing ones are fine
    /// .why = a closed tunnel leaves nothing behind; its lock file goes with `TunnelLock::remove`, by its
    /// holder, since removing a lock file that someone holds lets a second opener in
    pub fn remove_all(&self) -> Result<(), TunnelError> {
        for path in [
            self.pid_path(),
            self.meta_path(),
            self.log_path(),
            self.beat_path(),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(state_io("remove", &path, source)),
            }
        }
        Ok(())
    }

    /// .what = the last `lines` lines of the log
    /// .why = a failed open reports what the session said
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.read_log();
        let kept: Vec<String> = without_interrupt_tracebacks(&text)
            .into_iter()
            .filter(|line| !line.trim().is_empty())
            .map(|line| shorten_to(line, LOG_LINE_SHOWN))
            .collect();
        kept[kept.len().saturating_sub(lines)..].join("\n")
    }
}

/// .what = the lines of `text` without the Python tracebacks that end in `KeyboardInterrupt` (and the "During
/// handling of the above exception" lines that chain them)
/// .why = the AWS CLI prints one when declastruct stops it after a failed open (SIGINT, as Ctrl-C): it is our own
/// stop, not the cause, and it would push the plugin's words out of the tail a failure shows
fn without_interrupt_tracebacks(text: &str) -> Vec<&str> {
    let mut kept = Vec::new();
    let mut traceback: Option<Vec<&str>> = None;
    for line in text.lines() {
        if line.starts_with("Traceback (most recent call last):") {
            traceback = Some(vec![line]);
            continue;
        }
        if line.starts_with("During handling of the above exception") {
            continue;
        }
        match traceback.as_mut() {
            // inside a traceback: its frames are indented; the first line that is not ends it
            Some(block) if line.starts_with(' ') || line.is_empty() => block.push(line),
            Some(block) => {
                if !line.starts_with("KeyboardInterrupt") {
                    kept.append(block);
                    kept.push(line);
                }
                traceback = None;
            }
            None => kept.push(line),
        }
    }
    // a traceback the log ends in (cut off mid-way) is kept: it is not known to be ours
    if let Some(mut block) = traceback {
        kept.append(&mut block);
    }
    kept
}

fn read_if_present(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, RecordDamage> {
    read_bounded(path, limit).map_err(|error| RecordDamage {
        path: path.to_path_buf(),
        problem: error.to_string(),
    })
}

/// how much of a log's tail is read: a little more than the log may hold
pub const LOG_READ_LIMIT: u64 = 1024 * 1024 + 64 * 1024;
/// how much of one log line a message shows
const LOG_LINE_SHOWN: usize = 300;

fn shorten_to(line: &str, most: usize) -> String {
    if line.chars().count() <= most {
        return line.to_string();
    }
    let mut short: String = line.chars().take(most).collect();
    short.push('…');
    short
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

fn unreadable_folder(dir: &Path, source: std::io::Error) -> TunnelError {
    TunnelError::StateUnreadable {
        path: dir.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// the AWS CLI's traceback when declastruct stops it is not what a failure shows; other tracebacks are
    #[test]
    fn an_interrupted_clis_traceback_is_left_out_of_the_tail() {
        let log = "Starting session with SessionId: s\nConnection to destination port failed, check SSM Agent logs.\nTraceback (most recent call last):\n  File \"x.py\", line 1, in close\n    sock.close()\nKeyboardInterrupt: \nTraceback (most recent call last):\n  File \"y.py\", line 2\nValueError: bad\n";
        assert_eq!(
            without_interrupt_tracebacks(log),
            vec![
                "Starting session with SessionId: s",
                "Connection to destination port failed, check SSM Agent logs.",
                "Traceback (most recent call last):",
                "  File \"y.py\", line 2",
                "ValueError: bad",
            ]
        );
    }

    fn meta() -> TunnelRecord {
        TunnelRecord {
            tunnel: serde_json::json!({"from": {"host": "localhost", "port": 7775}}),
            instance_id: "i-1".into(),
            remote_host: "c.example".into(),
            remote_port: 5432,
            local_port: 7775,
            pid: 42,
            process_group: 42,
            process_start_time: Some(7),
            command: vec!["aws".into()],
            opened_at: "2026-11-27T03:00:00Z".into(),
            region: None,
            engine: None,
            ready: true,
            manifest: None,
            transport: None,
            bastion_idle_stop: None,
            closed: None,
            holders: Some(Vec::new()),
        }
    }

    fn id() -> TunnelId {
        TunnelId::compute("i-1", "c.example", 5432, 7775)
    }

    #[test]
    fn state_round_trips_with_private_permissions() {
        let folder = tempfile::tempdir().expect("tempdir");
        let files = TunnelFiles::new(folder.path().join("tunnels"), id());
        files.ensure_dir().expect("dir");
        files.write_state(&meta()).expect("write");
        assert_eq!(files.read_pid(), Ok(Some(42)));
        assert_eq!(files.read_meta(), Ok(Some(meta())));
        std::fs::write(folder.path().join("tunnels/notes.meta"), "{}").expect("a stranger");
        assert_eq!(
            TunnelFiles::recorded_in::<serde_json::Value>(&files.dir)
                .expect("listed")
                .len(),
            1,
            "a name that is no identity is no tunnel"
        );
        std::fs::remove_file(folder.path().join("tunnels/notes.meta")).expect("remove");
        let mode =
            |path: PathBuf| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(files.dir.clone()), 0o700);
        assert_eq!(mode(files.pid_path()), 0o600);
        assert_eq!(mode(files.meta_path()), 0o600);
        files.remove_all().expect("remove");
        assert_eq!(files.read_pid(), Ok(None));
        assert_eq!(fs::read_dir(&files.dir).expect("list").count(), 0);
    }

    #[test]
    fn damaged_records_are_reported_not_ignored() {
        let folder = tempfile::tempdir().expect("tempdir");
        let files = TunnelFiles::new(folder.path(), id());
        for garbage in ["", "garbage", "-5", "99999999999999999999", "1"] {
            fs::write(files.pid_path(), garbage).expect("write");
            assert!(files.read_pid().is_err(), "{garbage:?} is not a pid");
        }
        for garbage in ["", "{", "[1, 2]", "{\"pid\": 42}"] {
            fs::write(files.meta_path(), garbage).expect("write");
            let damage = files.read_meta::<serde_json::Value>().expect_err("damaged");
            assert!(
                damage.problem.contains("is not a tunnel record"),
                "{damage}"
            );
        }
        let listed =
            TunnelFiles::recorded_in::<serde_json::Value>(folder.path()).expect("readable");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].1.is_err());
    }
}
