//! Charts of a training run, drawn by plotters and written as PNG or SVG files (the path's
//! extension chooses): the |gradient| histogram on a log axis (one, or one per param or layer
//! with a legend), loss and metric curves by step (a log axis for a loss), and the notebook's
//! picture for a model of 2-D inputs (target and network output over the input plane, the
//! gradient histogram below).
//!
//! In: [`Histogram`]s from the trainer's diagnostics, per-step values, class maps. Out: a file.
//! Text is drawn with a bundled font (DejaVu Sans, `fonts/`), so no font need be installed;
//! PNGs are compressed (a chart is a few tens of KB). A file is written beside its path and
//! renamed over it, so a failed write leaves the old file or none, never part of a chart;
//! every error names the path and the caller's line.

mod curves;
mod file;
mod histogram;
mod picture;
mod style;

use std::path::Path;

use kiln_compiler::{Error, Location, Result};

pub use curves::{Curve, Scale};

use crate::trainer::Histogram;

/// Writes the |gradient| histogram to `path` (`.png` or `.svg`, 800 × 420 pixels): one bar
/// per decade on a log x axis, its count above it, as the notebook's `grad_hist` draws it.
#[track_caller]
pub fn save_histogram(histogram: &Histogram, path: impl AsRef<Path>) -> Result<()> {
    let chart = histogram::Histograms { title: "|gradient| over all params", series: &[("all params", histogram)] };
    file::save(&chart, path.as_ref(), Location::caller())
}

/// Writes several |gradient| histograms (`(name, histogram)`, e.g. one per param or layer) on
/// one log x axis to `path` (`.png` or `.svg`, 800 × 420 pixels), as outlines with a legend.
#[track_caller]
pub fn save_histograms(series: &[(&str, &Histogram)], path: impl AsRef<Path>) -> Result<()> {
    let (path, location) = (path.as_ref(), Location::caller());
    if series.is_empty() {
        return Err(invalid(path, "no histogram to draw", location));
    }
    file::save(&histogram::Histograms { title: "|gradient| by param", series }, path, location)
}

/// Writes one line chart per [`Curve`] (values by step, from 0) to `path` (`.png` or `.svg`,
/// 800 pixels wide, 280 high per curve), stacked, each titled with its name and last value, on
/// its curve's y scale.
///
/// ```no_run
/// use kiln_runtime::plot::{Curve, save_curves};
/// # fn main() -> kiln_compiler::Result<()> {
/// let (losses, accuracies) = (vec![0.7, 0.3, 0.05], vec![0.5, 0.8, 0.97]);
/// save_curves(&[Curve::log("loss", &losses), Curve::linear("accuracy", &accuracies)], "curves.png")?;
/// # Ok(())
/// # }
/// ```
#[track_caller]
pub fn save_curves(series: &[Curve<'_>], path: impl AsRef<Path>) -> Result<()> {
    let (path, location) = (path.as_ref(), Location::caller());
    if series.is_empty() {
        return Err(invalid(path, "no series to draw", location));
    }
    file::save(&curves::Curves { series }, path, location)
}

/// Writes the notebook's picture to `path` (`.png` or `.svg`, 800 pixels wide): the target
/// and the network's output, each `width × height` classes in row-major order (class 1 red,
/// class 0 light blue, row 0 at the top), side by side over `extent` = `[left, right, bottom,
/// top]` of the input plane (matplotlib's `imshow` extent), and the gradient histogram below
/// them if given.
#[track_caller]
pub fn save_picture(
    target: &[bool],
    output: &[bool],
    (width, height): (usize, usize),
    extent: [f64; 4],
    histogram: Option<&Histogram>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let (path, location) = (path.as_ref(), Location::caller());
    for (name, classes) in [("target", target), ("output", output)] {
        if classes.len() != width * height {
            let detail =
                format!("{name} has {} classes, the {width} × {height} grid needs {}", classes.len(), width * height);
            return Err(invalid(path, &detail, location));
        }
    }
    let [left, right, bottom, top] = extent;
    if !(extent.iter().all(|v| v.is_finite()) && left < right && bottom < top) {
        let detail = format!("extent {extent:?} is not [left, right, bottom, top] with left < right and bottom < top");
        return Err(invalid(path, &detail, location));
    }
    let chart = picture::Picture { target, output, grid: (width, height), extent, histogram };
    file::save(&chart, path, location)
}

/// The error of a chart that cannot be drawn as asked.
fn invalid(path: &Path, detail: &str, location: Location) -> Error {
    Error::Argument { op: "plot", detail: format!("cannot draw the chart {}: {detail}", path.display()), location }
}
