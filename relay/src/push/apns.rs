//! The APNs provider: HTTP/2 `POST {endpoint}/3/device/{token}` with token-based
//! authentication (an ES256 JWT signed with the team's .p8 key: header `kid`, claims `iss` =
//! team id and `iat`), the content-free payload of docs/pairing-protocol.md §3.3.

use std::time::Duration;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use pocketkey_core::pairing::mailbox::MailboxId;
use pocketkey_core::pairing::relay::{ApnsEnvironment, PushTarget};

use super::http::{self, HttpVersion, Request};
use super::token::{jwt, CachedToken};
use super::{unix_now, PushError, PushFuture, PushProvider};

/// APNs production and development endpoints.
pub const PRODUCTION: &str = "https://api.push.apple.com";
pub const SANDBOX: &str = "https://api.sandbox.push.apple.com";

/// A provider token is reused this long (Apple: refresh at most every 20 minutes, at least
/// every 60).
const TOKEN_LIFETIME: Duration = Duration::from_secs(40 * 60);

/// APNs settings.
#[derive(Clone)]
pub struct ApnsConfig {
    /// The token-signing key: PKCS#8 PEM (the `AuthKey_<KEYID>.p8` file).
    pub key_pem: String,
    /// The key's id (JWT `kid`).
    pub key_id: String,
    /// The Apple developer team id (JWT `iss`).
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
    /// Replaces both Apple endpoints (tests: `http://127.0.0.1:PORT`, HTTP/2 without TLS).
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Sends wake-ups through APNs.
pub struct ApnsProvider {
    key: SigningKey,
    config: ApnsConfig,
    token: CachedToken,
    timeout: Duration,
    client: std::sync::Arc<http::Client>,
}

impl ApnsProvider {
    /// Uses this HTTP client (e.g. one trusting other TLS roots).
    pub fn with_client(mut self, client: http::Client) -> Self {
        self.client = std::sync::Arc::new(client);
        self
    }

    /// Parses the key; fails on a key that is not a PKCS#8 P-256 private key.
    pub fn new(config: ApnsConfig) -> Result<Self, String> {
        let key = SigningKey::from_pkcs8_pem(config.key_pem.trim())
            .map_err(|e| format!("APNs key is not a PKCS#8 P-256 private key: {e}"))?;
        Ok(Self {
            key,
            config,
            token: CachedToken::default(),
            timeout: Duration::from_secs(10),
            client: Default::default(),
        })
    }

    /// The notification body for a mailbox.
    pub fn body(mailbox: MailboxId) -> Vec<u8> {
        serde_json::json!({
            "aps": {"alert": {"loc-key": "POCKETKEY_WAKE"}, "mutable-content": 1},
            "v": 1,
            "m": mailbox.to_hex(),
        })
        .to_string()
        .into_bytes()
    }

    /// The current provider token (a new one after [`TOKEN_LIFETIME`]).
    fn provider_token(&self) -> String {
        if let Some(token) = self.token.get() {
            return token;
        }
        let token = jwt(
            &serde_json::json!({"alg": "ES256", "kid": self.config.key_id}),
            &serde_json::json!({"iss": self.config.team_id, "iat": unix_now()}),
            |input| {
                let signature: Signature = self.key.sign(input);
                signature.to_bytes().to_vec()
            },
        );
        self.token.put(&token, TOKEN_LIFETIME);
        token
    }
}

fn is_device_token(token: &str) -> bool {
    (1..=200).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit())
}

impl PushProvider for ApnsProvider {
    fn check_target(&self, target: &PushTarget) -> Result<(), PushError> {
        if is_device_token(&target.target) {
            Ok(())
        } else {
            Err(PushError::BadTarget("APNs device token must be hex".into()))
        }
    }

    fn wake<'a>(
        &'a self,
        target: &'a PushTarget,
        mailbox: MailboxId,
    ) -> PushFuture<'a, Result<(), PushError>> {
        Box::pin(async move {
            self.check_target(target)?;
            let endpoint = match (&self.config.endpoint, target.environment) {
                (Some(endpoint), _) => endpoint.trim_end_matches('/').to_string(),
                (None, Some(ApnsEnvironment::Sandbox)) => SANDBOX.into(),
                (None, _) => PRODUCTION.into(),
            };
            let headers = vec![
                (
                    "authorization".into(),
                    format!("bearer {}", self.provider_token()),
                ),
                ("apns-topic".into(), self.config.topic.clone()),
                ("apns-push-type".into(), "alert".into()),
                ("apns-priority".into(), "10".into()),
                ("apns-expiration".into(), (unix_now() + 60).to_string()),
                ("apns-collapse-id".into(), mailbox.to_hex()),
                ("content-type".into(), "application/json".into()),
            ];
            let url = format!("{endpoint}/3/device/{}", target.target);
            let request = Request::post(url, headers, Self::body(mailbox), HttpVersion::Http2);
            let response = self
                .client
                .send(request, self.timeout)
                .await
                .map_err(PushError::Failed)?;
            if !response.status.is_success() {
                return Err(PushError::Failed(response.refusal("APNs")));
            }
            Ok(())
        })
    }
}
