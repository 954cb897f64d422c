use std::io::Write;
use std::process::ExitCode;

use declastruct_engine::Plan;

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
    after_output(written, ExitCode::SUCCESS)
}

/// .what = a plan saved by `plan --out`, or a message that says why it cannot be read
/// .why = `show` and `apply --plan` read saved plans the same way
pub fn read_saved_plan(path: &std::path::Path) -> Result<Plan, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "error: cannot read the saved plan {}: {error}\n  help: save one with `declastruct plan --out {}`",
            path.display(),
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|error| {
        format!(
            "error: {} is not a plan document ({error})\n  help: save one with `declastruct plan --out {}`",
            path.display(),
            path.display()
        )
    })
}
