use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use tokio_util::sync::CancellationToken;

use crate::TunnelFiles;
use crate::error::TunnelError;

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
    pub fn remove(self) -> Result<(), TunnelError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TunnelError::StateIo {
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

/// how long a command waits for another one working on the same tunnel: longer than any holder's own waits
/// (a bastion's start, then the SSM agent's connection), so a live holder is waited for and a stuck one is named
pub const LOCK_WAIT: Duration = Duration::from_secs(600);

/// how often a waiter looks whether the lock is free
const LOCK_POLL: Duration = Duration::from_millis(50);

/// .what = takes the tunnel's lock (flock on `{hash}.lock`), waiting for another holder to finish, at most
/// `LOCK_WAIT`, and giving up when the context is cancelled (Ctrl-C, SIGTERM)
/// .why = open and close of one tunnel never interleave, and no wait is without a deadline. After locking, the
/// path must still name the locked file: a holder that removed it (closing the tunnel) makes us lock the new one
pub async fn lock_tunnel(
    files: &TunnelFiles,
    cancel: &CancellationToken,
) -> Result<TunnelLock, TunnelError> {
    let path = files.lock_path();
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        if let Some(lock) = attempt(&path)? {
            return Ok(lock);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TunnelError::TunnelBusy {
                path: path.display().to_string(),
                seconds: LOCK_WAIT.as_secs(),
            });
        }
        tokio::select! {
            () = cancel.cancelled() => {
                return Err(TunnelError::Interrupted {
                    waiting_for: format!(
                        "waiting for another declastruct command to finish with the tunnel locked by {}",
                        path.display()
                    ),
                });
            }
            () = tokio::time::sleep(LOCK_POLL) => {}
        }
    }
}

/// .what = takes the tunnel's lock only when nobody holds it; never waits
/// .why = a supervisor whose `apply` died cleans up its own record only when no other command is at work on it
pub fn try_lock_tunnel(files: &TunnelFiles) -> Option<TunnelLock> {
    attempt(&files.lock_path()).ok().flatten()
}

/// .what = one try at the lock: `Some` when taken on the file the path names now, `None` when another holds it
/// (or removed the file meanwhile, so that the next try locks the new one)
/// .why = the one place that opens, locks and checks the lock file, for the waiting and the non-waiting taker
fn attempt(path: &Path) -> Result<Option<TunnelLock>, TunnelError> {
    let io_error =
        |action: &'static str, source: std::io::Error| crate::state_io(action, path, source);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| io_error("open", source))?;
    let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
        Err((_, errno)) => return Err(io_error("lock", std::io::Error::from(errno))),
    };
    let locked = lock
        .metadata()
        .map_err(|source| io_error("inspect", source))?;
    Ok(match std::fs::metadata(path) {
        Ok(current) if current.ino() == locked.ino() && current.dev() == locked.dev() => {
            Some(TunnelLock {
                lock,
                path: path.to_path_buf(),
            })
        }
        // the previous holder removed or replaced the file: the next try locks the one that is there now
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_for_the_first() {
        let folder = tempfile::tempdir().expect("tempdir");
        let files = TunnelFiles::new(folder.path(), crate::TunnelId::compute("i-1", "h", 1, 2));
        let cancel = CancellationToken::new();
        let first = lock_tunnel(&files, &cancel).await.expect("first lock");
        let second = {
            let files = files.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { lock_tunnel(&files, &cancel).await })
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

    /// a waiter gives up when its command is interrupted, saying what it waited for
    #[tokio::test]
    async fn a_waiter_gives_up_when_cancelled() {
        let folder = tempfile::tempdir().expect("tempdir");
        let files = TunnelFiles::new(folder.path(), crate::TunnelId::compute("i-1", "h", 1, 2));
        let cancel = CancellationToken::new();
        let _first = lock_tunnel(&files, &cancel).await.expect("first lock");
        let waiter = {
            let files = files.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { lock_tunnel(&files, &cancel).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
        let outcome = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter ends")
            .expect("task");
        assert!(
            matches!(&outcome, Err(TunnelError::Interrupted { waiting_for }) if waiting_for.contains(".lock")),
            "{outcome:?}"
        );
    }
}
