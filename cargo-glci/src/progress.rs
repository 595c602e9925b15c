//! `cargo glci run`'s view of the built-in runner's progress (image layers pulled, services
//! waited for, large cache transfers; see `glci_test::runner::progress`), on stderr:
//!
//! - on a terminal, indicatif bars, one per layer, wait or transfer, gone when it ends;
//! - otherwise (CI logs, files, pipes) plain lines, one per pull, wait or transfer: when it
//!   starts, at most every [`PLAIN_EVERY`] while it runs, and when it ends — a pull of forty
//!   layers is a handful of lines, not a flood;
//! - nothing with `--quiet`.
//!
//! `NO_COLOR` (any non-empty value, as <https://no-color.org> says) leaves the bars
//! uncoloured (and the job logs `run` prints). Progress is never part of a job's log.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use glci_test::printable::printable;
use glci_test::runner::progress::{
    Amount, Direction, LayerStep, ProgressEvent, ProgressSink, Task,
};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

/// How often a plain line about one pull, wait or transfer may repeat while it runs.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
pub enum ProgressView {
    /// `--quiet`.
    Off,
    /// stderr is a terminal.
    Bars(Box<Bars>),
    /// stderr is anything else.
    Plain(Mutex<PlainLines>),
}

impl ProgressView {
    /// The view for this process: off with `--quiet`, bars when stderr is a terminal, plain
    /// lines otherwise.
    pub fn for_stderr(quiet: bool) -> ProgressView {
        use std::io::IsTerminal;
        if quiet {
            ProgressView::Off
        } else if std::io::stderr().is_terminal() {
            ProgressView::Bars(Box::new(Bars::new(!no_color())))
        } else {
            ProgressView::Plain(Mutex::new(PlainLines::default()))
        }
    }

    pub fn event(&self, event: &ProgressEvent) {
        match self {
            ProgressView::Off => {}
            ProgressView::Bars(bars) => bars.event(event),
            ProgressView::Plain(lines) => {
                let line = lock(lines).heard(event, Instant::now());
                if let Some(line) = line {
                    let _ = std::io::stderr()
                        .lock()
                        .write_all(format!("{line}\n").as_bytes());
                }
            }
        }
    }

    /// The job ended: whatever of it is still shown goes (a pull that failed half-way).
    pub fn job_finished(&self, job: &str) {
        match self {
            ProgressView::Off => {}
            ProgressView::Bars(bars) => bars.job_finished(job),
            ProgressView::Plain(lines) => lock(lines).job_finished(job),
        }
    }

    /// Runs `print` (other output of the run) with the bars out of its way.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match self {
            ProgressView::Bars(bars) => bars.multi.suspend(print),
            _ => print(),
        }
    }
}

/// `NO_COLOR` is set to something (<https://no-color.org>): no colour anywhere.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// The standalone runner (`cargo glci runner`) reports to the view directly.
impl ProgressSink for ProgressView {
    fn progress(&self, event: &ProgressEvent) {
        self.event(event);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a task is called on screen.
fn describe(task: &Task) -> String {
    match task {
        Task::Layer { image, layer, step } => {
            let step = match step {
                LayerStep::Download => "downloading",
                LayerStep::Extract => "extracting",
            };
            format!("{} layer {} {step}", printable(image), printable(layer))
        }
        Task::Wait { service } => format!("waiting for service {}", printable(service)),
        Task::Transfer { what, direction } => format!("{} {}", verb(*direction), printable(what)),
    }
}

fn verb(direction: Direction) -> &'static str {
    match direction {
        Direction::Download => "downloading",
        Direction::Upload => "uploading",
    }
}

/// indicatif bars, one per task, under one [`MultiProgress`] on stderr.
pub struct Bars {
    multi: MultiProgress,
    bytes: ProgressStyle,
    bytes_only: ProgressStyle,
    wait: ProgressStyle,
    shown: Mutex<HashMap<(String, Task), ProgressBar>>,
}

impl Bars {
    fn new(colour: bool) -> Bars {
        let (bar, spinner) = if colour {
            ("{bar:30.cyan/blue}", "{spinner:.green}")
        } else {
            ("{bar:30}", "{spinner}")
        };
        let style = |template: &str| {
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ")
        };
        Bars {
            multi: MultiProgress::new(),
            bytes: style(&format!(
                "{{prefix}} | {{msg}} [{bar}] {{bytes}}/{{total_bytes}}"
            )),
            bytes_only: style(&format!("{{prefix}} | {spinner} {{msg}} {{bytes}}")),
            wait: style(&format!("{{prefix}} | {spinner} {{msg}}")),
            shown: Mutex::new(HashMap::new()),
        }
    }

