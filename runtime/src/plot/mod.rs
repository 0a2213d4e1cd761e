//! Pictures of a training run as PNG files: the log10 histogram of |gradient|, loss and
//! metric curves, and for a model of 2-D inputs the notebook's picture (target and network
//! output over a grid, the gradient histogram below).
//!
//! Drawn on a small RGB canvas with a built-in 5×7 pixel font and written by a minimal PNG
//! encoder (`png`), so a chart needs no font installed and no image library.

mod font;
mod png;

use std::path::Path;

use kiln_compiler::{Error, Result};

use crate::trainer::Histogram;

/// An RGB colour.
pub type Color = [u8; 3];

const WHITE: Color = [255, 255, 255];
const INK: Color = [40, 40, 40];
const GRID: Color = [220, 220, 220];
const BLUE: Color = [31, 119, 180];
const ORANGE: Color = [255, 127, 14];
const CLASS_ONE: Color = [214, 39, 40];
const CLASS_ZERO: Color = [174, 199, 232];

/// An RGB image being drawn.
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<Color>,
}

impl Canvas {
    /// A white canvas of `width × height` pixels.
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas { width, height, pixels: vec![WHITE; width * height] }
    }

    /// Sets the pixel at `(x, y)` (from the top left), if it is on the canvas.
    pub fn pixel(&mut self, x: i64, y: i64, color: Color) {
        if (0..self.width as i64).contains(&x) && (0..self.height as i64).contains(&y) {
            self.pixels[y as usize * self.width + x as usize] = color;
        }
    }

    /// Fills the rectangle with top left `(x, y)`, `w` wide and `h` high.
    pub fn fill(&mut self, x: i64, y: i64, w: i64, h: i64, color: Color) {
        for row in y..y + h {
            for column in x..x + w {
                self.pixel(column, row, color);
            }
        }
    }

    /// A straight line from `(x0, y0)` to `(x1, y1)`, 2 pixels thick.
    pub fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: Color) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for s in 0..=steps {
            let x = x0 + (x1 - x0) * s / steps;
            let y = y0 + (y1 - y0) * s / steps;
            self.fill(x, y, 2, 2, color);
        }
    }

    /// `text` with its top left at `(x, y)`, each font pixel `scale` pixels wide.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: Color) {
        for (i, c) in text.chars().enumerate() {
            let rows = font::glyph(c);
            let left = x + i as i64 * 6 * scale;
            for (row, bits) in rows.iter().enumerate() {
                for column in 0..5 {
                    if bits & (0b10000 >> column) != 0 {
                        self.fill(left + column * scale, y + row as i64 * scale, scale, scale, color);
                    }
                }
            }
        }
    }

    /// The width in pixels of `text` at `scale`.
    pub fn text_width(text: &str, scale: i64) -> i64 {
        text.chars().count() as i64 * 6 * scale
    }

    /// Writes the canvas to `path` as a PNG.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = png::encode(self.width, self.height, &self.pixels);
        std::fs::write(path, bytes).map_err(|e| Error::Argument {
            op: "plot",
            detail: format!("cannot write {}: {e}", path.display()),
            location: kiln_compiler::Location::caller(),
        })
    }
}

/// Draws `histogram` as bars (one per decade, counts above, decades below) in the box with
/// top left `(x, y)`, `w × h` pixels, under `title`.
fn draw_histogram(canvas: &mut Canvas, histogram: &Histogram, (x, y, w, h): (i64, i64, i64, i64), title: &str) {
    canvas.text(x, y, title, 2, INK);
    let (top, bottom) = (y + 40, y + h - 24);
    canvas.line((x, bottom), (x + w, bottom), INK);
    let bars = histogram.counts.len().max(1) as i64;
    let largest = histogram.counts.iter().copied().max().unwrap_or(1).max(1) as i64;
    let slot = w / bars;
    for (i, &count) in histogram.counts.iter().enumerate() {
        let left = x + i as i64 * slot;
        let height = (bottom - top) * count as i64 / largest;
        canvas.fill(left + slot / 8, bottom - height, slot * 3 / 4, height, BLUE);
        let label = count.to_string();
        canvas.text(left + (slot - Canvas::text_width(&label, 1)) / 2, bottom - height - 10, &label, 1, INK);
        let decade = format!("1e{}", histogram.lowest + i as i32);
        canvas.text(left + (slot - Canvas::text_width(&decade, 1)) / 2, bottom + 6, &decade, 1, INK);
    }
}

