//! The APNs provider: HTTP/2 `POST {endpoint}/3/device/{token}` with token-based
//! authentication (an ES256 JWT signed with the team's .p8 key: header `kid`, claims `iss` =
//! team id and `iat`), the content-free payload of docs/pairing-protocol.md §3.3.
//!
//! By default a background push (`content-available`, push type `background`, priority 5, as
//! Apple requires for it): the system shows nothing and gives the app a little time, in which
//! it connects and shows its own notification only once the handshake proved a real request.
//! So a relay, a holder of a bridge's keys or a revoked bridge cannot put anything on the
//! screen. The price: iOS throttles background pushes and does not deliver them to an app the
//! user force-quit. `--apns-alert` ([`ApnsConfig::alert`]) sends visible alert pushes instead
//! (the app's notification service extension words them), for deployments that need the
//! wake-up to reach a force-quit app more than they need silence.

use std::time::Duration;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use pocketkey_core::pairing::relay::{ApnsEnvironment, PushTarget, WakeId};

use crate::http::{self, HttpVersion, Request};
use crate::token::{jwt, CachedToken};
use crate::{unix_now, ConfigError, PushError, PushFuture, PushProvider};

/// The notification category of an alert wake-up, as the iOS app registers it
/// (ios-shell `ApprovalNotification.wakeCategory`): tapping opens the app, which then fetches
/// the computer's request. It offers no Approve or Deny: there is nothing to answer before
/// the app has the request, whose own notification carries those actions.
pub const WAKE_CATEGORY: &str = "POCKETKEY_APPROVAL_WAKE";

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
    /// Visible alert pushes instead of background ones (see the module's documentation).
    /// Default false.
    pub alert: bool,
}

impl std::fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("endpoint", &self.endpoint)
            .field("alert", &self.alert)
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
    pub fn new(config: ApnsConfig) -> Result<Self, ConfigError> {
        let key =
            SigningKey::from_pkcs8_pem(config.key_pem.trim()).map_err(ConfigError::ApnsKey)?;
        Ok(Self {
            key,
            config,
            token: CachedToken::default(),
            timeout: Duration::from_secs(10),
            client: Default::default(),
        })
    }

    /// The notification body for a wake id: a background push (`alert` false) carries
    /// nothing but `content-available` and `{v, w}`; an alert push the localization key
    /// the app words, the app's wake-up category ([`WAKE_CATEGORY`]), a sound and the
    /// time-sensitive interruption level (it breaks through Focus: a computer is waiting).
    pub fn body(wake: WakeId, alert: bool) -> Vec<u8> {
        let aps = if alert {
            serde_json::json!({
                "alert": {"loc-key": "POCKETKEY_WAKE"},
                "category": WAKE_CATEGORY,
                "interruption-level": "time-sensitive",
                "sound": "default",
                "mutable-content": 1,
            })
        } else {
            serde_json::json!({"content-available": 1})
        };
        serde_json::json!({"aps": aps, "v": 1, "w": wake.to_hex()})
            .to_string()
            .into_bytes()
    }

    /// `apns-push-type` and `apns-priority` of the body above: Apple requires priority 5 for
    /// background pushes (10 is refused).
    pub fn push_type(alert: bool) -> (&'static str, &'static str) {
        if alert {
            ("alert", "10")
        } else {
            ("background", "5")
        }
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

    fn wake<'a>(&'a self, target: &'a PushTarget) -> PushFuture<'a, Result<(), PushError>> {
        Box::pin(async move {
            self.check_target(target)?;
            let endpoint = match (&self.config.endpoint, target.environment) {
                (Some(endpoint), _) => endpoint.trim_end_matches('/').to_string(),
                (None, Some(ApnsEnvironment::Sandbox)) => SANDBOX.into(),
                (None, _) => PRODUCTION.into(),
            };
            // No collapse id: it would be a stable per-pairing id again.
            let (push_type, priority) = Self::push_type(self.config.alert);
            let headers = vec![
                (
                    "authorization".into(),
                    format!("bearer {}", self.provider_token()),
                ),
                ("apns-topic".into(), self.config.topic.clone()),
                ("apns-push-type".into(), push_type.into()),
                ("apns-priority".into(), priority.into()),
                ("apns-expiration".into(), (unix_now() + 60).to_string()),
                ("content-type".into(), "application/json".into()),
            ];
            let url = format!("{endpoint}/3/device/{}", target.target);
            let body = Self::body(target.wake, self.config.alert);
            let request = Request::post(url, headers, body, HttpVersion::Http2);
            let response = self
                .client
                .send(request, self.timeout)
                .await
                .map_err(|e| PushError::Failed(e.to_string()))?;
            if !response.status.is_success() {
                return Err(refusal(&response));
            }
            Ok(())
        })
    }
}

