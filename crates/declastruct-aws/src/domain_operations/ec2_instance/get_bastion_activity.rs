//! .what = whether a bastion is in use, from everything that can tell: the SSM sessions that target it (anyone's),
//! its `declastruct:in-use` tag, and this machine's tunnels through it
//! .why = `idleStop`: a bastion nobody needs is stopped, and never one a colleague uses; when a check cannot be
//! made, it is not stopped, and the reason says which permission is missing

use std::time::Duration;

use crate::domain_objects::{ContextAwsApi, DeclaredAwsEc2Instance, IN_USE_TAG};
use crate::error::AwsError;

/// .what = what keeps a bastion from being idle, or since when it is, or why nobody can tell
/// .why = plan shows it as the reason of an idle stop, or of no stop; status as "idle 12m of 30m" or what keeps it
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BastionActivity {
    /// in use, and why (sessions, a fresh tag, a tunnel of this machine)
    Busy(String),
    /// idle for at least `idle_stop`: the last use (the tag's time, when there is one) and the sessions seen
    Idle {
        /// the last time anything said it used the bastion, RFC 3339, when known
        since: Option<String>,
        /// how long ago, when known
        for_how_long: Option<Duration>,
    },
    /// idle for a while, but not yet `idle_stop`
    Waiting {
        /// idle for this long
        idle_for: Duration,
    },
    /// a check could not be made: it is not stopped
    Unknown(String),
}

impl BastionActivity {
    /// .what = whether the bastion may be stopped now
    /// .why = only a bastion every check calls idle is stopped
    pub fn is_idle(&self) -> bool {
        matches!(self, Self::Idle { .. })
    }

    /// .what = the activity in a few words, for plans and `status`
    /// .why = "idle 12m of 30m", or what keeps it busy, or why nobody can tell
    pub fn describe(&self, idle_stop: Duration) -> String {
        let minutes = |duration: Duration| {
            let seconds = duration.as_secs();
            if seconds >= 120 {
                format!("{}m", seconds / 60)
            } else {
                format!("{seconds}s")
            }
        };
        match self {
            Self::Busy(why) => format!("in use: {why}"),
            Self::Idle {
                since: Some(since), ..
            } => format!(
                "idle since {since} (idleStop {}); sessions seen: none",
                minutes(idle_stop)
            ),
            Self::Idle { since: None, .. } => format!(
                "idle: no session, no tunnel of this machine, and no declastruct:in-use tag (idleStop {}); sessions seen: none",
                minutes(idle_stop)
            ),
            Self::Waiting { idle_for } => {
                format!("idle {} of {}", minutes(*idle_for), minutes(idle_stop))
            }
            Self::Unknown(why) => format!("not known whether it is idle: {why}"),
        }
    }
}

/// .what = how many Active SSM sessions (Connected or Disconnected, anyone's) target `instance_id`
/// .why = a colleague's session, through declastruct or not, keeps the bastion running; `AccessDeniedException` is
/// an error naming `ssm:DescribeSessions`
pub async fn count_active_sessions(
    instance_id: &str,
    context: &ContextAwsApi,
) -> Result<usize, AwsError> {
    use aws_sdk_ssm::types::{SessionFilter, SessionFilterKey, SessionState};
    let filter = SessionFilter::builder()
        .key(SessionFilterKey::TargetId)
        .value(instance_id)
        .build()
        .map_err(|error| AwsError::Unexpected(error.to_string()))?;
    let mut pages = context
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .filters(filter)
        .into_paginator()
        .send();
    let mut count = 0;
    while let Some(page) = pages.next().await {
        let page = page.map_err(|error| {
            AwsError::from_sdk("ssm:DescribeSessions", &context.endpoint("ssm"), &error)
        })?;
        count += page.sessions().len();
    }
    Ok(count)
}

