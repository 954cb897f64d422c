use std::process::ExitCode;

use crate::args::Cli;
use crate::commands::{EXIT_FAILURE, load_or_report};

/// .what = `declastruct validate`: checks the manifest offline
/// .why = a fast check for editors, hooks and CI that needs no AWS access
pub fn run(cli: &Cli) -> ExitCode {
    match load_or_report(cli) {
        Some(manifest) => {
            if !cli.quiet {
                println!(
                    "{} is valid: {} resources.",
                    manifest.uri,
                    manifest.resources.len()
                );
            }
            ExitCode::SUCCESS
        }
        None => ExitCode::from(EXIT_FAILURE),
    }
}
