//! The PNG charts: valid files (signature, chunk checksums, image data of the right size) with
//! something drawn on them.

use std::path::PathBuf;

use kiln_runtime::Histogram;
use kiln_runtime::plot::{save_curves, save_histogram, save_picture};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir.join(name)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Reads a PNG kiln wrote: checks every chunk's CRC, undoes the stored deflate blocks, and
/// returns `(width, height, pixels)`.
fn read(path: &PathBuf) -> (usize, usize, Vec<[u8; 3]>) {
    let png = std::fs::read(path).expect("written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (mut at, mut size, mut data) = (8, (0, 0), Vec::new());
    while at < png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let body = &png[at + 8..at + 8 + len];
        let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
        assert_eq!(crc, crc32(&png[at + 4..at + 8 + len]), "{} chunk's CRC", String::from_utf8_lossy(kind));
        match kind {
            b"IHDR" => {
                size = (
                    u32::from_be_bytes(body[0..4].try_into().unwrap()),
                    u32::from_be_bytes(body[4..8].try_into().unwrap()),
                );
                assert_eq!(&body[8..10], &[8, 2], "8-bit RGB");
            }
            b"IDAT" => data.extend_from_slice(body),
            _ => {}
        }
        at += 12 + len;
    }
    let (width, height) = (size.0 as usize, size.1 as usize);
    // zlib header, then stored blocks: final flag, LEN, NLEN, bytes.
    let (mut raw, mut at) = (Vec::new(), 2);
    loop {
        let last = data[at] & 1 == 1;
        let len = u16::from_le_bytes([data[at + 1], data[at + 2]]) as usize;
        assert_eq!(!u16::from_le_bytes([data[at + 1], data[at + 2]]), u16::from_le_bytes([data[at + 3], data[at + 4]]));
        raw.extend_from_slice(&data[at + 5..at + 5 + len]);
        at += 5 + len;
        if last {
            break;
        }
    }
    assert_eq!(raw.len(), height * (1 + 3 * width), "image data");
    let pixels = raw
        .chunks(1 + 3 * width)
        .flat_map(|row| row[1..].chunks(3).map(|p| [p[0], p[1], p[2]]).collect::<Vec<_>>())
        .collect();
    (width, height, pixels)
}

fn drawn(pixels: &[[u8; 3]]) -> usize {
    pixels.iter().filter(|&&p| p != [255, 255, 255]).count()
}

#[test]
fn a_histogram_png() {
    let path = scratch("histogram.png");
    save_histogram(&Histogram::of([1e-5, 2e-4, 3e-4, 0.02, 0.5, 0.0]), &path).expect("saved");
    let (width, height, pixels) = read(&path);
    assert_eq!((width, height), (720, 360));
    assert!(drawn(&pixels) > 1000);
}

#[test]
fn curves_png_with_a_panel_per_series() {
    let path = scratch("curves.png");
    let loss: Vec<f64> = (0..100).map(|i| 1.0 / (1.0 + i as f64)).collect();
    let accuracy: Vec<f64> = (0..100).map(|i| 0.5 + i as f64 / 250.0).collect();
    save_curves(&[("loss", &loss), ("accuracy", &accuracy)], &path).expect("saved");
    let (_, height, pixels) = read(&path);
    assert_eq!(height, 440);
    assert!(drawn(&pixels) > 1000);
}

#[test]
fn the_notebooks_picture_png() {
    let path = scratch("picture.png");
    let target: Vec<bool> = (0..64 * 24).map(|i| (i % 64) > 32).collect();
    let output: Vec<bool> = (0..64 * 24).map(|i| (i / 64) > 12).collect();
    save_picture(&target, &output, (64, 24), Some(&Histogram::of([0.1, 0.01])), &path).expect("saved");
    let (width, _, pixels) = read(&path);
    assert_eq!(width, 720);
    let red = pixels.iter().filter(|&&p| p == [214, 39, 40]).count();
    assert!(red > 64 * 24, "class-1 cells are drawn: {red}");
}

#[test]
fn an_unwritable_path_is_an_error() {
    let error =
        save_histogram(&Histogram::of([1.0]), &PathBuf::from("/nonexistent-kiln-dir/h.png")).expect_err("no directory");
    assert!(error.to_string().contains("cannot write"), "{error}");
}
