//! .what = the command line: every command, flag and argument
//! .why = the contract's interface in one place; clap turns usage errors into exit code 2

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use declastruct_aws::EnvVars;

use crate::env_vars::{DOCUMENTED, NO_COLOR};

const EXAMPLES: &str = "Examples:
  declastruct validate
  declastruct plan -f examples/basic.yml
  declastruct plan --json --out plan.json
  declastruct apply --auto-approve
  declastruct apply --plan plan.json
  declastruct status --json";

/// Declarative, version-controlled access to private AWS databases through SSM tunnels.
#[derive(Debug, Parser)]
#[command(name = "declastruct", version, after_help = top_level_help())]
pub struct Cli {
    /// The manifest to read [default: declastruct.yml in this folder or the nearest parent]
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PATH",
        help_heading = "Manifest options"
    )]
    file: Option<PathBuf>,

    /// Set a manifest variable (`${NAME}`); wins over the environment; repeatable
    #[arg(
        long = "var",
        value_name = "NAME=VALUE",
        help_heading = "Manifest options",
        add = ArgValueCandidates::new(variable_names)
    )]
    vars: Vec<String>,

    /// Read manifest variables from a file of NAME=VALUE lines (Compose's env-file); below --var, above the
    /// environment; repeatable, the later file wins
    #[arg(
        long = "var-file",
        value_name = "FILE",
        help_heading = "Manifest options"
    )]
    var_files: Vec<PathBuf>,

    /// Print more (repeat for more detail)
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet", help_heading = "Global options")]
    pub verbose: u8,

    /// Print less: only errors and the essential result
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,

    /// Never colour the output
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = NO_COLOR,
        value_parser = present_and_not_empty,
        // the default goes through the parser too: "" reads as colour on (clap's own default, "false", would not)
        default_value = "",
        hide_env_values = true
    )]
    pub no_color: bool,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// .what = the options of every command that reads a manifest
/// .why = `-f` and `--var` are offered only where they mean something; they are also accepted before the
/// command (`declastruct -f x.yml plan`), as the contract says
#[derive(Debug, Args, Default)]
pub struct ManifestArgs {
    /// The manifest to read [default: declastruct.yml in this folder or the nearest parent]
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PATH",
        help_heading = "Manifest options"
    )]
    pub file: Option<PathBuf>,

    /// Set a manifest variable (`${NAME}`); wins over the environment; repeatable
    #[arg(
        long = "var",
        value_name = "NAME=VALUE",
        help_heading = "Manifest options",
        add = ArgValueCandidates::new(variable_names)
    )]
    pub vars: Vec<String>,

    /// Read manifest variables from a file of NAME=VALUE lines (Compose's env-file); below --var, above the
    /// environment; repeatable, the later file wins
    #[arg(
        long = "var-file",
        value_name = "FILE",
        help_heading = "Manifest options"
    )]
    pub var_files: Vec<PathBuf>,
}

/// NO_COLOR's rule (no-color.org): set to anything but the empty string turns colour off, `0` included
fn present_and_not_empty(value: &str) -> Result<bool, String> {
    Ok(!value.is_empty())
}

/// the environment variables a command honours, for the end of its `--help`
fn environment_help(names: &[&str]) -> String {
    let width = names.iter().map(|name| name.len()).max().unwrap_or(0);
    let mut text = String::from("Environment:");
    for name in names {
        let meaning = DOCUMENTED
            .iter()
            .find(|(documented, _)| documented == name)
            .map_or("", |(_, meaning)| meaning);
        text.push_str(&format!("\n  {name:width$}  {meaning}"));
    }
    text
}

/// every variable: commands that talk to AWS or to tunnels
const ALL_VARIABLES: &[&str] = &[
    EnvVars::DECLASTRUCT_HOME,
    EnvVars::DECLASTRUCT_AWS_CLI,
    EnvVars::DECLASTRUCT_AGENT_TIMEOUT_SECONDS,
    EnvVars::AWS_PROFILE,
    EnvVars::AWS_REGION,
    EnvVars::AWS_ENDPOINT_URL,
    NO_COLOR,
];
/// commands that read AWS but open no tunnel
const READING_VARIABLES: &[&str] = &[
    EnvVars::DECLASTRUCT_HOME,
    EnvVars::AWS_PROFILE,
    EnvVars::AWS_REGION,
    EnvVars::AWS_ENDPOINT_URL,
    NO_COLOR,
];
/// commands that only read this machine's tunnels
const LOCAL_VARIABLES: &[&str] = &[EnvVars::DECLASTRUCT_HOME, NO_COLOR];

