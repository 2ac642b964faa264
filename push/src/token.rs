//! The bearer tokens the push providers authenticate with: a JWT in compact serialization
//! (RFC 7519 §3: `b64u(header).b64u(claims).b64u(signature)`, the signature over the first two
//! parts) and a token kept until it expires.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pocketkey_core::pairing::encoding::b64u_encode;

/// A compact JWT; `sign` gets the signing input and returns the signature bytes.
pub(crate) fn jwt(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let signing_input = format!(
        "{}.{}",
        b64u_encode(header.to_string().as_bytes()),
        b64u_encode(claims.to_string().as_bytes())
    );
    let signature = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64u_encode(&signature))
}

/// A bearer token reused until it expires (APNs provider tokens, FCM access tokens).
#[derive(Default)]
pub(crate) struct CachedToken(Mutex<Option<(String, Instant)>>);

impl CachedToken {
    fn slot(&self) -> MutexGuard<'_, Option<(String, Instant)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The token, while it is valid.
    pub(crate) fn get(&self) -> Option<String> {
        self.slot()
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }

    /// Keeps `token` for `valid_for`.
    pub(crate) fn put(&self, token: &str, valid_for: Duration) {
        *self.slot() = Some((token.to_owned(), Instant::now() + valid_for));
    }

    /// Forgets the token (the provider refused it): the next use makes a new one.
    pub(crate) fn clear(&self) {
        *self.slot() = None;
    }
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedToken(..)") // a credential: never printed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_signs_its_first_two_parts() {
        let token = jwt(
            &serde_json::json!({"alg": "none"}),
            &serde_json::json!({"iss": "x"}),
            |input| {
                assert_eq!(input, b"eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0");
                vec![1, 2, 3]
            },
        );
        assert_eq!(token, "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.AQID");
    }

    #[test]
    fn a_cached_token_lives_until_it_expires_or_is_cleared() {
        let cache = CachedToken::default();
        assert_eq!(cache.get(), None);
        cache.put("t1", Duration::from_secs(60));
        assert_eq!(cache.get().as_deref(), Some("t1"));
        cache.clear();
        assert_eq!(cache.get(), None);
        cache.put("t2", Duration::ZERO);
        assert_eq!(cache.get(), None, "expired at once");
        assert_eq!(format!("{cache:?}"), "CachedToken(..)");
    }
}
