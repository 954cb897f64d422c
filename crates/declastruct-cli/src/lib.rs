//! .what = the `declastruct` command line: arguments, the commands and rendering
//! .why = wires the manifest, the engine and the AWS crate together; `main` only calls `run`

/// .what = `eprintln!` for the whole crate: writes to stderr through `write_stderr`, which never panics
/// .why = the standard `eprintln!` panics when stderr cannot be written (`2>/dev/full`: exit 101); a message that
/// cannot be shown must not turn an orderly exit into a panic. Defined before the modules, it shadows the
/// standard macro in every one of them (a `macro_rules!` in scope wins over the prelude's)
macro_rules! eprintln {
    () => {
        $crate::write_stderr(format_args!("\n"))
    };
    ($($argument:tt)*) => {
        $crate::write_stderr(format_args!("{}\n", format_args!($($argument)*)))
    };
}

/// .what = `eprint!` for the whole crate, through `write_stderr`
/// .why = as `eprintln!` above
macro_rules! eprint {
    ($($argument:tt)*) => {
        $crate::write_stderr(format_args!($($argument)*))
    };
}

pub mod args;
pub mod commands;
pub mod connect;
pub mod env_vars;
pub mod progress;
pub mod render;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};

/// .what = runs the command line and returns the process's exit code
/// .why = keeps `main` a few lines and the whole flow testable
pub fn run() -> ExitCode {
    // `COMPLETE=bash declastruct -- declastruct logs ...`: the shell asks for completions (see `completions`)
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command)
        .bin("declastruct")
        .completer("declastruct")
        .complete();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    // `--no-color`, or NO_COLOR through clap (`env = env_vars::NO_COLOR`)
    let no_color = cli.no_color;
    if no_color {
        anstream::ColorChoice::Never.write_global();
    }
    let stderr_terminal = std::io::stderr().is_terminal();
    // a dumb terminal (TERM=dumb) shows escape codes as text
    let stderr_color = !no_color && progress::stderr_moves_its_cursor();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(stderr_color)
                .unicode(stderr_color)
                .terminal_links(false)
                .wrap_lines(stderr_terminal)
                .build(),
        )
    }));

    init_tracing(cli.verbose, cli.quiet, stderr_color);

    if let Some(problem) = cli.misplaced_manifest_option() {
        eprintln!("error: {problem}");
        return ExitCode::from(2);
    }

    match &cli.command {
        Command::Validate(_) => commands::validate::run(&cli),
        Command::Schema => commands::schema::run(),
        Command::Init(args) => commands::init::run(args),
        Command::Show(args) => commands::show::run(&cli, args),
        Command::Completions { shell } => commands::completions::run(*shell),
        Command::Plan(args) => block_on(commands::plan::run(&cli, args)),
        Command::Apply(args) => block_on(commands::apply::run(&cli, args)),
        Command::Status(args) => block_on(commands::status::run(&cli, args)),
        Command::Logs(args) => commands::logs::run(&cli, args),
        Command::Exec(args) => block_on(commands::exec::run(&cli, args)),
        Command::Connect(args) => block_on(commands::connect::run(&cli, args)),
        Command::Env(args) => block_on(commands::env::run(&cli, args)),
    }
}

/// .what = writes a message to stderr, ignoring a failed write
/// .why = the one writer of `eprintln!` and `eprint!` in this crate (see the macros above): when stderr is full or
/// gone, nothing more can be said there, and the exit code already says that the command failed
pub fn write_stderr(arguments: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(arguments);
}

/// .what = prints a usage error (or help, or the version) and picks the exit code
/// .why = usage errors exit 2, except under `plan --detailed-exitcode`, where every error exits 1 so that 2 always
/// means "changes"
fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if !error.use_stderr() {
        // --help and --version
        return ExitCode::SUCCESS;
    }
    let detailed = std::env::args_os().any(|argument| argument == "--detailed-exitcode");
    ExitCode::from(if detailed { commands::EXIT_FAILURE } else { 2 })
}

/// `-v` info, `-vv` debug, `-vvv` trace, for declastruct's own crates; the AWS SDK's own messages only from `-v`
/// on (at default verbosity its warnings, e.g. about the instance metadata service, are noise: declastruct says
/// what went wrong in its own words); RUST_LOG, when set, decides instead
fn init_tracing(verbose: u8, quiet: bool, color: bool) {
    let (ours, others) = match (quiet, verbose) {
        (true, _) => ("error", "off"),
        (false, 0) => ("warn", "off"),
        (false, 1) => ("info", "warn"),
        (false, 2) => ("debug", "info"),
        _ => ("trace", "debug"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{others},declastruct_aws={ours},declastruct_cli={ours}"
        ))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}

fn block_on(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::from(commands::EXIT_FAILURE)
        }
    }
}
