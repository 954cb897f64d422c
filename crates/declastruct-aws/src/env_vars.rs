//! .what = every environment variable declastruct reads, named once
//! .why = code reads them through these names, and `--help` lists them from the same table (as uv's `EnvVars`)

/// .what = the environment variables declastruct honours
/// .why = one registry: a variable is added here, then read and documented through it
#[derive(Debug, Clone, Copy)]
pub struct EnvVars;

impl EnvVars {
    /// the state folder; tunnels live in `$DECLASTRUCT_HOME/tunnels/` (default `~/.declastruct`)
    pub const DECLASTRUCT_HOME: &'static str = "DECLASTRUCT_HOME";
    /// the program run as the AWS CLI for `ssm start-session` (default `aws` on PATH)
    pub const DECLASTRUCT_AWS_CLI: &'static str = "DECLASTRUCT_AWS_CLI";
    /// how long opening a tunnel waits for the bastion's SSM agent, in seconds (default 180)
    pub const DECLASTRUCT_AGENT_TIMEOUT_SECONDS: &'static str = "DECLASTRUCT_AGENT_TIMEOUT_SECONDS";
    /// set by declastruct on every tunnel process: `{tunnels folder}/{hash}`; never set it yourself
    pub const DECLASTRUCT_TUNNEL: &'static str = "DECLASTRUCT_TUNNEL";
    /// any non-empty value turns colour off
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// the AWS profile, when the manifest has no `aws.profile`
    pub const AWS_PROFILE: &'static str = "AWS_PROFILE";
    /// the AWS region, when the manifest has no `aws.region`
    pub const AWS_REGION: &'static str = "AWS_REGION";
    /// another endpoint for every AWS service (LocalStack, moto)
    pub const AWS_ENDPOINT_URL: &'static str = "AWS_ENDPOINT_URL";
    /// the home folder, where `~/.declastruct` and `~/.aws` are
    pub const HOME: &'static str = "HOME";

    /// .what = the variables a user sets, with what each does, for `--help`
    /// .why = the help cannot drift from the names the code reads
    pub const DOCUMENTED: [(&'static str, &'static str); 7] = [
        (
            Self::DECLASTRUCT_HOME,
            "the state folder (default ~/.declastruct)",
        ),
        (
            Self::DECLASTRUCT_AWS_CLI,
            "the program run as `aws ssm start-session` (default `aws`)",
        ),
        (
            Self::DECLASTRUCT_AGENT_TIMEOUT_SECONDS,
            "seconds to wait for the bastion's SSM agent (default 180)",
        ),
        (Self::NO_COLOR, "any non-empty value turns colour off"),
        (
            Self::AWS_PROFILE,
            "the AWS profile, unless the manifest sets aws.profile",
        ),
        (
            Self::AWS_REGION,
            "the AWS region, unless the manifest sets aws.region",
        ),
        (
            Self::AWS_ENDPOINT_URL,
            "another endpoint for AWS (LocalStack, moto)",
        ),
    ];
}
