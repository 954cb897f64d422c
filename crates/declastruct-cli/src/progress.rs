//! .what = progress of long waits on a terminal: a spinner with elapsed time per running change
//! .why = nobody should stare at a silent terminal while a bastion boots; nothing of it when piped or with --json

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use declastruct_aws::ProgressReporter;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// .what = where progress goes: spinners on stderr, or nowhere
/// .why = one switch decides, from the terminal, `--json` and `-q`
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// .what = progress shown only when stderr is a terminal and the output is for a person
    /// .why = piped output and JSON stay free of spinners and control codes
    pub fn for_terminal(for_a_person: bool) -> Self {
        let shown = for_a_person && std::io::stderr().is_terminal();
        Self {
            multi: shown.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// .what = a spinner for one wait, cleared when the returned task is dropped
    /// .why = each running change shows what it waits for and for how long
    pub fn start(&self, label: String) -> Task {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(label);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Task { bar }
    }

    /// .what = a listener for the AWS crate's progress messages, printed above the spinners
    /// .why = "waiting for the bastion's SSM agent" and similar, only on a terminal
    pub fn reporter(&self) -> Option<ProgressReporter> {
        let multi = self.multi.clone()?;
        Some(Arc::new(move |message: &str| {
            let _ = multi.println(format!("  … {message}"));
        }))
    }
}

/// .what = one spinner
/// .why = dropped when its wait ends
pub struct Task {
    bar: Option<ProgressBar>,
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
