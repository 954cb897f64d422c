//! .what = reading a file the user names (a manifest, a saved plan, a variables file) with a limit that fits what
//! it holds
//! .why = `-f /dev/zero`, or a saved plan that is a 2 GB sparse file, is refused at once with the file and the limit
//! named, never read until memory runs out; the state folder's own files are read by `declastruct_tunnel`'s
//! `read_bounded` and `read_tail`, which also refuse links and devices (a file the user names may be either:
//! `-f <(envsubst < m.yml)` is a pipe, and a manifest may be a link into a shared folder)

use std::io::Read;
use std::path::Path;

/// the largest manifest read: a manifest of 10,000 resources is about 2 MiB
pub const MANIFEST_LIMIT: u64 = 8 * 1024 * 1024;
/// the largest saved plan read: a plan of 10,000 changes is about 20 MiB
pub const SAVED_PLAN_LIMIT: u64 = 64 * 1024 * 1024;
/// the largest `--var-file` read: `NAME=VALUE` lines
pub const VAR_FILE_LIMIT: u64 = 1024 * 1024;

/// .what = why a file the user named could not be read
/// .why = callers turn it into their own diagnostic (a manifest's, a saved plan's), each naming the file
#[derive(Debug, thiserror::Error)]
pub enum InputFileError {
    /// opening or reading failed
    #[error("{0}")]
    Unreadable(#[source] std::io::Error),
    /// more than the limit; `size` is known for a regular file, not for a pipe or a device
    #[error("it is larger than {}{}", size_in_words(*limit), size.map(|size| format!(" ({})", size_in_words(size))).unwrap_or_default())]
    TooLarge {
        /// the limit, in bytes
        limit: u64,
        /// the file's size, when the system tells it without reading
        size: Option<u64>,
    },
}

impl InputFileError {
    /// .what = whether the file does not exist
    /// .why = a missing manifest has its own help (create one, or pass `-f`)
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Unreadable(error) if error.kind() == std::io::ErrorKind::NotFound)
    }
}

/// .what = the whole content of `path`, if it holds at most `limit` bytes
/// .why = the one bounded reader of files the user names: a regular file larger than `limit` is refused from its
/// size alone (a 2 GB sparse file costs nothing), anything else (a pipe, a device such as /dev/zero) is read up to
/// `limit` bytes and refused if there is more
pub fn read_input_file(path: &Path, limit: u64) -> Result<Vec<u8>, InputFileError> {
    let file = std::fs::File::open(path).map_err(InputFileError::Unreadable)?;
    let metadata = file.metadata().map_err(InputFileError::Unreadable)?;
    if metadata.is_dir() {
        return Err(InputFileError::Unreadable(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a folder",
        )));
    }
    if metadata.is_file() && metadata.len() > limit {
        return Err(InputFileError::TooLarge {
            limit,
            size: Some(metadata.len()),
        });
    }
    let expected = if metadata.is_file() {
        metadata.len()
    } else {
        0
    };
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(InputFileError::Unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(InputFileError::TooLarge { limit, size: None });
    }
    Ok(bytes)
}

/// `8 MiB`, `64 MiB`, `1 MiB`, `2.0 GiB`, `512 KiB`, `12 bytes`
fn size_in_words(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    #[allow(clippy::cast_precision_loss)]
    match bytes {
        bytes if bytes >= GIB => format!("{:.1} GiB", bytes as f64 / GIB as f64),
        bytes if bytes >= MIB && bytes % MIB == 0 => format!("{} MiB", bytes / MIB),
        bytes if bytes >= MIB => format!("{:.1} MiB", bytes as f64 / MIB as f64),
        bytes if bytes >= KIB => format!("{} KiB", bytes / KIB),
        bytes => format!("{bytes} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_sparse_file_is_refused_from_its_size() {
        let folder = tempfile::tempdir().expect("tempdir");
        let sparse = folder.path().join("plan.json");
        let file = std::fs::File::create(&sparse).expect("create");
        file.set_len(2 * 1024 * 1024 * 1024).expect("sparse");
        let refused = read_input_file(&sparse, SAVED_PLAN_LIMIT).expect_err("too large");
        assert_eq!(
            refused.to_string(),
            "it is larger than 64 MiB (2.0 GiB)",
            "{refused:?}"
        );
    }

    #[test]
    fn a_device_is_read_up_to_its_limit_and_refused() {
        let refused = read_input_file(Path::new("/dev/zero"), 1024).expect_err("too large");
        assert_eq!(refused.to_string(), "it is larger than 1 KiB");
    }

    #[test]
    fn a_file_within_the_limit_is_read_whole() {
        let folder = tempfile::tempdir().expect("tempdir");
        let small = folder.path().join("m.yml");
        std::fs::write(&small, "resources: []\n").expect("write");
        assert_eq!(
            read_input_file(&small, 14).expect("read"),
            b"resources: []\n"
        );
        assert!(read_input_file(&small, 13).is_err(), "one byte over");
        assert!(
            read_input_file(&folder.path().join("missing"), 10)
                .expect_err("missing")
                .is_not_found()
        );
    }
}
