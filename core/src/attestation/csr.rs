//! Certificate signing requests (PKCS#10, RFC 2986) for an attestation key: the phone makes
//! one for its enterprise attestation key, the organisation server checks it before
//! certifying the key.
//!
//! What a check accepts is narrow on purpose: a P-256 key (the only attestation algorithm the
//! engine signs with, ES256), signed with ecdsa-with-SHA256 by that same key (proof of
//! possession), and no attributes but an empty `extensionRequest` (RFC 2985 §5.4.2). The
//! server decides every extension of the certificate itself, so a request that asks for any
//! is refused rather than silently ignored.

use std::str::FromStr;

use der::{Decode, Encode};
use p256::ecdsa::signature::Verifier;
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, ExtensionReq};

use crate::crypto::es256::{Es256Key, POINT_LEN};

/// id-ecPublicKey (RFC 5480 §2.1.1).
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// secp256r1 (RFC 5480 §2.1.1.1).
const SECP256R1: &str = "1.2.840.10045.3.1.7";
/// ecdsa-with-SHA256 (RFC 5758 §3.2).
const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate request is not valid DER PKCS#10")]
    Malformed,
    #[error("the certificate request's key is not a P-256 key")]
    WrongKeyType,
    #[error("the certificate request is not signed with ecdsa-with-SHA256")]
    WrongSignatureAlgorithm,
    #[error("the certificate request's signature does not verify with its own key")]
    BadSignature,
    #[error("the certificate request carries attributes or extensions, which are not accepted")]
    UnexpectedAttributes,
    #[error("could not build the certificate request: {0}")]
    Build(String),
}

/// A PKCS#10 request for `key`, subject `CN=<common_name>`, no attributes, signed by `key`.
pub fn make_csr(key: &Es256Key, common_name: &str) -> Result<Vec<u8>, CsrError> {
    let cn: String = common_name
        .chars()
        .filter(|c| !matches!(c, ',' | '=' | '+' | '"' | '\\' | '<' | '>' | ';') && !c.is_control())
        .collect();
    let subject =
        Name::from_str(&format!("CN={cn}")).map_err(|e| CsrError::Build(e.to_string()))?;
    let request = RequestBuilder::new(subject, key)
        .map_err(|e| CsrError::Build(e.to_string()))?
        .build::<p256::ecdsa::DerSignature>()
        .map_err(|e| CsrError::Build(e.to_string()))?;
    request.to_der().map_err(|e| CsrError::Build(e.to_string()))
}

/// Checks a request and returns the key it asks to certify (uncompressed SEC1 point).
pub fn verify_csr(der: &[u8]) -> Result<[u8; POINT_LEN], CsrError> {
    let request = CertReq::from_der(der).map_err(|_| CsrError::Malformed)?;
    let info = &request.info;
    let spki = &info.public_key;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok());
    if spki.algorithm.oid.to_string() != EC_PUBLIC_KEY
        || curve.map(|c| c.to_string()).as_deref() != Some(SECP256R1)
    {
        return Err(CsrError::WrongKeyType);
    }
    let point: [u8; POINT_LEN] = spki
        .subject_public_key
        .as_bytes()
        .and_then(|b| b.try_into().ok())
        .ok_or(CsrError::WrongKeyType)?;
    let key =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| CsrError::WrongKeyType)?;
    if request.algorithm.oid.to_string() != ECDSA_SHA256 {
        return Err(CsrError::WrongSignatureAlgorithm);
    }
    let signature = request
        .signature
        .as_bytes()
        .and_then(|b| p256::ecdsa::DerSignature::try_from(b).ok())
        .ok_or(CsrError::BadSignature)?;
    let signed = info.to_der().map_err(|_| CsrError::Malformed)?;
    key.verify(&signed, &signature)
        .map_err(|_| CsrError::BadSignature)?;
    // Builders (x509-cert's among them) always write an extensionRequest attribute; an
    // empty one asks for nothing and is the only attribute accepted.
    let asks_nothing = |a: &x509_cert::attr::Attribute| {
        a.oid == <ExtensionReq as der::oid::AssociatedOid>::OID
            && a.values.iter().all(|v| {
                v.decode_as::<ExtensionReq>()
                    .is_ok_and(|req| req.0.is_empty())
            })
    };
    if !info.attributes.iter().all(asks_nothing) {
        return Err(CsrError::UnexpectedAttributes);
    }
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_verifies_and_names_its_key() {
        let key = Es256Key::generate();
        let der = make_csr(&key, "PocketKey Enterprise").unwrap();
        assert_eq!(&verify_csr(&der).unwrap(), key.public_point());
    }

    #[test]
    fn a_request_whose_key_is_swapped_or_with_an_extension_is_refused() {
        let key = Es256Key::generate();
        let der = make_csr(&key, "x").unwrap();
        let mut request = CertReq::from_der(&der).unwrap();
        // Another key than the one that signed.
        let other = Es256Key::generate();
        request.info.public_key = x509_cert::spki::SubjectPublicKeyInfoOwned::from_key(
            p256::ecdsa::signature::Keypair::verifying_key(&other),
        )
        .unwrap();
        assert_eq!(
            verify_csr(&request.to_der().unwrap()),
            Err(CsrError::BadSignature)
        );
        // A request with an extensionRequest attribute, properly signed.
        let mut builder = RequestBuilder::new(Name::from_str("CN=x").unwrap(), &key).unwrap();
        builder
            .add_extension(&x509_cert::ext::pkix::BasicConstraints {
                ca: true,
                path_len_constraint: None,
            })
            .unwrap();
        let with_ext = builder
            .build::<p256::ecdsa::DerSignature>()
            .unwrap()
            .to_der()
            .unwrap();
        assert_eq!(verify_csr(&with_ext), Err(CsrError::UnexpectedAttributes));
        assert_eq!(verify_csr(b"junk"), Err(CsrError::Malformed));
    }
}
