//! HTML pages for a person at a computer: the activation link as a QR code, or one neutral
//! page for every link that does not work (unknown, used, expired or superseded alike, so
//! the page tells a guesser nothing).

use qrcode::render::svg;
use qrcode::QrCode;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title></head><body>{body}</body></html>",
        title = escape(title),
    )
}

/// The page for a valid link opened on a computer: scan the code with the phone.
pub fn activation(org_name: &str, link: &str) -> String {
    let qr = QrCode::new(link.as_bytes())
        .map(|code| {
            code.render::<svg::Color<'_>>()
                .min_dimensions(240, 240)
                .build()
        })
        .unwrap_or_default();
    page(
        "Activate your security key",
        &format!(
            "<h1>Activate your {org} security key</h1>\
             <p>Scan this code with your phone's camera, or open the link on your phone.</p>\
             <div id=\"qr\">{qr}</div>\
             <p><a id=\"link\" href=\"{link}\">{link}</a></p>",
            org = escape(org_name),
            link = escape(link),
        ),
    )
}

/// The one answer for any link that does not work.
pub fn not_valid() -> String {
    page(
        "Link not valid",
        "<h1>This link is not valid</h1>\
         <p>Ask your IT administrator for a new invitation.</p>",
    )
}

pub fn too_many() -> String {
    page(
        "Too many requests",
        "<h1>Too many requests</h1><p>Try again in a minute.</p>",
    )
}
