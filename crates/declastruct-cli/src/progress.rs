//! .what = progress of long waits: a spinner with elapsed time on a terminal, a plain line every few seconds of a
//! wait longer than 5 s in a log (CI) or on a terminal without cursor movement (`TERM=dumb`), nothing with `--json`
//! or `-q`
//! .why = nobody should stare at a silent terminal while a bastion boots, nor wonder whether a CI job hangs; a
//! line names what is waited for at that moment (AWS, or a tunnel's health probe), never a step already done

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use declastruct_aws::ProgressReporter;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// how often a plain progress line is printed while a wait lasts; a wait shorter than this prints nothing
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// .what = where progress goes
/// .why = one switch decides, from the terminal, `--json` and `-q`
#[derive(Clone)]
enum Shown {
    /// spinners redrawn in place, on a terminal
    Spinners(MultiProgress),
    /// a plain line every `LINE_INTERVAL`, when stderr is a file, a pipe or a dumb terminal; the latest message of the AWS crate
    /// ("waiting for the bastion's SSM agent") rides along
    Lines(Arc<Mutex<Option<String>>>),
    /// nothing
    Nothing,
}

/// .what = progress of long waits, on stderr
/// .why = see the module
#[derive(Clone)]
pub struct Progress {
    shown: Shown,
}

impl Progress {
    /// .what = progress for a person (`for_a_person`: not `--json`, not `-q`): spinners when stderr is a terminal
    /// that moves its cursor, plain lines every few seconds of a long wait otherwise
    /// .why = a terminal gets animation; a CI log or a dumb terminal (Emacs' shell, `TERM=dumb`) gets no control
    /// codes, and a line only when a wait is long
    pub fn for_terminal(for_a_person: bool) -> Self {
        let shown = if !for_a_person {
            Shown::Nothing
        } else if stderr_moves_its_cursor() {
            Shown::Spinners(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Shown::Lines(Arc::new(Mutex::new(None)))
        };
        Self { shown }
    }

    /// .what = progress for one wait, ended when the returned task is dropped
    /// .why = each running change shows what it waits for and for how long
    pub fn start(&self, label: String) -> Task {
        match &self.shown {
            Shown::Spinners(multi) => {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    // the message is cut to the terminal's width: a line that wraps is drawn again as garbage
                    ProgressStyle::with_template("{spinner} {wide_msg} [{elapsed_precise}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(label.clone());
                bar.enable_steady_tick(Duration::from_millis(100));
                Task {
                    bar: Some(bar),
                    label: Arc::new(Mutex::new(label)),
                    detail: Arc::default(),
                    stop: None,
                }
            }
            Shown::Lines(shared) => {
                let label = Arc::new(Mutex::new(label));
                let detail = Arc::default();
                Task {
                    bar: None,
                    stop: Some(print_lines_while_waiting(
                        Arc::clone(&label),
                        Arc::clone(&detail),
                        Arc::clone(shared),
                    )),
                    label,
                    detail,
                }
            }
            Shown::Nothing => Task {
                bar: None,
                label: Arc::new(Mutex::new(label)),
                detail: Arc::default(),
                stop: None,
            },
        }
    }

    /// .what = prints a whole line on stderr (colours as `anstream` allows): above the spinners, which are drawn
    /// again below it, or plainly
    /// .why = an outcome line (`done`, `failed`) printed beside a spinner's redraw would be wiped by it: every
    /// change's outcome must stay on the screen, once
    pub fn println(&self, line: &str) {
        match &self.shown {
            Shown::Spinners(multi) => multi.suspend(|| anstream::eprintln!("{line}")),
            Shown::Lines(_) | Shown::Nothing => anstream::eprintln!("{line}"),
        }
    }

    /// .what = a listener for the AWS crate's progress messages
    /// .why = "waiting for the bastion's SSM agent": printed above the spinners, or carried by the next plain line
    pub fn reporter(&self) -> Option<ProgressReporter> {
        match &self.shown {
            Shown::Spinners(multi) => {
                let multi = multi.clone();
                Some(Arc::new(move |message: &str| {
                    // the bars step aside, the line is printed, they are drawn again below it (indicatif 0.18's
                    // `println` drops a line while no bar has been drawn yet)
                    multi.suspend(|| eprintln!("  … {message}"));
                }))
            }
            Shown::Lines(detail) => {
                let detail = Arc::clone(detail);
                Some(Arc::new(move |message: &str| {
                    if let Ok(mut latest) = detail.lock() {
                        *latest = Some(message.to_string());
                    }
                }))
            }
            Shown::Nothing => None,
        }
    }
}

/// .what = whether stderr is a terminal that can redraw a line: a terminal, and `TERM` is not `dumb`
/// .why = a dumb terminal prints every redraw of a spinner as new text
pub fn stderr_moves_its_cursor() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os(crate::env_vars::TERM).is_none_or(|term| term != "dumb")
}

/// a thread that prints "… LABEL: still waiting after N s (DETAIL)" every `LINE_INTERVAL` until the returned
/// sender is dropped (the wait ended), with the label of that moment and its own detail (or else the latest
/// unattributed one); it wakes at once then, so it never delays the command
fn print_lines_while_waiting(
    label: Arc<Mutex<String>>,
    detail: Arc<Mutex<Option<String>>>,
    shared: Arc<Mutex<Option<String>>>,
) -> mpsc::Sender<()> {
    let (stop, stopped) = mpsc::channel::<()>();
    let started = Instant::now();
    std::thread::spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(LINE_INTERVAL) {
            let latest = [&detail, &shared]
                .into_iter()
                .find_map(|detail| detail.lock().ok().and_then(|latest| latest.clone()))
                .map(|latest| format!(" ({latest})"))
                .unwrap_or_default();
            let label = label.lock().map(|label| label.clone()).unwrap_or_default();
            eprintln!(
                "… {label}: still waiting after {} s{latest}",
                started.elapsed().as_secs()
            );
        }
    });
    stop
}

