use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use declastruct_engine::Plan;
use declastruct_manifest::input_file::{InputFileError, SAVED_PLAN_LIMIT, read_input_file};
use declastruct_manifest::kinds::vpc_tunnel::force_close;
use declastruct_manifest::resources::select_targets;

use crate::args::{Cli, PlanArgs};
use crate::commands::{EXIT_CHANGES, EXIT_FAILURE, after_output, compute_plan, observe_or_report};
use crate::render::{render_plan, shell_word, summary_line};

/// .what = `declastruct plan`: reads live state and prints the changes apply would make
/// .why = the reviewable preview, for people (a diff) and for CI (JSON, a saved plan, exit codes)
pub async fn run(cli: &Cli, args: &PlanArgs) -> ExitCode {
    // before any AWS call: a plan is never written over a manifest or any other file that is not a plan
    if let Some(out) = &args.out
        && let Err(problem) = check_out(out, &cli.manifest_path())
    {
        eprintln!("{problem}");
        return ExitCode::from(EXIT_FAILURE);
    }
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
    let plan = match compute_plan(&manifest, &resources, &args.target, args.force_close) {
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
        && let Err(error) = write_replacing(out, &document)
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
                "Saved the plan to {}; apply it with `{}`.",
                out.display(),
                apply_command(cli, out)
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

/// .what = the command that applies the plan saved at `out`: with the `-f`, `--var-file` and `--var` this plan was
/// given (apply plans again with them; the targets are recorded in the plan)
/// .why = the hint `plan --out` prints is a command that works when pasted
fn apply_command(cli: &Cli, out: &Path) -> String {
    let mut command = String::from("declastruct apply ");
    if let Some(file) = cli.file() {
        command.push_str(&format!("-f {} ", shell_word(&file.display().to_string())));
    }
    for file in cli.var_files() {
        command.push_str(&format!(
            "--var-file {} ",
            shell_word(&file.display().to_string())
        ));
    }
    for var in cli.vars() {
        command.push_str(&format!("--var {} ", shell_word(&var)));
    }
    command.push_str(&format!(
        "--plan {}",
        shell_word(&out.display().to_string())
    ));
    command
}

/// .what = fails unless `out` is a file a plan may be written to: a new file, an empty one, or a saved plan
/// .why = `plan -f M --out M` must not replace the manifest with a plan; nor may any other file that is not a plan
/// be lost to a slip of the keyboard
fn check_out(out: &Path, manifest: &Path) -> Result<(), String> {
    let refuse = |what: &str| {
        Err(format!(
            "error: --out {} {what}: plan --out writes only a new file or over a saved plan\n  help: choose another path for the plan, e.g. `--out plan.json`",
            out.display()
        ))
    };
    let metadata = match std::fs::metadata(out) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return refuse(&format!("cannot be inspected ({error})")),
    };
    let same = |one: &Path, other: &Path| matches!((std::fs::canonicalize(one), std::fs::canonicalize(other)), (Ok(one), Ok(other)) if one == other);
    if same(out, manifest) {
        return refuse("is the manifest");
    }
    if metadata.is_dir() {
        return refuse("is a folder");
    }
    if !metadata.is_file() {
        return refuse("is not a regular file");
    }
    // `mktemp` makes an empty file for the plan to go to
    if metadata.len() == 0 {
        return Ok(());
    }
    match read_input_file(out, SAVED_PLAN_LIMIT) {
        Ok(bytes) if serde_json::from_slice::<Plan>(&bytes).is_ok() => Ok(()),
        Ok(_) | Err(InputFileError::TooLarge { .. }) => {
            refuse("exists and is not a declastruct plan")
        }
        Err(error) => refuse(&format!("cannot be read ({error})")),
    }
}

/// .what = writes `contents` to `path` through a temporary file in the same folder, renamed over it
/// .why = a failed write (a full disk) never leaves half a plan, which the next `plan --out` would refuse to replace
fn write_replacing(path: &Path, contents: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let written =
        std::fs::write(&temporary, contents).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