/// Writes the log10 |gradient| histogram to `path` (a PNG of 720 × 360 pixels).
pub fn save_histogram(histogram: &Histogram, path: &Path) -> Result<()> {
    let mut canvas = Canvas::new(720, 360);
    draw_histogram(&mut canvas, histogram, (20, 12, 680, 340), "log10 |gradient| over all params");
    canvas.save(path)
}

/// Writes one line chart per series (`(name, values by step)`) to `path`, stacked, each with
/// its name, its first and last steps, and its smallest and largest value.
pub fn save_curves(series: &[(&str, &[f64])], path: &Path) -> Result<()> {
    let panel = 220;
    let mut canvas = Canvas::new(720, panel * series.len().max(1));
    let colors = [BLUE, ORANGE, CLASS_ONE, INK];
    for (k, (name, values)) in series.iter().enumerate() {
        let (x, y, w, h) = (70, (k * panel) as i64 + 10, 620i64, panel as i64 - 50);
        canvas.text(x, y, name, 2, INK);
        let (top, bottom) = (y + 24, y + h);
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let (low, high) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let (low, high) = if low < high { (low, high) } else { (low - 0.5, low + 0.5) };
        canvas.fill(x, top, w, 1, GRID);
        canvas.line((x, bottom), (x + w, bottom), INK);
        canvas.line((x, top), (x, bottom), INK);
        canvas.text(2, top, &format!("{high:.3}"), 1, INK);
        canvas.text(2, bottom - 7, &format!("{low:.3}"), 1, INK);
        canvas.text(x, bottom + 6, "1", 1, INK);
        let last = values.len().to_string();
        canvas.text(x + w - Canvas::text_width(&last, 1), bottom + 6, &last, 1, INK);
        let point = |i: usize, v: f64| {
            let px = x + (w * i as i64) / (values.len().max(2) - 1) as i64;
            let py = bottom - ((bottom - top) as f64 * (v - low) / (high - low)) as i64;
            (px, py)
        };
        for i in 1..values.len() {
            if values[i - 1].is_finite() && values[i].is_finite() {
                canvas.line(point(i - 1, values[i - 1]), point(i, values[i]), colors[k % colors.len()]);
            }
        }
    }
    canvas.save(path)
}

/// Writes the notebook's picture to `path`: the target and the network's output on a
/// `width × height` grid (class 1 red, class 0 light blue, row 0 at the top), side by side,
/// and the gradient histogram below them if given.
pub fn save_picture(
    target: &[bool],
    output: &[bool],
    (width, height): (usize, usize),
    histogram: Option<&Histogram>,
    path: &Path,
) -> Result<()> {
    let scale = (340 / width.max(1)).max(1) as i64;
    let picture_height = height as i64 * scale;
    let below = if histogram.is_some() { 320 } else { 0 };
    let mut canvas = Canvas::new(720, (picture_height + 50 + below) as usize);
    for (k, (title, classes)) in [("target", target), ("network output", output)].iter().enumerate() {
        let left = 10 + k as i64 * 360;
        canvas.text(left, 8, title, 2, INK);
        for (i, &class) in classes.iter().enumerate() {
            let (row, column) = ((i / width) as i64, (i % width) as i64);
            let color = if class { CLASS_ONE } else { CLASS_ZERO };
            canvas.fill(left + column * scale, 36 + row * scale, scale, scale, color);
        }
    }
    if let Some(histogram) = histogram {
        let top = picture_height + 50;
        draw_histogram(&mut canvas, histogram, (20, top, 680, below - 10), "log10 |gradient| over all params");
    }
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_in_ink() {
        let mut canvas = Canvas::new(40, 10);
        canvas.text(1, 1, "1e-3", 1, INK);
        let inked = canvas.pixels.iter().filter(|&&p| p == INK).count();
        assert!(inked > 20, "{inked} pixels inked");
    }
}
