//! Loss and metric curves by step: one panel per [`Curve`], stacked, each titled with its name
//! and last value, on the y scale the curve asks for (log for a loss, so that its late progress
//! stays visible; linear for an accuracy).
//!
//! In: named series of per-step values. Out: the drawing of the panels on a plotters area.

use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::file::{DrawResult, Drawing};
use super::style::{
    FAMILY, LABEL_SIZE, SERIES, TICK_SIZE, TITLE_SIZE, log_ticks, major_grid, minor_grid, short_number,
};

/// One series of values by step (from 0), and the scale of its y axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Curve<'a> {
    /// The panel's title (its last value is added).
    pub name: &'a str,
    /// One value per step; non-finite values (and on a log axis, values ≤ 0) break the line.
    pub values: &'a [f64],
    /// How the y axis maps values.
    pub scale: Scale,
}

/// The y scale of a [`Curve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Equal steps for equal differences (an accuracy).
    Linear,
    /// Equal steps for equal ratios (a loss): a series with no positive value falls back to
    /// linear.
    Log,
}

impl<'a> Curve<'a> {
    /// `values` on a log y axis, as a loss is usually drawn.
    pub fn log(name: &'a str, values: &'a [f64]) -> Curve<'a> {
        Curve { name, values, scale: Scale::Log }
    }

    /// `values` on a linear y axis.
    pub fn linear(name: &'a str, values: &'a [f64]) -> Curve<'a> {
        Curve { name, values, scale: Scale::Linear }
    }
}

/// Stacked curves, one per panel.
pub(super) struct Curves<'a> {
    pub(super) series: &'a [Curve<'a>],
}

/// Height of one panel in pixels.
const PANEL_HEIGHT: u32 = 280;

impl Drawing for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (800, PANEL_HEIGHT * self.series.len().max(1) as u32)
    }

    fn draw<B: DrawingBackend>(&self, area: &DrawingArea<B, Shift>) -> DrawResult<B> {
        area.fill(&WHITE)?;
        let panels = area.split_evenly((self.series.len().max(1), 1));
        for (k, (curve, panel)) in self.series.iter().zip(&panels).enumerate() {
            draw_panel(panel, curve, SERIES[k % SERIES.len()])?;
        }
        Ok(())
    }
}

/// How a panel's y axis maps values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Axis {
    Linear { low: f64, high: f64 },
    Log { low: f64, high: f64 },
}

/// The y axis for `values` on `scale`, a little wider than the finite values (only the
/// positive ones on a log axis); a flat or empty series gets a range that is not empty.
pub(super) fn axis_for(values: &[f64], scale: Scale) -> Axis {
    let range = |keep: fn(f64) -> bool| {
        let kept = values.iter().copied().filter(|&v| v.is_finite() && keep(v));
        let (low, high) = kept.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        (low <= high).then_some((low, high))
    };
    if scale == Scale::Log
        && let Some((low, high)) = range(|v| v > 0.0)
    {
        let pad = if low == high { 2.0 } else { 1.25 };
        return Axis::Log { low: low / pad, high: high * pad };
    }
    let Some((low, high)) = range(|_| true) else { return Axis::Linear { low: 0.0, high: 1.0 } };
    if low == high {
        let pad = if low == 0.0 { 0.5 } else { low.abs() * 0.1 };
        return Axis::Linear { low: low - pad, high: high + pad };
    }
    let pad = (high - low) * 0.05;
    Axis::Linear { low: low - pad, high: high + pad }
}

/// One panel: the curve's values against their step (from 0), titled with its name and last
/// value.
fn draw_panel<B: DrawingBackend>(area: &DrawingArea<B, Shift>, curve: &Curve<'_>, color: RGBColor) -> DrawResult<B> {
    let Curve { name, values, scale } = *curve;
    let last = values.iter().rev().find(|v| v.is_finite());
    let title = match last {
        Some(last) => format!("{name} (last: {})", short_number(*last)),
        None => format!("{name} (no finite value)"),
    };
    let steps = 0.0..(values.len().max(2) - 1) as f64;
    let mut builder = ChartBuilder::on(area);
    builder.caption(title, (FAMILY, TITLE_SIZE)).margin(12).x_label_area_size(44).y_label_area_size(64);
    match axis_for(values, scale) {
        Axis::Linear { low, high } => {
            let chart = builder.build_cartesian_2d(steps, low..high)?;
            finish_panel(chart, name, values, color, false)
        }
        Axis::Log { low, high } => {
            // Powers of ten alone would leave a short axis with one or two labels.
            let multiples: &[f64] = if high / low <= 1e3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            let (labelled, minor) = log_ticks(low, high, multiples);
            let y_axis = (low..high).log_scale().with_key_points(labelled).with_light_points(minor);
            let chart = builder.build_cartesian_2d(steps, y_axis)?;
            finish_panel(chart, &format!("{name} (log scale)"), values, color, true)
        }
    }
}

/// The mesh and the line of a panel whose y axis is `Y` (`log` or linear).
fn finish_panel<B: DrawingBackend, Y>(
    mut chart: ChartContext<'_, B, Cartesian2d<RangedCoordf64, Y>>,
    y_description: &str,
    values: &[f64],
    color: RGBColor,
    log: bool,
) -> DrawResult<B>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(6)
        .x_label_formatter(&|v| short_number(*v))
        .y_label_formatter(&|v| short_number(*v))
        .bold_line_style(major_grid())
        .light_line_style(minor_grid())
        .x_desc("step")
        .y_desc(y_description)
        .label_style((FAMILY, TICK_SIZE))
        .axis_desc_style((FAMILY, LABEL_SIZE))
        .draw()?;
    let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect();
    // On a log axis a value ≤ 0 has no place: it breaks the line as a non-finite one does.
    let drawable = |v: f64| v.is_finite() && (!log || v > 0.0);
    for run in points.split(|(_, v)| !drawable(*v)).filter(|run| !run.is_empty()) {
        if let [only] = run {
            chart.draw_series(std::iter::once(Circle::new(*only, 3, color.filled())))?;
        } else {
            chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_axis_spans_the_positive_values() {
        assert_eq!(axis_for(&[0.5, 0.05, -1.0, f64::NAN], Scale::Log), Axis::Log { low: 0.04, high: 0.625 });
        assert_eq!(axis_for(&[0.5], Scale::Log), Axis::Log { low: 0.25, high: 1.0 });
    }

    #[test]
    fn a_log_curve_without_positive_values_falls_back_to_linear() {
        assert!(matches!(axis_for(&[0.0, -2.0], Scale::Log), Axis::Linear { .. }));
    }

    #[test]
    fn an_empty_or_flat_series_gets_a_range_that_is_not_empty() {
        assert_eq!(axis_for(&[], Scale::Linear), Axis::Linear { low: 0.0, high: 1.0 });
        assert_eq!(axis_for(&[f64::NAN], Scale::Log), Axis::Linear { low: 0.0, high: 1.0 });
        assert_eq!(axis_for(&[2.0, 2.0], Scale::Linear), Axis::Linear { low: 1.8, high: 2.2 });
        assert_eq!(axis_for(&[0.0], Scale::Linear), Axis::Linear { low: -0.5, high: 0.5 });
    }
}
