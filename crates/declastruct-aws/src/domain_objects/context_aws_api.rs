use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;

use crate::domain_objects::TransportChoice;
use crate::env_vars::EnvVars;
use crate::error::AwsError;
use serde::{Deserialize, Serialize};

/// .what = the manifest's optional `aws` block: region and profile
/// .why = overrides the standard AWS chain (AWS_REGION, AWS_PROFILE, ~/.aws/config, SSO)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// the AWS region, e.g. `us-east-1`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// the named profile from `~/.aws/config`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// .what = a listener for progress messages of long waits
/// .why = the CLI shows them on a terminal; SDK users may log them
pub type ProgressReporter = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// .what = everything an operation needs besides its input: AWS clients, region, state folder, AWS CLI
/// .why = every operation takes `(input, context)`, so tests and SDK users can swap any of them
#[derive(Clone)]
pub struct ContextAwsApi {
    /// the EC2 client
    pub ec2: aws_sdk_ec2::Client,
    /// the RDS client
    pub rds: aws_sdk_rds::Client,
    /// the Secrets Manager client, for `connect.password.secret` and `managed`
    pub secrets: aws_sdk_secretsmanager::Client,
    /// the Systems Manager client: the sessions that target a bastion (`idleStop`); its endpoint follows the SDK's
    /// rules (`AWS_ENDPOINT_URL_SSM`, then `AWS_ENDPOINT_URL`)
    pub ssm: aws_sdk_ssm::Client,
    /// the configuration the clients were made from: credentials, region and clock for RDS IAM auth tokens
    pub sdk_config: aws_config::SdkConfig,
    /// the resolved region, passed to `aws ssm start-session --region`
    pub region: Option<String>,
    /// the manifest's profile, passed to `aws ssm start-session --profile`, so the session uses the same
    /// credentials as the SDK
    pub profile: Option<String>,
    /// the endpoint every service is reached at, when one is configured (`AWS_ENDPOINT_URL`, moto, LocalStack)
    pub endpoint_url: Option<String>,
    /// the state folder; tunnels live in `{state_dir}/tunnels/`
    pub state_dir: PathBuf,
    /// the program run as the AWS CLI for `ssm start-session`
    pub aws_cli: OsString,
    /// the transport when a tunnel does not declare one (`DECLASTRUCT_TRANSPORT`), `auto` when unset
    pub transport: Option<TransportChoice>,
    /// how long a tunnel may take to become ready
    pub tunnel_ready_timeout: Duration,
    /// how long to wait for an instance to reach `running` or `stopped`
    pub instance_wait_timeout: Duration,
    /// how long opening a tunnel keeps retrying while the bastion's SSM agent is not connected
    pub agent_wait_timeout: Duration,
    /// the program started as the tunnel's supervisor (it must call `run_supervisor_if_requested` first in
    /// `main`); `None` runs the session command without supervision
    pub supervisor: Option<PathBuf>,
    /// receives progress of long waits (bastion starting, agent connecting, tunnel ready)
    pub progress: Option<ProgressReporter>,
    /// cancelled when the user interrupts: every wait ends at once, and what it had started is stopped
    pub cancel: tokio_util::sync::CancellationToken,
    /// who holds the tunnels this context opens: a manifest environment (`apply`), a running command (`exec`,
    /// `connect`); `None` holds them for this program (the SDK)
    /// .why = a tunnel closes only when its last holder lets go, so each opener records its hold
    pub holder: Option<crate::TunnelHolder>,
}