fn with_environment(examples: &str, names: &[&str]) -> String {
    format!("{examples}\n\n{}", environment_help(names))
}

fn top_level_help() -> String {
    with_environment(EXAMPLES, ALL_VARIABLES)
}

/// .what = the commands of the contract
/// .why = one variant a command, each with its own flags
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest offline (no AWS call)
    #[command(after_help = with_environment("Examples:\n  declastruct validate\n  declastruct validate -f examples/environments.yml --var env=prod", &[NO_COLOR]))]
    Validate(ValidateArgs),

    /// Read live state and print the changes apply would make
    #[command(after_help = with_environment("Examples:\n  declastruct plan\n  declastruct plan --json --out plan.json\n  declastruct plan --detailed-exitcode   # 0 no changes, 2 changes, 1 error\n  declastruct plan --target vpc-main-bastion.ahbodedb.7775", READING_VARIABLES))]
    Plan(PlanArgs),

    /// Plan, confirm, and apply the changes in dependency order
    #[command(after_help = with_environment("Examples:\n  declastruct apply\n  declastruct apply --auto-approve\n  declastruct apply --plan plan.json\n  declastruct apply --replace vpc-main-bastion.ahbodedb.7775", ALL_VARIABLES))]
    Apply(ApplyArgs),

    /// Show the live state of every declared resource
    #[command(after_help = with_environment("Examples:\n  declastruct status\n  declastruct status --json\n  declastruct status --all", READING_VARIABLES))]
    Status(StatusArgs),

    /// Render a saved plan as `plan` does, without AWS
    #[command(after_help = with_environment("Examples:\n  declastruct show plan.json\n  declastruct show plan.json --json", &[NO_COLOR]))]
    Show(ShowArgs),

    /// Write a starter declastruct.yml here (never over an existing one), with its JSON Schema beside it
    #[command(
        after_help = "Examples:\n  declastruct init\n  declastruct init --bastion vpc-main-bastion --cluster ahbodedb --port 7775"
    )]
    Init(InitArgs),

    /// Print the manifest's JSON Schema
    #[command(after_help = "Example:\n  declastruct schema > schemas/declastruct.schema.json")]
    Schema,

    /// Print a tunnel's log
    #[command(after_help = with_environment("Example:\n  declastruct logs vpc-main-bastion.ahbodedb.7775 --follow", LOCAL_VARIABLES))]
    Logs(LogsArgs),

    /// Run a command with the connection variables of tunnels, opening them for it if they are not open
    #[command(after_help = with_environment("Examples:\n  declastruct exec -- psql -c 'select 1'\n  declastruct exec vpc-main-bastion.ahbodedb.7775 -- ./migrate\n\nThe command gets PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and DATABASE_URL (MYSQL_* for MySQL), and DECLASTRUCT_<ADDRESS>_URL for each tunnel. Tunnels it opened are closed when it ends; tunnels already open stay open. It exits with the command's status, or 1 when a tunnel could not be opened.", ALL_VARIABLES))]
    Exec(ExecArgs),

    /// Open a tunnel and hold it until Ctrl-C, printing how to connect (like `kubectl port-forward`)
    #[command(after_help = with_environment("Examples:\n  declastruct connect vpc-main-bastion.ahbodedb.7775\n\nThe tunnel is held like an `exec` holds it: it closes on Ctrl-C or SIGTERM unless the manifest or another command still holds it, and never closes under them.", ALL_VARIABLES))]
    Connect(ConnectArgs),

    /// Print the connection variables of an open tunnel
    #[command(after_help = with_environment("Examples:\n  eval \"$(declastruct env vpc-main-bastion.ahbodedb.7775)\"\n  declastruct env vpc-main-bastion.ahbodedb.7775 --format dotenv > .env\n  declastruct env vpc-main-bastion.ahbodedb.7775 --format json", READING_VARIABLES))]
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

