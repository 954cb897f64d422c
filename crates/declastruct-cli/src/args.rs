//! .what = the command line: every command, flag and argument
//! .why = the contract's interface in one place; clap turns usage errors into exit code 2

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

const EXAMPLES: &str = "Examples:
  declastruct validate
  declastruct plan -f examples/basic.yml
  declastruct plan --json --out plan.json
  declastruct apply --auto-approve
  declastruct apply --plan plan.json
  declastruct status --json";

/// Declarative, version-controlled access to private AWS databases through SSM tunnels.
#[derive(Debug, Parser)]
#[command(name = "declastruct", version, after_help = EXAMPLES)]
pub struct Cli {
    /// The manifest to read [default: declastruct.yml]
    #[arg(short = 'f', long = "file", global = true, value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Set a manifest variable (`${NAME}`); wins over the environment; repeatable
    #[arg(long = "var", global = true, value_name = "NAME=VALUE")]
    pub vars: Vec<String>,

    /// Print more (repeat for more detail)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print less: only errors and the essential result
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Never colour the output (as does NO_COLOR)
    #[arg(long, global = true)]
    pub no_color: bool,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// .what = the commands of the contract
/// .why = one variant a command, each with its own flags
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest offline (no AWS call)
    #[command(after_help = "Example:\n  declastruct validate -f declastruct.yml")]
    Validate,

    /// Read live state and print the changes apply would make
    #[command(
        after_help = "Examples:\n  declastruct plan\n  declastruct plan --json --out plan.json\n  declastruct plan --detailed-exitcode   # 0 no changes, 2 changes, 1 error\n  declastruct plan --target vpc-main-bastion.ahbodedb.7775"
    )]
    Plan(PlanArgs),

    /// Plan, confirm, and apply the changes in dependency order
    #[command(
        after_help = "Examples:\n  declastruct apply\n  declastruct apply --auto-approve\n  declastruct apply --plan plan.json\n  declastruct apply --replace vpc-main-bastion.ahbodedb.7775"
    )]
    Apply(ApplyArgs),

    /// Show the live state of every declared resource
    #[command(
        after_help = "Examples:\n  declastruct status\n  declastruct status --json\n  declastruct status --all"
    )]
    Status(StatusArgs),

    /// Render a saved plan as `plan` does, without AWS
    #[command(
        after_help = "Examples:\n  declastruct show plan.json\n  declastruct show plan.json --json"
    )]
    Show(ShowArgs),

    /// Print the manifest's JSON Schema
    #[command(after_help = "Example:\n  declastruct schema > schemas/declastruct.schema.json")]
    Schema,

    /// Print a tunnel's log
    #[command(after_help = "Example:\n  declastruct logs vpc-main-bastion.ahbodedb.7775 --follow")]
    Logs(LogsArgs),

    /// Run a command with the connection variables of tunnels, opening them for it if they are not open
    #[command(
        after_help = "Examples:\n  declastruct exec -- psql -c 'select 1'\n  declastruct exec vpc-main-bastion.ahbodedb.7775 -- ./migrate\n\nThe command gets PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and DATABASE_URL (MYSQL_* for MySQL), and\nDECLASTRUCT_<ADDRESS>_URL for each tunnel. Tunnels it opened are closed when it ends; tunnels already open\nstay open. It exits with the command's status, or 1 when a tunnel could not be opened."
    )]
    Exec(ExecArgs),

    /// Print the connection variables of an open tunnel
    #[command(
        after_help = "Examples:\n  eval \"$(declastruct env vpc-main-bastion.ahbodedb.7775)\"\n  declastruct env vpc-main-bastion.ahbodedb.7775 --format dotenv > .env\n  declastruct env vpc-main-bastion.ahbodedb.7775 --format json"
    )]
    Env(EnvArgs),

    /// Print a shell completion script
    #[command(
        after_help = "Example:\n  declastruct completions bash > ~/.local/share/bash-completion/completions/declastruct"
    )]
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// .what = the flags of `plan`
/// .why = JSON for CI, a saved plan for `apply --plan`, and exit codes that tell "changes" from "no changes"
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Print only the plan document, as JSON
    #[arg(long)]
    pub json: bool,

    /// Save the plan document to FILE, for `apply --plan FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there are no changes, 2 when there are, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Plan only this resource (its address, as `plan` prints it) and what it depends on; repeatable
    #[arg(long, value_name = "ADDRESS")]
    pub target: Vec<String>,
}

/// .what = the flags of `apply`
/// .why = confirmation, saved plans and concurrency
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply a plan saved by `plan --out FILE`, without asking, if it is not stale
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// Do not ask for confirmation
    #[arg(long)]
    pub auto_approve: bool,

    /// How many independent changes may run at once
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,

    /// Print only JSON: the plan and the outcome of each change; needs --auto-approve or --plan
    #[arg(long)]
    pub json: bool,

    /// Apply only this resource (its address, as `plan` prints it) and what it depends on; repeatable
    #[arg(long, value_name = "ADDRESS")]
    pub target: Vec<String>,

    /// Close and open this tunnel again even if it looks healthy; repeatable
    #[arg(long, value_name = "ADDRESS")]
    pub replace: Vec<String>,
}

/// .what = the flags of `status`
/// .why = a table for people, JSON for scripts
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,

    /// Every tunnel of this machine's state folder, whichever manifest opened it; needs no manifest and no AWS
    #[arg(long)]
    pub all: bool,
}

/// .what = the arguments of `exec`
/// .why = which tunnels, and the command to run with their connection variables
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The tunnels' addresses, as `plan` prints them; none means every tunnel of the manifest
    #[arg(value_name = "ADDRESS")]
    pub addresses: Vec<String>,

    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// .what = the formats `env` prints in
/// .why = `eval` in a shell, a `.env` file, or a program reading JSON
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    /// `export NAME='value'` lines
    Shell,
    /// `NAME="value"` lines
    Dotenv,
    /// one JSON object
    Json,
}

/// .what = the arguments of `env`
/// .why = one open tunnel, and the format
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The tunnel's address, as `plan` prints it
    pub address: String,

    /// How to print the variables
    #[arg(long, value_enum, default_value = "shell")]
    pub format: EnvFormat,
}

/// .what = the arguments of `show`
/// .why = a saved plan, rendered as `plan` renders it, with no AWS call
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved by `plan --out FILE`
    #[arg(value_name = "PLANFILE")]
    pub plan: PathBuf,

    /// Print the plan document, as JSON
    #[arg(long)]
    pub json: bool,
}

/// .what = the arguments of `logs`
/// .why = a tunnel's log by the slug `plan` prints
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The tunnel's address, as `plan` prints it (e.g. vpc-main-bastion.ahbodedb.7775)
    pub address: String,

    /// Keep printing what is appended
    #[arg(long)]
    pub follow: bool,
}

impl Cli {
    /// .what = the manifest's path: `-f`, else `declastruct.yml`
    /// .why = commands that read a manifest start here; `apply --plan` uses the plan's own manifest unless `-f`
    pub fn manifest_path(&self) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| PathBuf::from("declastruct.yml"))
    }
}
