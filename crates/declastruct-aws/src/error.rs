use miette::Diagnostic;
use thiserror::Error;

/// .what = everything an operation can fail with
/// .why = keeps the blueprint's split: a bad request the user can fix, versus an unexpected code path (a bug)
#[derive(Debug, Error, Diagnostic)]
pub enum AwsError {
    /// the referenced bastion does not exist (or is terminated)
    #[error("bastion {reference} was not found in {region}")]
    #[diagnostic(
        code(declastruct::aws::bastion_not_found),
        help("{}", bastion_help(closest))
    )]
    BastionNotFound {
        /// the reference as written
        reference: String,
        /// the region searched
        region: String,
        /// the `exid` tags of live instances closest to it
        closest: Vec<String>,
    },

    /// more than one live instance carries the same `exid` tag
    #[error("{} instances carry the tag exid={exid}: {}", instance_ids.len(), instance_ids.join(", "))]
    #[diagnostic(
        code(declastruct::aws::ambiguous_exid),
        help(
            "an exid must name exactly one instance: remove the tag from all but one, or reference the bastion by `instanceId`"
        )
    )]
    AmbiguousExid {
        /// the tag value
        exid: String,
        /// every instance that carries it
        instance_ids: Vec<String>,
    },

    /// the referenced cluster does not exist
    #[error("RDS cluster `{name}` was not found in {region}")]
    #[diagnostic(
        code(declastruct::aws::cluster_not_found),
        help("{}", cluster_help(closest))
    )]
    ClusterNotFound {
        /// the identifier as written
        name: String,
        /// the region searched
        region: String,
        /// existing identifiers closest to it
        closest: Vec<String>,
    },

    /// the cluster exists but has no writer endpoint or port yet
    #[error("RDS cluster `{name}` has no writer endpoint yet (status: {status})")]
    #[diagnostic(
        code(declastruct::aws::cluster_not_ready),
        help("wait until the cluster is `available`, then run the command again")
    )]
    ClusterNotReady {
        /// the identifier
        name: String,
        /// its status
        status: String,
    },

    /// the referenced DB instance does not exist
    #[error("RDS DB instance `{name}` was not found in {region}")]
    #[diagnostic(
        code(declastruct::aws::instance_not_found),
        help("{}", instance_help(closest))
    )]
    InstanceNotFound {
        /// the identifier as written
        name: String,
        /// the region searched
        region: String,
        /// existing identifiers closest to it
        closest: Vec<String>,
    },

    /// the referenced DB instance is a member of an Aurora cluster
    #[error("RDS DB instance `{name}` belongs to the Aurora cluster `{cluster}`")]
    #[diagnostic(
        code(declastruct::aws::instance_in_cluster),
        help(
            "tunnel into the cluster instead: `into: {{ cluster: {{ name: {cluster} }} }}` (add `endpoint: reader` for the replicas, or a custom endpoint's name for chosen instances)"
        )
    )]
    InstanceInCluster {
        /// the instance
        name: String,
        /// its cluster
        cluster: String,
    },

    /// the DB instance exists but has no endpoint yet
    #[error("RDS DB instance `{name}` has no endpoint yet (status: {status})")]
    #[diagnostic(
        code(declastruct::aws::instance_not_ready),
        help("wait until the instance is `available`, then run the command again")
    )]
    InstanceNotReady {
        /// the identifier
        name: String,
        /// its status
        status: String,
    },

    /// the instance is stopped: nothing answers behind its endpoint
    #[error("RDS DB instance `{name}` is stopped")]
    #[diagnostic(
        code(declastruct::aws::instance_stopped),
        help(
            "start it with `aws rds start-db-instance --db-instance-identifier {name}` (it takes a few minutes), then apply again"
        )
    )]
    InstanceStopped {
        /// the identifier
        name: String,
    },

    /// the cluster has no custom endpoint of that name
    #[error("RDS cluster `{cluster}` has no endpoint `{endpoint}`")]
    #[diagnostic(
        code(declastruct::aws::endpoint_not_found),
        help(
            "use `writer`, `reader`, or the identifier of one of the cluster's custom endpoints (`aws rds describe-db-cluster-endpoints --db-cluster-identifier {cluster}`)"
        )
    )]
    EndpointNotFound {
        /// the cluster
        cluster: String,
        /// the endpoint as written
        endpoint: String,
    },

    /// a secret is not the JSON RDS writes
    #[error("the secret `{secret}` does not hold JSON with `username` and `password`")]
    #[diagnostic(
        code(declastruct::connect::secret_shape),
        help(
            "store it as RDS does: {{\"username\": \"...\", \"password\": \"...\"}} (more keys are fine), or use `connect.password.env`"
        )
    )]
    SecretShape {
        /// the secret's name or ARN (never its value)
        secret: String,
    },

    /// a secret's JSON has no `password` key: only the names of its keys are told, never their values
    #[error(
        "the secret `{secret}` of the tunnel {tunnel} has no `password` key; its keys are: {}",
        if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
    )]
    #[diagnostic(
        code(declastruct::connect::secret_without_password),
        help(
            "store the password under the key `password`, as RDS does ({{\"username\": \"...\", \"password\": \"...\"}}), or name the secret that holds it in `connect.password.secret`"
        )
    )]
    SecretWithoutPassword {
        /// the secret's name or ARN
        secret: String,
        /// the keys it has, sorted
        keys: Vec<String>,
        /// the tunnel's address
        tunnel: String,
    },

    /// Secrets Manager has no secret of that name or ARN in the region asked
    #[error("the secret `{secret}` of the tunnel {tunnel} was not found in {region}")]
    #[diagnostic(
        code(declastruct::connect::secret_not_found),
        help(
            "check its name and region (`aws secretsmanager list-secrets --region {region}`); a secret is read in the manifest's region (`aws.region`, else AWS_REGION or the profile's)"
        )
    )]
    SecretNotFound {
        /// the secret's name or ARN
        secret: String,
        /// the region it was looked for in
        region: String,
        /// the tunnel's address
        tunnel: String,
    },

    /// a secret's ARN names another region than the one declastruct calls
    #[error(
        "the secret `{secret}` of the tunnel {tunnel} is in {secret_region}, and declastruct reads secrets in {region}"
    )]
    #[diagnostic(
        code(declastruct::connect::secret_in_another_region),
        help(
            "replicate it to {region} (`aws secretsmanager replicate-secret-to-regions --secret-id {secret} --add-replica-regions Region={region}`) and name the replica, or use the manifest's region for the secret"
        )
    )]
    SecretInAnotherRegion {
        /// the secret's ARN
        secret: String,
        /// the region in its ARN
        secret_region: String,
        /// the region declastruct calls
        region: String,
        /// the tunnel's address
        tunnel: String,
    },

    /// `managed: true` for a database whose master password RDS does not manage
    #[error("RDS does not manage the master user password of {target}")]
    #[diagnostic(
        code(declastruct::connect::no_managed_secret),
        help(
            "turn it on (`aws rds modify-db-cluster --manage-master-user-password`, or modify-db-instance), or name the secret with `connect.password.secret`"
        )
    )]
    NoManagedSecret {
        /// the cluster or instance
        target: String,
    },

    /// `iam: true` without `user`
    #[error("an IAM auth token is signed for one database user, and `connect.user` is not set")]
    #[diagnostic(
        code(declastruct::connect::iam_needs_user),
        help("set `connect.user` to the database user granted `rds_iam`")
    )]
    IamNeedsUser,

    /// `env: NAME` while NAME is not set
    #[error("the environment variable `{variable}` (connect.password.env) is not set")]
    #[diagnostic(
        code(declastruct::connect::password_variable_unset),
        help("export it before running declastruct, e.g. in your CI's secrets")
    )]
    PasswordVariableUnset {
        /// the variable's name
        variable: String,
    },

    /// the cluster is stopped: nothing answers behind its endpoint
    #[error("RDS cluster `{name}` is stopped")]
    #[diagnostic(
        code(declastruct::aws::cluster_stopped),
        help(
            "start it with `aws rds start-db-cluster --db-cluster-identifier {name}` (it takes a few minutes), then apply again"
        )
    )]
    ClusterStopped {
        /// the identifier
        name: String,
    },

    /// an AWS API call failed
    #[error("AWS {operation} failed: {message}")]
    #[diagnostic(code(declastruct::aws::call_failed), help("{help}"))]
    Call {
        /// the API operation, e.g. `ec2:DescribeInstances`
        operation: &'static str,
        /// what AWS or the SDK said
        message: String,
        /// what to do about it
        help: String,
    },

    /// waiting for an instance to reach a state took too long
    #[error("instance {instance_id} did not become {status} within {seconds} s")]
    #[diagnostic(
        code(declastruct::aws::wait_timeout),
        help("look at the instance in the EC2 console; run the command again once it has settled")
    )]
    WaitTimeout {
        /// the instance
        instance_id: String,
        /// the state waited for
        status: String,
        /// the limit
        seconds: u64,
    },

    /// the local port is held by a program that is not this tunnel
    #[error("local port {port} is already in use by {holder}")]
    #[diagnostic(code(declastruct::tunnel::port_in_use), help("{help}"))]
    PortInUse {
        /// the port
        port: u16,
        /// who holds it, as far as the system tells
        holder: String,
        /// whose to stop, and how: another manifest's tunnel is closed from that manifest; another program is
        /// never stopped by declastruct
        help: String,
    },

    /// the AWS CLI program cannot be found
    #[error("the AWS CLI `{program}` was not found")]
    #[diagnostic(
        code(declastruct::tunnel::aws_cli_not_found),
        help(
            "install the AWS CLI v2 (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html) and the Session Manager plugin (https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html), or point DECLASTRUCT_AWS_CLI at it"
        )
    )]
    AwsCliNotFound {
        /// the program name or path
        program: String,
    },

    /// the tunnel's session did not become ready
    #[error("the tunnel on local port {port} did not open: {reason}\n{log_tail}")]
    #[diagnostic(code(declastruct::tunnel::open_failed), help("{help}"))]
    TunnelOpenFailed {
        /// the local port
        port: u16,
        /// why it failed
        reason: String,
        /// the last lines of the session's log
        log_tail: String,
        /// what to do
        help: String,
    },

    /// a tunnel was closed, and still something serves its local port
    #[error(
        "the tunnel on local port {port} was closed, but the port still serves: it is held by {holder}"
    )]
    #[diagnostic(
        code(declastruct::tunnel::still_served),
        help(
            "a process that left the tunnel's process group (or dropped its marker) keeps the port; declastruct signals only processes it can prove its own: stop that one yourself (`ps -o pid,pgid,cmd -p PID`), then run the command again"
        )
    )]
    PortStillServed {
        /// the local port
        port: u16,
        /// who holds it, as far as the system tells
        holder: String,
    },

    /// a tunnel's open failed after this apply closed the tunnel that held its local port
    #[error(
        "{address}: the tunnel that held local port {port} ({closed}) was closed to free the port, and then the new tunnel did not open"
    )]
    #[diagnostic(
        code(declastruct::tunnel::moved_open_failed),
        help(
            "the old tunnel is closed; to get it back, undo the manifest change that moved it and run `declastruct apply`, or fix the cause below and apply again"
        )
    )]
    OpenAfterCloseFailed {
        /// the tunnel that failed to open
        address: String,
        /// the local port both use
        port: u16,
        /// the address of the tunnel that was closed
        closed: String,
        /// why the open failed
        #[source]
        source: Box<AwsError>,
    },

    /// `exec` was told not to start a stopped bastion, and a tunnel needs it
    #[error("the bastion {bastion} is {status}, and --no-start forbids starting it")]
    #[diagnostic(
        code(declastruct::exec::bastion_not_running),
        help(
            "start it with `declastruct apply` (a tunnel declared OPEN starts its bastion), or run exec without --no-start"
        )
    )]
    BastionNotRunning {
        /// the bastion, as the manifest names it
        bastion: String,
        /// its live status
        status: String,
    },

    /// no folder to keep tunnel state in
    #[error(
        "no state folder: DECLASTRUCT_HOME and HOME are unset, and user {user} has no home folder"
    )]
    #[diagnostic(
        code(declastruct::tunnel::no_state_folder),
        help(
            "set DECLASTRUCT_HOME to an absolute path (e.g. DECLASTRUCT_HOME=$PWD/.declastruct): tunnels must be found again from any folder"
        )
    )]
    NoStateFolder {
        /// the user id
        user: String,
    },

    /// the user interrupted a wait; what it had started was stopped
    #[error("interrupted while {waiting_for}")]
    #[diagnostic(
        code(declastruct::interrupted),
        help("nothing of it is left running; run the command again to finish it")
    )]
    Interrupted {
        /// what was being waited for
        waiting_for: String,
    },

    /// an endpoint variable that is not an http(s) URL
    #[error(
        "{variable} is `{value}`, which is not a URL: it needs a scheme (http:// or https://) and a host"
    )]
    #[diagnostic(
        code(declastruct::aws::bad_endpoint),
        help(
            "write it with its scheme, e.g. {variable}=http://{value} for moto or LocalStack on this machine, or unset it to reach AWS"
        )
    )]
    BadEndpoint {
        /// the variable, e.g. `AWS_ENDPOINT_URL`
        variable: &'static str,
        /// its value, as given
        value: String,
    },

    /// no region is configured anywhere
    #[error(
        "no region: AWS_REGION is unset, the manifest has no `aws.region`, and the profile names none"
    )]
    #[diagnostic(
        code(declastruct::aws::no_region),
        help(
            "set `aws.region` in the manifest (e.g. `aws: {{ region: us-east-1 }}`), or AWS_REGION, or `region` in your profile"
        )
    )]
    NoRegion,

    /// the selected profile is not in the AWS configuration files
    #[error("profile `{profile}` is not in ~/.aws/config or ~/.aws/credentials")]
    #[diagnostic(
        code(declastruct::aws::profile_not_found),
        help("{}", profile_help(source_of_name, known))
    )]
    ProfileNotFound {
        /// the profile's name
        profile: String,
        /// where the name came from
        source_of_name: &'static str,
        /// the profiles that exist
        known: Vec<String>,
    },

    /// a code path that should be impossible
    #[error("unexpected: {0}")]
    #[diagnostic(
        code(declastruct::bug),
        help("this is a bug in declastruct; please report it with the command and manifest")
    )]
    Unexpected(String),

    /// a tunnel's files, lock or processes failed: the tunnel machinery's own errors
    #[error(transparent)]
    #[diagnostic(transparent)]
    Tunnel(#[from] declastruct_tunnel::TunnelError),
}

