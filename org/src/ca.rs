//! The organisation's attestation root CA and its batch attestation key (rcgen).
//!
//! The root key is kept (sealed) because later the server certifies each device's enterprise
//! attestation key under it. The batch certificate follows WebAuthn §8.2.1: subject C, O,
//! OU "Authenticator Attestation", CN; CA false; the id-fido-gen-ce-aaguid extension.

use pocketkey_core::authenticator::POCKETKEY_AAGUID;
use pocketkey_core::crypto::seal::Sealer;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use zeroize::Zeroizing;

/// id-fido-gen-ce-aaguid (WebAuthn §8.2.1.1).
const AAGUID_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 4];
/// id-fido-gen-ce-sernum: the device's serial number, in enterprise attestation certificates.
const SERIAL_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 45724, 1, 1, 2];
/// id-ce-basicConstraints (RFC 5280 §4.2.1.9).
const BASIC_CONSTRAINTS_OID: &[u64] = &[2, 5, 29, 19];
pub const ROOT_KEY_AAD: &[u8] = b"pocketkey-org:root-key";
pub const BATCH_KEY_AAD: &[u8] = b"pocketkey-org:batch-key";
const VALID_YEARS: i64 = 20;

/// What `init` stores: certificates in PEM, private keys (PKCS#8) sealed.
pub struct OrgCa {
    pub root_cert_pem: String,
    pub root_key_sealed: Vec<u8>,
    pub batch_cert_pem: String,
    pub batch_key_sealed: Vec<u8>,
}

fn err(e: rcgen::Error) -> String {
    format!("cannot make the attestation CA: {e}")
}

/// Characters that would confuse a reader of a distinguished name are replaced.
fn clean(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365 * VALID_YEARS);
}

/// The root's parameters. Issuing later rebuilds the root from these and its key: rcgen
/// takes the issuer's name and key identifier from them, so they must stay as `init` used.
fn root_params(org: &str) -> Result<CertificateParams, String> {
    let mut root = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    root.distinguished_name.push(
        DnType::CommonName,
        format!("{org} PocketKey Attestation Root"),
    );
    root.distinguished_name
        .push(DnType::OrganizationName, org.to_string());
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut root);
    Ok(root)
}

/// An attestation leaf per WebAuthn §8.2.1: subject C, O, OU, CN; CA false; the AAGUID.
fn leaf_params(org: &str, common_name: &str) -> Result<CertificateParams, String> {
    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, common_name.to_string());
    leaf.distinguished_name
        .push(DnType::OrganizationalUnitName, "Authenticator Attestation");
    leaf.distinguished_name
        .push(DnType::OrganizationName, org.to_string());
    leaf.distinguished_name.push(DnType::CountryName, "US");
    // Basic constraints with cA false: an empty SEQUENCE, since DER omits a DEFAULT value
    // (X.690 §11.5). rcgen's ExplicitNoCa writes the FALSE, which strict parsers refuse.
    leaf.is_ca = IsCa::NoCa;
    let mut no_ca = CustomExtension::from_oid_content(BASIC_CONSTRAINTS_OID, vec![0x30, 0x00]);
    no_ca.set_criticality(true);
    leaf.custom_extensions.push(no_ca);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.custom_extensions
        .push(CustomExtension::from_oid_content(
            AAGUID_OID,
            octet_string(&POCKETKEY_AAGUID),
        ));
    validity(&mut leaf);
    Ok(leaf)
}

/// A short DER OCTET STRING (under 128 bytes).
fn octet_string(bytes: &[u8]) -> Vec<u8> {
    debug_assert!(bytes.len() < 128);
    let mut v = vec![0x04, bytes.len() as u8];
    v.extend_from_slice(bytes);
    v
}

pub fn create(org_name: &str, sealer: &Sealer) -> Result<OrgCa, String> {
    let org = clean(org_name);
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let root_cert = root_params(&org)?.self_signed(&root_key).map_err(err)?;
    let batch_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let batch_cert = leaf_params(&org, "PocketKey Batch")?
        .signed_by(&batch_key, &root_cert, &root_key)
        .map_err(err)?;

    let root_der = Zeroizing::new(root_key.serialize_der());
    let batch_der = Zeroizing::new(batch_key.serialize_der());
    Ok(OrgCa {
        root_cert_pem: root_cert.pem(),
        root_key_sealed: sealer.seal(&root_der, ROOT_KEY_AAD),
        batch_cert_pem: batch_cert.pem(),
        batch_key_sealed: sealer.seal(&batch_der, BATCH_KEY_AAD),
    })
}

/// A P-256 public key given as its uncompressed point (from a checked CSR).
struct P256Public<'a>(&'a [u8]);

impl PublicKeyData for P256Public<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }
    fn algorithm(&self) -> &SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Certifies a device's enterprise attestation key (`point`, from its checked CSR) under the
/// organisation root: the batch profile plus the id-fido-gen-ce-sernum extension holding the
/// device's `serial`, which is what makes enterprise attestation identify one device
/// (CTAP 2.1 §7.1). Returns the certificate's DER.
pub fn issue_enterprise(
    org_name: &str,
    root_key_sealed: &[u8],
    sealer: &Sealer,
    point: &[u8],
    serial: &[u8; 16],
) -> Result<Vec<u8>, String> {
    let org = clean(org_name);
    let root_der = sealer
        .open(root_key_sealed, ROOT_KEY_AAD)
        .map_err(|e| format!("cannot open the root key: {e}"))?;
    let root_key = KeyPair::try_from(root_der.as_slice()).map_err(err)?;
    let root_cert = root_params(&org)?.self_signed(&root_key).map_err(err)?;
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    let mut params = leaf_params(&org, &format!("PocketKey Enterprise {hex}"))?;
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            SERIAL_OID,
            octet_string(serial),
        ));
    let cert = params
        .signed_by(&P256Public(point), &root_cert, &root_key)
        .map_err(err)?;
    Ok(cert.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pocketkey_core::crypto::master_key::MasterKey;

    #[test]
    fn keys_are_sealed_and_open_only_with_their_own_aad() {
        let sealer = crate::state::sealer(&MasterKey::from_bytes([5; 32]));
        let ca = create("Acme", &sealer).unwrap();
        assert!(ca.root_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let root = sealer.open(&ca.root_key_sealed, ROOT_KEY_AAD).unwrap();
        assert!(KeyPair::try_from(root.as_slice()).is_ok());
        assert!(sealer.open(&ca.root_key_sealed, BATCH_KEY_AAD).is_err());
        let other = crate::state::sealer(&MasterKey::from_bytes([6; 32]));
        assert!(other.open(&ca.batch_key_sealed, BATCH_KEY_AAD).is_err());
    }
}