impl ContextAwsApi {
    /// .what = a context from the standard AWS configuration, with the manifest's overrides
    /// .why = the blueprint's example becomes a few lines of Rust, and the CLI builds its context the same way
    pub async fn load(settings: &AwsSettings) -> Result<Self, AwsError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(Self::deadlines());
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        check_endpoint_variables()?;
        let selected = settings.profile.clone().or_else(|| {
            std::env::var(EnvVars::AWS_PROFILE)
                .ok()
                .filter(|profile| !profile.is_empty())
        });
        if let Some(profile) = selected {
            check_profile_exists(&profile, settings.profile.is_some()).await?;
        }
        let config = loader.load().await;
        if config.region().is_none() {
            return Err(AwsError::NoRegion);
        }
        let mut context = Self::from_sdk_config(&config);
        context.profile = settings.profile.clone();
        Ok(context)
    }

    /// .what = the deadlines of every AWS call: 3 s to connect, 10 s to read, 10 s an attempt, 25 s in all
    /// .why = a silent endpoint is an error naming the call and the endpoint within 30 s, never a hang
    pub fn deadlines() -> aws_config::timeout::TimeoutConfig {
        aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .read_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(10))
            .operation_timeout(Duration::from_secs(25))
            .build()
    }

    /// .what = where `service` (e.g. `ec2`) is reached: the configured endpoint, or AWS's regional one
    /// .why = an unreachable endpoint is named in the error, so a wrong AWS_ENDPOINT_URL is seen at once
    pub fn endpoint(&self, service: &str) -> String {
        match &self.endpoint_url {
            Some(endpoint) => endpoint.clone(),
            None => format!(
                "https://{service}.{}.amazonaws.com",
                self.region.as_deref().unwrap_or("REGION")
            ),
        }
    }

    /// .what = a context from an SDK configuration the caller already has
    /// .why = lets SDK users and tests bring their own endpoint, credentials or interceptors
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(config),
            rds: aws_sdk_rds::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
            ssm: aws_sdk_ssm::Client::new(config),
            sdk_config: config.clone(),
            region: config.region().map(ToString::to_string),
            profile: None,
            endpoint_url: config.endpoint_url().map(str::to_string),
            state_dir: Self::default_state_dir().unwrap_or_default(),
            aws_cli: std::env::var_os(EnvVars::DECLASTRUCT_AWS_CLI)
                .filter(|program| !program.is_empty())
                .unwrap_or_else(|| OsString::from("aws")),
            transport: std::env::var(EnvVars::DECLASTRUCT_TRANSPORT)
                .ok()
                .and_then(|text| TransportChoice::parse(&text)),
            tunnel_ready_timeout: Duration::from_secs(30),
            instance_wait_timeout: Duration::from_secs(300),
            agent_wait_timeout: std::env::var(EnvVars::DECLASTRUCT_AGENT_TIMEOUT_SECONDS)
                .ok()
                .and_then(|seconds| seconds.parse().ok())
                .map_or(Duration::from_secs(180), Duration::from_secs),
            supervisor: std::env::current_exe().ok(),
            progress: None,
            cancel: tokio_util::sync::CancellationToken::new(),
            holder: None,
        }
    }

    /// .what = reports progress of a long wait, when someone listens
    /// .why = a user never stares at a silent terminal while a bastion boots
    pub fn report_progress(&self, message: &str) {
        if let Some(progress) = &self.progress {
            progress(message);
        }
    }

    /// .what = the transport a tunnel's session uses: the tunnel's own choice, else `DECLASTRUCT_TRANSPORT`, else
    /// `auto`, which is the plugin where it is installed (or where an AWS CLI was named with `DECLASTRUCT_AWS_CLI`)
    /// and native where it is not
    /// .why = the plugin is the path AWS ships and tests; a machine without it still opens tunnels
    pub fn transport_for(&self, declared: Option<TransportChoice>) -> TransportChoice {
        match declared.or(self.transport).unwrap_or(TransportChoice::Auto) {
            TransportChoice::Auto => {
                let plugin =
                    declastruct_tunnel::find_program(&OsString::from("session-manager-plugin"))
                        .is_some()
                        && declastruct_tunnel::find_program(&self.aws_cli).is_some();
                // an AWS CLI other than `aws` was named (`DECLASTRUCT_AWS_CLI`, or a program's own context)
                let named = self.aws_cli != "aws";
                if named || plugin {
                    TransportChoice::Plugin
                } else {
                    TransportChoice::Native
                }
            }
            chosen => chosen,
        }
    }

    /// .what = the transport a tunnel with this `via` and `from` opens with: native when it listens beyond
    /// loopback (the plugin listens on loopback only), else as `transport_for` decides
    /// .why = the open and the plan's comparison with a running session decide it the same way
    pub fn transport_of_tunnel(
        &self,
        via: &crate::VpcTunnelVia,
        from: &crate::VpcTunnelFrom,
    ) -> TransportChoice {
        self.transport_for(if from.is_exposed() {
            Some(TransportChoice::Native)
        } else {
            via.transport
        })
    }

    /// .what = who holds what this context opens: its holder, or this program
    /// .why = every open records a hold and every close releases one
    pub fn holder(&self) -> crate::TunnelHolder {
        self.holder
            .clone()
            .unwrap_or_else(crate::TunnelHolder::this_program)
    }

    /// .what = the folder that holds the tunnel files
    /// .why = `$DECLASTRUCT_HOME/tunnels/`, as the contract fixes it
    pub fn tunnels_dir(&self) -> PathBuf {
        self.state_dir.join("tunnels")
    }

    /// .what = the tunnels folder, or why there is none
    /// .why = every operation on tunnel files starts here, so a missing home is one clear error
    pub fn checked_tunnels_dir(&self) -> Result<PathBuf, AwsError> {
        if self.state_dir.is_absolute() {
            Self::private_tunnels_dir(&self.state_dir)
        } else {
            Self::default_tunnels_dir()
        }
    }

    /// .what = the default state folder's `tunnels/`, once both are known to be private (when they exist)
    /// .why = `status --all` and `logs` read the state folder with no AWS context; the same rule holds
    pub fn default_tunnels_dir() -> Result<PathBuf, AwsError> {
        Self::private_tunnels_dir(&Self::default_state_dir()?)
    }

    /// .what = `{state_dir}/tunnels`, failing unless the state folder and `tunnels/` (when they exist) belong to
    /// this user and nobody else can write them
    /// .why = as ssh does with `~/.ssh`: another local user must not be able to plant records or links there
    fn private_tunnels_dir(state_dir: &std::path::Path) -> Result<PathBuf, AwsError> {
        // the platform boundary: every tunnel operation comes through here first
        declastruct_tunnel::platform::ensure_supported()?;
        declastruct_tunnel::check_private_folder(state_dir)?;
        let tunnels = state_dir.join("tunnels");
        declastruct_tunnel::check_private_folder(&tunnels)?;
        Ok(tunnels)
    }
}

