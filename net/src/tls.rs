//! The TLS client configuration of every `wss://` connection (the pairing relay's mailboxes
//! and the hybrid tunnel): rustls on the `ring` provider (no aws-lc-rs: it needs cmake and a C
//! toolchain per target) with the Mozilla roots from `webpki-roots`, plus any roots a caller
//! adds for a self-hosted server behind a private certificate authority.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Why a TLS configuration could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// One of the extra DER certificates is not a usable trust anchor.
    #[error("a trusted certificate is not usable: {0}")]
    BadCertificate(String),
    /// The crypto provider refused the protocol versions (a build fault).
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The webpki roots, plus `extra` DER certificates. Without extras the configuration is built
/// once per process and shared.
pub fn client_config(extra: &[Vec<u8>]) -> Result<Arc<ClientConfig>, TlsError> {
    static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if extra.is_empty() {
        if let Some(config) = DEFAULT.get() {
            return Ok(config.clone());
        }
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    }
    // The provider is named rather than taken from the process default, which panics when a
    // binary ends up with two providers compiled in.
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let config = Arc::new(config);
    if extra.is_empty() {
        let _ = DEFAULT.set(config.clone());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_shared_and_a_bad_extra_root_is_typed() {
        let a = client_config(&[]).unwrap();
        let b = client_config(&[]).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(matches!(
            client_config(&[vec![1, 2, 3]]),
            Err(TlsError::BadCertificate(_))
        ));
    }
}
