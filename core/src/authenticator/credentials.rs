//! Finding the credentials a request names, whether discoverable (in the store) or carried in
//! a sealed credential ID, and the per-credential secrets derived from their keys.

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::key_cache::KeyCache;
use crate::crypto::signing::PrivateKey;
use crate::ctap::shared::{CredentialDescriptor, UserInfo};
use crate::ctap::{CtapError, CtapResult};
use crate::store::{Algorithm, CredProtect, Credential};

use super::Authenticator;

/// One credential usable for an assertion, wherever it came from.
pub(crate) struct Candidate {
    pub id: Vec<u8>,
    pub algorithm: Algorithm,
    pub private_key: Zeroizing<Vec<u8>>,
    pub cred_protect: CredProtect,
    pub cred_blob: Option<Zeroizing<Vec<u8>>>,
    pub large_blob_key: Option<Zeroizing<[u8; 32]>>,
    /// The user, for discoverable credentials.
    pub user: Option<UserInfo>,
    pub backup_eligible: bool,
    pub backup_state: bool,
}

impl From<Credential> for Candidate {
    fn from(c: Credential) -> Self {
        Candidate {
            user: Some(UserInfo {
                id: c.user_id,
                name: c.user_name,
                display_name: c.user_display_name,
            }),
            id: c.id,
            algorithm: c.algorithm,
            private_key: c.private_key,
            cred_protect: c.cred_protect,
            cred_blob: c.cred_blob,
            large_blob_key: c.large_blob_key,
            backup_eligible: c.backup_eligible,
            backup_state: c.backup_state,
        }
    }
}

impl Candidate {
    /// The parsed key, from the engine's cache when this credential signed before.
    pub fn key<'c>(&self, cache: &'c mut KeyCache) -> CtapResult<&'c PrivateKey> {
        cache
            .get(&self.id, self.algorithm, &self.private_key)
            .map_err(|_| CtapError::Other)
    }

    /// CredRandom for hmac-secret (CTAP 2.1 §12.5): two values per credential, one used
    /// when the user was verified and one when not, derived from the sealed private key so
    /// nothing extra has to be stored. Only the secret (the first 32 bytes of every stored
    /// form, see `PrivateKey::to_bytes`) goes in, so the value does not depend on whether
    /// the public point is stored too.
    pub fn cred_random(&self, user_verified: bool) -> Zeroizing<[u8; 32]> {
        let secret = &self.private_key[..self.private_key.len().min(32)];
        let hk = Hkdf::<Sha256>::new(Some(b"pocketkey hmac-secret v1"), secret);
        let mut out = Zeroizing::new([0u8; 32]);
        let info: &[u8] = if user_verified {
            b"with uv"
        } else {
            b"without uv"
        };
        hk.expand(info, out.as_mut())
            .expect("32 bytes is a valid HKDF output length");
        out
    }
}

pub(crate) fn rp_id_hash(rp_id: &str) -> [u8; 32] {
    Sha256::digest(rp_id.as_bytes()).into()
}

impl Authenticator {
    /// The credential a descriptor names for this RP, if it is ours.
    pub(crate) fn find_credential(
        &self,
        rp_id_hash: &[u8; 32],
        descriptor: &CredentialDescriptor,
    ) -> CtapResult<Option<Candidate>> {
        if let Some(c) = self.store.credential_by_id(&descriptor.id)? {
            return Ok((c.rp_id_hash == *rp_id_hash).then(|| c.into()));
        }
        Ok(self
            .ids
            .unwrap(rp_id_hash, &descriptor.id)
            .map(|w| Candidate {
                id: descriptor.id.clone(),
                algorithm: w.algorithm,
                private_key: w.private_key,
                cred_protect: w.cred_protect,
                cred_blob: w.cred_blob,
                large_blob_key: None,
                user: None,
                backup_eligible: false,
                backup_state: false,
            }))
    }

    /// The first usable credential named by `list`, or every discoverable one of the RP when
    /// the list is empty, that may be used with or without user verification (credProtect,
    /// §12.1).
    pub(crate) fn locate(
        &self,
        rp_id_hash: &[u8; 32],
        list: &[CredentialDescriptor],
        user_verified: bool,
    ) -> CtapResult<Vec<Candidate>> {
        let mut found = Vec::new();
        if list.is_empty() {
            for c in self.store.credentials_for_rp(rp_id_hash)? {
                let c = Candidate::from(c);
                if user_verified || c.cred_protect == CredProtect::UserVerificationOptional {
                    found.push(c);
                }
            }
        } else {
            // With an allowList only one credential is ever used (§6.2.2 step 7): stop at the
            // first usable one instead of opening every ID in the list.
            for d in list {
                if let Some(c) = self.find_credential(rp_id_hash, d)? {
                    if user_verified || c.cred_protect != CredProtect::UserVerificationRequired {
                        found.push(c);
                        break;
                    }
                }
            }
        }
        Ok(found)
    }
}
