//! .what = one module a command
//! .why = each command reads top to bottom: load, observe, plan, act, print

pub mod apply;
pub mod completions;
pub mod connect;
pub mod env;
pub mod exec;
pub mod init;
pub mod logs;
pub mod plan;
pub mod schema;
pub mod show;
pub mod status;
pub mod validate;

use std::path::Path;
use std::process::ExitCode;

use declastruct_aws::ContextAwsApi;
use declastruct_engine::{Plan, Wish};
use declastruct_manifest::manifest::{Manifest, Variables, load_manifest};
use declastruct_manifest::resources::{Observed, Step, observe_in_steps};
use miette::Diagnostic;

use crate::args::Cli;
use crate::progress::Progress;

/// .what = exit codes of the contract
/// .why = named once
pub const EXIT_FAILURE: u8 = 1;
/// `--detailed-exitcode` with changes
pub const EXIT_CHANGES: u8 = 2;

/// .what = the exit code once a command's output is written: `status`, unless writing failed for another reason
/// than a reader that went away, which is said on stderr and exits 1
/// .why = `declastruct plan | head -1` ends quietly with the command's own status, as `git log | head` does;
/// `declastruct plan > /dev/full` must not look like success, nor fail without a word
pub fn after_output(written: std::io::Result<()>, status: ExitCode) -> ExitCode {
    match written {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            // said on stderr when it can be; a closed stdout is no error (the standard library writes nothing
            // to a closed descriptor and reports success)
            eprintln!("error: cannot write the output to stdout: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
        _ => status,
    }
}

/// .what = writes `text` to stdout and flushes it
/// .why = `print!` panics with "Broken pipe" when the reader went away; this returns the error instead
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = anstream::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// .what = prints a diagnostic to stderr
/// .why = only the binary renders errors, always the same way
pub fn report(diagnostic: impl Diagnostic + Send + Sync + 'static) {
    eprintln!("{:?}", miette::Report::new(diagnostic));
}

/// .what = loads the manifest, printing every problem; `None` when invalid
/// .why = every command starts here
pub fn load_or_report(cli: &Cli) -> Option<Manifest> {
    load_path_or_report(cli, &cli.manifest_path())
}

/// .what = loads the manifest at `path` with the command line's variables, printing every problem; `None` when
/// invalid
/// .why = `apply --plan` reads the manifest its plan was made from
pub fn load_path_or_report(cli: &Cli, path: &Path) -> Option<Manifest> {
    let variables = match Variables::from_arguments_and_files(&cli.vars(), &cli.var_files()) {
        Ok(variables) => variables,
        Err(error) => {
            report(error);
            return None;
        }
    };
    match load_manifest(path, &variables) {
        Ok(manifest) => Some(manifest),
        Err(errors) => {
            let count = errors.len();
            for error in errors {
                report(error);
            }
            if count > 1 {
                eprintln!("{count} problems in {}", path.display());
            }
            None
        }
    }
}

/// .what = the manifest at `path`, an AWS context and the observed resources, or the exit code after reporting
/// why not
/// .why = plan and apply share the reading of live state; on a terminal a spinner names the calls it waits for
pub async fn observe_or_report(
    cli: &Cli,
    path: &Path,
    show_progress: bool,
) -> Result<(Manifest, ContextAwsApi, Vec<Observed>), ExitCode> {
    let manifest = load_path_or_report(cli, path).ok_or(ExitCode::from(EXIT_FAILURE))?;
    let mut context = match ContextAwsApi::load(&manifest.aws).await {
        Ok(context) => context,
        Err(error) => {
            report(error);
            return Err(ExitCode::from(EXIT_FAILURE));
        }
    };
    // the tunnels this manifest opens are held by it, in this environment: it alone plans their removal
    context.holder = manifest_holder(&manifest, &context);
    let progress = Progress::for_terminal(show_progress && !cli.quiet);
    let observed = observe_with_progress(&manifest, &context, &progress).await;
    match observed {
        Ok(resources) => Ok((manifest, context, resources)),
        Err(errors) => {
            for error in errors {
                eprintln!("{error:?}");
            }
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// .what = the observed resources, with a progress line that names each step as it comes: the AWS reads, then the
/// tunnels' checks on this machine
/// .why = `plan`, `apply` and `status` wait for the same steps; a line that blames AWS while a health probe is
/// waited for sends the user the wrong way
pub async fn observe_with_progress(
    manifest: &Manifest,
    context: &ContextAwsApi,
    progress: &Progress,
) -> Result<Vec<Observed>, Vec<miette::Report>> {
    let task = progress.start(format!(
        "reading live state: ec2:DescribeInstances, rds:DescribeDBClusters at {}",
        context.endpoint("ec2")
    ));
    observe_in_steps(manifest, context, |step| match step {
        Step::Warning(warning) => eprintln!("{warning:?}"),
        Step::Waiting(step) => task.relabel(format!("reading live state: {step}")),
    })
    .await
}

/// .what = the plan of the planned resources, recording the `--target` addresses (and `--force-close`) it was
/// limited to
/// .why = plan and apply compute it the same way; `apply --plan` plans again with the targets the plan records
pub fn compute_plan(
    manifest: &Manifest,
    resources: &[Observed],
    targets: &[String],
    force_close: bool,
) -> Result<Plan, ExitCode> {
    Plan::compute(
        resources,
        Wish {
            // the absolute path: `apply --plan` finds the manifest again from any folder
            uri: manifest
                .path
                .as_ref()
                .map_or_else(|| manifest.uri.clone(), |path| path.display().to_string()),
            vars: manifest.variables.clone(),
            var_files: manifest.var_files.clone(),
            targets: targets.to_vec(),
            force_close,
        },
    )
    .map_err(|error| {
        report(error);
        ExitCode::from(EXIT_FAILURE)
    })
}

/// .what = the manifest environment that holds the tunnels this manifest declares OPEN: its absolute path, its
/// region and profile, and the values of the variables it used
/// .why = one manifest applied to dev and to prod is two holders; neither plans the other's tunnels away
pub fn manifest_holder(
    manifest: &Manifest,
    context: &ContextAwsApi,
) -> Option<declastruct_aws::TunnelHolder> {
    let path = manifest.path.clone()?;
    let profile = manifest.aws.profile.clone().or_else(|| {
        std::env::var(declastruct_aws::EnvVars::AWS_PROFILE)
            .ok()
            .filter(|profile| !profile.is_empty())
    });
    Some(declastruct_aws::TunnelHolder::Manifest(
        declastruct_aws::ManifestEnvironment {
            manifest: path.display().to_string(),
            region: context.region.clone(),
            profile,
            vars: manifest.variables.clone(),
        },
    ))
}
