//! .what = the safe ways to touch the state folder: folders owned by the user and closed to others, files opened
//! without following symbolic links, reads bounded by what each file may hold, writes replaced by rename
//! .why = a state folder another local user can write to, a symlink planted at `{hash}.log`, or a `.meta` that is
//! `/dev/zero` must never turn declastruct against its user (truncating a file elsewhere, reading until memory
//! runs out)

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::TunnelError;

/// the most a `.meta` may hold
pub const META_LIMIT: u64 = 64 * 1024;
/// the most a `.pid` may hold
pub const PID_LIMIT: u64 = 1024;

/// .what = opens `path` for reading without following a symbolic link and without blocking on a FIFO
/// .why = a link planted in the state folder is refused (ELOOP), never followed
pub fn open_for_reading(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
}

/// .what = opens (creating it 0600) `path` for appending, without following a symbolic link
/// .why = the tunnel's log: a link planted at its name is refused, so no other file is ever written or cut
pub fn open_for_appending(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// why a bounded read gave nothing
#[derive(Debug)]
pub enum BoundedReadError {
    /// the file cannot be opened or read (a symbolic link is refused here)
    Io(std::io::Error),
    /// not a regular file (a FIFO, a device such as /dev/zero)
    NotRegular,
    /// larger than the limit, in bytes
    TooLarge(u64),
}

impl std::fmt::Display for BoundedReadError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) if error.raw_os_error() == Some(nix::libc::ELOOP) => formatter
                .write_str(
                    "is a symbolic link, which declastruct never follows in its state folder",
                ),
            Self::Io(error) => write!(formatter, "cannot be read ({error})"),
            Self::NotRegular => formatter.write_str("is not a regular file"),
            Self::TooLarge(limit) => write!(
                formatter,
                "is larger than {} KiB, more than it can hold",
                limit / 1024
            ),
        }
    }
}

/// .what = the whole of a regular file of at most `limit` bytes; `Ok(None)` when it does not exist
/// .why = a record that grew (or was replaced by a device) is refused at once, whatever its size
pub fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, BoundedReadError> {
    let file = match open_for_reading(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(BoundedReadError::Io(error)),
    };
    let metadata = file.metadata().map_err(BoundedReadError::Io)?;
    if !metadata.is_file() {
        return Err(BoundedReadError::NotRegular);
    }
    if metadata.len() > limit {
        return Err(BoundedReadError::TooLarge(limit));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(BoundedReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(BoundedReadError::TooLarge(limit));
    }
    Ok(Some(bytes))
}

/// .what = the last `most` bytes of a regular file (from the start of a line when cut), or nothing when it is
/// missing, not a regular file, or a symbolic link
/// .why = logs are read from their tail, whatever their size
pub fn read_tail(path: &Path, most: u64) -> Vec<u8> {
    let Ok(mut file) = open_for_reading(path) else {
        return Vec::new();
    };
    let Ok(metadata) = file.metadata() else {
        return Vec::new();
    };
    if !metadata.is_file() {
        return Vec::new();
    }
    let start = metadata.len().saturating_sub(most);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(most).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    if start > 0 {
        // a cut line is no line: start after the first newline
        let from = bytes
            .iter()
            .position(|byte| *byte == b'\n')
            .map_or(bytes.len(), |newline| newline + 1);
        bytes.drain(..from);
    }
    bytes
}

/// .what = writes `contents` to `path` atomically and 0600: a new temporary file (never following a link, never
/// reusing one), then a rename over `path`; the temporary file is removed on every failure
/// .why = a reader never sees half a record, a full disk leaves no `.tmp` behind, and a link planted at `path` is
/// replaced, never written through
pub fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), TunnelError> {
    let temporary = path.with_extension(format!(
        "{}.tmp{}",
        path.extension()
            .and_then(|extension| extension.to_str())
            .unwrap_or_default(),
        std::process::id()
    ));
    // a leftover of an earlier run of this pid
    let _ = std::fs::remove_file(&temporary);
    let written = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&temporary)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_data()));
    let renamed = written
        .map_err(|source| state_io("write", &temporary, source))
        .and_then(|()| {
            std::fs::rename(&temporary, path).map_err(|source| state_io("write", path, source))
        });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// .what = the error of a failed read or write of the state folder, naming a full disk as such
