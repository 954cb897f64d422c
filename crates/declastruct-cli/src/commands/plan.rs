use std::io::Write;
use std::process::ExitCode;

use crate::args::{Cli, PlanArgs};
use crate::commands::{EXIT_CHANGES, EXIT_FAILURE, after_output, compute_plan, observe_or_report};
use crate::render::{render_plan, summary_line};
use crate::resources::{force_close, select_targets};

/// .what = `declastruct plan`: reads live state and prints the changes apply would make
/// .why = the reviewable preview, for people (a diff) and for CI (JSON, a saved plan, exit codes)
pub async fn run(cli: &Cli, args: &PlanArgs) -> ExitCode {
    let (manifest, _context, resources) =
        match observe_or_report(cli, &cli.manifest_path(), !args.json).await {
            Ok(observed) => observed,
            Err(code) => return code,
        };
    let mut resources = resources;
    let selected = if args.force_close {
        force_close(&mut resources, &args.target)
    } else {
        Ok(())
    }
    .and_then(|()| select_targets(resources, &args.target));
    let resources = match selected {
        Ok(resources) => resources,
        Err(problem) => {
            eprintln!("error: {problem}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let plan = match compute_plan(&manifest, &resources) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let document = match serde_json::to_string_pretty(&plan) {
        Ok(document) => document + "\n",
        Err(error) => {
            eprintln!("error: cannot serialize the plan: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Some(out) = &args.out
        && let Err(error) = std::fs::write(out, &document)
    {
        eprintln!("error: cannot write the plan to {}: {error}", out.display());
        return ExitCode::from(EXIT_FAILURE);
    }

    let mut stdout = anstream::stdout().lock();
    let written = if args.json {
        stdout.write_all(document.as_bytes())
    } else if cli.quiet {
        writeln!(stdout, "{}", summary_line(&plan))
    } else {
        render_plan(&plan, cli.verbose > 0, &mut stdout).and_then(|()| match &args.out {
            Some(out) => writeln!(
                stdout,
                "Saved the plan to {}; apply it with `declastruct apply {}--plan {}`.",
                out.display(),
                cli.file()
                    .as_ref()
                    .map(|file| format!("-f {} ", file.display()))
                    .unwrap_or_default(),
                out.display()
            ),
            None => Ok(()),
        })
    };
    let status = if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    };
    after_output(written.and_then(|()| stdout.flush()), status)
}
