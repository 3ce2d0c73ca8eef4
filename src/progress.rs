//! Progress of long steps (the startup rebuild of ad lists): a bar on an
//! interactive terminal, periodic log lines otherwise (files, journald, CI).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the log-line form reports.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Progress of one step over `total` units.
pub struct Progress {
    label: &'static str,
    total: usize,
    done: usize,
    started: Instant,
    last_log: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Start reporting `label` over `total` units (bar only if stderr is a terminal).
    pub fn start(label: &'static str, total: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label);
            bar
        });
        if bar.is_none() {
            tracing::info!(total, "{label}: starting");
        }
        let now = Instant::now();
        Self { label, total, done: 0, started: now, last_log: now, bar }
    }

    /// `n` more units are done.
    pub fn advance(&mut self, n: usize) {
        self.done += n;
        crate::telemetry::rebuild_remaining(self.total.saturating_sub(self.done));
        match &self.bar {
            Some(bar) => bar.inc(n as u64),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                let label = self.label;
                tracing::info!(done = self.done, total = self.total, "{label}: in progress");
            }
            None => {}
        }
    }

    /// The step ended (also called on drop, e.g. when it failed midway).
    pub fn finish(&mut self) {
        crate::telemetry::rebuild_remaining(0);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let label = self.label;
        let ms = self.started.elapsed().as_millis() as u64;
        tracing::info!(done = self.done, total = self.total, took_ms = ms, "{label}: finished");
        self.total = 0;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.total > 0 {
            self.finish();
        }
    }
}
