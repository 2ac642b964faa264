//! Reading a relying party's WebAuthn creation options as Microsoft Graph's
//! `GET /users/{id}/authentication/fido2Methods/creationOptions` returns them, and checking
//! the origin the admin names for them (WebAuthn L2 §5.1.3 steps 7-8).
//!
//! Graph's known quirks, each accepted: the `publicKey` object inside a `value` wrapper (an
//! OData function result), binary values (user.id, challenge, excludeCredentials[].id) in
//! padded standard base64 as well as base64url, and `timeout: 0` (no hint, not "expire now").

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde_json::Value;
use url::Url;

use crate::error::ApiError;

/// WebAuthn L2 §5.4.3: a user handle is at most 64 bytes.
const MAX_USER_ID: usize = 64;
/// WebAuthn L2 §13.4.3 asks for challenges of at least 16 random bytes.
const MIN_CHALLENGE: usize = 16;
const MAX_CHALLENGE: usize = 1024;
/// Credential ids are at most 1023 bytes (WebAuthn L2 §4, "Credential ID").
const MAX_CREDENTIAL_ID: usize = 1023;
const MAX_EXCLUDED: usize = 64;
const MAX_ALGORITHMS: usize = 16;
/// RP, user and display names as sent to the phone, in characters.
const MAX_NAME: usize = 256;
/// A DNS name (RFC 1035 §2.3.4).
const MAX_RP_ID: usize = 253;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_creation_options", message)
}

fn invalid_origin(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_origin", message)
}

/// The RP and user entities as the phone gets them (`id` base64url without padding).
pub use pocketkey_core::org_protocol::wire::{JobRp as Rp, JobUser as User};

/// What the options ask for, normalised: binary values as base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationOptions {
    pub rp: Rp,
    pub user: User,
    pub challenge: Vec<u8>,
    /// COSE algorithm ids, the RP's most preferred first.
    pub algorithms: Vec<i64>,
    pub exclude_credentials: Vec<String>,
    pub resident_key: bool,
    /// `required`, `preferred` or `discouraged`.
    pub user_verification: String,
    /// `none`, `indirect`, `direct` or `enterprise`.
    pub attestation: String,
}

/// Binary values as Graph sends them: base64url without padding per its documentation, and
/// in practice also padded standard base64. Both alphabets and optional padding are read.
pub fn flexible_base64(field: &str, value: &Value) -> Result<Vec<u8>, ApiError> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid(format!("{field} must be a base64 string")))?;
    let unpadded = text.trim_end_matches('=');
    if text.len() - unpadded.len() > 2 {
        return Err(invalid(format!("{field} is not base64")));
    }
    let url_alphabet: String = unpadded
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    B64URL
        .decode(url_alphabet)
        .map_err(|_| invalid(format!("{field} is not base64")))
}

fn text<'a>(object: &'a Value, field: &str, path: &str) -> Result<Option<&'a str>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().count() > MAX_NAME || s.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "{path}.{field} must be at most {MAX_NAME} characters without control characters"
                )));
            }
            Ok(Some(s))
        }
        Some(_) => Err(invalid(format!("{path}.{field} must be a string"))),
    }
}

/// The `publicKey` object: at the top, or inside Graph's `value` wrapper.
fn public_key(options: &Value) -> Result<&Value, ApiError> {
    let outer = match options.get("value") {
        Some(inner @ Value::Object(_)) => inner,
        _ => options,
    };
    match outer.get("publicKey") {
        Some(pk @ Value::Object(_)) => Ok(pk),
        _ => Err(invalid(
            "creation_options must hold a publicKey object (Graph's creationOptions answer)",
        )),
    }
}

