use std::io::Write;
use std::process::ExitCode;

use declastruct_engine::Plan;
use declastruct_manifest::input_file::{InputFileError, SAVED_PLAN_LIMIT, read_input_file};

use crate::args::{Cli, ShowArgs};
use crate::commands::{EXIT_FAILURE, after_output};
use crate::render::{render_plan, summary_line};

/// .what = `declastruct show PLANFILE [--json]`: renders a saved plan exactly as `plan` would, with no AWS call
/// .why = a reviewer reads the artifact CI will apply, not a fresh plan that may differ from it
pub fn run(cli: &Cli, args: &ShowArgs) -> ExitCode {
    let plan = match read_saved_plan(&args.plan) {
        Ok(plan) => plan,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut stdout = anstream::stdout().lock();
    let written = if args.json {
        serde_json::to_string_pretty(&plan)
            .map_err(std::io::Error::other)
            .and_then(|document| writeln!(stdout, "{document}"))
    } else if cli.quiet {
        writeln!(stdout, "{}", summary_line(&plan))
    } else {
        render_plan(&plan, cli.verbose > 0, &mut stdout)
    };
    after_output(written.and_then(|()| stdout.flush()), ExitCode::SUCCESS)
}

/// .what = a plan saved by `plan --out`, or a message that says why it cannot be read
/// .why = `show` and `apply --plan` read saved plans the same way, never more than `SAVED_PLAN_LIMIT` of them
pub fn read_saved_plan(path: &std::path::Path) -> Result<Plan, String> {
    let bytes = read_input_file(path, SAVED_PLAN_LIMIT).map_err(|error| {
        let help = match error {
            InputFileError::TooLarge { .. } => format!(
                "a saved plan holds at most {} MiB; check that the path names a plan saved with `declastruct plan --out`",
                SAVED_PLAN_LIMIT / (1024 * 1024)
            ),
            InputFileError::Unreadable(_) => format!(
                "save one with `declastruct plan --out {}`",
                path.display()
            ),
        };
        format!(
            "error: cannot read the saved plan {}: {error}\n  help: {help}",
            path.display(),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|error| {
        format!(
            "error: {} is not a plan document ({error})\n  help: save one with `declastruct plan --out {}`",
            path.display(),
            path.display()
        )
    })
}
