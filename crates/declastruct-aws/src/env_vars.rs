//! .what = every environment variable the AWS crate (and the tunnel crate under it) reads, named once
//! .why = code reads them through these names; the command line lists them in `--help` from its own table, which
//! names these constants (as uv's `EnvVars`)

/// .what = the environment variables declastruct honours
/// .why = one registry: a variable is added here, then read and documented through it
#[derive(Debug, Clone, Copy)]
pub struct EnvVars;

impl EnvVars {
    /// the state folder; tunnels live in `$DECLASTRUCT_HOME/tunnels/` (default `~/.declastruct`)
    pub const DECLASTRUCT_HOME: &'static str = "DECLASTRUCT_HOME";
    /// the program run as the AWS CLI for `ssm start-session` (default `aws` on PATH)
    pub const DECLASTRUCT_AWS_CLI: &'static str = "DECLASTRUCT_AWS_CLI";
    /// how tunnels carry their sessions when the manifest does not say: `auto` (default), `plugin` or `native`
    pub const DECLASTRUCT_TRANSPORT: &'static str = "DECLASTRUCT_TRANSPORT";
    /// how long opening a tunnel waits for the bastion's SSM agent, in seconds (default 180)
    pub const DECLASTRUCT_AGENT_TIMEOUT_SECONDS: &'static str = "DECLASTRUCT_AGENT_TIMEOUT_SECONDS";
    /// set by declastruct on every tunnel process: `{tunnels folder}/{hash}`; never set it yourself
    pub const DECLASTRUCT_TUNNEL: &'static str = declastruct_tunnel::TUNNEL_MARKER;
    /// the AWS profile, when the manifest has no `aws.profile`
    pub const AWS_PROFILE: &'static str = "AWS_PROFILE";
    /// the AWS region, when the manifest has no `aws.region`
    pub const AWS_REGION: &'static str = "AWS_REGION";
    /// another endpoint for every AWS service (LocalStack, moto)
    pub const AWS_ENDPOINT_URL: &'static str = "AWS_ENDPOINT_URL";
    /// another endpoint for one service, as the AWS SDKs read them (`AWS_ENDPOINT_URL_EC2`, ...)
    pub const AWS_ENDPOINT_URL_SERVICES: [&'static str; 4] = [
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_RDS",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_SSM",
    ];
    /// `true`: the SDKs ignore every configured endpoint
    pub const AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: &'static str =
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS";
    /// the home folder, where `~/.declastruct` and `~/.aws` are
    pub const HOME: &'static str = "HOME";
}
