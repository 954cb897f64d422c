use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

use crate::Plan;

/// .what = how one change ended
/// .why = the apply summary counts applied, unchanged, failed and skipped
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome<E> {
    /// the change was applied
    Applied,
    /// nothing to do (KEEP or OMIT)
    Unchanged,
    /// applying the change failed
    Failed(E),
    /// not attempted: a change it depends on failed or was skipped, or apply was interrupted
    Skipped {
        /// why it was not attempted
        reason: String,
    },
}

/// .what = the outcome of every change of a plan, in plan order
/// .why = the binary prints it and picks the exit code from it
#[derive(Debug)]
pub struct ApplyReport<E> {
    /// outcomes in the order of the plan's changes
    pub outcomes: Vec<ChangeOutcome<E>>,
}

/// .what = the counts of an apply, for the summary line
/// .why = one place that decides what "all applied" means
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// changes applied
    pub applied: usize,
    /// changes with nothing to do
    pub unchanged: usize,
    /// changes that failed
    pub failed: usize,
    /// changes not attempted
    pub skipped: usize,
}

impl<E> ApplyReport<E> {
    /// .what = counts of each outcome
    /// .why = the summary line and the exit code
    pub fn counts(&self) -> ApplyOutcome {
        let mut counts = ApplyOutcome::default();
        for outcome in &self.outcomes {
            match outcome {
                ChangeOutcome::Applied => counts.applied += 1,
                ChangeOutcome::Unchanged => counts.unchanged += 1,
                ChangeOutcome::Failed(_) => counts.failed += 1,
                ChangeOutcome::Skipped { .. } => counts.skipped += 1,
            }
        }
        counts
    }

    /// .what = whether every change was applied or had nothing to do
    /// .why = exit 0 only then
    pub fn succeeded(&self) -> bool {
        let counts = self.counts();
        counts.failed == 0 && counts.skipped == 0
    }
}

