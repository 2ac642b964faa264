//! The pairing QR code: drawn in a terminal (half blocks, two modules per character row) and
//! written as a PNG (`--qr-png`), from the `qrcode` and `png` crates.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use qrcode::{Color, EcLevel, QrCode};

/// Light modules around the code, as the QR specification asks.
const QUIET: usize = 4;
/// PNG pixels per module.
const SCALE: usize = 8;

/// The modules, dark = true, with the quiet zone.
fn modules(text: &str) -> Result<(usize, Vec<bool>), String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)
        .map_err(|e| format!("cannot make a QR code: {e}"))?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QUIET;
    let mut out = vec![false; size * size];
    for y in 0..width {
        for x in 0..width {
            out[(y + QUIET) * size + x + QUIET] = colors[y * width + x] == Color::Dark;
        }
    }
    Ok((size, out))
}

/// Text for a terminal: dark modules as the background colour (light-on-dark terminals are
/// the common case, so "dark" is drawn as blank and light as a block), two rows per line.
pub fn terminal(text: &str) -> Result<String, String> {
    let (size, m) = modules(text)?;
    let light = |x: usize, y: usize| y < size && !m[y * size + x];
    let mut out = String::new();
    for y in (0..size).step_by(2) {
        for x in 0..size {
            out.push(match (light(x, y), light(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// A grayscale PNG of the code.
pub fn write_png(text: &str, path: &Path) -> Result<(), String> {
    let (size, m) = modules(text)?;
    let px = size * SCALE;
    let mut data = vec![0u8; px * px];
    for y in 0..px {
        for x in 0..px {
            data[y * px + x] = if m[(y / SCALE) * size + x / SCALE] {
                0
            } else {
                255
            };
        }
    }
    let fail = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
    let file = File::create(path).map_err(|e| fail(&e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), px as u32, px as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
    writer.write_image_data(&data).map_err(|e| fail(&e))?;
    writer.finish().map_err(|e| fail(&e))
}
