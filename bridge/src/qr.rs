//! The pairing QR code: drawn in a terminal (half blocks, two modules per character row) and
//! written as a PNG (`--qr-png`), from the `qrcode` and `png` crates.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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

/// A grayscale PNG of the code at `path`, owner-only (it shows the pairing secret): written to
/// a new file created with mode 0600 beside `path`, then renamed over it, so the image is
/// never readable by others, not even for a moment, and an old file's looser mode (or a
/// symbolic link planted at `path`) is not reused.
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
    let tmp = temporary_beside(path);
    let written = (|| {
        let mut out = BufWriter::new(create_private(&tmp).map_err(|e| fail(&e))?);
        let mut encoder = png::Encoder::new(&mut out, px as u32, px as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(&e))?;
        writer.write_image_data(&data).map_err(|e| fail(&e))?;
        writer.finish().map_err(|e| fail(&e))?;
        out.flush().map_err(|e| fail(&e))?;
        drop(out);
        std::fs::rename(&tmp, path).map_err(|e| fail(&e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `.<name>.<pid>.tmp` in `path`'s directory (a rename stays within one file system).
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "qr.png".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// A new file, mode 0600 from its creation on (never an existing one).
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
