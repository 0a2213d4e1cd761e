//! The charts: PNG files that decode to the promised size with the series' colours on them and
//! stay small, SVG files with their labels as text, errors that name the path and the caller's
//! line, and no partial file after a failed write.

use std::path::{Path, PathBuf};

use kiln_runtime::Histogram;
use kiln_runtime::plot::{Curve, save_curves, save_histogram, save_histograms, save_picture};

/// The largest PNG a chart may be (they are mostly flat colour and compress well).
const PNG_BOUND: usize = 100_000;
/// matplotlib's first series colour, kiln's first too.
const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];
const CLASS_ONE: [u8; 3] = [214, 39, 40];

/// A fresh directory for `test`'s files, kept under the build's scratch space for inspection.
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plot").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Decodes the PNG at `path`: `(width, height, RGB pixels)`, and its size in bytes.
fn read_png(path: &Path) -> ((u32, u32, Vec<[u8; 3]>), usize) {
    let bytes = std::fs::read(path).expect("written");
    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().expect("a PNG header");
    let mut buffer = vec![0; reader.output_buffer_size().expect("a sane size")];
    let frame = reader.next_frame(&mut buffer).expect("PNG image data");
    assert_eq!((frame.color_type, frame.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
    let pixels = buffer[..frame.buffer_size()].chunks(3).map(|p| [p[0], p[1], p[2]]).collect();
    ((frame.width, frame.height, pixels), bytes.len())
}

fn count(pixels: &[[u8; 3]], color: [u8; 3]) -> usize {
    pixels.iter().filter(|&&p| p == color).count()
}

/// A loss falling over two decades, as a training run's.
fn falling_loss(steps: usize) -> Vec<f64> {
    (0..steps).map(|i| 0.69 * (-(i as f64) / 200.0).exp() + 0.004 * (1.0 + (i as f64 * 0.7).sin())).collect()
}

#[test]
fn a_histogram_png_has_its_size_its_bars_and_fewer_than_100_kb() {
    let path = scratch("histogram").join("histogram.png");
    save_histogram(&Histogram::of([1e-5, 2e-4, 3e-4, 0.02, 0.5, 0.0, 0.3, 0.7]), &path).expect("saved");
    let ((width, height, pixels), bytes) = read_png(&path);
    assert_eq!((width, height), (800, 420));
    assert!(bytes < PNG_BOUND, "{bytes} bytes");
    // Bars are the first series colour at 85%: neither white nor the colour itself.
    let bars = pixels.iter().filter(|p| p[2] > p[0] + 60 && p[2] > 150).count();
    assert!(bars > 5_000, "{bars} bar pixels");
}

#[test]
fn histograms_by_param_are_drawn_in_the_series_colours() {
    let path = scratch("histograms").join("by_param.png");
    let weights = Histogram::of((1..400).map(|i| 1e-4 * i as f64));
    let biases = Histogram::of((1..20).map(|i| 1e-7 * i as f64));
    save_histograms(&[("layer1.weight", &weights), ("layer1.bias", &biases)], &path).expect("saved");
    let ((_, _, pixels), bytes) = read_png(&path);
    assert!(bytes < PNG_BOUND, "{bytes} bytes");
    assert!(count(&pixels, BLUE) > 300, "the first series' outline");
    assert!(count(&pixels, ORANGE) > 300, "the second series' outline");
}

#[test]
fn curves_png_has_a_panel_per_series_and_fewer_than_100_kb() {
    let path = scratch("curves").join("curves.png");
    let loss = falling_loss(1024);
    let accuracy: Vec<f64> = (0..1024).map(|i| 0.5 + 0.49 * (1.0 - (-(i as f64) / 150.0).exp())).collect();
    save_curves(&[Curve::log("loss", &loss), Curve::linear("accuracy", &accuracy)], &path).expect("saved");
    let ((width, height, pixels), bytes) = read_png(&path);
    assert_eq!((width, height), (800, 560));
    assert!(bytes < PNG_BOUND, "{bytes} bytes");
    let (top, bottom) = pixels.split_at(pixels.len() / 2);
    assert!(count(top, BLUE) > 500, "the loss line in the upper panel");
    assert!(count(bottom, ORANGE) > 500, "the accuracy line in the lower panel");
}

#[test]
fn curves_with_gaps_and_single_points_are_drawn() {
    let path = scratch("gaps").join("curves.png");
    let with_gap = [1.0, 0.5, f64::NAN, 0.2, 0.1, f64::INFINITY, 0.05, 0.0, 0.01];
    save_curves(&[Curve::log("loss", &with_gap), Curve::linear("one", &[3.0]), Curve::log("none", &[])], &path)
        .expect("saved");
    let ((_, height, _), _) = read_png(&path);
    assert_eq!(height, 3 * 280);
}

#[test]
fn the_notebooks_picture_png_shows_both_classes_and_fewer_than_100_kb() {
    let path = scratch("picture").join("picture.png");
    let (width, height) = (64, 24);
    let target: Vec<bool> = (0..width * height).map(|i| (i % width) > 32).collect();
    let output: Vec<bool> = (0..width * height).map(|i| (i / width) > 12).collect();
    let histogram = Histogram::of((1..2000).map(|i| 1e-6 * i as f64));
    save_picture(&target, &output, (width, height), [-2.0, 2.0, -2.0, 2.0], Some(&histogram), &path).expect("saved");
    let ((png_width, png_height, pixels), bytes) = read_png(&path);
    assert_eq!((png_width, png_height), (800, 850));
    assert!(bytes < PNG_BOUND, "{bytes} bytes");
    assert!(count(&pixels, CLASS_ONE) > 20_000, "class-1 cells");
}

#[test]
fn an_svg_chart_is_svg_with_its_labels_as_text() {
    let dir = scratch("svg");
    save_histogram(&Histogram::of([1e-5, 0.02, 0.5]), dir.join("histogram.svg")).expect("saved");
    let svg = std::fs::read_to_string(dir.join("histogram.svg")).expect("written");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..80.min(svg.len())]);
    for label in ["|gradient| over all params", "count", "10⁻⁵", "10⁰"] {
        assert!(svg.contains(label), "{label} is in the SVG");
    }
    let loss = falling_loss(100);
    save_curves(&[Curve::log("loss", &loss)], dir.join("curves.SVG")).expect("saved");
    let svg = std::fs::read_to_string(dir.join("curves.SVG")).expect("written");
    assert!(svg.contains("loss (log scale)") && svg.contains("<polyline"), "a log-scale loss line");
}