/// .what = the flags of `validate`
/// .why = only the manifest's
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
}

/// .what = the flags of `plan`
/// .why = JSON for CI, a saved plan for `apply --plan`, and exit codes that tell "changes" from "no changes"
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

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
    #[arg(long, value_name = "ADDRESS", add = ArgValueCandidates::new(resource_addresses))]
    pub target: Vec<String>,

    /// Close the targeted tunnels (declared CLOSED or no longer declared) for every holder, not only this
    /// manifest's hold
    #[arg(long, requires = "target")]
    pub force_close: bool,
}

/// .what = the flags of `apply`
/// .why = confirmation, saved plans and concurrency
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

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
    #[arg(long, value_name = "ADDRESS", add = ArgValueCandidates::new(resource_addresses))]
    pub target: Vec<String>,

    /// Close and open this tunnel again even if it looks healthy; repeatable
    #[arg(long, value_name = "ADDRESS", add = ArgValueCandidates::new(tunnel_addresses))]
    pub replace: Vec<String>,

    /// Close the targeted tunnels (declared CLOSED or no longer declared) for every holder (exec, connect,
    /// other manifests), not only this manifest's hold
    #[arg(long, requires = "target")]
    pub force_close: bool,
}

/// .what = the flags of `status`
/// .why = a table for people, JSON for scripts
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// Print JSON
    #[arg(long)]
    pub json: bool,

    /// Every tunnel of this machine's state folder, whichever manifest opened it; needs no manifest and no AWS
    #[arg(long)]
    pub all: bool,

    /// Every column (pid, transport, far end) and every cell whole; by default the table fits 100 columns
    #[arg(long)]
    pub wide: bool,
}

/// .what = the arguments of `exec`
/// .why = which tunnels, and the command to run with their connection variables
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The tunnels' addresses, as `plan` prints them; none means every tunnel of the manifest
    #[arg(value_name = "ADDRESS", add = ArgValueCandidates::new(tunnel_addresses))]
    pub addresses: Vec<String>,

    /// Refuse (exit 1) instead of starting a stopped bastion
    #[arg(long)]
    pub no_start: bool,

    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// .what = the arguments of `init`
/// .why = what the starter manifest declares
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The bastion's `exid` tag
    #[arg(long, default_value = "my-bastion", value_name = "EXID")]
    pub bastion: String,

    /// The RDS cluster's identifier
    #[arg(long, default_value = "my-database", value_name = "NAME")]
    pub cluster: String,

    /// The local port of the tunnel
    #[arg(long, default_value_t = 7775, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    pub port: u16,
}

/// .what = the arguments of `connect`
/// .why = which tunnel to hold
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The tunnel's address, as `plan` prints it
    #[arg(value_name = "ADDRESS", add = ArgValueCandidates::new(tunnel_addresses))]
    pub address: String,

    /// Refuse (exit 1) instead of starting a stopped bastion
    #[arg(long)]
    pub no_start: bool,
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
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The tunnel's address, as `plan` prints it
    #[arg(add = ArgValueCandidates::new(tunnel_addresses))]
    pub address: String,

    /// How to print the variables: shell (`export NAME='value'` lines), dotenv (`NAME="value"` lines) or json (one
    /// object)
    #[arg(long, value_enum, default_value = "shell", hide_possible_values = true)]
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
    #[command(flatten)]
    pub manifest: ManifestArgs,

    /// The tunnel's address, as `plan` prints it (e.g. vpc-main-bastion.ahbodedb.7775)
    #[arg(add = ArgValueCandidates::new(tunnel_addresses))]
    pub address: String,

    /// Keep printing what is appended
    #[arg(long)]
    pub follow: bool,
}

impl Command {
    /// .what = the manifest options of a command that reads a manifest
    /// .why = `schema`, `show` and `completions` read none
    pub fn manifest_args(&self) -> Option<&ManifestArgs> {
        match self {
            Self::Validate(args) => Some(&args.manifest),
            Self::Plan(args) => Some(&args.manifest),
            Self::Apply(args) => Some(&args.manifest),
            Self::Status(args) => Some(&args.manifest),
            Self::Logs(args) => Some(&args.manifest),
            Self::Exec(args) => Some(&args.manifest),
            Self::Connect(args) => Some(&args.manifest),
            Self::Env(args) => Some(&args.manifest),
            Self::Show(_) | Self::Schema | Self::Init(_) | Self::Completions { .. } => None,
        }
    }

