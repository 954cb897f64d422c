use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

use super::TunnelFiles;
use crate::error::AwsError;

/// .what = an exclusive advisory lock on one tunnel, released when dropped
/// .why = concurrent `apply` runs of one manifest must leave exactly one tunnel process
#[derive(Debug)]
pub struct TunnelLock {
    lock: Flock<File>,
    path: PathBuf,
}

impl TunnelLock {
    /// .what = removes the lock file, then releases the lock
    /// .why = a closed tunnel leaves no file behind; waiters notice the file is gone and lock a fresh one
    pub fn remove(self) -> Result<(), AwsError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AwsError::StateIo {
                    action: "remove",
                    path: self.path.display().to_string(),
                    source,
                });
            }
        }
        drop(self.lock);
        Ok(())
    }
}

/// .what = takes the tunnel's lock (flock on `{hash}.lock`), waiting for another holder to finish
/// .why = open and close of one tunnel never interleave. After locking, the path must still name the locked
/// file: a holder that removed it (closing the tunnel) makes us lock the new one instead
pub async fn lock_tunnel(files: &TunnelFiles) -> Result<TunnelLock, AwsError> {
    let path = files.lock_path();
    tokio::task::spawn_blocking(move || {
        let io_error = |action: &'static str, source: std::io::Error| AwsError::StateIo {
            action,
            path: path.display().to_string(),
            source,
        };
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| io_error("open", source))?;
            let lock = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| io_error("lock", std::io::Error::from(errno)))?;
            let locked = lock
                .metadata()
                .map_err(|source| io_error("inspect", source))?;
            match std::fs::metadata(&path) {
                Ok(current) if current.ino() == locked.ino() && current.dev() == locked.dev() => {
                    return Ok(TunnelLock { lock, path });
                }
                // the previous holder removed or replaced the file: lock the one that is there now
                _ => continue,
            }
        }
    })
    .await
    .map_err(|error| AwsError::Unexpected(format!("the lock task failed: {error}")))?
}

/// .what = takes the tunnel's lock only when nobody holds it; never waits
/// .why = a supervisor whose `apply` died cleans up its own record only when no other command is at work on it
pub fn try_lock_tunnel(files: &TunnelFiles) -> Option<TunnelLock> {
    let path = files.lock_path();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()?;
    let locked = lock.metadata().ok()?;
    let current = std::fs::metadata(&path).ok()?;
    (current.ino() == locked.ino() && current.dev() == locked.dev())
        .then_some(TunnelLock { lock, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let folder = tempfile::tempdir().expect("tempdir");
        let files = TunnelFiles::new(folder.path(), "abcd");
        let first = lock_tunnel(&files).await.expect("first lock");
        let second = {
            let files = files.clone();
            tokio::spawn(async move { lock_tunnel(&files).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !second.is_finished(),
            "the second waits while the first holds the lock"
        );
        first.remove().expect("remove");
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the second gets the lock")
            .expect("task")
            .expect("lock");
        assert!(files.lock_path().exists(), "the second locked a fresh file");
        drop(second);
    }
}
