//! X.509 certificates for attestation: a self-signed one per U2F registration, and a batch
//! chain (root CA → batch certificate) an organisation provisions once.
//!
//! Batch certificates follow WebAuthn §8.2.1: version 3; subject C, O, OU "Authenticator
//! Attestation", CN; basic constraints CA false; the id-fido-gen-ce-aaguid extension
//! (1.3.6.1.4.1.45724.1.1.4, not critical) holding the AAGUID; a positive serial number.

use std::str::FromStr;
use std::time::Duration;

use der::asn1::{ObjectIdentifier, OctetStringRef};
use der::Encode;
use rand_core::{OsRng, RngCore};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

use super::AttestationKey;
use crate::crypto::es256::Es256Key;
use p256::ecdsa::signature::Keypair;

#[derive(Debug, thiserror::Error)]
#[error("could not build a certificate: {0}")]
pub struct CertificateError(String);

fn err(e: impl std::fmt::Display) -> CertificateError {
    CertificateError(e.to_string())
}

/// id-fido-gen-ce-aaguid: the AAGUID as an OCTET STRING inside the extension value.
struct AaguidExtension([u8; 16]);

impl der::oid::AssociatedOid for AaguidExtension {
    const OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.45724.1.1.4");
}

impl Encode for AaguidExtension {
    fn encoded_len(&self) -> der::Result<der::Length> {
        OctetStringRef::new(&self.0)?.encoded_len()
    }
    fn encode(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        OctetStringRef::new(&self.0)?.encode(writer)
    }
}

impl AsExtension for AaguidExtension {
    fn critical(&self, _subject: &Name, _extensions: &[Extension]) -> bool {
        false
    }
}

/// A random positive serial number (RFC 5280 §4.1.2.2: at most 20 octets, positive).
fn random_serial() -> Result<SerialNumber, CertificateError> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::new(&bytes).map_err(err)
}

const YEARS_20: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

fn spki(key: &Es256Key) -> Result<SubjectPublicKeyInfoOwned, CertificateError> {
    SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).map_err(err)
}

/// A self-signed certificate for `key` (issuer = subject, CA false).
pub fn self_signed_certificate(
    key: &Es256Key,
    common_name: &str,
) -> Result<Vec<u8>, CertificateError> {
    let subject = Name::from_str(&format!(
        "CN={common_name},OU=Authenticator Attestation,O=PocketKey,C=US"
    ))
    .map_err(err)?;
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    let builder = CertificateBuilder::new(
        profile,
        random_serial()?,
        Validity::from_now(YEARS_20).map_err(err)?,
        subject,
        spki(key)?,
        key,
    )
    .map_err(err)?;
    let cert = builder.build::<p256::ecdsa::DerSignature>().map_err(err)?;
    cert.to_der().map_err(err)
}

/// A fresh key and its self-signed certificate, for one U2F registration when no batch key
/// is provisioned (U2F requires some certificate).
pub fn fresh_u2f_attestation() -> Result<(Es256Key, Vec<u8>), CertificateError> {
    let key = Es256Key::generate();
    let cert = self_signed_certificate(&key, "PocketKey U2F")?;
    Ok((key, cert))
}

/// An organisation's attestation root, a batch key certified by it, and optionally an
/// enterprise key (unique to this device) certified by it too.
pub struct ProvisionedBatch {
    pub root_certificate: Vec<u8>,
    pub batch: AttestationKey,
    pub enterprise: Option<AttestationKey>,
}

