//! The FCM provider (HTTP v1): `POST {endpoint}/v1/projects/{project}/messages:send` with
//! `Authorization: Bearer <access token>`, a high-priority data message `{"v": "1", "w": "<hex
//! wake id>"}` with no notification block, so the system shows nothing and hands it to the app
//! (docs/pairing-protocol.md §3.3). The access token is either given (config) or
//! obtained from a Google service account: an RS256 JWT (RSASSA-PKCS1-v1_5 with SHA-256, by the
//! `rsa` crate) exchanged at the token endpoint (OAuth 2.0 JWT bearer grant, RFC 7523).

use std::time::Duration;

use pocketkey_core::pairing::relay::{PushTarget, WakeId};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sha2::Sha256;

use crate::http::{self, HttpVersion, Request};
use crate::token::{jwt, CachedToken};
use crate::{unix_now, ConfigError, PushError, PushFuture, PushProvider};

/// The FCM endpoint.
pub const ENDPOINT: &str = "https://fcm.googleapis.com";
/// The OAuth scope FCM HTTP v1 needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The fields of a service-account JSON key file the relay uses.
#[derive(Clone)]
pub struct FcmCredentials {
    pub client_email: String,
    /// PKCS#8 PEM RSA private key.
    pub private_key: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl std::fmt::Debug for FcmCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmCredentials")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl FcmCredentials {
    /// Reads a service-account key file's JSON (`client_email`, `private_key`, `token_uri`).
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(ConfigError::FcmCredentials)?;
        let field = |name: &'static str| {
            value
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or(ConfigError::FcmCredentialField(name))
        };
        Ok(Self {
            client_email: field("client_email")?,
            private_key: field("private_key")?,
            private_key_id: field("private_key_id").ok(),
            token_uri: field("token_uri")
                .unwrap_or_else(|_| "https://oauth2.googleapis.com/token".into()),
        })
    }
}

/// Where the access token comes from.
#[derive(Clone)]
pub enum FcmAuth {
    /// A token obtained elsewhere (it expires: for tests and short runs).
    AccessToken(String),
    /// A service account; the token endpoint defaults to the credentials' `token_uri`.
    ServiceAccount {
        credentials: FcmCredentials,
        token_endpoint: Option<String>,
    },
}

impl std::fmt::Debug for FcmAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A bearer credential: never printed.
            Self::AccessToken(_) => f.write_str("AccessToken(..)"),
            Self::ServiceAccount {
                credentials,
                token_endpoint,
            } => f
                .debug_struct("ServiceAccount")
                .field("credentials", credentials)
                .field("token_endpoint", token_endpoint)
                .finish(),
        }
    }
}

/// FCM settings.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// The Firebase project id.
    pub project: String,
    /// Default [`ENDPOINT`]; tests: `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub auth: FcmAuth,
}

/// Sends wake-ups through FCM.
pub struct FcmProvider {
    config: FcmConfig,
    key: Option<SigningKey<Sha256>>,
    token: CachedToken,
    timeout: Duration,
    client: std::sync::Arc<http::Client>,
}

impl FcmProvider {
    /// Uses this HTTP client (e.g. one trusting other TLS roots).
    pub fn with_client(mut self, client: http::Client) -> Self {
        self.client = std::sync::Arc::new(client);
        self
    }

    /// Parses the service account's key, if any.
    pub fn new(config: FcmConfig) -> Result<Self, ConfigError> {
        let key = match &config.auth {
            FcmAuth::AccessToken(_) => None,
            FcmAuth::ServiceAccount { credentials, .. } => Some(SigningKey::<Sha256>::new(
                RsaPrivateKey::from_pkcs8_pem(credentials.private_key.trim())
                    .map_err(ConfigError::FcmKey)?,
            )),
        };
        Ok(Self {
            config,
            key,
            token: CachedToken::default(),
            timeout: Duration::from_secs(10),
            client: Default::default(),
        })
    }

    /// The message body for a registration token and a wake id.
    pub fn body(token: &str, wake: WakeId) -> Vec<u8> {
        serde_json::json!({
            "message": {
                "token": token,
                "data": {"v": "1", "w": wake.to_hex()},
                "android": {"priority": "high", "ttl": "60s"},
            }
        })
        .to_string()
        .into_bytes()
    }