/// Parses Graph's creationOptions answer; every refusal is `400 invalid_creation_options`.
pub fn parse(options: &Value) -> Result<CreationOptions, ApiError> {
    let pk = public_key(options)?;

    let rp = pk
        .get("rp")
        .filter(|v| v.is_object())
        .ok_or_else(|| invalid("publicKey.rp is missing"))?;
    let rp_id = text(rp, "id", "publicKey.rp")?
        .ok_or_else(|| invalid("publicKey.rp.id is missing"))?
        .to_ascii_lowercase();
    if rp_id.is_empty() || rp_id.len() > MAX_RP_ID {
        return Err(invalid("publicKey.rp.id is not a domain"));
    }
    let rp_name = text(rp, "name", "publicKey.rp")?
        .unwrap_or(&rp_id)
        .to_string();

    let user = pk
        .get("user")
        .filter(|v| v.is_object())
        .ok_or_else(|| invalid("publicKey.user is missing"))?;
    let user_id = flexible_base64(
        "publicKey.user.id",
        user.get("id")
            .ok_or_else(|| invalid("publicKey.user.id is missing"))?,
    )?;
    if user_id.is_empty() || user_id.len() > MAX_USER_ID {
        return Err(invalid(format!(
            "publicKey.user.id must be 1 to {MAX_USER_ID} bytes"
        )));
    }
    let user_name = text(user, "name", "publicKey.user")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| invalid("publicKey.user.name is missing"))?
        .to_string();
    let display = text(user, "displayName", "publicKey.user")?
        .unwrap_or(&user_name)
        .to_string();

    let challenge = flexible_base64(
        "publicKey.challenge",
        pk.get("challenge")
            .ok_or_else(|| invalid("publicKey.challenge is missing"))?,
    )?;
    if !(MIN_CHALLENGE..=MAX_CHALLENGE).contains(&challenge.len()) {
        return Err(invalid(format!(
            "publicKey.challenge must be {MIN_CHALLENGE} to {MAX_CHALLENGE} bytes"
        )));
    }

    let algorithms = match pk.get("pubKeyCredParams") {
        // WebAuthn L2 §5.1.3 step 10: an empty list means ES256 and RS256.
        None | Some(Value::Null) => vec![-7, -257],
        Some(Value::Array(list)) if list.len() <= MAX_ALGORITHMS => {
            let mut algs = Vec::new();
            for p in list {
                let alg = p.get("alg").and_then(Value::as_i64).ok_or_else(|| {
                    invalid("publicKey.pubKeyCredParams[].alg must be an integer")
                })?;
                // Only "public-key" parameters are for us (§5.1.3 step 10.1).
                if p.get("type").and_then(Value::as_str) == Some("public-key") {
                    algs.push(alg);
                }
            }
            if algs.is_empty() {
                vec![-7, -257]
            } else {
                algs
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "publicKey.pubKeyCredParams must be a list of at most {MAX_ALGORITHMS}"
            )))
        }
    };

    let exclude_credentials = match pk.get("excludeCredentials") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_EXCLUDED => {
            let mut ids = Vec::new();
            for c in list {
                let id = flexible_base64(
                    "publicKey.excludeCredentials[].id",
                    c.get("id").unwrap_or(&Value::Null),
                )?;
                if id.is_empty() || id.len() > MAX_CREDENTIAL_ID {
                    return Err(invalid(format!(
                        "publicKey.excludeCredentials[].id must be 1 to {MAX_CREDENTIAL_ID} bytes"
                    )));
                }
                ids.push(B64URL.encode(id));
            }
            ids
        }
        Some(_) => {
            return Err(invalid(format!(
                "publicKey.excludeCredentials must be a list of at most {MAX_EXCLUDED}"
            )))
        }
    };

    // `timeout` is a hint to the client; Graph sends 0 for "none given". The registration's
    // own expiry bounds the wait, so any non-negative number is accepted and not used.
    match pk.get("timeout") {
        None | Some(Value::Null) => {}
        Some(t) if t.as_f64().is_some_and(|t| t >= 0.0) => {}
        Some(_) => return Err(invalid("publicKey.timeout must be a non-negative number")),
    }

    let selection = pk.get("authenticatorSelection").unwrap_or(&Value::Null);
    let word = |v: Option<&Value>, field: &str, allowed: &[&str], default: &str| {
        match v {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s.clone()),
            // WebAuthn L2 §5.4.4: unknown values are ignored, as if absent.
            Some(Value::String(_)) => Ok(default.to_string()),
            Some(_) => Err(invalid(format!("{field} must be a string"))),
        }
    };
    let resident = word(
        selection.get("residentKey"),
        "authenticatorSelection.residentKey",
        &["required", "preferred", "discouraged"],
        "",
    )?;
    let require_resident = selection
        .get("requireResidentKey")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // §5.4.4: residentKey wins over requireResidentKey when given; a key that keeps its
    // credentials makes a discoverable one when it is required or preferred.
    let resident_key = match resident.as_str() {
        "required" | "preferred" => true,
        "discouraged" => false,
        _ => require_resident,
    };
    let user_verification = word(
        selection.get("userVerification"),
        "authenticatorSelection.userVerification",
        &["required", "preferred", "discouraged"],
        "preferred",
    )?;
    let attestation = word(
        pk.get("attestation"),
        "publicKey.attestation",
        &["none", "indirect", "direct", "enterprise"],
        "none",
    )?;

    Ok(CreationOptions {
        rp: Rp {
            id: rp_id,
            name: rp_name,
        },
        user: User {
            id: B64URL.encode(user_id),
            name: user_name,
            display_name: display,
        },
        challenge,
        algorithms,
        exclude_credentials,
        resident_key,
        user_verification,
        attestation,
    })
}

