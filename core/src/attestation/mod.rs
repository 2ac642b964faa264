//! Attestation statements for makeCredential (WebAuthn §8.2 "packed", §8.7 "none") and the
//! certificate of a U2F registration.

mod certificates;
mod csr;

use ciborium::value::Value;

pub use certificates::{
    fresh_u2f_attestation, provision_batch, CertificateError, ProvisionedBatch,
};
pub use csr::{make_csr, verify_csr, CsrError};

use crate::crypto::es256::Es256Key;
use crate::crypto::signing::PrivateKey;
use crate::ctap::cbor::{int, MapBuilder};

/// A provisioned attestation key with its certificate chain (DER, leaf first). The leaf must
/// meet WebAuthn §8.2.1 (version 3, subject OU "Authenticator Attestation", CA false, and
/// the id-fido-gen-ce-aaguid extension when it names one model).
pub struct AttestationKey {
    pub key: Es256Key,
    pub chain: Vec<Vec<u8>>,
}

impl std::fmt::Debug for AttestationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AttestationKey(<redacted>, {} certificates)",
            self.chain.len()
        )
    }
}

/// What attestation this authenticator can give.
#[derive(Debug, Default)]
pub struct AttestationConfig {
    /// Batch attestation (shared by many devices); self attestation when absent.
    pub batch: Option<AttestationKey>,
    /// Enterprise attestation (unique per device) and the RP ids it may be given to.
    pub enterprise: Option<(AttestationKey, Vec<String>)>,
    /// Honour only vendor-facilitated requests (1: the listed RP ids), never
    /// platform-managed ones (2: any RP the platform names). An organisation's key gives its
    /// per-device certificate to the organisation's RPs alone.
    pub vendor_facilitated_only: bool,
}

/// Which statement to produce for one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestationKind {
    None,
    SelfAttestation,
    Batch,
    Enterprise,
}

/// The `fmt` and `attStmt` of a makeCredential response.
pub struct Statement {
    pub fmt: &'static str,
    pub att_stmt: Value,
}

impl AttestationConfig {
    /// Signs `authData ‖ clientDataHash` as the packed format requires.
    pub fn statement(
        &self,
        kind: AttestationKind,
        auth_data: &[u8],
        client_data_hash: &[u8; 32],
        credential: &PrivateKey,
    ) -> Statement {
        let signed = [auth_data, client_data_hash].concat();
        let with_chain = |k: &AttestationKey| {
            MapBuilder::new()
                .put(Value::Text("alg".into()), int(-7))
                .put(Value::Text("sig".into()), Value::Bytes(k.key.sign(&signed)))
                .put(
                    Value::Text("x5c".into()),
                    Value::Array(k.chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
                )
                .build()
        };
        match (kind, &self.batch, &self.enterprise) {
            (AttestationKind::None, ..) => Statement {
                fmt: "none",
                att_stmt: Value::Map(vec![]),
            },
            (AttestationKind::Enterprise, _, Some((k, _))) => Statement {
                fmt: "packed",
                att_stmt: with_chain(k),
            },
            (AttestationKind::Batch, Some(k), _) => Statement {
                fmt: "packed",
                att_stmt: with_chain(k),
            },
            _ => Statement {
                fmt: "packed",
                att_stmt: MapBuilder::new()
                    .put(
                        Value::Text("alg".into()),
                        int(credential.algorithm().cose_id()),
                    )
                    .put(
                        Value::Text("sig".into()),
                        Value::Bytes(credential.sign(&signed)),
                    )
                    .build(),
            },
        }
    }

    /// Whether enterprise attestation may be given to `rp_id` for the platform's request
    /// (1 = vendor-facilitated: only listed RPs; 2 = platform-managed: any RP).
    pub fn enterprise_allowed(&self, rp_id: &str, request: u64) -> bool {
        match &self.enterprise {
            Some((_, rp_ids)) => {
                (request == 2 && !self.vendor_facilitated_only)
                    || (request == 1 && rp_ids.iter().any(|r| r == rp_id))
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Algorithm;

    #[test]
    fn vendor_facilitated_only_refuses_platform_managed_requests() {
        let key = || AttestationKey {
            key: Es256Key::generate(),
            chain: vec![vec![1]],
        };
        let mut cfg = AttestationConfig {
            enterprise: Some((key(), vec!["corp.example".into()])),
            ..AttestationConfig::default()
        };
        assert!(cfg.enterprise_allowed("any.example", 2));
        assert!(cfg.enterprise_allowed("corp.example", 1));
        cfg.vendor_facilitated_only = true;
        assert!(!cfg.enterprise_allowed("any.example", 2));
        assert!(!cfg.enterprise_allowed("corp.example", 2));
        assert!(cfg.enterprise_allowed("corp.example", 1));
        assert!(!cfg.enterprise_allowed("any.example", 1));
    }

    #[test]
    fn self_attestation_uses_the_credential_key() {
        let cfg = AttestationConfig::default();
        let cred = PrivateKey::generate(Algorithm::EdDsa);
        let st = cfg.statement(AttestationKind::Batch, b"ad", &[1; 32], &cred);
        assert_eq!(st.fmt, "packed");
        let Value::Map(m) = st.att_stmt else { panic!() };
        assert_eq!(m.len(), 2, "self attestation has no x5c");
        assert_eq!(m[0].1, int(-8));
        let none = cfg.statement(AttestationKind::None, b"ad", &[1; 32], &cred);
        assert_eq!((none.fmt, none.att_stmt), ("none", Value::Map(vec![])));
    }
}