fn instance_help(closest: &[String]) -> String {
    if closest.is_empty() {
        "check the DB instance identifier and the region (aws rds describe-db-instances)"
            .to_string()
    } else {
        format!(
            "check the DB instance identifier and the region; did you mean {}?",
            closest
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

fn profile_help(source_of_name: &str, known: &[String]) -> String {
    let known = if known.is_empty() {
        "no profile is defined there".to_string()
    } else {
        format!("the profiles there are {}", known.join(", "))
    };
    format!(
        "fix {source_of_name}, or create the profile with `aws configure --profile NAME` (or `aws configure sso`); {known}"
    )
}

fn bastion_help(closest: &[String]) -> String {
    if closest.is_empty() {
        "check the instance's `exid` tag (or id) and the region; terminated instances do not count"
            .to_string()
    } else {
        format!(
            "check the instance's `exid` tag and the region; did you mean {}?",
            closest
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

fn cluster_help(closest: &[String]) -> String {
    if closest.is_empty() {
        "check the cluster identifier and the region (aws rds describe-db-clusters)".to_string()
    } else {
        format!(
            "check the cluster identifier and the region; did you mean {}?",
            closest
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        )
    }
}

impl AwsError {
    /// .what = a failed SDK call turned into a message that names the call and what to do
    /// .why = expired credentials, AccessDenied and throttling each want a different fix
    pub(crate) fn from_sdk<E, R>(
        operation: &'static str,
        endpoint: &str,
        error: &aws_sdk_ec2::error::SdkError<E, R>,
    ) -> Self
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
        let code = error.code().map(str::to_string);
        let full = aws_sdk_ec2::error::DisplayErrorContext(error).to_string();
        let detail = error.message().map_or_else(|| full.clone(), str::to_string);
        // the credential chain's own error, wherever it sits in the chain of causes (a dispatch failure
        // carries it when the instance metadata service answers errors)
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        let mut from_credentials = false;
        while let Some(current) = cause {
            if current
                .downcast_ref::<aws_credential_types::provider::error::CredentialsError>()
                .is_some()
            {
                from_credentials = true;
                break;
            }
            cause = current.source();
        }
        let missing_credentials = from_credentials
            || full.contains("no credentials")
            || full.contains("credential provider");
        if missing_credentials {
            return Self::Call {
                operation,
                message: "no AWS credentials were found".to_string(),
                help: "set AWS_PROFILE (and run `aws sso login` for SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or `aws.profile` in the manifest".to_string(),
            };
        }
        if let SdkError::TimeoutError(_) = error {
            return Self::Call {
                operation,
                message: format!("{endpoint} did not answer in time"),
                help: format!(
                    "AWS could not be reached at {endpoint}: check the network, the region and AWS_ENDPOINT_URL"
                ),
            };
        }
        if let SdkError::DispatchFailure(_) = error {
            // the innermost cause says it in a few words ("Connection refused (os error 111)"); the whole chain is
            // a page of nested debug output
            let mut innermost: &(dyn std::error::Error + 'static) = error;
            while let Some(source) = innermost.source() {
                innermost = source;
            }
            return Self::Call {
                operation,
                message: format!("could not connect to {endpoint}: {innermost}"),
                help: format!(
                    "AWS could not be reached at {endpoint}: check the network, the region and AWS_ENDPOINT_URL"
                ),
            };
        }
        let help = match (error, code.as_deref()) {
            (_, Some("ExpiredToken" | "ExpiredTokenException" | "RequestExpired")) => {
                "your AWS credentials have expired: refresh them (e.g. `aws sso login`) and run again".to_string()
            }
            (_, Some("AuthFailure" | "InvalidClientTokenId" | "UnrecognizedClientException" | "SignatureDoesNotMatch")) => {
                "AWS did not accept your credentials: check AWS_PROFILE / AWS_ACCESS_KEY_ID and run `aws sts get-caller-identity`".to_string()
            }
            (_, Some("UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException")) => format!(
                "your AWS identity may not call {operation}: ask for that permission, or use a profile that has it"
            ),
            (_, Some("Throttling" | "ThrottlingException" | "RequestLimitExceeded")) => {
                "AWS is throttling requests even after retries: wait a minute and run again".to_string()
            }
            _ => "check the region, your credentials and the resource names, then run again".to_string(),
        };
        let message = match code {
            Some(code) => format!("{code}: {detail}"),
            None => detail,
        };
        Self::Call {
            operation,
            message,
            help,
        }
    }
}