/// The origin as WebAuthn serialises it (`https://host[:port]`): https, or http on
/// `localhost` (for tests); nothing but scheme, host and port.
pub fn parse_origin(origin: &str) -> Result<(String, String), ApiError> {
    let url = Url::parse(origin).map_err(|_| invalid_origin("origin is not a URL"))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
        _ => return Err(invalid_origin("origin must name a domain")),
    };
    let secure = url.scheme() == "https" || (url.scheme() == "http" && host == "localhost");
    if !secure {
        return Err(invalid_origin(
            "origin must be https:// (http:// only for localhost)",
        ));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid_origin(
            "origin is a scheme, a host and a port, nothing more",
        ));
    }
    Ok((url.origin().ascii_serialization(), host))
}

/// WebAuthn L2 §5.1.3 step 8: the RP id must be the origin's host or a registrable domain
/// suffix of it. Without the public suffix list, a single-label RP id (`com`) is refused
/// outright; `localhost` is allowed for its own origin.
pub fn check_rp_id(rp_id: &str, host: &str) -> Result<(), ApiError> {
    let suffix = host == rp_id || host.ends_with(&format!(".{rp_id}"));
    let registrable = rp_id.contains('.') || rp_id == host;
    if !(suffix && registrable) {
        return Err(ApiError::bad_request(
            "rp_id_mismatch",
            format!("the RP id {rp_id} is not the origin's host or a registrable suffix of it"),
        ));
    }
    Ok(())
}