/// The error for an APNs refusal, by its status and `reason` (Apple, "Handling notification
/// responses from APNs"): 410 Unregistered and 400 BadDeviceToken mean the device token is
/// inactive or wrong; 429 TooManyRequests is too many requests for that device token.
fn refusal(response: &http::Response) -> PushError {
    let reason = serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|json| json["reason"].as_str().map(str::to_owned));
    match (response.status.as_u16(), reason.as_deref()) {
        (410, _) | (400, Some("BadDeviceToken")) => {
            PushError::Unregistered(response.refusal("APNs"))
        }
        (429, _) => PushError::throttled(response, "APNs"),
        _ => PushError::Failed(response.refusal("APNs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default push is a background one carrying `{v, w}` and nothing the system would
    /// show; the alert option is the only way to an alert.
    #[test]
    fn the_default_payload_is_a_silent_background_push() {
        let wake = WakeId([0x3c; 16]);
        let body: serde_json::Value =
            serde_json::from_slice(&ApnsProvider::body(wake, false)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"aps": {"content-available": 1}, "v": 1, "w": wake.to_hex()})
        );
        assert_eq!(ApnsProvider::push_type(false), ("background", "5"));

        let alert: serde_json::Value =
            serde_json::from_slice(&ApnsProvider::body(wake, true)).unwrap();
        assert_eq!(alert["aps"]["alert"]["loc-key"], "POCKETKEY_WAKE");
        assert_eq!(alert["w"], wake.to_hex());
        assert_eq!(ApnsProvider::push_type(true), ("alert", "10"));
    }

    /// The category is the one the iOS app declares and registers (an alert in a category the
    /// app did not register shows without it): read from the app's sources, so that either
    /// side changing alone fails here.
    #[test]
    fn the_wake_category_is_the_one_the_ios_app_registers() {
        let model = include_str!(
            "../../ios-shell/PocketKeyKit/Sources/PocketKeyKit/Model/ApprovalNotification.swift"
        );
        assert!(
            model.contains(&format!("wakeCategory = \"{WAKE_CATEGORY}\"")),
            "ApprovalNotification.wakeCategory is not {WAKE_CATEGORY}"
        );
        let glue = include_str!("../../ios-shell/App/ApprovalNotifications.swift");
        assert!(
            glue.contains("UNNotificationCategory(identifier: ApprovalNotification.wakeCategory"),
            "the app does not register ApprovalNotification.wakeCategory"
        );
    }

    /// An alert wake-up is the approval notification the user acts on: in the category the
    /// iOS app registers for it, with a sound, time-sensitive (it breaks through Focus), and
    /// still nothing but the wake id besides (the app's request comes after the handshake).
    #[test]
    fn an_alert_wake_is_time_sensitive_with_a_sound_in_the_apps_wake_category() {
        let wake = WakeId([0x5a; 16]);
        let alert: serde_json::Value =
            serde_json::from_slice(&ApnsProvider::body(wake, true)).unwrap();
        assert_eq!(
            alert,
            serde_json::json!({
                "aps": {
                    "alert": {"loc-key": "POCKETKEY_WAKE"},
                    "category": "POCKETKEY_APPROVAL_WAKE",
                    "interruption-level": "time-sensitive",
                    "sound": "default",
                    "mutable-content": 1,
                },
                "v": 1,
                "w": wake.to_hex(),
            })
        );
    }
}
