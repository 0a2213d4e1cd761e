//! Progress of a training run: a bar with the loss, the metrics and steps/s on a terminal, a
//! plain line now and then when the output is not one (CI logs).
//!
//! In: the trainer's [`Report`]s. Out: a progress bar or plain lines on stdout.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use super::Report;

/// Shows how a run of `total` steps goes.
pub(crate) enum Progress {
    /// A live bar (stdout is a terminal).
    Bar(ProgressBar),
    /// Plain lines at the given iterations.
    Lines { total: u64 },
}

impl Progress {
    pub(crate) fn new(total: u64) -> Progress {
        if !std::io::stdout().is_terminal() {
            return Progress::Lines { total };
        }
        let bar = ProgressBar::new(total);
        let style =
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress::Bar(bar)
    }

    /// Records a finished step; `rate` is steps/s so far.
    pub(crate) fn update(&self, report: &Report, rate: f64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_position(report.iteration + 1);
                bar.set_message(summary(report, rate));
            }
            Progress::Lines { total } => {
                let last = report.iteration + 1 == *total;
                if report.diagnostics.is_some() || last {
                    println!("step {}/{total}: {}", report.iteration + 1, summary(report, rate));
                }
            }
        }
    }

    /// Prints a line without breaking the bar.
    pub(crate) fn println(&self, line: &str) {
        match self {
            Progress::Bar(bar) => bar.println(line),
            Progress::Lines { .. } => println!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}

/// `loss 0.4321 accuracy 0.9123 512 steps/s`.
fn summary(report: &Report, rate: f64) -> String {
    let mut text = format!("loss {:.4}", report.loss);
    for (name, value) in &report.metrics {
        text.push_str(&format!(" {name} {value:.4}"));
    }
    text.push_str(&format!(" {rate:.0} steps/s"));
    text
}
