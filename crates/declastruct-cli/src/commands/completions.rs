use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::Cli;

/// .what = `declastruct completions SHELL`: prints a completion script
/// .why = commands and flags complete in bash, zsh, fish, elvish and PowerShell
pub fn run(shell: clap_complete::Shell) -> ExitCode {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "declastruct",
        &mut std::io::stdout(),
    );
    ExitCode::SUCCESS
}
