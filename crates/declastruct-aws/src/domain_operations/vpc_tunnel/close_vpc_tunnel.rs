//! .what = letting go of a tunnel: its holder's hold is released, and the tunnel is closed only when no other
//! holder remains (or when the close is forced): every process of ours that serves it, found from /proc, then
//! its files
//! .why = a pid file can be garbage, a record deleted, a supervisor killed while its session lives on: the
//! tunnel's processes carry its marker, so none of them survives a close, and nothing else is touched; and a
//! tunnel someone still uses is never closed under them

use std::time::Duration;

use crate::error::AwsError;
use declastruct_tunnel::TunnelId;
use declastruct_tunnel::{
    TunnelFiles, TunnelHolder, TunnelProcesses, find_port_holder, lock_tunnel, stop_tunnel_process,
    wait_for_port_release,
};

/// how long each signal of a close may take before the next, stronger one
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// .what = what letting go of a tunnel did
/// .why = a plan said "released; stays open for …" or "closes"; apply reports which happened
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// no holder remained (or the close was forced): the tunnel is closed
    Closed,
    /// the tunnel stays open for these holders
    StillHeld(Vec<TunnelHolder>),
}

/// .what = releases the context's hold on the tunnel `hash` of the context's tunnels folder, under its lock, and
/// closes it when no other live holder remains; with `force`, closes it for every holder
/// .why = a tunnel its manifest no longer declares (DESTROY), the old identity of a moved one, one whose bastion
/// is gone, or one an `exec` opened, is let go of by its identity alone: nothing about it needs to resolve in AWS
pub async fn release_tunnel_identity(
    hash: &TunnelId,
    local_port: u16,
    force: bool,
    context: &crate::ContextAwsApi,
) -> Result<Released, AwsError> {
    let files = TunnelFiles::new(context.checked_tunnels_dir()?, hash.clone());
    files.ensure_dir()?;
    let lock = lock_tunnel(&files, &context.cancel).await?;
    let holder = context.holder();
    let record = files
        .read_meta::<crate::DeclaredAwsVpcTunnel>()
        .ok()
        .flatten();
    let released = release_hold(&files, local_port, (!force).then_some(&holder)).await?;
    if released == Released::Closed {
        lock.remove()?;
        after_close(record.as_ref(), context);
    }
    Ok(released)
}

/// .what = once a tunnel closed: when its bastion has `idleStop` and no other tunnel of this machine runs through
/// it, starts the bastion's idle timer
/// .why = a laptop that closes its last tunnel still stops the bastion later, without anyone running `apply`
pub(crate) fn after_close(record: Option<&crate::TunnelMeta>, context: &crate::ContextAwsApi) {
    let Some(record) = record else {
        return;
    };
    let Some(seconds) = record.bastion_idle_stop else {
        return;
    };
    let busy = context.checked_tunnels_dir().map_or(true, |dir| {
        crate::domain_operations::ec2_instance::local_tunnels_through(&dir, &record.instance_id) > 0
    });
    if busy {
        return;
    }
    let Some(program) = context.supervisor.as_ref() else {
        return;
    };
    let settings = crate::AwsSettings {
        region: record.region.clone().or_else(|| context.region.clone()),
        profile: context.profile.clone(),
    };
    if let Err(error) = crate::domain_operations::ec2_instance::start_idle_timer(
        program,
        &context.state_dir,
        &record.instance_id,
        std::time::Duration::from_secs(seconds),
        &settings,
    ) {
        tracing::warn!(%error, instance = %record.instance_id, "the bastion's idle timer did not start");
    }
}

/// .what = under the tunnel's lock (the caller's): drops `holder`'s hold and every dead one; closes the tunnel
/// when no live holder remains. `None` closes it for every holder
/// .why = the one place that decides whether letting go closes, for apply, exec, the SDK and `--force-close`
pub(crate) async fn release_hold(
    files: &TunnelFiles,
    local_port: u16,
    holder: Option<&TunnelHolder>,
) -> Result<Released, AwsError> {
    TunnelFiles::check_dir_readable(&files.dir)?;
    let serving = !TunnelProcesses::scan(&files.dir).of(&files.id).is_empty();
    // a damaged or missing record names no other holder: nobody is known to need the tunnel
    if let (true, Some(holder), Ok(Some(mut meta))) = (
        serving,
        holder,
        files.read_meta::<crate::DeclaredAwsVpcTunnel>(),
    ) {
        let others: Vec<TunnelHolder> = meta
            .holders()
            .into_iter()
            .filter(|other| other.is_alive() && !other.is(holder))
            .collect();
        if !others.is_empty() {
            if meta.holders.as_ref() != Some(&others) {
                meta.holders = Some(others.clone());
                files.write_meta(&meta)?;
            }
            return Ok(Released::StillHeld(others));
        }
    }
    close_vpc_tunnel(files, local_port).await?;
    Ok(Released::Closed)
}

/// .what = stops every live process of the tunnel (SIGINT, SIGTERM, SIGKILL to their groups, each proven ours)
/// and removes its files; fails, naming the port and the pid, when one survives, and naming the holder when the
/// port still serves after they are gone
/// .why = after a CLOSED apply exits 0, nothing serves the port we closed, now or later
pub async fn close_vpc_tunnel(files: &TunnelFiles, local_port: u16) -> Result<(), AwsError> {
    TunnelFiles::check_dir_readable(&files.dir)?;
    let processes = TunnelProcesses::scan(&files.dir).of(&files.id).to_vec();
    if !processes.is_empty() {
        tracing::info!(
            hash = %files.id,
            pids = ?processes.iter().map(|process| process.pid).collect::<Vec<_>>(),
            "closing the tunnel"
        );
        stop_tunnel_process(&processes, Some(local_port), CLOSE_GRACE).await?;
        // what we stopped served the port: if it still serves, something escaped our processes
        let released = wait_for_port_release(local_port, CLOSE_GRACE).await;
        files.remove_all()?;
        if !released {
            return Err(AwsError::PortStillServed {
                port: local_port,
                holder: find_port_holder(local_port).map_or_else(
                    || "a process the system does not name".to_string(),
                    |holder| holder.to_string(),
                ),
            });
        }
        return Ok(());
    }
    Ok(files.remove_all()?)
}
