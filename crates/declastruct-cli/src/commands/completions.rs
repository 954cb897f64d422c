use std::process::ExitCode;

use clap::CommandFactory;

use crate::args::Cli;
use crate::commands::{after_output, write_stdout};

/// .what = `declastruct completions SHELL`: prints a completion script
/// .why = commands and flags complete in bash, zsh, fish, elvish and PowerShell
pub fn run(shell: clap_complete::Shell) -> ExitCode {
    // into memory first: clap_complete panics when its writer fails (`completions bash | head`)
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "declastruct", &mut script);
    after_output(
        write_stdout(&String::from_utf8_lossy(&script)),
        ExitCode::SUCCESS,
    )
}
