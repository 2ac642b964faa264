//! Authenticator data (WebAuthn §6.1): rpIdHash ‖ flags ‖ signCount ‖ [attested credential
//! data] ‖ [extensions].

use ciborium::value::Value;

use crate::ctap::cbor::encode;

pub(crate) mod flags {
    pub const UP: u8 = 0x01;
    pub const UV: u8 = 0x04;
    pub const BE: u8 = 0x08;
    pub const BS: u8 = 0x10;
    pub const AT: u8 = 0x40;
    pub const ED: u8 = 0x80;
}

pub(crate) struct AttestedCredential<'a> {
    pub aaguid: [u8; 16],
    pub credential_id: &'a [u8],
    pub cose_public_key: &'a [u8],
}

pub(crate) struct AuthData<'a> {
    pub rp_id_hash: [u8; 32],
    pub user_present: bool,
    pub user_verified: bool,
    pub backup_eligible: bool,
    pub backup_state: bool,
    pub sign_count: u32,
    pub attested: Option<AttestedCredential<'a>>,
    /// Extension outputs, a CBOR map with text keys; left out when empty.
    pub extensions: Vec<(Value, Value)>,
}

impl AuthData<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut f = 0u8;
        for (on, bit) in [
            (self.user_present, flags::UP),
            (self.user_verified, flags::UV),
            (self.backup_eligible, flags::BE),
            (self.backup_state, flags::BS),
            (self.attested.is_some(), flags::AT),
            (!self.extensions.is_empty(), flags::ED),
        ] {
            if on {
                f |= bit;
            }
        }
        let mut out = Vec::with_capacity(37 + 200);
        out.extend_from_slice(&self.rp_id_hash);
        out.push(f);
        out.extend_from_slice(&self.sign_count.to_be_bytes());
        if let Some(a) = &self.attested {
            out.extend_from_slice(&a.aaguid);
            out.extend_from_slice(&(a.credential_id.len() as u16).to_be_bytes());
            out.extend_from_slice(a.credential_id);
            out.extend_from_slice(a.cose_public_key);
        }
        if !self.extensions.is_empty() {
            out.extend(encode(Value::Map(self.extensions.clone())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_flags() {
        let ad = AuthData {
            rp_id_hash: [1; 32],
            user_present: true,
            user_verified: true,
            backup_eligible: false,
            backup_state: false,
            sign_count: 0x01020304,
            attested: Some(AttestedCredential {
                aaguid: [2; 16],
                credential_id: &[3, 3],
                cose_public_key: &[0xa0],
            }),
            extensions: vec![(Value::Text("credProtect".into()), Value::Integer(2.into()))],
        }
        .to_bytes();
        assert_eq!(ad[32], flags::UP | flags::UV | flags::AT | flags::ED);
        assert_eq!(&ad[33..37], &[1, 2, 3, 4]);
        assert_eq!(&ad[53..55], &[0, 2]);
        assert_eq!(ad[57], 0xa0);
        assert_eq!(ad.len(), 58 + 1 + 12 + 1);
    }
}
