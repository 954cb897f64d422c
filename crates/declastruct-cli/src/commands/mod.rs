//! .what = one module a command
//! .why = each command reads top to bottom: load, observe, plan, act, print

pub mod apply;
pub mod completions;
pub mod logs;
pub mod plan;
pub mod schema;
pub mod status;
pub mod validate;

use std::process::ExitCode;

use declastruct_aws::ContextAwsApi;
use declastruct_engine::{Plan, Wish};
use miette::Diagnostic;

use crate::args::Cli;
use crate::manifest::{Manifest, load_manifest};
use crate::progress::Progress;
use crate::resources::{Observed, observe};

/// .what = exit codes of the contract
/// .why = named once
pub const EXIT_FAILURE: u8 = 1;
/// `--detailed-exitcode` with changes
pub const EXIT_CHANGES: u8 = 2;

/// .what = prints a diagnostic to stderr
/// .why = only the binary renders errors, always the same way
pub fn report(diagnostic: impl Diagnostic + Send + Sync + 'static) {
    eprintln!("{:?}", miette::Report::new(diagnostic));
}

/// .what = loads the manifest, printing every problem; `None` when invalid
/// .why = every command starts here
pub fn load_or_report(cli: &Cli) -> Option<Manifest> {
    match load_manifest(&cli.file) {
        Ok(manifest) => Some(manifest),
        Err(errors) => {
            let count = errors.len();
            for error in errors {
                report(error);
            }
            if count > 1 {
                eprintln!("{count} problems in {}", cli.file.display());
            }
            None
        }
    }
}

/// .what = the manifest, an AWS context and the observed resources, or the exit code after reporting why not
/// .why = plan and apply share the reading of live state; on a terminal a spinner names the calls it waits for
pub async fn observe_or_report(
    cli: &Cli,
    show_progress: bool,
) -> Result<(Manifest, ContextAwsApi, Vec<Observed>), ExitCode> {
    let manifest = load_or_report(cli).ok_or(ExitCode::from(EXIT_FAILURE))?;
    let context = match ContextAwsApi::load(&manifest.aws).await {
        Ok(context) => context,
        Err(error) => {
            report(error);
            return Err(ExitCode::from(EXIT_FAILURE));
        }
    };
    let progress = Progress::for_terminal(show_progress && !cli.quiet);
    let reading = progress.start(format!(
        "reading live state: ec2:DescribeInstances, rds:DescribeDBClusters at {}",
        context.endpoint("ec2")
    ));
    let observed = observe(&manifest, &context).await;
    drop(reading);
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

/// .what = the plan of the planned resources
/// .why = plan and apply compute it the same way
pub fn compute_plan(manifest: &Manifest, resources: &[Observed]) -> Result<Plan, ExitCode> {
    Plan::compute(
        resources,
        Wish {
            uri: manifest.uri.clone(),
        },
    )
    .map_err(|error| {
        report(error);
        ExitCode::from(EXIT_FAILURE)
    })
}
