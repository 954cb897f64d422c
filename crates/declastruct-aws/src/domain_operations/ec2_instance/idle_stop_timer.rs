//! .what = the detached idle timer of a bastion with `idleStop`: started when the last tunnel through it closes on
//! this machine, it sleeps for the duration, then checks every rule of idleness and stops the bastion if it is still
//! idle; recorded in `$DECLASTRUCT_HOME/timers/{instance}.json` from the moment it exists
//! .why = a laptop that closes its last tunnel still stops the bastion, without anyone running `apply`; and a timer
//! is visible (`status --all`) and found again, never a process nobody knows of

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain_objects::{AwsSettings, ContextAwsApi, Ec2InstanceRef};
use crate::domain_operations::ec2_instance::{
    DesiredInstanceStatus, Ec2InstanceLookup, count_active_sessions, get_ec2_instance,
    judge_bastion_activity, set_ec2_instance_status,
};
use crate::error::AwsError;

/// the first argument that turns a program into an idle timer
pub const IDLE_TIMER_ARGUMENT: &str = "__declastruct_idle_stop";

/// .what = what `timers/{instance}.json` records about a running idle timer
/// .why = `status --all` shows it; a second close does not start a second timer for the same bastion
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleTimerRecord {
    /// the bastion
    pub instance_id: String,
    /// the timer's process
    pub pid: u32,
    /// its start time in clock ticks since boot: the pid-reuse guard
    pub start_time: Option<u64>,
    /// when it looks again, RFC 3339 UTC
    pub due_at: String,
    /// the bastion's `idleStop`, in seconds
    pub idle_stop_seconds: u64,
    /// the region
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// the profile
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// .what = the folder of idle timers' records
/// .why = beside `tunnels/`, under the same ownership rule
pub fn timers_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("timers")
}

/// .what = every idle timer recorded, alive or not (an entry whose process is gone is stale)
/// .why = `status --all` lists them
pub fn recorded_idle_timers(state_dir: &Path) -> Vec<(IdleTimerRecord, bool)> {
    let Ok(entries) = std::fs::read_dir(timers_dir(state_dir)) else {
        return Vec::new();
    };
    let mut timers: Vec<(IdleTimerRecord, bool)> = entries
        .flatten()
        .filter_map(|entry| {
            let bytes =
                declastruct_tunnel::read_bounded(&entry.path(), declastruct_tunnel::META_LIMIT)
                    .ok()
                    .flatten()?;
            let record: IdleTimerRecord = serde_json::from_slice(&bytes).ok()?;
            let alive = declastruct_tunnel::read_stat(record.pid).is_some_and(|stat| {
                stat.state != 'Z' && Some(stat.start_time) == record.start_time
            });
            Some((record, alive))
        })
        .collect();
    timers.sort_by(|left, right| left.0.instance_id.cmp(&right.0.instance_id));
    timers
}

/// .what = starts the idle timer of bastion `instance_id` (detached, recorded), unless one already runs for it
/// .why = called when the last tunnel through an `idleStop` bastion closes on this machine
pub fn start_idle_timer(
    program: &Path,
    state_dir: &Path,
    instance_id: &str,
    idle_stop: Duration,
    settings: &AwsSettings,
) -> Result<(), AwsError> {
    let folder = timers_dir(state_dir);
    declastruct_tunnel::ensure_private_folder(&folder)?;
    if recorded_idle_timers(state_dir)
        .iter()
        .any(|(record, alive)| *alive && record.instance_id == instance_id)
    {
        return Ok(());
    }
    let mut command: Vec<OsString> = vec![
        IDLE_TIMER_ARGUMENT.into(),
        instance_id.into(),
        idle_stop.as_secs().to_string().into(),
    ];
    if let Some(region) = &settings.region {
        command.push("--region".into());
        command.push(region.into());
    }
    if let Some(profile) = &settings.profile {
        command.push("--profile".into());
        command.push(profile.into());
    }
    let child = declastruct_tunnel::start_detached(program, &command)?;
    let pid = child.id();
    let record = IdleTimerRecord {
        instance_id: instance_id.to_string(),
        pid,
        start_time: declastruct_tunnel::process_start_time(pid),
        due_at: (chrono::Utc::now() + chrono::Duration::from_std(idle_stop).unwrap_or_default())
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        idle_stop_seconds: idle_stop.as_secs(),
        region: settings.region.clone(),
        profile: settings.profile.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&record)
        .map_err(|error| AwsError::Unexpected(error.to_string()))?;
    declastruct_tunnel::write_replacing(&folder.join(format!("{instance_id}.json")), &bytes)?;
    Ok(())
}