/// .what = tags the bastion `declastruct:in-use` with the current UTC time
/// .why = every machine that uses a bastion says so where every other one can read it, so an `idleStop` on one
/// machine never stops a bastion a colleague's tunnel needs
pub async fn mark_bastion_in_use(
    instance_id: &str,
    context: &ContextAwsApi,
) -> Result<(), AwsError> {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    context
        .ec2
        .create_tags()
        .resources(instance_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(IN_USE_TAG)
                .value(now)
                .build(),
        )
        .send()
        .await
        .map_err(|error| AwsError::from_sdk("ec2:CreateTags", &context.endpoint("ec2"), &error))?;
    Ok(())
}

/// .what = the bastion's activity: busy when any Active session targets it, its tag is younger than `idle_stop`, or
/// a tunnel of this machine uses it; idle only when every check says so; unknown when a check fails
/// .why = the one rule `plan`, `status` and the idle timer share
pub fn judge_bastion_activity(
    bastion: &DeclaredAwsEc2Instance,
    idle_stop: Duration,
    sessions: Result<usize, &AwsError>,
    local_tunnels: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> BastionActivity {
    if local_tunnels > 0 {
        return BastionActivity::Busy(format!(
            "{local_tunnels} tunnel{} of this machine",
            if local_tunnels == 1 { "" } else { "s" }
        ));
    }
    let sessions = match sessions {
        Ok(sessions) => sessions,
        Err(error) => {
            return BastionActivity::Unknown(match error.to_string() {
                text if text.contains("AccessDenied") => {
                    "the permission ssm:DescribeSessions is missing, so a colleague's session cannot be seen".into()
                }
                text => format!("ssm:DescribeSessions failed: {text}"),
            });
        }
    };
    if sessions > 0 {
        return BastionActivity::Busy(format!(
            "{sessions} active SSM session{} target it",
            if sessions == 1 { "" } else { "s" }
        ));
    }
    let tagged = bastion.in_use_at.as_deref().and_then(|at| {
        chrono::DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|at| (at.with_timezone(&chrono::Utc), at.to_rfc3339()))
    });
    match tagged {
        None => BastionActivity::Idle {
            since: None,
            for_how_long: None,
        },
        Some((at, text)) => {
            let idle_for = (now - at).to_std().unwrap_or_default();
            if idle_for >= idle_stop {
                BastionActivity::Idle {
                    since: Some(text),
                    for_how_long: Some(idle_for),
                }
            } else {
                BastionActivity::Waiting { idle_for }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bastion(in_use_at: Option<&str>) -> DeclaredAwsEc2Instance {
        DeclaredAwsEc2Instance {
            instance_id: Some("i-0abc".into()),
            exid: "b".into(),
            status: None,
            private_ip: None,
            in_use_at: in_use_at.map(str::to_string),
        }
    }

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&chrono::Utc)
    }

    #[test]
    fn idle_only_when_every_check_says_so() {
        let limit = Duration::from_secs(600);
        let now = at("2026-12-04T12:30:00Z");
        let tagged = bastion(Some("2026-12-04T12:00:00Z"));
        assert!(judge_bastion_activity(&tagged, limit, Ok(0), 0, now).is_idle());
        assert!(matches!(
            judge_bastion_activity(&tagged, limit, Ok(1), 0, now),
            BastionActivity::Busy(_)
        ));
        assert!(matches!(
            judge_bastion_activity(&tagged, limit, Ok(0), 1, now),
            BastionActivity::Busy(_)
        ));
        let fresh = bastion(Some("2026-12-04T12:25:00Z"));
        assert_eq!(
            judge_bastion_activity(&fresh, limit, Ok(0), 0, now),
            BastionActivity::Waiting {
                idle_for: Duration::from_secs(300)
            }
        );
        assert_eq!(
            judge_bastion_activity(&fresh, limit, Ok(0), 0, now).describe(limit),
            "idle 5m of 10m"
        );
        let denied = AwsError::Call {
            operation: "ssm:DescribeSessions",
            message: "AccessDeniedException: not authorized".into(),
            help: String::new(),
        };
        let unknown = judge_bastion_activity(&tagged, limit, Err(&denied), 0, now);
        assert!(!unknown.is_idle());
        assert!(
            unknown.describe(limit).contains("ssm:DescribeSessions"),
            "{unknown:?}"
        );
    }
}
