//! .what = who holds a tunnel open: manifest environments that declare it OPEN, running commands (`exec`,
//! `connect`) and programs using the SDK
//! .why = one tunnel has many users at once (a migration through `exec`, `psql` in another terminal, the
//! manifest that keeps it open); it closes only when the last of them lets go

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::platform::read_stat;

/// .what = a manifest applied in one environment: its absolute path, its resolved region and profile, and the
/// values of the variables it used
/// .why = one manifest serves dev and prod (`--var env=prod`); each is its own holder, so neither plans away
/// the other's tunnels
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEnvironment {
    /// the manifest's absolute path
    pub manifest: String,
    /// the resolved region
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// the profile, from the manifest or `AWS_PROFILE`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// the values of the variables the manifest used, by name
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
}

impl ManifestEnvironment {
    /// .what = the environment in a few words: `region=us-east-1 profile=dev env=prod`
    /// .why = status and plans name an environment the way the user chose it
    pub fn describe_settings(&self) -> String {
        let mut parts = vec![format!("region={}", self.region.as_deref().unwrap_or("-"))];
        if let Some(profile) = &self.profile {
            parts.push(format!("profile={profile}"));
        }
        parts.extend(
            self.vars
                .iter()
                .map(|(name, value)| format!("{name}={value}")),
        );
        parts.join(" ")
    }
}

/// .what = a running command that holds a tunnel: its pid and start time (the pid-reuse guard), and what it is
/// .why = a hold dies with its command: a killed `exec` is noticed by the supervisor within seconds
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldingProcess {
    /// the command's pid
    pub pid: u32,
    /// its start time in clock ticks since boot
    pub start_time: u64,
    /// what it runs, e.g. `exec psql` or `connect orders-dev`
    pub command: String,
    /// the manifest it read, for `status`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// .what = one holder of a tunnel
/// .why = a tunnel closes when its last holder lets go, and never under another holder's feet
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TunnelHolder {
    /// a manifest environment that declares the tunnel OPEN
    Manifest(ManifestEnvironment),
    /// a running `exec` or `connect`, for as long as it runs
    Process(HoldingProcess),
    /// a program using the SDK, by name, until it sets the tunnel CLOSED
    Program {
        /// the program's name
        name: String,
    },
    /// the opener of a tunnel recorded before holders were kept: its manifest, when one opened it
    Legacy {
        /// the manifest's absolute path
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest: Option<String>,
    },
}

impl TunnelHolder {
    /// .what = the running process `pid`, as a holder, when it is alive
    /// .why = `exec` and `connect` hold their tunnels for as long as they run
    pub fn process(pid: u32, command: String, manifest: Option<String>) -> Option<Self> {
        let start_time = read_stat(pid)?.start_time;
        Some(Self::Process(HoldingProcess {
            pid,
            start_time,
            command,
            manifest,
        }))
    }

    /// .what = this program, as an SDK holder
    /// .why = a program that opens a tunnel through the SDK holds it until it sets it CLOSED
    pub fn this_program() -> Self {
        let name = std::env::current_exe()
            .ok()
            .and_then(|path| {
                path.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "a program using the SDK".into());
        Self::Program { name }
    }

    /// .what = whether the holder still holds: a process while it runs (same pid, same start time, not a zombie);
    /// every other holder until it lets go
    /// .why = a dead command's hold counts for nothing, even before the supervisor drops it
    pub fn is_alive(&self) -> bool {
        match self {
            Self::Process(process) => read_stat(process.pid)
                .is_some_and(|stat| stat.start_time == process.start_time && stat.state != 'Z'),
            _ => true,
        }
    }

    /// .what = whether `self` is the same holder as `other`; a legacy record's opener is the same as any
    /// environment of its manifest
    /// .why = a manifest applied before holders were recorded still recognises the tunnels it opened
    pub fn is(&self, other: &TunnelHolder) -> bool {
        match (self, other) {
            (
                Self::Legacy {
                    manifest: Some(path),
                },
                Self::Manifest(environment),
            )
            | (
                Self::Manifest(environment),
                Self::Legacy {
                    manifest: Some(path),
                },
            ) => *path == environment.manifest,
            // a record from before holders, opened by no manifest: a program using the SDK opened it
            (Self::Legacy { manifest: None }, Self::Program { .. })
            | (Self::Program { .. }, Self::Legacy { manifest: None }) => true,
            _ => self == other,
        }
    }

    /// .what = the holder in a few words, a manifest by its absolute path
    /// .why = plans and `status` say who keeps a tunnel open, the same from any folder (a plan's note is part of
    /// its hash)
    pub fn describe(&self) -> String {
        match self {
            Self::Manifest(environment) => format!(
                "manifest {} ({})",
                environment.manifest,
                environment.describe_settings()
            ),
            Self::Process(process) => format!("pid {} ({})", process.pid, process.command),
            Self::Program { name } => format!("the program {name} (SDK)"),
            Self::Legacy {
                manifest: Some(manifest),
            } => format!("manifest {manifest}"),
            Self::Legacy { manifest: None } => "whoever opened it".into(),
        }
    }
}

/// .what = the holders among `holders` that still hold, and are not `except`
/// .why = "released; stays open for …" lists the others that are alive
pub fn other_live_holders<'a>(
    holders: &'a [TunnelHolder],
    except: Option<&TunnelHolder>,
) -> Vec<&'a TunnelHolder> {
    holders
        .iter()
        .filter(|holder| holder.is_alive() && except.is_none_or(|except| !holder.is(except)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(vars: &[(&str, &str)]) -> TunnelHolder {
        TunnelHolder::Manifest(ManifestEnvironment {
            manifest: "/work/declastruct.yml".into(),
            region: Some("us-east-1".into()),
            profile: None,
            vars: vars
                .iter()
                .map(|(name, value)| ((*name).to_string(), (*value).to_string()))
                .collect(),
        })
    }

    #[test]
    fn environments_of_one_manifest_are_different_holders() {
        let dev = environment(&[("env", "dev")]);
        let prod = environment(&[("env", "prod")]);
        assert!(dev.is(&dev));
        assert!(!dev.is(&prod));
        let legacy = TunnelHolder::Legacy {
            manifest: Some("/work/declastruct.yml".into()),
        };
        assert!(
            legacy.is(&dev) && prod.is(&legacy),
            "a legacy opener is its manifest's"
        );
    }

    #[test]
    fn a_process_holds_while_it_runs() {
        let me = TunnelHolder::process(std::process::id(), "exec test".into(), None)
            .expect("this process");
        assert!(me.is_alive());
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let holder = TunnelHolder::process(child.id(), "exec true".into(), None);
        child.wait().expect("reap");
        if let Some(holder) = holder {
            assert!(!holder.is_alive(), "a finished command holds nothing");
        }
        let reused = TunnelHolder::Process(HoldingProcess {
            pid: std::process::id(),
            start_time: 1,
            command: "exec".into(),
            manifest: None,
        });
        assert!(!reused.is_alive(), "another start time is another process");
    }

    #[test]
    fn holders_round_trip_as_tagged_json() {
        let holders = vec![
            environment(&[("env", "dev")]),
            TunnelHolder::Program { name: "x".into() },
        ];
        let text = serde_json::to_string(&holders).expect("json");
        assert!(text.contains(r#""kind":"manifest""#), "{text}");
        let back: Vec<TunnelHolder> = serde_json::from_str(&text).expect("read back");
        assert_eq!(back, holders);
    }
}