#[test]
fn a_write_into_a_missing_directory_names_the_path_and_the_callers_line() {
    let path = scratch("missing").join("no-such-directory").join("h.png");
    let error = save_histogram(&Histogram::of([1.0]), &path).expect_err("no directory");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("tests/plot.rs"), "the caller's file: {message}");
}

#[test]
fn a_failed_write_leaves_the_old_file_or_none_and_no_partial_file() {
    let dir = scratch("failed");
    // A directory where the chart should go: the rename over it fails after the data is written.
    std::fs::create_dir(dir.join("taken.png")).expect("a directory");
    let error = save_histogram(&Histogram::of([1.0]), dir.join("taken.png")).expect_err("cannot replace a directory");
    assert!(error.to_string().contains("taken.png"), "{error}");
    let left: Vec<_> = std::fs::read_dir(&dir).expect("listed").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("taken.png")], "nothing but the directory");
    assert!(dir.join("taken.png").is_dir());
    // An existing chart is replaced whole.
    let path = dir.join("replaced.png");
    std::fs::write(&path, b"old").expect("written");
    save_histogram(&Histogram::of([1.0, 0.1]), &path).expect("saved");
    assert_eq!(read_png(&path).0.0, 800);
}

#[test]
fn an_unknown_extension_is_refused_and_writes_nothing() {
    let dir = scratch("extension");
    let error = save_curves(&[Curve::log("loss", &[1.0, 0.5])], dir.join("curves.jpg")).expect_err("not png or svg");
    assert!(error.to_string().contains("curves.jpg") && error.to_string().contains(".png or .svg"), "{error}");
    assert!(!dir.join("curves.jpg").exists());
}

#[test]
fn a_picture_whose_classes_do_not_fill_the_grid_is_refused() {
    let dir = scratch("grid");
    let error = save_picture(&[true; 10], &[false; 12], (3, 4), [-2.0, 2.0, -2.0, 2.0], None, dir.join("p.png"))
        .expect_err("10 classes on a 3 × 4 grid");
    assert!(error.to_string().contains("target has 10 classes"), "{error}");
    let error = save_picture(&[true; 12], &[false; 12], (3, 4), [2.0, -2.0, -2.0, 2.0], None, dir.join("p.png"))
        .expect_err("left > right");
    assert!(error.to_string().contains("extent"), "{error}");
    assert!(!dir.join("p.png").exists());
}

#[test]
fn no_series_is_refused() {
    let dir = scratch("empty");
    assert!(save_curves(&[], dir.join("c.png")).is_err());
    assert!(save_histograms(&[], dir.join("h.png")).is_err());
}
