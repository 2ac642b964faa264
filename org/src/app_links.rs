//! The files by which phones open activation links in the PocketKey app instead of the
//! browser: Android App Links (`/.well-known/assetlinks.json`, Digital Asset Links) and iOS
//! Universal Links (`/.well-known/apple-app-site-association`). Each is served only when
//! `serve` was given the app (`--android-app PACKAGE:SHA256`, `--ios-app TEAMID.BUNDLE`),
//! without an API key (the OS fetches them), as `application/json`. docs/apps.md says how
//! to set them up.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::AppState;
use crate::error::ApiError;

/// The apps that may open this server's activation links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppLinks {
    /// Package name and its signing certificates' SHA-256 fingerprints (`AB:CD:…`), in the
    /// order given; a package named twice (a key rotation) lists both.
    pub android: Vec<(String, Vec<String>)>,
    /// `TEAMID.bundle.id`.
    pub ios: Vec<String>,
    /// The public URL's path (empty or `/prefix`): the links are `<prefix>/activate/<token>`.
    pub path_prefix: String,
}

impl AppLinks {
    /// From the `serve` flags; an error names the flag value that is not well formed.
    pub fn parse(android: &[String], ios: &[String], path_prefix: &str) -> Result<Self, String> {
        let mut links = AppLinks {
            path_prefix: path_prefix.trim_end_matches('/').to_string(),
            ..Default::default()
        };
        for flag in android {
            let (package, fingerprint) = parse_android(flag)?;
            match links.android.iter_mut().find(|(p, _)| *p == package) {
                Some((_, prints)) if !prints.contains(&fingerprint) => prints.push(fingerprint),
                Some(_) => {}
                None => links.android.push((package, vec![fingerprint])),
            }
        }
        for flag in ios {
            let id = parse_ios(flag)?;
            if !links.ios.contains(&id) {
                links.ios.push(id);
            }
        }
        Ok(links)
    }

    /// Digital Asset Links statements: each package may handle all of this site's URLs
    /// (the manifest's intent filter narrows them to `/activate/`).
    fn assetlinks(&self) -> serde_json::Value {
        let statements: Vec<_> = self
            .android
            .iter()
            .map(|(package, prints)| {
                json!({
                    "relation": ["delegate_permission/common.handle_all_urls"],
                    "target": {
                        "namespace": "android_app",
                        "package_name": package,
                        "sha256_cert_fingerprints": prints,
                    }
                })
            })
            .collect();
        json!(statements)
    }

    /// Both forms of the association file: `appIDs` + `components` (iOS 13 and later) and
    /// `appID` + `paths` (earlier), each for the activation path only.
    fn apple_app_site_association(&self) -> serde_json::Value {
        let path = format!("{}/activate/*", self.path_prefix);
        let details: Vec<_> = self
            .ios
            .iter()
            .map(|id| {
                json!({
                    "appID": id,
                    "appIDs": [id],
                    "paths": [path],
                    "components": [{"/": path, "comment": "PocketKey activation links"}],
                })
            })
            .collect();
        json!({"applinks": {"apps": [], "details": details}})
    }
}

/// `PACKAGE:SHA256`: a Java-style package name, then the certificate's SHA-256 as 32 hex
/// bytes, with or without colons (as `keytool -list` or `apksigner` print it).
fn parse_android(flag: &str) -> Result<(String, String), String> {
    let bad = |why: &str| format!("--android-app {flag:?}: {why} (expected PACKAGE:SHA256)");
    let (package, print) = flag.split_once(':').ok_or_else(|| bad("no ':'"))?;
    let segments: Vec<&str> = package.split('.').collect();
    let segment_ok = |s: &&str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if segments.len() < 2 || !segments.iter().all(segment_ok) {
        return Err(bad("not a package name"));
    }
    let hex: String = print.chars().filter(|&c| c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad("the fingerprint is not 32 hex bytes"));
    }
    let bytes: Vec<String> = hex
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect();
    Ok((package.to_string(), bytes.join(":")))
}

/// `TEAMID.BUNDLE`: Apple's 10-character team id, then the bundle id.
fn parse_ios(flag: &str) -> Result<String, String> {
    let bad = |why: &str| format!("--ios-app {flag:?}: {why} (expected TEAMID.BUNDLE)");
    let (team, bundle) = flag.split_once('.').ok_or_else(|| bad("no '.'"))?;
    if team.len() != 10
        || !team
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Err(bad("the team id is not 10 capitals and digits"));
    }
    let bundle_ok = !bundle.is_empty()
        && bundle
            .split('.')
            .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !bundle_ok {
        return Err(bad("not a bundle id"));
    }
    Ok(flag.to_string())
}

fn json_file(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// `GET /.well-known/assetlinks.json`.
pub async fn assetlinks(State(state): State<Arc<AppState>>) -> Response {
    if state.app_links.android.is_empty() {
        return ApiError::not_found("no Android app is configured (serve --android-app)")
            .into_response();
    }
    json_file(state.app_links.assetlinks())
}

/// `GET /.well-known/apple-app-site-association`.
pub async fn apple_app_site_association(State(state): State<Arc<AppState>>) -> Response {
    if state.app_links.ios.is_empty() {
        return ApiError::not_found("no iOS app is configured (serve --ios-app)").into_response();
    }
    json_file(state.app_links.apple_app_site_association())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRINT: &str = "14:6D:E9:83:C5:73:06:50:D8:EE:B9:95:2F:34:FC:64:16:A0:83:42:E6:1D:BE:A8:8A:04:96:B2:3F:CF:44:E5";

    #[test]
    fn flags_parse_and_normalise() {
        let bare = PRINT.replace(':', "").to_lowercase();
        let links = AppLinks::parse(
            &[
                format!("com.pocketkey.app:{PRINT}"),
                format!("com.pocketkey.app:{bare}"),
            ],
            &["ABCDE12345.com.pocketkey.app".into()],
            "/org/",
        )
        .unwrap();
        assert_eq!(
            links.android,
            vec![("com.pocketkey.app".into(), vec![PRINT.to_string()])]
        );
        assert_eq!(links.path_prefix, "/org");
        let aasa = links.apple_app_site_association();
        assert_eq!(
            aasa["applinks"]["details"][0]["paths"][0],
            "/org/activate/*"
        );
    }

    #[test]
    fn malformed_flags_are_refused_with_the_flag_named() {
        for bad in [
            "com.pocketkey.app",
            "pocketkey:AB",
            "com.pocketkey.app:ZZ",
            &format!("1com.x:{PRINT}"),
        ] {
            let err = AppLinks::parse(&[bad.to_string()], &[], "").unwrap_err();
            assert!(err.starts_with("--android-app"), "{err}");
        }
        for bad in [
            "com.pocketkey.app",
            "abcde12345.com.x",
            "ABCDE12345.",
            "ABCDE1234.x",
        ] {
            let err = AppLinks::parse(&[], &[bad.to_string()], "").unwrap_err();
            assert!(err.starts_with("--ios-app"), "{err}");
        }
    }
}
