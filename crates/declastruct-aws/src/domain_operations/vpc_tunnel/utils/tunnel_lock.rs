use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::{Flock, FlockArg};

use super::TunnelFiles;
use crate::error::AwsError;

/// .what = an exclusive advisory lock on one tunnel, released when dropped
/// .why = concurrent `apply` runs of one manifest must leave exactly one tunnel process
#[derive(Debug)]
pub struct TunnelLock {
    _lock: Flock<File>,
}

/// .what = takes the tunnel's lock (flock on `{hash}.lock`), waiting for another holder to finish
/// .why = open and close of one tunnel never interleave
pub async fn lock_tunnel(files: &TunnelFiles) -> Result<TunnelLock, AwsError> {
    let path = files.lock_path();
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| AwsError::StateIo {
                action: "open",
                path: path.display().to_string(),
                source,
            })?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(|lock| TunnelLock { _lock: lock })
            .map_err(|(_, errno)| AwsError::StateIo {
                action: "lock",
                path: path.display().to_string(),
                source: std::io::Error::from(errno),
            })
    })
    .await
    .map_err(|error| AwsError::Unexpected(format!("the lock task failed: {error}")))?
}
