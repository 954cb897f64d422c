use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// .what = how `exec` and `env` log in through a tunnel: the database, the user, where the password comes from
/// .why = a tunnel is half the job: the user also needs the rotating password or the IAM token, fetched when
/// needed and never written down
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VpcTunnelConnect {
    /// the database to connect to
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// the user; optional when the password comes from a secret that holds `username`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// where the password comes from: exactly one of `secret`, `managed`, `iam` or `env`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
    /// a CA bundle (e.g. the RDS global bundle) to verify the database's certificate against: the connection
    /// variables then ask for `verify-full` against the real endpoint's name, reached at 127.0.0.1
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
}

/// .what = where a tunnel's password comes from
/// .why = RDS databases keep passwords in Secrets Manager, let RDS manage them, or take IAM tokens; CI passes
/// them in the environment
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(deny_unknown_fields)]
pub enum PasswordSource {
    /// a Secrets Manager secret (name or ARN) whose JSON holds `username` and `password`, as RDS writes it
    #[schemars(title = "a Secrets Manager secret")]
    Secret {
        /// the secret's name or ARN
        secret: String,
    },
    /// the cluster's or instance's RDS-managed master user secret
    #[schemars(title = "the RDS-managed master user secret")]
    Managed {
        /// `true`
        managed: bool,
    },
    /// an RDS IAM auth token for `user`, signed for the real endpoint's host and port, valid 15 minutes
    #[schemars(title = "an RDS IAM auth token")]
    Iam {
        /// `true`
        iam: bool,
    },
    /// an environment variable of the command that runs declastruct
    #[schemars(title = "an environment variable")]
    Env {
        /// the variable's name
        env: String,
    },
}

impl<'de> Deserialize<'de> for PasswordSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct AnySource {
            secret: Option<String>,
            managed: Option<bool>,
            iam: Option<bool>,
            env: Option<String>,
        }
        let fail = |message: &str| Err(serde::de::Error::custom(message));
        match AnySource::deserialize(deserializer)? {
            AnySource {
                secret: Some(secret),
                managed: None,
                iam: None,
                env: None,
            } => Ok(Self::Secret { secret }),
            AnySource {
                secret: None,
                managed: Some(true),
                iam: None,
                env: None,
            } => Ok(Self::Managed { managed: true }),
            AnySource {
                secret: None,
                managed: None,
                iam: Some(true),
                env: None,
            } => Ok(Self::Iam { iam: true }),
            AnySource {
                secret: None,
                managed: None,
                iam: None,
                env: Some(env),
            } => Ok(Self::Env { env }),
            AnySource {
                managed: Some(false),
                ..
            }
            | AnySource {
                iam: Some(false), ..
            } => fail(
                "`managed: false` and `iam: false` say nothing: remove them, or pick another source",
            ),
            _ => fail(
                "`password` takes exactly one of `secret`, `managed: true`, `iam: true` or `env`",
            ),
        }
    }
}