/// .what = runs the idle timer and exits, when this process was started as one; otherwise returns
/// .why = the timer is the same program as its caller, like the supervisor
pub fn run_idle_timer_if_requested() {
    let arguments: Vec<String> = std::env::args().collect();
    if arguments.get(1).map(String::as_str) != Some(IDLE_TIMER_ARGUMENT) {
        return;
    }
    let code = match parse(&arguments[2..]) {
        Some((instance_id, idle_stop, settings)) => run_timer(&instance_id, idle_stop, &settings),
        None => 2,
    };
    std::process::exit(code);
}

fn parse(arguments: &[String]) -> Option<(String, Duration, AwsSettings)> {
    let [instance_id, seconds, rest @ ..] = arguments else {
        return None;
    };
    let mut settings = AwsSettings::default();
    let mut rest = rest;
    while let [flag, value, more @ ..] = rest {
        match flag.as_str() {
            "--region" => settings.region = Some(value.clone()),
            "--profile" => settings.profile = Some(value.clone()),
            _ => return None,
        }
        rest = more;
    }
    Some((
        instance_id.clone(),
        Duration::from_secs(seconds.parse().ok()?),
        settings,
    ))
}

/// sleeps, then stops the bastion if every rule calls it idle; removes its record in every case
fn run_timer(instance_id: &str, idle_stop: Duration, settings: &AwsSettings) -> i32 {
    // credentials are resolved only when the timer looks, not held while it sleeps
    std::thread::sleep(idle_stop);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    let code = runtime.block_on(async {
        let Ok(context) = ContextAwsApi::load(settings).await else {
            return 1;
        };
        let reference = Ec2InstanceRef::by_instance_id(instance_id);
        let Ok(Some(bastion)) =
            get_ec2_instance(Ec2InstanceLookup::Ref(reference.clone()), &context).await
        else {
            return 1;
        };
        let sessions = count_active_sessions(instance_id, &context).await;
        let local = context
            .checked_tunnels_dir()
            .map_or(0, |dir| local_tunnels_through(&dir, instance_id));
        let activity = judge_bastion_activity(
            &bastion,
            idle_stop,
            sessions.as_ref().map(|count| *count),
            local,
            chrono::Utc::now(),
        );
        if activity.is_idle() {
            match set_ec2_instance_status(&reference, DesiredInstanceStatus::Stopped, &context)
                .await
            {
                Ok(_) => 0,
                Err(_) => 1,
            }
        } else {
            0
        }
    });
    if let Ok(state_dir) = ContextAwsApi::default_state_dir() {
        let record = timers_dir(&state_dir).join(format!("{instance_id}.json"));
        let _ = std::fs::remove_file(record);
    }
    code
}

/// .what = how many tunnels of this machine's state folder run through bastion `instance_id`
/// .why = a bastion a tunnel here uses is in use, whatever its tag says
pub fn local_tunnels_through(tunnels_dir: &Path, instance_id: &str) -> usize {
    let processes = declastruct_tunnel::TunnelProcesses::scan(tunnels_dir);
    declastruct_tunnel::TunnelFiles::recorded_in::<serde_json::Value>(tunnels_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|(files, meta)| {
            // a record that says it closed by itself is a tombstone, whatever still runs to end it
            meta.as_ref()
                .is_ok_and(|meta| meta.instance_id == instance_id && meta.closed.is_none())
                && !processes.of(&files.id).is_empty()
        })
        .count()
}