/// clientDataJSON for the registration (WebAuthn L2 §5.8.1), members in the order of its
/// §5.8.1.1 serialisation: type, challenge, origin, crossOrigin.
pub fn client_data_json(challenge: &[u8], origin: &str) -> String {
    let quoted = |s: &str| serde_json::to_string(s).expect("a string serialises");
    format!(
        "{{\"type\":\"webauthn.create\",\"challenge\":{},\"origin\":{},\"crossOrigin\":false}}",
        quoted(&B64URL.encode(challenge)),
        quoted(origin)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(public_key: Value) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.webauthnCredentialCreationOptions",
            "challengeTimeoutDateTime": "2026-12-07T18:00:00Z",
            "publicKey": public_key,
        })
    }

    fn options() -> Value {
        json!({
            "challenge": "AAECAwQFBgcICQoLDA0ODw",
            "timeout": 0,
            "rp": {"id": "login.microsoft.com", "name": "Microsoft"},
            "user": {"id": "+/+/AA==", "name": "alice@acme.example", "displayName": "Alice"},
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -257}],
            "excludeCredentials": [{"type": "public-key", "id": "AQI=", "transports": []}],
            "authenticatorSelection": {"residentKey": "required", "userVerification": "required"},
            "attestation": "direct",
            "extensions": {"credentialProtectionPolicy": "userVerificationOptional"}
        })
    }

    #[test]
    fn graphs_shape_with_its_quirks_parses() {
        let parsed = parse(&graph(options())).unwrap();
        assert_eq!(parsed.rp.id, "login.microsoft.com");
        assert_eq!(
            parsed.user.id, "-_-_AA",
            "padded standard base64, re-encoded"
        );
        assert_eq!(parsed.challenge, (0u8..16).collect::<Vec<_>>());
        assert_eq!(parsed.exclude_credentials, ["AQI"]);
        assert_eq!(parsed.algorithms, [-7, -257]);
        assert!(parsed.resident_key);
        assert_eq!(
            (
                parsed.user_verification.as_str(),
                parsed.attestation.as_str()
            ),
            ("required", "direct")
        );
        let wrapped = json!({"@odata.context": "x", "value": graph(options())});
        assert_eq!(parse(&wrapped).unwrap(), parsed, "the value wrapper");
    }

    #[test]
    fn refusals_are_typed() {
        let cases: Vec<Value> = vec![
            json!({"rp": {}}),
            {
                let mut o = options();
                o["challenge"] = json!("AAEC");
                o
            },
            {
                let mut o = options();
                o["challenge"] = json!("not base64!");
                o
            },
            {
                let mut o = options();
                o["user"]["id"] = json!(B64URL.encode([0u8; 65]));
                o
            },
            {
                let mut o = options();
                o["timeout"] = json!(-1);
                o
            },
            {
                let mut o = options();
                o["excludeCredentials"] =
                    json!(vec![json!({"type": "public-key", "id": "AQ"}); 65]);
                o
            },
        ];
        for case in cases {
            let e = parse(&graph(case.clone())).unwrap_err();
            assert_eq!(e.code, "invalid_creation_options", "{case}");
        }
    }

    #[test]
    fn origins_and_rp_ids() {
        assert_eq!(
            parse_origin("https://Login.Microsoft.com").unwrap(),
            (
                "https://login.microsoft.com".to_string(),
                "login.microsoft.com".to_string()
            )
        );
        assert!(parse_origin("http://localhost:8080").is_ok());
        for bad in [
            "http://login.microsoft.com",
            "https://login.microsoft.com/path",
            "https://127.0.0.1",
            "ftp://x.example",
            "nonsense",
        ] {
            assert_eq!(
                parse_origin(bad).unwrap_err().code,
                "invalid_origin",
                "{bad}"
            );
        }
        assert!(check_rp_id("microsoft.com", "login.microsoft.com").is_ok());
        assert!(check_rp_id("login.microsoft.com", "login.microsoft.com").is_ok());
        assert!(check_rp_id("localhost", "localhost").is_ok());
        for (rp, host) in [
            ("evil.example", "login.microsoft.com"),
            ("crosoft.com", "login.microsoft.com"),
            ("com", "login.microsoft.com"),
        ] {
            assert_eq!(check_rp_id(rp, host).unwrap_err().code, "rp_id_mismatch");
        }
    }

    #[test]
    fn client_data_is_webauthn_create_in_spec_order() {
        assert_eq!(
            client_data_json(&[0xfb, 0xff], "https://login.microsoft.com"),
            r#"{"type":"webauthn.create","challenge":"-_8","origin":"https://login.microsoft.com","crossOrigin":false}"#
        );
    }
}
