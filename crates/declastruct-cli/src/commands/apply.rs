use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use declastruct_aws::{AwsError, ContextAwsApi, VpcTunnelStatus};
use declastruct_engine::{ApplyReport, ChangeOutcome, Plan, ResourceAddress, run_changes};
use declastruct_manifest::kinds::vpc_tunnel::{
    client_command, connection_line, force_close, force_replace,
};
use declastruct_manifest::resources::{Observed, select_targets};
use serde_json::json;

use crate::args::{ApplyArgs, Cli};
use crate::commands::show::read_saved_plan;
use crate::commands::{EXIT_FAILURE, compute_plan, observe_or_report, report};
use crate::progress::Progress;
use crate::render::{render_plan, variables_line};
use anstyle::{AnsiColor, Style};

/// .what = `declastruct apply`: plans, confirms, and applies the changes in dependency order
/// .why = makes the live world match the manifest: bastions started or stopped, tunnels opened or closed
pub async fn run(cli: &Cli, args: &ApplyArgs) -> ExitCode {
    if args.json && !args.auto_approve && args.plan.is_none() {
        // JSON is for scripts, which cannot answer a prompt
        eprintln!(
            "error: apply --json needs --auto-approve or --plan FILE: it never asks for confirmation\n  help: save and review a plan with `declastruct plan --out plan.json`, then run `declastruct apply --json --plan plan.json`"
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    // a saved plan names the manifest it was made from; `-f` chooses another
    let saved = match &args.plan {
        Some(path) => match read_saved_plan(path) {
            Ok(saved) => Some((path.clone(), saved)),
            Err(problem) => {
                eprintln!("{problem}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        None => None,
    };
    let manifest_path = match (cli.file(), &saved) {
        (None, Some((_, saved))) => std::path::PathBuf::from(&saved.wish.uri),
        _ => cli.manifest_path(),
    };
    // a saved plan is planned again for the targets it was made for
    let (targets, forcing) = match saved_targets(&saved, args) {
        Ok(selection) => selection,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let (manifest, mut context, mut resources) =
        match observe_or_report(cli, &manifest_path, !args.json).await {
            Ok(observed) => observed,
            Err(code) => return code,
        };
    let selected = force_replace(&mut resources, &args.replace)
        .and_then(|()| {
            if forcing {
                force_close(&mut resources, &targets)
            } else {
                Ok(())
            }
        })
        .and_then(|()| select_targets(resources, &targets));
    let resources = match selected {
        Ok(resources) => resources,
        Err(problem) => {
            eprintln!("error: {problem}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let progress = Progress::for_terminal(!args.json && !cli.quiet);
    context.progress = progress.reporter();
    let plan = match compute_plan(&manifest, &resources, &targets, forcing) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let human = !args.json;
    let mut stdout = anstream::stdout();

    if let Some((saved_path, saved)) = &saved {
        if let Err(problem) = check_saved_plan(saved_path, saved, &plan) {
            eprintln!("{problem}");
            return ExitCode::from(EXIT_FAILURE);
        }
    } else if human && !cli.quiet {
        let _ = render_plan(&plan, cli.verbose > 0, &mut stdout);
    }

    if !plan.has_changes() {
        // no change to the world, but a hold this manifest lets go of is released now
        let released = release_kept(
            &plan,
            &by_slug(&resources),
            &context,
            args.json || cli.quiet,
        )
        .await;
        let by_slug = by_slug(&resources);
        if args.json {
            print_json(&plan, None, &by_slug);
        } else if !cli.quiet {
            let _ = writeln!(stdout, "Nothing to apply.");
            let lines: Vec<String> = plan
                .changes
                .iter()
                .filter_map(|change| connect_line(change, &by_slug))
                .collect();
            if !lines.is_empty() {
                let _ = writeln!(stdout, "Connect:\n{}", lines.join("\n"));
            }
        }
        return if released {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_FAILURE)
        };
    }
    if args.plan.is_none() && !args.auto_approve {
        match confirm() {
            Confirmation::Yes => {}
            Confirmation::No => {
                eprintln!("Apply cancelled: nothing was changed.");
                return ExitCode::from(EXIT_FAILURE);
            }
            Confirmation::NoTerminal => {
                eprintln!(
                    "error: apply needs confirmation, and stdin is not a terminal\n  help: review `declastruct plan`, then run `declastruct apply --auto-approve`, or save a plan with `declastruct plan --out plan.json` and run `declastruct apply --plan plan.json`"
                );
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    watch_for_interruption(interrupted.clone(), context.cancel.clone());

    let by_slug = by_slug(&resources);
    let notes: Arc<std::sync::Mutex<HashMap<String, String>>> = Arc::default();
    let notes = &notes;
    let report_card = run_changes(
        &plan,
        usize::from(args.parallelism),
        || !interrupted.load(Ordering::SeqCst),
        |index| {
            let change = &plan.changes[index];
            let resource = by_slug
                .get(&change.for_resource)
                .map(|resource| (*resource).clone());
            let quiet = cli.quiet || args.json;
            let task = progress.start(format!(
                "{} {} {}",
                change.action, change.for_resource.class, change.for_resource.slug
            ));
            // each change runs as its own task, so that independent changes use every core: their process
            // starts, file and /proc reads and health probes do not wait for one another on a single thread
            let mut context = context.clone();
            // what the change's own work reports (a bastion starting, an agent not yet connected) is this line's
            if let Some(reporter) = task.reporter() {
                context.progress = Some(reporter);
            }
            let slug = change.for_resource.slug.clone();
            let notes_of_work = notes.clone();
            let work = tokio::spawn(async move {
                let applied = match resource {
                    Some(resource) => resource.apply(&context).await,
                    None => Err(AwsError::Unexpected(format!("no resource for {slug}"))),
                };
                applied.map(|note| {
                    if let (Some(note), Ok(mut notes)) = (note, notes_of_work.lock()) {
                        notes.insert(slug, note);
                    }
                })
            });
            let progress = progress.clone();
            async move {
                let started = Instant::now();
                let result = work.await.unwrap_or_else(|error| {
                    Err(AwsError::Unexpected(format!(
                        "the change of {} ended abnormally: {error}",
                        change.for_resource.slug
                    )))
                });
                drop(task);
                if !quiet {
                    let (outcome, colour) = if result.is_ok() {
                        ("done", AnsiColor::Green)
                    } else {
                        ("failed", AnsiColor::Red)
                    };
                    let style = Style::new().fg_color(Some(colour.into())).bold();
                    let note = notes
                        .lock()
                        .ok()
                        .and_then(|notes| notes.get(&change.for_resource.slug).cloned())
                        .map(|note| format!(" ({note})"))
                        .unwrap_or_default();
                    progress.println(&format!(
                        "{} {} {}: {style}{outcome}{style:#} after {:.1} s{note}",
                        change.action,
                        change.for_resource.class,
                        change.for_resource.slug,
                        started.elapsed().as_secs_f64()
                    ));
                }
                result
            }
        },
    )
    .await;

    let released = release_kept(&plan, &by_slug, &context, args.json || cli.quiet).await;
    let succeeded = report_card.succeeded() && released;
    let counts = report_card.counts();
    if args.json {
        print_json(&plan, Some(&report_card), &by_slug);
    } else {
        let mut connect_lines = Vec::new();
        for (change, outcome) in plan.changes.iter().zip(report_card.outcomes) {
            let name = format!("{} {}", change.for_resource.class, change.for_resource.slug);
            match outcome {
                ChangeOutcome::Failed(error) => {
                    eprintln!("{name} failed:");
                    report(error);
                }
                ChangeOutcome::Skipped { reason } => eprintln!("{name} skipped: {reason}"),
                // every tunnel of the manifest that is open now says how to use it, opened now or before
                ChangeOutcome::Applied | ChangeOutcome::Unchanged => {
                    connect_lines.extend(connect_line(change, &by_slug));
                }
            }
        }
        let (verdict, colour) = if succeeded {
            ("complete", AnsiColor::Green)
        } else {
            ("incomplete", AnsiColor::Yellow)
        };
        let style = Style::new().fg_color(Some(colour.into())).bold();
        let _ = writeln!(
            stdout,
            "Apply {style}{verdict}{style:#}: {} applied, {} unchanged, {} failed, {} skipped.",
            counts.applied, counts.unchanged, counts.failed, counts.skipped
        );
        if !connect_lines.is_empty() && !cli.quiet {
            let _ = writeln!(stdout, "Connect:\n{}", connect_lines.join("\n"));
        }
    }
    if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// the plan's resources by address: class and slug, since a tunnel no longer declared may carry an old name that
/// is now another kind's address
fn by_slug(resources: &[Observed]) -> HashMap<ResourceAddress, &Observed> {
    resources
        .iter()
        .map(|resource| (declastruct_engine::Resource::address(resource), resource))
        .collect()
}

/// .what = releases this manifest's hold on every tunnel the plan KEEPs open for others (declared CLOSED or no
/// longer declared while an `exec` or another manifest holds it); false when one failed
/// .why = the world does not change, but the hold must go: when the others let go, the tunnel closes
async fn release_kept(
    plan: &Plan,
    by_slug: &HashMap<ResourceAddress, &Observed>,
    context: &ContextAwsApi,
    quiet: bool,
) -> bool {
    let mut released = true;
    for change in plan
        .changes
        .iter()
        .filter(|change| change.action == declastruct_engine::Action::Keep)
    {
        let Some(resource) = by_slug.get(&change.for_resource) else {
            continue;
        };
        if !resource.releases_when_kept() {
            continue;
        }
        match resource.apply(context).await {
            Ok(note) => {
                if !quiet {
                    eprintln!(
                        "KEEP {} {}: {}",
                        change.for_resource.class,
                        change.for_resource.slug,
                        note.unwrap_or_else(|| "released".into())
                    );
                }
            }
            Err(error) => {
                released = false;
                eprintln!(
                    "KEEP {} {} failed:",
                    change.for_resource.class, change.for_resource.slug
                );
                report(error);
            }
        }
    }
    released
}

/// the `Connect:` line of `change`'s resource when it is a tunnel declared OPEN
fn connect_line<S: std::hash::BuildHasher>(
    change: &declastruct_engine::Change,
    by_slug: &std::collections::HashMap<ResourceAddress, &Observed, S>,
) -> Option<String> {
    match by_slug.get(&change.for_resource) {
        Some(Observed::Tunnel(tunnel)) if tunnel.declaration.status == VpcTunnelStatus::Open => {
            Some(format!(
                "  {}: {}",
                connection_line(tunnel),
                client_command(tunnel)
            ))
        }
        _ => None,
    }
}

fn print_json<S: std::hash::BuildHasher>(
    plan: &Plan,
    report_card: Option<&ApplyReport<AwsError>>,
    by_slug: &std::collections::HashMap<ResourceAddress, &Observed, S>,
) {
    // nothing applied: every change is unchanged (and the tunnels kept open say how to reach them)
    let unchanged: Vec<ChangeOutcome<AwsError>> = plan
        .changes
        .iter()
        .map(|_| ChangeOutcome::Unchanged)
        .collect();
    let outcomes = report_card.map_or(unchanged.as_slice(), |report_card| {
        report_card.outcomes.as_slice()
    });
    let outcomes: Vec<serde_json::Value> = plan
            .changes
            .iter()
            .zip(outcomes)
            .map(|(change, outcome)| {
                let (name, detail) = match outcome {
                    ChangeOutcome::Applied => ("APPLIED", None),
                    ChangeOutcome::Unchanged => ("UNCHANGED", None),
                    ChangeOutcome::Failed(error) => ("FAILED", Some(error.to_string())),
                    ChangeOutcome::Skipped { reason } => ("SKIPPED", Some(reason.clone())),
                };
                let mut entry = json!({"forResource": change.for_resource, "action": change.action, "outcome": name, "detail": detail});
                // a tunnel open after the apply carries how to reach it
                if let (ChangeOutcome::Applied | ChangeOutcome::Unchanged, Some(Observed::Tunnel(tunnel))) =
                    (outcome, by_slug.get(&change.for_resource))
                    && tunnel.declaration.status == VpcTunnelStatus::Open
                {
                    let line = connection_line(tunnel);
                    entry["detail"] = json!(line);
                    entry["connection"] = json!({
                        "address": change.for_resource.slug,
                        "host": tunnel.declaration.from.host.as_str(),
                        "localPort": tunnel.declaration.from.port,
                        "farEnd": format!("{}:{}", tunnel.target.host, tunnel.target.port),
                        "client": client_command(tunnel),
                    });
                }
                entry
            })
            .collect();
    let counts = report_card.map_or_else(
        || declastruct_engine::ApplyOutcome {
            unchanged: plan.changes.len(),
            ..Default::default()
        },
        ApplyReport::counts,
    );
    let document = json!({
        "plan": plan,
        "outcomes": outcomes,
        "summary": {"applied": counts.applied, "unchanged": counts.unchanged, "failed": counts.failed, "skipped": counts.skipped},
    });
    // a reader that went away (`| head`) does not change apply's outcome
    let _ =
        super::write_stdout(&(serde_json::to_string_pretty(&document).unwrap_or_default() + "\n"));
}

/// the `--target` addresses and `--force-close` to plan with: the saved plan's, unless the command line gives its own,
/// which must then be the saved plan's
fn saved_targets(
    saved: &Option<(std::path::PathBuf, Plan)>,
    args: &ApplyArgs,
) -> Result<(Vec<String>, bool), String> {
    let Some((path, saved)) = saved else {
        return Ok((args.target.clone(), args.force_close));
    };
    if args.target.is_empty() {
        return Ok((saved.wish.targets.clone(), saved.wish.force_close));
    }
    if args.target != saved.wish.targets || args.force_close != saved.wish.force_close {
        let made_for = if saved.wish.targets.is_empty() {
            "the whole manifest".to_string()
        } else {
            crate::render::selection_arguments(&saved.wish.targets, saved.wish.force_close)
                .trim_end()
                .to_string()
        };
        return Err(format!(
            "error: {} was saved for {made_for}, and this apply asks for {}\n  help: apply a saved plan without --target: it is applied for the targets it was made for",
            path.display(),
            crate::render::selection_arguments(&args.target, args.force_close).trim_end(),
        ));
    }
    Ok((args.target.clone(), args.force_close))
}

/// compares a saved plan with the fresh one; the message names what changed
fn check_saved_plan(path: &std::path::Path, saved: &Plan, fresh: &Plan) -> Result<(), String> {
    // what a reviewer read must be what runs: the saved changes must still hash to the saved hash
    let content_hash = declastruct_engine::compute_plan_hash(&saved.changes);
    let again = format!(
        "declastruct plan -f {} {}{}{}--out {}",
        crate::render::display_path(&saved.wish.uri),
        saved
            .wish
            .var_files
            .iter()
            .map(|file| format!("--var-file {file} "))
            .collect::<String>(),
        saved
            .wish
            .vars
            .iter()
            .map(|(name, value)| format!("--var {name}={value} "))
            .collect::<String>(),
        crate::render::selection_arguments(&saved.wish.targets, saved.wish.force_close),
        path.display()
    );
    if content_hash != saved.hash {
        return Err(format!(
            "error: {} was altered after it was saved: its changes no longer hash to its `hash`\n  help: never edit a saved plan; run `{again}` again, review it, then apply it",
            path.display(),
        ));
    }
    if saved.wish.vars != fresh.wish.vars {
        return Err(format!(
            "error: plan is stale: {} was saved with the variables {}, and they are {} now\n  help: apply it with the variables it was made with, or run `{again}` with the variables you mean, review it, then apply it",
            path.display(),
            variables_line(&saved.wish.vars),
            variables_line(&fresh.wish.vars),
        ));
    }
    if saved.hash == fresh.hash {
        return Ok(());
    }
    let differences = fresh.differences_from(saved);
    Err(format!(
        "error: plan is stale: the live world or the manifest changed since {} was saved:\n{}\n  help: run `{again}` again, review it, then apply it",
        path.display(),
        differences
            .iter()
            .map(|difference| format!("  - {difference}"))
            .collect::<Vec<_>>()
            .join("\n"),
    ))
}

/// .what = on Ctrl-C, SIGTERM (a cancelled CI job) or SIGHUP (a closed terminal): no new change starts, and the
/// changes in progress stop waiting and undo what they started
/// .why = a user who interrupts a wait of minutes gets their terminal back within a second or two, and
/// nothing of ours is left running unrecorded
fn watch_for_interruption(
    interrupted: Arc<AtomicBool>,
    cancel: tokio_util::sync::CancellationToken,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let streams: Vec<_> = [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ]
    .into_iter()
    .filter_map(|kind| signal(kind).ok())
    .collect();
    tokio::spawn(async move {
        let waits = streams.into_iter().map(|mut stream| {
            Box::pin(async move {
                stream.recv().await;
            })
        });
        futures::future::select_all(waits).await;
        interrupted.store(true, Ordering::SeqCst);
        cancel.cancel();
        eprintln!(
            "\nInterrupted: stopping the changes in progress and what they started; starting no new ones."
        );
    });
}

enum Confirmation {
    Yes,
    No,
    NoTerminal,
}

fn confirm() -> Confirmation {
    if !std::io::stdin().is_terminal() {
        return Confirmation::NoTerminal;
    }
    eprint!(
        "\nDo you want to apply these changes? Only 'yes' will be accepted.\n  Enter a value: "
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return Confirmation::No;
    }
    if answer.trim_end_matches(['\n', '\r']) == "yes" {
        Confirmation::Yes
    } else {
        Confirmation::No
    }
}
