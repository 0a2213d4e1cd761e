//! What every chart shares: the bundled font (registered with plotters once, so text needs no
//! font installed), the colours, the text sizes and the tick labels of log axes.
//!
//! In: nothing (constants and the bundled font's bytes). Out: the styles, colours and tick
//! formatters the chart modules draw with.

use std::sync::OnceLock;

use kiln_compiler::{Error, Result};
use plotters::style::{BLACK, Color, FontStyle, RGBColor, ShapeStyle, register_font};

/// DejaVu Sans cut down to the characters labels use (see `fonts/README.md`, license in
/// `fonts/LICENSE`).
const FONT: &[u8] = include_bytes!("fonts/DejaVuSans-subset.ttf");

/// The family every chart's text asks plotters for.
pub(super) const FAMILY: &str = "sans-serif";

/// Registers the bundled font as plotters' sans-serif (once; later calls return the first
/// call's outcome).
pub(super) fn register_font_once() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    // The font is part of kiln's source (`the_bundled_font_parses` below checks it).
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(Error::Bug("the bundled chart font does not parse".into()))
    }
}

/// Text sizes in pixels.
pub(super) const TITLE_SIZE: u32 = 20;
pub(super) const LABEL_SIZE: u32 = 14;
pub(super) const TICK_SIZE: u32 = 13;

/// The series colours (matplotlib's first six), in order.
pub(super) const SERIES: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// Class 1 in the notebook's picture.
pub(super) const CLASS_ONE: RGBColor = RGBColor(214, 39, 40);
/// Class 0 in the notebook's picture.
pub(super) const CLASS_ZERO: RGBColor = RGBColor(174, 199, 232);

/// `10ⁿ` with a superscript exponent, for the powers of ten on a log axis (an empty label for
/// a value that is not one).
pub(super) fn power_of_ten_label(value: f64) -> String {
    let exponent = value.log10().round();
    if (value.log10() - exponent).abs() > 1e-6 {
        return String::new();
    }
    let superscript: String = format!("{}", exponent as i64)
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            '9' => '⁹',
            other => other,
        })
        .collect();
    format!("10{superscript}")
}

/// The ticks of a log axis over `low..high`: `(labelled, minor)`. The labelled ticks are
/// the powers of ten and, if `multiples` holds them, their multiples (`[1.0, 2.0, 5.0]` labels
/// 0.1, 0.2, 0.5, 1, ...); every other whole multiple (2× to 9×) is a minor tick, drawn as a
/// faint grid line as matplotlib does.
pub(super) fn log_ticks(low: f64, high: f64, multiples: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (mut labelled, mut minor) = (Vec::new(), Vec::new());
    if !(low > 0.0 && low < high && high.is_finite()) {
        return (labelled, minor);
    }
    for exponent in low.log10().floor() as i32..=high.log10().ceil() as i32 {
        for multiple in 1..=9 {
            let value = f64::from(multiple) * 10f64.powi(exponent);
            if value < low || value > high {
                continue;
            }
            if multiples.contains(&f64::from(multiple)) { labelled.push(value) } else { minor.push(value) }
        }
    }
    (labelled, minor)
}

/// A count on a linear axis: whole numbers only (fractional ticks get no label).
pub(super) fn count_label(value: f64) -> String {
    if value.fract() == 0.0 { short_number(value) } else { String::new() }
}

/// The grid lines of every chart: major lines light grey, minor ones barely visible.
pub(super) fn major_grid() -> ShapeStyle {
    BLACK.mix(0.15).stroke_width(1)
}

/// See [`major_grid`].
pub(super) fn minor_grid() -> ShapeStyle {
    BLACK.mix(0.04).stroke_width(1)
}

/// A tick value in at most three significant digits, without trailing zeros (`0.05`, `0.2`,
/// `1`, `1500`, `2e-5`).
pub(super) fn short_number(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-3..6).contains(&magnitude) {
        return format!("{value:.1e}").replace(".0e", "e");
    }
    let decimals = (2 - magnitude).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_font_parses() {
        assert!(plotters::style::register_font("kiln-test", FontStyle::Normal, FONT).is_ok());
    }

    #[test]
    fn powers_of_ten_are_labelled_with_superscripts_and_minor_ticks_are_not() {
        assert_eq!(power_of_ten_label(1e-9), "10⁻⁹");
        assert_eq!(power_of_ten_label(1.0), "10⁰");
        assert_eq!(power_of_ten_label(100.0), "10²");
        assert_eq!(power_of_ten_label(3e-4), "");
    }

    #[test]
    fn log_ticks_label_the_asked_multiples_and_keep_the_rest_minor() {
        let (labelled, minor) = log_ticks(0.004, 0.9, &[1.0, 2.0, 5.0]);
        let labels: Vec<String> = labelled.iter().map(|&v| short_number(v)).collect();
        assert_eq!(labels, ["0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5"]);
        let minor: Vec<String> = minor.iter().map(|&v| short_number(v)).collect();
        assert_eq!(minor[..5], ["0.004", "0.006", "0.007", "0.008", "0.009"]);
        assert_eq!(minor.len(), 5 + 6 + 6, "3, 4, 6, 7, 8, 9 × 0.01 and × 0.1");
        let (labelled, minor) = log_ticks(1e-9, 1.0, &[1.0]);
        assert_eq!(labelled.len(), 10);
        assert_eq!(minor.len(), 9 * 8);
        assert_eq!(log_ticks(0.0, 1.0, &[1.0]), (vec![], vec![]));
    }

    #[test]
    fn counts_are_labelled_only_when_whole() {
        assert_eq!(count_label(3.0), "3");
        assert_eq!(count_label(2.5), "");
    }

    #[test]
    fn short_numbers_keep_three_significant_digits() {
        assert_eq!(short_number(0.05), "0.05");
        assert_eq!(short_number(0.2), "0.2");
        assert_eq!(short_number(1.0), "1");
        assert_eq!(short_number(0.4567), "0.457");
        assert_eq!(short_number(1500.0), "1500");
        assert_eq!(short_number(2e-5), "2e-5");
        assert_eq!(short_number(0.0), "0");
    }
}