    /// .what = the command's name, as typed
    /// .why = errors about options name it
    pub fn name(&self) -> &'static str {
        match self {
            Self::Validate(_) => "validate",
            Self::Plan(_) => "plan",
            Self::Apply(_) => "apply",
            Self::Status(_) => "status",
            Self::Show(_) => "show",
            Self::Schema => "schema",
            Self::Init(_) => "init",
            Self::Logs(_) => "logs",
            Self::Exec(_) => "exec",
            Self::Connect(_) => "connect",
            Self::Env(_) => "env",
            Self::Completions { .. } => "completions",
        }
    }
}

/// .what = how the manifest was found
/// .why = the plan's header says when it came from a parent folder
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestLookup {
    /// `-f PATH`
    Given(PathBuf),
    /// `declastruct.yml` in the current folder
    Here(PathBuf),
    /// `declastruct.yml` in a parent folder, as a path relative to the current folder
    Parent(PathBuf),
    /// none in this folder or any parent: `declastruct.yml`, which does not exist
    Missing(PathBuf),
}

impl ManifestLookup {
    /// .what = the path to read
    /// .why = see the type
    pub fn path(&self) -> &PathBuf {
        match self {
            Self::Given(path) | Self::Here(path) | Self::Parent(path) | Self::Missing(path) => path,
        }
    }
}

/// the manifest's default name
pub const MANIFEST_NAME: &str = "declastruct.yml";

impl Cli {
    /// .what = `-f`, given after the command or before it
    /// .why = both places are accepted; after the command wins
    pub fn file(&self) -> Option<&PathBuf> {
        self.command
            .manifest_args()
            .and_then(|args| args.file.as_ref())
            .or(self.file.as_ref())
    }

    /// .what = every `--var`, those given before the command first
    /// .why = a later `--var` of the same name wins
    pub fn vars(&self) -> Vec<String> {
        let mut vars = self.vars.clone();
        if let Some(args) = self.command.manifest_args() {
            vars.extend(args.vars.iter().cloned());
        }
        vars
    }

    /// .what = every `--var-file`, those given before the command first
    /// .why = a later file wins
    pub fn var_files(&self) -> Vec<PathBuf> {
        let mut files = self.var_files.clone();
        if let Some(args) = self.command.manifest_args() {
            files.extend(args.var_files.iter().cloned());
        }
        files
    }

    /// .what = a usage problem clap cannot see: `-f` or `--var` before a command that reads no manifest
    /// .why = `declastruct -f x.yml schema` would silently ignore the file
    pub fn misplaced_manifest_option(&self) -> Option<String> {
        let given = self.file.is_some() || !self.vars.is_empty() || !self.var_files.is_empty();
        (given && self.command.manifest_args().is_none()).then(|| {
            format!(
                "`-f`, `--var` and `--var-file` are for commands that read a manifest; `{}` reads none",
                self.command.name()
            )
        })
    }

    /// .what = the manifest to read: `-f`, else `declastruct.yml` in the current folder or its nearest parent
    /// .why = as Compose and basti do, a command works from any folder of the project
    pub fn manifest_lookup(&self) -> ManifestLookup {
        if let Some(file) = self.file() {
            return ManifestLookup::Given(file.clone());
        }
        let here = PathBuf::from(MANIFEST_NAME);
        if here.exists() {
            return ManifestLookup::Here(here);
        }
        let Ok(current) = std::env::current_dir() else {
            return ManifestLookup::Missing(here);
        };
        let mut relative = PathBuf::new();
        for folder in current.ancestors().skip(1) {
            relative.push("..");
            if folder.join(MANIFEST_NAME).is_file() {
                return ManifestLookup::Parent(relative.join(MANIFEST_NAME));
            }
        }
        ManifestLookup::Missing(here)
    }