    /// The signed assertion for the token exchange.
    fn assertion(&self, credentials: &FcmCredentials, audience: &str) -> String {
        let key = self.key.as_ref().expect("a service account has a key");
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &credentials.private_key_id {
            header["kid"] = kid.clone().into();
        }
        let now = unix_now();
        let claims = serde_json::json!({
            "iss": credentials.client_email,
            "scope": SCOPE,
            "aud": audience,
            "iat": now,
            "exp": now + 3600,
        });
        jwt(&header, &claims, |input| key.sign(input).to_vec())
    }

    async fn access_token(&self) -> Result<String, PushError> {
        let (credentials, token_endpoint) = match &self.config.auth {
            FcmAuth::AccessToken(token) => return Ok(token.clone()),
            FcmAuth::ServiceAccount {
                credentials,
                token_endpoint,
            } => (credentials, token_endpoint),
        };
        if let Some(token) = self.token.get() {
            return Ok(token);
        }
        let audience = credentials.token_uri.clone();
        let endpoint = token_endpoint.clone().unwrap_or_else(|| audience.clone());
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            self.assertion(credentials, &audience)
        );
        let request = Request::post(
            endpoint,
            vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body.into_bytes(),
            HttpVersion::Http1,
        );
        let response = self
            .client
            .send(request, self.timeout)
            .await
            .map_err(|e| PushError::Failed(format!("token endpoint: {e}")))?;
        if !response.status.is_success() {
            return Err(PushError::Failed(response.refusal("token endpoint")));
        }
        let json: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|e| PushError::Failed(format!("token endpoint: {e}")))?;
        let token = json
            .get("access_token")
            .and_then(|v| v.as_str())
            .ok_or_else(|| PushError::Failed("token endpoint: no access_token".into()))?
            .to_string();
        let lifetime = json
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .unwrap_or(3600);
        // A minute early, so that a token never expires on its way to FCM.
        self.token
            .put(&token, Duration::from_secs(lifetime.saturating_sub(60)));
        Ok(token)
    }
}

impl PushProvider for FcmProvider {
    fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        let ok = target
            .target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_:.".contains(&b));
        if ok {
            Ok(())
        } else {
            Err(PushError::BadTarget("not an FCM registration token".into()))
        }
    }

    fn wake<'a>(&'a self, target: &'a PushTarget) -> PushFuture<'a, Result<(), PushError>> {
        Box::pin(async move {
            self.check_target(target)?;
            let token = self.access_token().await?;
            let url = format!(
                "{}/v1/projects/{}/messages:send",
                self.config.endpoint.trim_end_matches('/'),
                self.config.project
            );
            let headers = vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
            ];
            let body = Self::body(&target.target, target.wake);
            let request = Request::post(url, headers, body, HttpVersion::Http1);
            let response = self
                .client
                .send(request, self.timeout)
                .await
                .map_err(|e| PushError::Failed(e.to_string()))?;
            if response.status == http::StatusCode::UNAUTHORIZED {
                // A revoked or expired token: fetch a new one next time.
                self.token.clear();
            }
            if !response.status.is_success() {
                return Err(refusal(&response));
            }
            Ok(())
        })
    }
}

/// The error for an FCM refusal, by the HTTP v1 error codes
/// (firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode): UNREGISTERED (404) means the
/// token is no longer valid; INVALID_ARGUMENT (400) is a malformed request, and with the fixed,
/// small body sent here that is the token (the FcmError detail, or a BadRequest on
/// `message.token`); QUOTA_EXCEEDED (429) asks to wait, for Retry-After when given.
fn refusal(response: &http::Response) -> PushError {
    match response.status.as_u16() {
        404 | 400 if token_invalid(&response.body) => {
            PushError::Unregistered(response.refusal("FCM"))
        }
        429 => PushError::throttled(response, "FCM"),
        _ => PushError::Failed(response.refusal("FCM")),
    }
}

/// Whether an FCM error body (`{"error": {"details": [...]}}`) says the token is bad.
fn token_invalid(body: &[u8]) -> bool {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let details = json["error"]["details"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    details.iter().any(|detail| {
        let fcm_code = detail["errorCode"].as_str();
        let on_token = detail["fieldViolations"]
            .as_array()
            .is_some_and(|v| v.iter().any(|f| f["field"] == "message.token"));
        matches!(fcm_code, Some("UNREGISTERED" | "INVALID_ARGUMENT")) || on_token
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_token_is_not_in_debug() {
        let config = FcmConfig {
            project: "p".into(),
            endpoint: ENDPOINT.into(),
            auth: FcmAuth::AccessToken("ya29.secret-token".into()),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("AccessToken(..)"), "{shown}");
    }
}
