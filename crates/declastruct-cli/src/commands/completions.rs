use std::process::ExitCode;

use crate::commands::{EXIT_FAILURE, after_output, write_stdout};

/// .what = `declastruct completions SHELL`: prints a completion script
/// .why = commands, flags and the manifest's addresses (for `logs`, `env`, `exec`, `--target`, `--replace`)
/// complete in bash, zsh, fish, elvish and PowerShell: the script asks `declastruct` itself for the candidates
/// (clap_complete's dynamic completion, `COMPLETE=SHELL declastruct -- WORDS`), so they follow the manifest
pub fn run(shell: clap_complete::Shell) -> ExitCode {
    let shells = clap_complete::env::Shells::builtins();
    let name = shell.to_string();
    let Some(completer) = shells.completer(&name) else {
        eprintln!("error: no completion for {name}");
        return ExitCode::from(EXIT_FAILURE);
    };
    let mut script = Vec::new();
    if let Err(error) = completer.write_registration(
        "COMPLETE",
        "declastruct",
        "declastruct",
        "declastruct",
        &mut script,
    ) {
        eprintln!("error: cannot write the completion script: {error}");
        return ExitCode::from(EXIT_FAILURE);
    }
    after_output(
        write_stdout(&String::from_utf8_lossy(&script)),
        ExitCode::SUCCESS,
    )
}