    fn event(&self, event: &ProgressEvent) {
        let key = (event.job.clone(), event.task.clone());
        let mut shown = lock(&self.shown);
        if event.finished {
            if let Some(bar) = shown.remove(&key) {
                bar.finish_and_clear();
                self.multi.remove(&bar);
            }
            return;
        }
        let (style, message) = match event.amount {
            Amount::Bytes { total: Some(_), .. } => (&self.bytes, describe(&event.task)),
            Amount::Bytes { total: None, .. } => (&self.bytes_only, describe(&event.task)),
            // The wait's own clock: it was already a second old when first reported.
            Amount::Elapsed(waited) => (
                &self.wait,
                format!("{} ({} s)", describe(&event.task), waited.as_secs()),
            ),
        };
        let bar = shown.entry(key).or_insert_with(|| {
            // Styled before it is added, so its first frame is already the right one.
            let bar = ProgressBar::no_length()
                .with_style(style.clone())
                .with_prefix(printable(&event.job).into_owned());
            let bar = self.multi.add(bar);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        bar.set_style(style.clone());
        bar.set_message(message);
        if let Amount::Bytes { done, total } = event.amount {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(done);
        }
    }

    fn job_finished(&self, job: &str) {
        let mut shown = lock(&self.shown);
        shown.retain(|(of, _), bar| {
            if of == job {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            of != job
        });
    }
}

/// Plain progress lines, throttled: per job, one group per image pull (all its layers), per
/// wait and per transfer.
#[derive(Default)]
pub struct PlainLines {
    groups: HashMap<(String, Group), GroupState>,
}

/// What one plain line is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Group {
    Pull { image: String },
    Wait { service: String },
    Transfer { what: String, direction: Direction },
}

#[derive(Default)]
struct GroupState {
    /// When a line about the group was last printed.
    printed: Option<Instant>,
    /// Per layer of a pull: its download bytes (done, total) and whether it is complete.
    layers: HashMap<String, Layer>,
    /// A wait's time or a transfer's bytes.
    amount: Option<Amount>,
}

#[derive(Default)]
struct Layer {
    done: u64,
    total: Option<u64>,
    complete: bool,
}

impl PlainLines {
    /// The line to print for `event` heard at `now`, if one is due: the first about its
    /// group, one at most every [`PLAIN_EVERY`] after, and the last.
    pub fn heard(&mut self, event: &ProgressEvent, now: Instant) -> Option<String> {
        let group = match &event.task {
            Task::Layer { image, .. } => Group::Pull {
                image: image.clone(),
            },
            Task::Wait { service } => Group::Wait {
                service: service.clone(),
            },
            Task::Transfer { what, direction } => Group::Transfer {
                what: what.clone(),
                direction: *direction,
            },
        };
        let key = (event.job.clone(), group);
        let state = self.groups.entry(key.clone()).or_default();
        let over = match &event.task {
            Task::Layer { layer, step, .. } => {
                let entry = state.layers.entry(layer.clone()).or_default();
                match (step, event.amount) {
                    (LayerStep::Download, Amount::Bytes { done, total }) => {
                        entry.done = done;
                        entry.total = total.or(entry.total);
                    }
                    (LayerStep::Extract, _) if event.finished => entry.complete = true,
                    _ => {}
                }
                state.layers.values().all(|l| l.complete)
            }
            _ => {
                state.amount = Some(event.amount);
                event.finished
            }
        };
        let due = match state.printed {
            None => true,
            Some(at) => over || now.duration_since(at) >= PLAIN_EVERY,
        };
        if !due {
            return None;
        }
        state.printed = Some(now);
        let line = format!(
            "{} | {}",
            printable(&event.job),
            plain_text(&key.1, state, over)
        );
        if over {
            self.groups.remove(&key);
        }
        Some(line)
    }

    /// Forgets what is left of `job` (no line: the job's own end says enough).
    pub fn job_finished(&mut self, job: &str) {
        self.groups.retain(|(of, _), _| of != job);
    }
}

fn plain_text(group: &Group, state: &GroupState, over: bool) -> String {
    match group {
        Group::Pull { image } => {
            let layers = state.layers.len();
            let complete = state.layers.values().filter(|l| l.complete).count();
            let done: u64 = state.layers.values().map(|l| l.done).sum();
            let total: u64 = state.layers.values().filter_map(|l| l.total).sum();
            let bytes = if total > 0 {
                format!(", {} of {}", HumanBytes(done.min(total)), HumanBytes(total))
            } else {
                String::new()
            };
            let verb = if over { "pulled" } else { "pulling" };
            format!(
                "{verb} image {}: {complete}/{layers} layers{bytes}",
                printable(image)
            )
        }
        Group::Wait { service } => {
            let secs = match state.amount {
                Some(Amount::Elapsed(d)) => d.as_secs_f64(),
                _ => 0.0,
            };
            let what = if over { "waited" } else { "waiting" };
            format!("{what} for service {} ({secs:.0} s)", printable(service))
        }
        Group::Transfer { what, direction } => {
            let bytes = match state.amount {
                Some(Amount::Bytes {
                    done,
                    total: Some(total),
                }) => format!("{} of {}", HumanBytes(done), HumanBytes(total)),
                Some(Amount::Bytes { done, total: None }) => HumanBytes(done).to_string(),
                _ => String::new(),
            };
            let end = if over { ", done" } else { "" };
            format!("{} {}: {bytes}{end}", verb(*direction), printable(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(layer: &str, step: LayerStep, done: u64, finished: bool) -> ProgressEvent {
        ProgressEvent {
            job: "build".into(),
            task: Task::Layer {
                image: "alpine:3".into(),
                layer: layer.into(),
                step,
            },
            amount: Amount::Bytes {
                done,
                total: Some(2 << 20),
            },
            finished,
        }
    }

    /// A pull of two layers heard over 12 s: a line at its start, one after 5 s, one after
    /// 10 s, and one at its end — not one per event.
    #[test]
    fn a_pull_prints_at_its_start_every_five_seconds_and_at_its_end() {
        let mut lines = PlainLines::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut printed = Vec::new();
        let mut heard = |event: ProgressEvent, ms: u64| {
            if let Some(line) = lines.heard(&event, at(ms)) {
                printed.push(line);
            }
        };
        heard(layer("aaa", LayerStep::Download, 0, false), 0);
        heard(layer("bbb", LayerStep::Download, 0, false), 10);
        for ms in (100..12_000).step_by(100) {
            heard(layer("aaa", LayerStep::Download, ms * 1024 / 10, false), ms);
        }
        heard(layer("aaa", LayerStep::Download, 2 << 20, true), 12_000);
        heard(layer("aaa", LayerStep::Extract, 0, true), 12_100);
        heard(layer("bbb", LayerStep::Download, 2 << 20, true), 12_200);
        heard(layer("bbb", LayerStep::Extract, 0, false), 12_300);
        heard(layer("bbb", LayerStep::Extract, 0, true), 12_400);
        assert_eq!(
            printed,
            [
                "build | pulling image alpine:3: 0/1 layers, 0 B of 2.00 MiB",
                "build | pulling image alpine:3: 0/2 layers, 500.00 KiB of 4.00 MiB",
                "build | pulling image alpine:3: 0/2 layers, 1000.00 KiB of 4.00 MiB",
                "build | pulled image alpine:3: 2/2 layers, 4.00 MiB of 4.00 MiB",
            ]
        );
        assert!(lines.groups.is_empty());
    }

    #[test]
    fn a_wait_prints_at_its_start_and_end_and_a_transfer_says_its_size() {
        let mut lines = PlainLines::default();
        let t0 = Instant::now();
        let wait = |secs: u64, finished: bool| ProgressEvent {
            job: "test".into(),
            task: Task::Wait {
                service: "postgres:16".into(),
            },
            amount: Amount::Elapsed(Duration::from_secs(secs)),
            finished,
        };
        let printed: Vec<String> = [(1, false), (2, false), (3, false), (3, true)]
            .into_iter()
            .filter_map(|(s, f)| lines.heard(&wait(s, f), t0 + Duration::from_secs(s)))
            .collect();
        assert_eq!(
            printed,
            [
                "test | waiting for service postgres:16 (1 s)",
                "test | waited for service postgres:16 (3 s)",
            ]
        );
        let upload = ProgressEvent {
            job: "test".into(),
            task: Task::Transfer {
                what: "cache default-1".into(),
                direction: Direction::Upload,
            },
            amount: Amount::Bytes {
                done: 5 << 20,
                total: Some(5 << 20),
            },
            finished: true,
        };
        assert_eq!(
            lines.heard(&upload, t0).as_deref(),
            Some("test | uploading cache default-1: 5.00 MiB of 5.00 MiB, done")
        );
    }

    /// A job that ends mid-pull leaves nothing behind; the next pull starts afresh.
    #[test]
    fn a_finished_job_forgets_its_groups() {
        let mut lines = PlainLines::default();
        let t0 = Instant::now();
        assert!(lines
            .heard(&layer("aaa", LayerStep::Download, 0, false), t0)
            .is_some());
        lines.job_finished("build");
        assert!(lines.groups.is_empty());
    }
}