/// Makes a root CA for `organization` and, under it, a batch certificate for `aaguid` and
/// (when `enterprise`) a device-unique enterprise certificate. Each chain is the leaf alone:
/// relying parties get the root as their trust anchor. The root key is dropped here: nothing
/// more is ever signed with it.
pub fn provision_batch(
    organization: &str,
    country: &str,
    aaguid: [u8; 16],
    enterprise: bool,
) -> Result<ProvisionedBatch, CertificateError> {
    let clean = |s: &str| s.replace([',', '=', '+', '"', '\\', '<', '>', ';'], " ");
    let (organization, country) = (clean(organization), clean(country));
    let root_key = Es256Key::generate();
    let root_subject = Name::from_str(&format!(
        "CN={organization} Attestation Root,O={organization},C={country}"
    ))
    .map_err(err)?;
    let root = CertificateBuilder::new(
        Profile::Root,
        random_serial()?,
        Validity::from_now(YEARS_20).map_err(err)?,
        root_subject.clone(),
        spki(&root_key)?,
        &root_key,
    )
    .map_err(err)?
    .build::<p256::ecdsa::DerSignature>()
    .map_err(err)?;
    let leaf = |common_name: &str| -> Result<AttestationKey, CertificateError> {
        let key = Es256Key::generate();
        let subject = Name::from_str(&format!(
            "CN={common_name},OU=Authenticator Attestation,O={organization},C={country}"
        ))
        .map_err(err)?;
        let profile = Profile::Leaf {
            issuer: root_subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        };
        let mut builder = CertificateBuilder::new(
            profile,
            random_serial()?,
            Validity::from_now(YEARS_20).map_err(err)?,
            subject,
            spki(&key)?,
            &root_key,
        )
        .map_err(err)?;
        builder
            .add_extension(&AaguidExtension(aaguid))
            .map_err(err)?;
        let cert = builder.build::<p256::ecdsa::DerSignature>().map_err(err)?;
        Ok(AttestationKey {
            key,
            chain: vec![cert.to_der().map_err(err)?],
        })
    };
    let enterprise = if enterprise {
        let mut id = [0u8; 8];
        OsRng.fill_bytes(&mut id);
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Some(leaf(&format!("PocketKey Enterprise {id}"))?)
    } else {
        None
    };
    Ok(ProvisionedBatch {
        root_certificate: root.to_der().map_err(err)?,
        batch: leaf("PocketKey Batch")?,
        enterprise,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn self_signed_certificate_carries_the_key() {
        let (key, der) = fresh_u2f_attestation().unwrap();
        let cert = x509_cert::Certificate::from_der(&der).unwrap();
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .subject_public_key
            .raw_bytes();
        assert_eq!(spki, key.public_point());
        // Self-signed: the certificate's signature verifies under its own key.
        let sig = p256::ecdsa::DerSignature::try_from(cert.signature.raw_bytes()).unwrap();
        key.verifying_key()
            .verify(&cert.tbs_certificate.to_der().unwrap(), &sig)
            .unwrap();
    }

    #[test]
    fn batch_certificate_meets_packed_requirements() {
        let aaguid = [0x42; 16];
        let p = provision_batch("Example Corp", "DE", aaguid, true).unwrap();
        let enterprise = p.enterprise.as_ref().unwrap();
        assert_ne!(enterprise.chain, p.batch.chain);
        let cert = x509_cert::Certificate::from_der(&p.batch.chain[0]).unwrap();
        let tbs = &cert.tbs_certificate;
        assert_eq!(tbs.version, x509_cert::Version::V3);
        assert!(
            tbs.serial_number.as_bytes()[0] & 0x80 == 0,
            "serial must be positive"
        );
        let subject = tbs.subject.to_string();
        assert!(
            subject.contains("OU=Authenticator Attestation"),
            "{subject}"
        );
        assert!(
            subject.contains("O=Example Corp") && subject.contains("C=DE"),
            "{subject}"
        );
        let exts = tbs.extensions.as_ref().unwrap();
        let aaguid_ext = exts
            .iter()
            .find(|e| e.extn_id == <AaguidExtension as der::oid::AssociatedOid>::OID)
            .unwrap();
        assert!(!aaguid_ext.critical);
        assert_eq!(
            aaguid_ext.extn_value.as_bytes(),
            [&[0x04, 16][..], &aaguid].concat()
        );
        let bc = exts
            .iter()
            .find(|e| e.extn_id.to_string() == "2.5.29.19")
            .unwrap();
        // BasicConstraints with cA absent (false) is an empty SEQUENCE.
        assert_eq!(bc.extn_value.as_bytes(), &[0x30, 0x00]);
        // Signed by the root.
        let root = x509_cert::Certificate::from_der(&p.root_certificate).unwrap();
        let root_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(
            root.tbs_certificate
                .subject_public_key_info
                .subject_public_key
                .raw_bytes(),
        )
        .unwrap();
        let sig = p256::ecdsa::DerSignature::try_from(cert.signature.raw_bytes()).unwrap();
        root_key.verify(&tbs.to_der().unwrap(), &sig).unwrap();
    }
}
