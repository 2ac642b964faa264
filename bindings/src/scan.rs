//! One entry point for everything the camera scans and every link the app is opened with.
//!
//! Where the text came from matters: a pairing code pairs only from the app's own camera.
//! A `pocketkey://pair` link opened from a web page, a message or another app could be a
//! stranger's computer posing as "Work laptop" (docs/pairing-protocol.md §7), so it is
//! refused with [`ScanError::PairingNeedsCamera`]. `FIDO:/` codes stay allowed from links: the
//! platform's own camera app hands them over as links, and hybrid proves proximity by itself
//! (the browser must receive the phone's BLE advert: CTAP 2.2, hybrid transport), so a link from far away
//! reaches no browser.

use pocketkey_net::org::is_loopback;
use url::Url;

/// What a scanned code or opened link is for.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ScannedCode {
    /// A browser's "use a phone" QR code (`FIDO:/` + digits): start hybrid (caBLE v2).
    Hybrid { url: String },
    /// The desktop pairing tool's code (`pocketkey://pair?...`).
    Pairing { url: String },
    /// An organisation's invitation (`https://<host>/activate/<token>` as pocketkey-org mails
    /// it, `https://<host>/activate?token=...` or `pocketkey://activate?token=...`); `token`
    /// is percent-decoded. Hand `url` to `SecurityKey.activate`.
    Activation { url: String, token: String },
}

/// Where the text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ScanSource {
    /// The app's own camera (its scan screen).
    Camera,
    /// A link the app was opened with (deep link, app link, universal link, another app's
    /// share or open, the system camera handing a URL over).
    Link,
}

/// Why a scanned text was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[uniffi::export(Display)]
pub enum ScanError {
    /// Some other QR code or link.
    #[error("This is not a PocketKey or passkey code")]
    NotOurs,
    /// Ours by its form, but damaged, incomplete, too long or with control characters.
    #[error("This code looks like a PocketKey code but is damaged or incomplete")]
    Malformed,
    /// A pairing code that did not come from the app's camera (a link): refused, so that no
    /// web page or app can pair the phone with a computer the user is not in front of.
    #[error("Scan the code shown by PocketKey on your computer with the app's camera")]
    PairingNeedsCamera,
}

#[uniffi::export]
impl ScanError {
    /// The sentence to show the user (the same as the error's string form).
    pub fn user_message(&self) -> String {
        self.to_string()
    }
}

/// Longest text accepted, in bytes.
pub const MAX_SCAN_LEN: usize = 4096;

/// Classifies a scanned QR code or an opened link. Surrounding spaces are ignored; the `url`
/// returned is the text without them. `source` says where the text came from: a pairing
/// code from a `Link` is `PairingNeedsCamera`.
#[uniffi::export]
pub fn classify_scan(text: String, source: ScanSource) -> Result<ScannedCode, ScanError> {
    let code = classify(text)?;
    if matches!(code, ScannedCode::Pairing { .. }) && source != ScanSource::Camera {
        return Err(ScanError::PairingNeedsCamera);
    }
    Ok(code)
}

fn classify(text: String) -> Result<ScannedCode, ScanError> {
    if text.len() > MAX_SCAN_LEN || text.chars().any(char::is_control) {
        return Err(ScanError::Malformed);
    }
    let text = text.trim_matches(' ');
    if text
        .get(..HYBRID_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(HYBRID_PREFIX))
    {
        return hybrid(text);
    }
    let Ok(url) = Url::parse(text) else {
        return Err(ScanError::NotOurs);
    };
    // Plain http only to this device's own loopback, as `SecurityKey.activate` accepts it
    // (a server in a test or an emulator); anywhere else a link must be https.
    let web = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url));
    match url.scheme() {
        "pocketkey" => ours(text, &url),
        _ if !web => Err(ScanError::NotOurs),
        _ if matches!(url.path(), "/activate" | "/activate/") => match token(&url)? {
            Some(token) if url.username().is_empty() && url.password().is_none() => {
                Ok(ScannedCode::Activation {
                    url: text.to_string(),
                    token,
                })
            }
            Some(_) => Err(ScanError::Malformed),
            // Any site may have an /activate page: without a token it is not an invitation.
            None => Err(ScanError::NotOurs),
        },
        // What pocketkey-org mails: `<public-url>/activate/<token>` (docs/org.md).
        _ => match path_token(&url) {
            Some(token) if url.query().is_none() => {
                if url.username().is_empty() && url.password().is_none() {
                    Ok(ScannedCode::Activation {
                        url: text.to_string(),
                        token,
                    })
                } else {
                    Err(ScanError::Malformed)
                }
            }
            Some(_) => Err(ScanError::Malformed),
            None => Err(ScanError::NotOurs),
        },
    }
}

const HYBRID_PREFIX: &str = "FIDO:/";

/// `FIDO:/` then digits: 17 per full 7-byte chunk, and for a last chunk of 1..6 bytes
/// 3, 5, 8, 10, 13 or 15 digits. The payload itself is decoded by the hybrid engine.
fn hybrid(text: &str) -> Result<ScannedCode, ScanError> {
    let digits = &text[HYBRID_PREFIX.len()..];
    let valid_length = matches!(digits.len() % 17, 0 | 3 | 5 | 8 | 10 | 13 | 15);
    if digits.is_empty() || !valid_length || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ScanError::Malformed);
    }
    Ok(ScannedCode::Hybrid {
        url: text.to_string(),
    })
}

/// `pocketkey://<action>?<query>`.
fn ours(text: &str, url: &Url) -> Result<ScannedCode, ScanError> {
    let action = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let bare =
        matches!(url.path(), "" | "/") && url.username().is_empty() && url.password().is_none();
    let has_query = url.query().is_some_and(|q| !q.is_empty());
    match action.as_str() {
        "pair" if bare && has_query => Ok(ScannedCode::Pairing {
            url: text.to_string(),
        }),
        "activate" if bare => match token(url)? {
            Some(token) => Ok(ScannedCode::Activation {
                url: text.to_string(),
                token,
            }),
            None => Err(ScanError::Malformed),
        },
        _ => Err(ScanError::Malformed),
    }
}

/// The token of a `…/activate/<token>` path: its last segment, right after an `activate`
/// segment, in the shape of pocketkey-org's tokens (256 random bits as 64 hex digits), so
/// that another site's `/activate/<word>` page is not taken for an invitation.
fn path_token(url: &Url) -> Option<String> {
    let mut segments = url.path_segments()?.rev();
    let token = segments.next()?;
    let valid = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    (valid && segments.next()? == "activate").then(|| token.to_string())
}

/// The `token` query parameter: `None` when absent or empty, `Malformed` when repeated or
/// hiding control characters behind percent-encoding.
fn token(url: &Url) -> Result<Option<String>, ScanError> {
    let mut tokens = url
        .query_pairs()
        .filter(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let first = tokens.next();
    if tokens.next().is_some() {
        return Err(ScanError::Malformed);
    }
    match first {
        Some(t) if t.chars().any(char::is_control) => Err(ScanError::Malformed),
        Some(t) if !t.is_empty() => Ok(Some(t)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
