//! .what = closing a tunnel: every process of ours that serves it, found from /proc, then its files
//! .why = a pid file can be garbage, a record deleted, a supervisor killed while its session lives on: the
//! tunnel's processes carry its marker, so none of them survives a close, and nothing else is touched

use std::time::Duration;

use crate::domain_operations::vpc_tunnel::utils::{
    TunnelFiles, TunnelProcesses, stop_tunnel_process,
};
use crate::error::AwsError;

/// how long each signal of a close may take before the next, stronger one
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// .what = closes the tunnel `hash` of the context's tunnels folder under its lock, whatever declares it
/// .why = a tunnel its manifest no longer declares (DESTROY), or the old identity of a replaced one, is closed
/// by its identity alone: nothing about it needs to resolve in AWS any more
pub async fn close_tunnel_identity(
    hash: &str,
    local_port: u16,
    context: &crate::ContextAwsApi,
) -> Result<(), AwsError> {
    let files = TunnelFiles::new(context.checked_tunnels_dir()?, hash);
    files.ensure_dir()?;
    let lock = crate::domain_operations::vpc_tunnel::utils::lock_tunnel(&files, context).await?;
    close_vpc_tunnel(&files, local_port).await?;
    lock.remove()
}

/// .what = stops every live process of the tunnel (SIGINT, SIGTERM, SIGKILL to their groups, each proven ours)
/// and removes its files; fails, naming the port and the pid, when one survives
/// .why = after a CLOSED apply exits 0, no process of ours serves the port, now or later
pub async fn close_vpc_tunnel(files: &TunnelFiles, local_port: u16) -> Result<(), AwsError> {
    TunnelFiles::check_dir_readable(&files.dir)?;
    let processes = TunnelProcesses::scan(&files.dir).of(&files.hash).to_vec();
    if !processes.is_empty() {
        tracing::info!(
            hash = %files.hash,
            pids = ?processes.iter().map(|process| process.pid).collect::<Vec<_>>(),
            "closing the tunnel"
        );
        stop_tunnel_process(&processes, Some(local_port), CLOSE_GRACE).await?;
    }
    files.remove_all()
}
