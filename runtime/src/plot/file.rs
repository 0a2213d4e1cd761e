//! From a chart to a file: the path's extension picks the format (`.png` through plotters'
//! bitmap backend and a compressing PNG encoder, `.svg` through its SVG backend), and the bytes
//! are written beside the path and renamed over it, so a failed write leaves no partial chart.
//!
//! In: a path and a chart (a `Drawing`). Out: the chart's file, or an error
//! naming the path.

use std::path::Path;

use kiln_compiler::{Error, Location, Result};
use plotters::coord::Shift;
use plotters::prelude::{
    BitMapBackend, DrawingArea, DrawingAreaErrorKind, DrawingBackend, IntoDrawingArea, SVGBackend,
};

use super::style;

/// A chart that can draw itself on any plotters backend.
pub(super) trait Drawing {
    /// Its size in pixels, width then height.
    fn size(&self) -> (u32, u32);

    /// Draws it on `area` (white, of [`Drawing::size`]).
    fn draw<B: DrawingBackend>(&self, area: &DrawingArea<B, Shift>) -> DrawResult<B>;
}

/// What drawing on backend `B` returns.
pub(super) type DrawResult<B> = std::result::Result<(), DrawingAreaErrorKind<<B as DrawingBackend>::ErrorType>>;

/// The file formats charts are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

impl Format {
    /// The format `path`'s extension names (case-insensitive), if it is one of the two.
    fn of(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "png" => Some(Format::Png),
            "svg" => Some(Format::Svg),
            _ => None,
        }
    }
}

/// Draws `chart` and writes it to `path` in the format its extension names. Errors name the
/// path and `location` (the caller of the public `save_*` function).
pub(super) fn save(chart: &impl Drawing, path: &Path, location: Location) -> Result<()> {
    let fail = |detail: String| Error::Argument {
        op: "plot",
        detail: format!("cannot write the chart {}: {detail}", path.display()),
        location,
    };
    let format = Format::of(path).ok_or_else(|| fail("its extension must be .png or .svg".into()))?;
    style::register_font_once()?;
    let bytes = match format {
        Format::Png => png(chart).map_err(fail)?,
        Format::Svg => svg(chart).map_err(fail)?,
    };
    crate::checkpoint::write_file_atomically(path, &bytes).map_err(|e| fail(e.to_string()))
}

/// `chart` as a PNG file: drawn on an RGB buffer, encoded 8-bit RGB with adaptive filters and
/// strong deflate compression (charts are mostly flat colour, so they shrink about thirtyfold).
fn png(chart: &impl Drawing) -> std::result::Result<Vec<u8>, String> {
    let (width, height) = chart.size();
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        chart.draw(&area).map_err(|e| format!("drawing failed: {e}"))?;
        area.present().map_err(|e| format!("drawing failed: {e}"))?;
    }
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let encoded = encoder.write_header().and_then(|mut writer| {
        writer.write_image_data(&rgb)?;
        writer.finish()
    });
    encoded.map_err(|e| format!("PNG encoding failed: {e}"))?;
    Ok(bytes)
}

/// `chart` as an SVG file (text as `<text>` elements, so the viewer's sans-serif draws it).
fn svg(chart: &impl Drawing) -> std::result::Result<Vec<u8>, String> {
    let mut text = String::new();
    {
        let area = SVGBackend::with_string(&mut text, chart.size()).into_drawing_area();
        chart.draw(&area).map_err(|e| format!("drawing failed: {e}"))?;
        area.present().map_err(|e| format!("drawing failed: {e}"))?;
    }
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_picks_the_format_whatever_its_case() {
        assert_eq!(Format::of(Path::new("a/loss.png")), Some(Format::Png));
        assert_eq!(Format::of(Path::new("loss.SVG")), Some(Format::Svg));
        assert_eq!(Format::of(Path::new("loss.jpg")), None);
        assert_eq!(Format::of(Path::new("loss")), None);
    }
}