impl ContextAwsApi {
    /// .what = the state folder: `$DECLASTRUCT_HOME` (made absolute), else `$HOME/.declastruct`, else the home
    /// folder of the user's passwd entry; an error when there is none
    /// .why = tunnels must be found again from any folder: state never goes to a folder relative to wherever the
    /// command happens to run
    pub fn default_state_dir() -> Result<PathBuf, AwsError> {
        if let Some(home) =
            std::env::var_os(EnvVars::DECLASTRUCT_HOME).filter(|home| !home.is_empty())
        {
            let home = PathBuf::from(home);
            return Ok(if home.is_absolute() {
                home
            } else {
                std::env::current_dir()
                    .map(|folder| folder.join(&home))
                    .unwrap_or(home)
            });
        }
        if let Some(home) = std::env::var_os(EnvVars::HOME)
            .map(PathBuf::from)
            .filter(|home| home.is_absolute())
        {
            return Ok(home.join(".declastruct"));
        }
        let uid = nix::unistd::getuid();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(user)) if user.dir.is_absolute() => Ok(user.dir.join(".declastruct")),
            _ => Err(AwsError::NoStateFolder {
                user: uid.to_string(),
            }),
        }
    }
}

/// .what = fails when `AWS_ENDPOINT_URL` (or a service's own, e.g. `AWS_ENDPOINT_URL_EC2`) is set to something that
/// is not an `http://` or `https://` URL with a host, naming the variable and the value as given
/// .why = the SDK drops such a value from the shared configuration but still uses it per service, so the failure
/// came as "could not connect to https://ec2.us-east-1.amazonaws.com: endpoint must contain scheme", naming an
/// endpoint the user never gave
fn check_endpoint_variables() -> Result<(), AwsError> {
    let ignored = std::env::var(EnvVars::AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)
        .is_ok_and(|value| value.eq_ignore_ascii_case("true"));
    if ignored {
        return Ok(());
    }
    let variables =
        std::iter::once(EnvVars::AWS_ENDPOINT_URL).chain(EnvVars::AWS_ENDPOINT_URL_SERVICES);
    for variable in variables {
        let Ok(value) = std::env::var(variable) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let lowered = value.to_ascii_lowercase();
        let host = lowered
            .strip_prefix("http://")
            .or_else(|| lowered.strip_prefix("https://"));
        if host.is_none_or(|host| host.is_empty() || host.starts_with(['/', ':'])) {
            return Err(AwsError::BadEndpoint {
                variable,
                value: value.clone(),
            });
        }
    }
    Ok(())
}

/// .what = fails when the selected profile is in neither AWS file
/// .why = "no credentials, set AWS_PROFILE" while AWS_PROFILE is set sends the user the wrong way
async fn check_profile_exists(profile: &str, from_manifest: bool) -> Result<(), AwsError> {
    use aws_types::os_shim_internal::{Env, Fs};
    let files = aws_runtime::env_config::file::EnvConfigFiles::default();
    let Ok(profiles) = aws_config::profile::load(&Fs::real(), &Env::real(), &files, None).await
    else {
        // an unreadable or malformed file is reported by the SDK itself, with its own words
        return Ok(());
    };
    if profiles.get_profile(profile).is_some() {
        return Ok(());
    }
    let mut known: Vec<String> = profiles.profiles().map(str::to_string).collect();
    known.sort();
    Err(AwsError::ProfileNotFound {
        profile: profile.to_string(),
        source_of_name: if from_manifest {
            "`aws.profile` in the manifest"
        } else {
            "AWS_PROFILE"
        },
        known,
    })
}

impl std::fmt::Debug for ContextAwsApi {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ContextAwsApi")
            .field("region", &self.region)
            .field("state_dir", &self.state_dir)
            .field("aws_cli", &self.aws_cli)
            .field("supervisor", &self.supervisor)
            .finish_non_exhaustive()
    }
}