    /// .what = the manifest's path: see `manifest_lookup`
    /// .why = commands that read a manifest start here; `apply --plan` uses the plan's own manifest unless `-f`
    pub fn manifest_path(&self) -> PathBuf {
        self.manifest_lookup().path().clone()
    }
}

/// .what = the manifest of the command line being completed: its last `-f`/`--file`, else the one
/// `manifest_lookup` finds
/// .why = `declastruct -f prod.yml exec <TAB>` offers prod.yml's tunnels, not the folder's manifest's; the words
/// being completed follow `--` in the completion call (`COMPLETE=bash declastruct -- declastruct exec ''`)
fn completed_manifest() -> PathBuf {
    // the words up to the one under the cursor (`_CLAP_COMPLETE_INDEX`), and before a bare `--` (what follows is
    // `exec`'s command, whose own `-f` is not ours); a word that is not UTF-8 is no manifest flag
    let cursor = std::env::var("_CLAP_COMPLETE_INDEX")
        .ok()
        .and_then(|index| index.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let words: Vec<String> = std::env::args_os()
        .map(|word| word.to_string_lossy().into_owned())
        .skip_while(|word| word != "--")
        .skip(1)
        .take(cursor.saturating_add(1))
        .skip(1)
        .take_while(|word| word != "--")
        .collect();
    let mut given = None;
    for (index, word) in words.iter().enumerate() {
        match word.as_str() {
            "-f" | "--file" => {
                given = words
                    .get(index + 1)
                    .filter(|next| !next.is_empty())
                    .cloned();
            }
            _ => {
                if let Some(path) = word.strip_prefix("--file=").or_else(|| {
                    word.strip_prefix("-f")
                        .filter(|rest| !rest.is_empty() && !word.starts_with("--"))
                }) {
                    // `-f=prod.yml` is `prod.yml` to clap too
                    given = Some(path.strip_prefix('=').unwrap_or(path).to_string());
                }
            }
        }
    }
    match given {
        Some(path) => PathBuf::from(path),
        None => Cli::try_parse_from(["declastruct", "validate"]).map_or_else(
            |_| PathBuf::from(MANIFEST_NAME),
            |cli| cli.manifest_lookup().path().clone(),
        ),
    }
}

/// .what = the addresses of the resources the manifest (found as `completed_manifest` finds it) declares, for shell
/// completion; `tunnels_only` keeps the tunnels
/// .why = `declastruct logs <TAB>` offers the manifest's tunnels; a manifest that does not load offers nothing
fn addresses(tunnels_only: bool) -> Vec<CompletionCandidate> {
    let lookup = completed_manifest();
    let Ok(manifest) = declastruct_manifest::manifest::load_manifest(
        &lookup,
        &declastruct_manifest::manifest::Variables::default(),
    ) else {
        return Vec::new();
    };
    manifest
        .resources
        .iter()
        .filter(|resource| {
            !tunnels_only
                || matches!(
                    resource.declaration,
                    declastruct_manifest::kinds::ResourceDeclaration::DeclaredAwsVpcTunnel(_)
                )
        })
        .map(|resource| {
            let address = resource.declaration.address();
            CompletionCandidate::new(address.slug).help(Some(address.class.into()))
        })
        .collect()
}

/// .what = `NAME=` for each variable the manifest (found as `completed_manifest` finds it) refers to, with its default
/// as the help, for shell completion
/// .why = `--var <TAB>` offers what the manifest can be told; the manifest is read as text (at most 8 MiB), so a
/// manifest that does not load without the variables still offers them
fn variable_names() -> Vec<CompletionCandidate> {
    use std::io::Read;
    let lookup = completed_manifest();
    let mut text = String::new();
    let read =
        std::fs::File::open(&lookup).and_then(|file| file.take(8 << 20).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    declastruct_manifest::manifest::referenced_variables(&text)
        .into_iter()
        .map(|(name, default)| {
            CompletionCandidate::new(format!("{name}=")).help(Some(match default {
                Some(default) => format!("default: {default}").into(),
                None => "no default".into(),
            }))
        })
        .collect()
}

fn tunnel_addresses() -> Vec<CompletionCandidate> {
    addresses(true)
}

fn resource_addresses() -> Vec<CompletionCandidate> {
    addresses(false)
}