/// .why = "No space left on device" buried in a long message is missed; the disk is named first
pub fn state_io(action: &'static str, path: &Path, source: std::io::Error) -> TunnelError {
    if source.raw_os_error() == Some(nix::libc::ENOSPC) {
        return TunnelError::DiskFull {
            path: path.display().to_string(),
        };
    }
    TunnelError::StateIo {
        action,
        path: path.display().to_string(),
        source,
    }
}

/// .what = fails unless `folder` (when it exists) is a folder owned by this user and writable by nobody else
/// .why = as ssh does with `~/.ssh`: another local user who can write there could plant a link or a record
pub fn check_private_folder(folder: &Path) -> Result<(), TunnelError> {
    let metadata = match std::fs::metadata(folder) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(state_io("inspect", folder, source)),
    };
    let me = nix::unistd::geteuid().as_raw();
    let problem = if !metadata.is_dir() {
        Some("is not a folder".to_string())
    } else if metadata.uid() != me {
        Some(format!(
            "belongs to another user (uid {}, not {me})",
            metadata.uid()
        ))
    } else if metadata.permissions().mode() & 0o022 != 0 {
        Some(format!(
            "can be written by others (mode {:o})",
            metadata.permissions().mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(TunnelError::StateNotPrivate {
            path: folder.display().to_string(),
            problem,
        }),
    }
}

/// .what = creates `folder` (and its parents) when missing, 0700, then checks it is private
/// .why = a folder declastruct makes is private from its first moment; one it finds is checked, never chmod'ed
/// (that would change a folder a link points at)
pub fn ensure_private_folder(folder: &Path) -> Result<(), TunnelError> {
    if std::fs::symlink_metadata(folder).is_err() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(folder)
            .map_err(|source| state_io("create", folder, source))?;
    }
    check_private_folder(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_never_followed_and_a_device_never_read() {
        let folder = tempfile::tempdir().expect("tempdir");
        let victim = folder.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let link = folder.path().join("t.meta");
        std::os::unix::fs::symlink(&victim, &link).expect("link");
        assert!(matches!(
            read_bounded(&link, META_LIMIT),
            Err(BoundedReadError::Io(_))
        ));
        assert!(open_for_appending(&link).is_err(), "never appended through");
        write_replacing(&link, b"record").expect("replaced");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
        assert_eq!(std::fs::read(&link).expect("record"), b"record");

        let zero = Path::new("/dev/zero");
        assert!(matches!(
            read_bounded(zero, META_LIMIT),
            Err(BoundedReadError::NotRegular)
        ));
        assert!(read_tail(zero, 1024).is_empty());
    }

    #[test]
    fn reads_are_bounded_and_tails_start_at_a_line() {
        let folder = tempfile::tempdir().expect("tempdir");
        let path = folder.path().join("t.log");
        std::fs::write(&path, "one\ntwo\nthree\n").expect("write");
        assert!(matches!(
            read_bounded(&path, 4),
            Err(BoundedReadError::TooLarge(4))
        ));
        assert_eq!(read_tail(&path, 9), b"three\n");
        assert_eq!(read_tail(&path, 100), b"one\ntwo\nthree\n");
    }

    #[test]
    fn a_folder_others_can_write_is_refused_and_never_changed() {
        let folder = tempfile::tempdir().expect("tempdir");
        let open = folder.path().join("open");
        std::fs::create_dir(&open).expect("dir");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let error = ensure_private_folder(&open).expect_err("refused");
        assert!(
            error.to_string().contains("can be written by others"),
            "{error}"
        );
        let mode = std::fs::metadata(&open).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o777, "left as it was");
        let new = folder.path().join("a/b");
        ensure_private_folder(&new).expect("made");
        let mode = std::fs::metadata(&new).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
