//! The notebook's `visualize_net` picture: the target and the network's output over a grid of
//! the input plane, side by side with their x and y axes, a key of the two classes, and the
//! gradient histogram below.
//!
//! In: the two grids of classes, the plane's extent and a histogram. Out: their drawing on a
//! plotters area.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::file::{DrawResult, Drawing};
use super::histogram::draw_histograms;
use super::style::{CLASS_ONE, CLASS_ZERO, FAMILY, LABEL_SIZE, TICK_SIZE, TITLE_SIZE, short_number};
use crate::trainer::Histogram;

/// Two class maps of `width × height` cells (row 0 at the top) over `extent` = `[left, right,
/// bottom, top]`, and an optional histogram.
pub(super) struct Picture<'a> {
    pub(super) target: &'a [bool],
    pub(super) output: &'a [bool],
    pub(super) grid: (usize, usize),
    pub(super) extent: [f64; 4],
    pub(super) histogram: Option<&'a Histogram>,
}

/// Heights in pixels of the maps' row and of the class key under it.
const MAPS_HEIGHT: u32 = 440;
const KEY_HEIGHT: u32 = 30;
const HISTOGRAM_HEIGHT: u32 = 380;

impl Drawing for Picture<'_> {
    fn size(&self) -> (u32, u32) {
        let below = if self.histogram.is_some() { HISTOGRAM_HEIGHT } else { 0 };
        (800, MAPS_HEIGHT + KEY_HEIGHT + below)
    }

    fn draw<B: DrawingBackend>(&self, area: &DrawingArea<B, Shift>) -> DrawResult<B> {
        area.fill(&WHITE)?;
        let (maps, rest) = area.split_vertically(MAPS_HEIGHT);
        let (key, below) = rest.split_vertically(KEY_HEIGHT);
        let halves = maps.split_evenly((1, 2));
        self.draw_map(&halves[0], "target", self.target)?;
        self.draw_map(&halves[1], "network output", self.output)?;
        draw_key(&key)?;
        if let Some(histogram) = self.histogram {
            draw_histograms(&below, "|gradient| over all params", &[("all params", histogram)])?;
        }
        Ok(())
    }
}

impl Picture<'_> {
    /// One class map: a cell per grid point, class 1 red, class 0 light blue.
    fn draw_map<B: DrawingBackend>(
        &self,
        area: &DrawingArea<B, Shift>,
        title: &str,
        classes: &[bool],
    ) -> DrawResult<B> {
        let [left, right, bottom, top] = self.extent;
        let (width, height) = (self.grid.0.max(1), self.grid.1.max(1));
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FAMILY, TITLE_SIZE))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(48)
            .build_cartesian_2d(left..right, bottom..top)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|v| short_number(*v))
            .y_label_formatter(&|v| short_number(*v))
            .x_desc("x")
            .y_desc("y")
            .label_style((FAMILY, TICK_SIZE))
            .axis_desc_style((FAMILY, LABEL_SIZE))
            .draw()?;
        let (dx, dy) = ((right - left) / width as f64, (top - bottom) / height as f64);
        chart.draw_series(classes.iter().enumerate().map(|(i, &class)| {
            let (row, column) = ((i / width) as f64, (i % width) as f64);
            let corner = (left + column * dx, top - row * dy);
            let opposite = (left + (column + 1.0) * dx, top - (row + 1.0) * dy);
            Rectangle::new([corner, opposite], if class { CLASS_ONE } else { CLASS_ZERO }.filled())
        }))?;
        Ok(())
    }
}

/// The key of the two classes, centred in `area`.
fn draw_key<B: DrawingBackend>(area: &DrawingArea<B, Shift>) -> DrawResult<B> {
    let style = TextStyle::from((FAMILY, LABEL_SIZE).into_font());
    let (width, _) = area.dim_in_pixel();
    let middle = width as i32 / 2;
    for (offset, color, label) in [(-150, CLASS_ONE, "class 1"), (30, CLASS_ZERO, "class 0")] {
        let x = middle + offset;
        area.draw(&Rectangle::new([(x, 6), (x + 16, 22)], color.filled()))?;
        area.draw(&Text::new(label, (x + 24, 5), style.clone()))?;
    }
    Ok(())
}
