//! The gradient histogram as the notebook draws it: counts of |gradient| over a log x axis, one
//! bar per decade. One histogram is drawn as filled bars with their counts above; several (one
//! per param or layer) as outlines in the series colours, with a legend, each as fractions of
//! its own elements so that a bias of 20 elements shows beside a weight of 400.
//!
//! In: one or more named `Histogram`s (`kiln_runtime::Histogram`). Out: their drawing on a plotters area.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::file::{DrawResult, Drawing};
use super::style::{
    FAMILY, LABEL_SIZE, SERIES, TICK_SIZE, TITLE_SIZE, count_label, log_ticks, major_grid, minor_grid,
    power_of_ten_label, short_number,
};
use crate::trainer::Histogram;

/// A chart of one or more histograms under a title.
pub(super) struct Histograms<'a> {
    pub(super) title: &'a str,
    pub(super) series: &'a [(&'a str, &'a Histogram)],
}

impl Drawing for Histograms<'_> {
    fn size(&self) -> (u32, u32) {
        (800, 420)
    }

    fn draw<B: DrawingBackend>(&self, area: &DrawingArea<B, Shift>) -> DrawResult<B> {
        area.fill(&WHITE)?;
        draw_histograms(area, self.title, self.series)
    }
}

/// The decade bounds `[10^low, 10^high)` that hold every series (the notebook's clamp range,
/// `[1e-9, 1)`, when there are no counts at all).
fn decades(series: &[(&str, &Histogram)]) -> (i32, i32) {
    let drawn = series.iter().filter(|(_, h)| !h.counts.is_empty());
    let low = drawn.clone().map(|(_, h)| h.lowest).min();
    let high = drawn.map(|(_, h)| h.lowest + h.counts.len() as i32).max();
    match (low, high) {
        (Some(low), Some(high)) => (low, high),
        _ => (-9, 0),
    }
}

/// Draws `series` on `area` under `title`.
pub(super) fn draw_histograms<B: DrawingBackend>(
    area: &DrawingArea<B, Shift>,
    title: &str,
    series: &[(&str, &Histogram)],
) -> DrawResult<B> {
    let (low, high) = decades(series);
    let fractions = series.len() > 1;
    // The bar height of each count: the count, or with several series its share of its series.
    let height = |h: &Histogram, count: usize| {
        if fractions { count as f64 / h.counts.iter().sum::<usize>().max(1) as f64 } else { count as f64 }
    };
    let top = series.iter().flat_map(|(_, h)| h.counts.iter().map(|&c| height(h, c))).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.12 } else { 1.0 };
    // Slightly wider than the decades, so that the end ticks survive rounding.
    let (first, last) = (10f64.powi(low) / 1.001, 10f64.powi(high) * 1.001);
    let (powers, minor) = log_ticks(first, last, &[1.0]);
    let x_axis = (first..last).log_scale().with_key_points(powers).with_light_points(minor);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, TITLE_SIZE))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_axis, 0.0..top)?;
    let y_label = |v: &f64| if fractions { short_number(*v) } else { count_label(*v) };
    chart
        .configure_mesh()
        .x_label_formatter(&|v| power_of_ten_label(*v))
        .y_label_formatter(&y_label)
        .bold_line_style(major_grid())
        .light_line_style(minor_grid())
        .x_desc("|gradient| (zeros and values below 10⁻⁹ counted at 10⁻⁹)")
        .y_desc(if fractions { "fraction of the param's elements" } else { "count" })
        .label_style((FAMILY, TICK_SIZE))
        .axis_desc_style((FAMILY, LABEL_SIZE))
        .draw()?;
    let bar = |h: &Histogram, i: usize| (10f64.powi(h.lowest + i as i32), 10f64.powi(h.lowest + i as i32 + 1));
    if let [(_, histogram)] = series {
        let color = SERIES[0];
        chart.draw_series(histogram.counts.iter().enumerate().map(|(i, &count)| {
            let (left, right) = bar(histogram, i);
            Rectangle::new([(left, 0.0), (right, count as f64)], color.mix(0.85).filled())
        }))?;
        chart.draw_series(histogram.counts.iter().enumerate().map(|(i, &count)| {
            let (left, right) = bar(histogram, i);
            Rectangle::new([(left, 0.0), (right, count as f64)], WHITE.stroke_width(1))
        }))?;
        let above = TextStyle::from((FAMILY, TICK_SIZE).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(histogram.counts.iter().enumerate().filter(|(_, count)| **count > 0).map(
            |(i, &count)| {
                let (left, right) = bar(histogram, i);
                Text::new(count.to_string(), ((left * right).sqrt(), count as f64), above.clone())
            },
        ))?;
        return Ok(());
    }
    for (k, (name, histogram)) in series.iter().enumerate() {
        let color = SERIES[k % SERIES.len()];
        let mut outline = Vec::with_capacity(2 * histogram.counts.len() + 2);
        for (i, &count) in histogram.counts.iter().enumerate() {
            let (left, right) = bar(histogram, i);
            if i == 0 {
                outline.push((left, 0.0));
            }
            outline.push((left, height(histogram, count)));
            outline.push((right, height(histogram, count)));
            if i + 1 == histogram.counts.len() {
                outline.push((right, 0.0));
            }
        }
        chart
            .draw_series(LineSeries::new(outline, color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, TICK_SIZE))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_x_axis_spans_every_series_and_falls_back_to_the_clamp_range() {
        let a = Histogram { lowest: -7, counts: vec![1, 2] };
        let b = Histogram { lowest: -3, counts: vec![4] };
        assert_eq!(decades(&[("a", &a), ("b", &b)]), (-7, -2));
        let empty = Histogram { lowest: 0, counts: vec![] };
        assert_eq!(decades(&[("empty", &empty)]), (-9, 0));
        assert_eq!(decades(&[]), (-9, 0));
    }
}
