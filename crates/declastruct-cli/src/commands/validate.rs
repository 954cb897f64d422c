use std::process::ExitCode;

use crate::args::Cli;
use crate::commands::{EXIT_FAILURE, after_output, load_or_report, write_stdout};

/// .what = `declastruct validate`: checks the manifest offline
/// .why = a fast check for editors, hooks and CI that needs no AWS access
pub fn run(cli: &Cli) -> ExitCode {
    match load_or_report(cli) {
        Some(manifest) => {
            if cli.quiet {
                return ExitCode::SUCCESS;
            }
            let count = manifest.resources.len();
            let line = format!(
                "{} is valid: {count} resource{}.\n",
                manifest.uri,
                if count == 1 { "" } else { "s" }
            );
            after_output(write_stdout(&line), ExitCode::SUCCESS)
        }
        None => ExitCode::from(EXIT_FAILURE),
    }
}