/// .what = runs a plan's changes in dependency order, independent ones concurrently up to `parallelism`
/// .why = one failure must not stop independent changes, and must skip those that depend on it;
/// an interruption (`keep_going` turning false) stops launching new changes but lets running ones finish
pub async fn run_changes<E, F, Fut>(
    plan: &Plan,
    parallelism: usize,
    keep_going: impl Fn() -> bool,
    apply_change: F,
) -> ApplyReport<E>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let count = plan.changes.len();
    let mut outcomes: Vec<Option<ChangeOutcome<E>>> = (0..count).map(|_| None).collect();
    let mut started = vec![false; count];
    let mut running = FuturesUnordered::new();
    let parallelism = parallelism.max(1);

    loop {
        // settle what no longer needs running: unchanged changes, and dependents of failures
        let mut progressed = true;
        while progressed {
            progressed = false;
            for index in 0..count {
                if started[index] {
                    continue;
                }
                let blocked_by = plan.dependencies[index].iter().find(|&&before| {
                    matches!(
                        outcomes[before],
                        Some(ChangeOutcome::Failed(_) | ChangeOutcome::Skipped { .. })
                    )
                });
                if let Some(&before) = blocked_by {
                    started[index] = true;
                    outcomes[index] = Some(ChangeOutcome::Skipped {
                        reason: format!(
                            "it depends on {}, which did not apply",
                            plan.changes[before].for_resource.slug
                        ),
                    });
                    progressed = true;
                }
            }
        }

        let ready = |index: usize, outcomes: &[Option<ChangeOutcome<E>>]| {
            plan.dependencies[index].iter().all(|&before| {
                matches!(
                    outcomes[before],
                    Some(ChangeOutcome::Applied | ChangeOutcome::Unchanged)
                )
            })
        };
        if keep_going() {
            for index in 0..count {
                if running.len() >= parallelism {
                    break;
                }
                if started[index] || !ready(index, &outcomes) {
                    continue;
                }
                started[index] = true;
                if plan.changes[index].action.is_change() {
                    let future = apply_change(index);
                    running.push(async move { (index, future.await) });
                } else {
                    outcomes[index] = Some(ChangeOutcome::Unchanged);
                }
            }
        }

        match running.next().await {
            Some((index, result)) => {
                outcomes[index] = Some(match result {
                    Ok(()) => ChangeOutcome::Applied,
                    Err(error) => ChangeOutcome::Failed(error),
                });
            }
            None => {
                // nothing running: either all settled, unchanged ones just finished, or we were interrupted
                let pending_ready =
                    (0..count).any(|index| !started[index] && ready(index, &outcomes));
                if pending_ready && keep_going() {
                    continue;
                }
                break;
            }
        }
    }

    let outcomes = outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or(ChangeOutcome::Skipped {
                reason: "apply was interrupted before it started".to_string(),
            })
        })
        .collect();
    ApplyReport { outcomes }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Change, ChangeState, ResourceAddress, Wish};
    use std::cell::RefCell;

    fn plan(actions: &[Action], dependencies: Vec<Vec<usize>>) -> Plan {
        Plan {
            hash: String::new(),
            created_at: String::new(),
            wish: Wish::default(),
            changes: actions
                .iter()
                .enumerate()
                .map(|(index, &action)| Change {
                    for_resource: ResourceAddress {
                        class: "Fake".into(),
                        slug: format!("r{index}"),
                    },
                    action,
                    state: ChangeState {
                        desired: serde_json::Value::Null,
                        remote: None,
                        difference: None,
                    },
                    note: None,
                })
                .collect(),
            dependencies,
        }
    }

    fn block_on<T>(future: impl Future<Output = T>) -> T {
        futures::executor::block_on(future)
    }

    #[test]
    fn failure_skips_dependents_but_not_independent_changes() {
        let plan = plan(
            &[Action::Update, Action::Update, Action::Update, Action::Keep],
            vec![vec![], vec![0], vec![], vec![]],
        );
        let calls = RefCell::new(Vec::new());
        let report = block_on(run_changes(
            &plan,
            10,
            || true,
            |index| {
                calls.borrow_mut().push(index);
                async move { if index == 0 { Err("boom") } else { Ok(()) } }
            },
        ));
        assert_eq!(calls.into_inner(), vec![0, 2]);
        assert_eq!(
            report.counts(),
            ApplyOutcome {
                applied: 1,
                unchanged: 1,
                failed: 1,
                skipped: 1
            }
        );
        assert!(!report.succeeded());
        assert!(
            matches!(&report.outcomes[1], ChangeOutcome::Skipped { reason } if reason.contains("r0"))
        );
    }

    #[test]
    fn dependents_wait_for_unchanged_dependencies_then_run() {
        let plan = plan(&[Action::Keep, Action::Update], vec![vec![], vec![0]]);
        let report = block_on(run_changes(
            &plan,
            1,
            || true,
            |_| async { Ok::<(), ()>(()) },
        ));
        assert_eq!(
            report.outcomes,
            vec![ChangeOutcome::Unchanged, ChangeOutcome::Applied]
        );
        assert!(report.succeeded());
    }

    #[test]
    fn interruption_stops_launching_new_changes() {
        let plan = plan(&[Action::Update, Action::Update], vec![vec![], vec![]]);
        let launched = RefCell::new(0);
        let report = block_on(run_changes(
            &plan,
            1,
            || *launched.borrow() == 0,
            |_| {
                *launched.borrow_mut() += 1;
                async { Ok::<(), ()>(()) }
            },
        ));
        assert_eq!(
            report.counts(),
            ApplyOutcome {
                applied: 1,
                unchanged: 0,
                failed: 0,
                skipped: 1
            }
        );
    }

    /// `--parallelism N`: never more than N changes at once, and N at once when there are enough
    #[test]
    fn no_more_than_parallelism_changes_run_at_once() {
        for parallelism in [1, 3] {
            let plan = plan(&[Action::Update; 7], vec![vec![]; 7]);
            let (running, most) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
            let report = block_on(run_changes(
                &plan,
                parallelism,
                || true,
                |_| {
                    let (running, most) = (&running, &most);
                    async move {
                        running.set(running.get() + 1);
                        most.set(most.get().max(running.get()));
                        // a change that is not done at once: the others are launched meanwhile, up to the limit
                        let mut pending = 3;
                        futures::future::poll_fn(|context| {
                            if pending == 0 {
                                return std::task::Poll::Ready(());
                            }
                            pending -= 1;
                            context.waker().wake_by_ref();
                            std::task::Poll::Pending
                        })
                        .await;
                        running.set(running.get() - 1);
                        Ok::<(), ()>(())
                    }
                },
            ));
            assert!(report.succeeded());
            assert_eq!(
                most.get(),
                parallelism,
                "at most and at best {parallelism} at once"
            );
        }
    }
}
