//! .what = the environment variables the command line documents in `--help`: the AWS crate's, and its own
//! .why = `NO_COLOR` is the command line's alone; the help's table cannot drift from the names the code reads

use declastruct_aws::EnvVars;

/// any non-empty value turns colour off
pub const NO_COLOR: &str = "NO_COLOR";

/// the terminal's type: `dumb` gets no spinner and no cursor movement, as on a pipe
pub const TERM: &str = "TERM";

/// .what = the variables a user sets, with what each does, for `--help`
/// .why = the help cannot drift from the names the code reads
pub const DOCUMENTED: [(&str, &str); 7] = [
    (
        EnvVars::DECLASTRUCT_HOME,
        "the state folder (default ~/.declastruct)",
    ),
    (
        EnvVars::DECLASTRUCT_AWS_CLI,
        "the program run as `aws ssm start-session` (default `aws`)",
    ),
    (
        EnvVars::DECLASTRUCT_AGENT_TIMEOUT_SECONDS,
        "seconds to wait for the bastion's SSM agent (default 180)",
    ),
    (NO_COLOR, "any non-empty value turns colour off"),
    (
        EnvVars::AWS_PROFILE,
        "the AWS profile, unless the manifest sets aws.profile",
    ),
    (
        EnvVars::AWS_REGION,
        "the AWS region, unless the manifest sets aws.region",
    ),
    (
        EnvVars::AWS_ENDPOINT_URL,
        "another endpoint for AWS (LocalStack, moto)",
    ),
];