/// .what = the progress of one wait
/// .why = dropped when its wait ends: the spinner is cleared, the plain lines stop
pub struct Task {
    bar: Option<ProgressBar>,
    /// what is waited for now
    label: Arc<Mutex<String>>,
    /// the latest progress message of this wait's own work ("waiting for the bastion's SSM agent …")
    detail: Arc<Mutex<Option<String>>>,
    /// dropping it stops the plain lines
    stop: Option<mpsc::Sender<()>>,
}

impl Task {
    /// .what = names what the wait is for from now on
    /// .why = one wait may have steps (AWS, then each tunnel's health probe): the line names the step under way
    pub fn relabel(&self, label: String) {
        if let Ok(mut current) = self.label.lock() {
            *current = label;
        }
        self.redraw();
    }

    /// .what = a listener for the AWS crate's progress messages of this wait's own work: they become this line's
    /// detail (`LABEL (waiting for the bastion's SSM agent …)`), never a line of their own
    /// .why = with several changes under way, a message must say whose it is, and a spinner's message must not stay
    /// in the scrollback once its wait is over
    pub fn reporter(&self) -> Option<declastruct_aws::ProgressReporter> {
        if self.bar.is_none() && self.stop.is_none() {
            return None;
        }
        let (bar, label, detail) = (
            self.bar.clone(),
            Arc::clone(&self.label),
            Arc::clone(&self.detail),
        );
        Some(Arc::new(move |message: &str| {
            if let Ok(mut current) = detail.lock() {
                *current = Some(message.to_string());
            }
            if let Some(bar) = &bar {
                bar.set_message(spinner_message(&label, &detail));
            }
        }))
    }

    /// the spinner shows the label of this moment and the latest detail
    fn redraw(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(spinner_message(&self.label, &self.detail));
        }
    }
}

/// `LABEL (DETAIL)`, or the label alone
fn spinner_message(label: &Mutex<String>, detail: &Mutex<Option<String>>) -> String {
    let label = label.lock().map(|label| label.clone()).unwrap_or_default();
    match detail.lock().ok().and_then(|detail| detail.clone()) {
        Some(detail) => format!("{label} ({detail})"),
        None => label,
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        // the printing thread wakes as its channel closes, and ends
        drop(self.stop.take());
    }
}
