//! The organisation this key was activated with (docs/org.md): one row holding the whole
//! identity sealed as one CBOR record, so the device key, the attestation keys, the status and
//! the policy are all confidential and tamper-evident together. Revoking rewrites the row
//! without the attestation keys; `secure_delete` (set on open) overwrites the freed pages.

use ciborium::value::Value;
use rusqlite::OptionalExtension;
use zeroize::Zeroizing;

use super::open::Store;
use super::types::{Settings, StoreError};
use crate::attestation::{AttestationConfig, AttestationKey};
use crate::crypto::es256::Es256Key;
use crate::ctap::cbor::{self, int, MapBuilder, MapReader};
use crate::pairing::relay::WakeId;

const AAD: &[u8] = b"pocketkey store v1\0org_identity";

/// Where the key stands with its organisation, as the server last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStatus {
    Active,
    Suspended,
    Revoked,
}

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgStatus::Active => "active",
            OrgStatus::Suspended => "suspended",
            OrgStatus::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(OrgStatus::Active),
            "suspended" => Some(OrgStatus::Suspended),
            "revoked" => Some(OrgStatus::Revoked),
            _ => None,
        }
    }
}

/// The organisation's policy: what the server stores and sends (JSON, see
/// [`crate::org_protocol::wire`]) and what the phone keeps and enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgPolicy {
    /// RP ids that get enterprise attestation (CTAP 2.1 §7.1, vendor-facilitated).
    pub enterprise_rp_ids: Vec<String>,
    pub user_verification_required: bool,
    pub min_pin_length: u8,
    /// RP ids the key serves for the organisation; empty means any.
    pub allowed_rp_ids: Vec<String>,
}

impl OrgPolicy {
    /// Brings the key's settings up to the policy; returns whether anything changed. Only
    /// ever tightens: user verification required turns alwaysUv on (CTAP 2.1 §7.2; while
    /// active the engine refuses to turn it off, see `Config::always_uv_locked`), and a
    /// larger minimum PIN length raises the key's, forcing a change of a shorter PIN set
    /// before, as authenticatorConfig setMinPINLength does (§6.11.4). A looser policy never
    /// lowers what the key has.
    pub fn enforce(&self, settings: &mut Settings) -> bool {
        let mut changed = false;
        if self.user_verification_required && !settings.always_uv {
            settings.always_uv = true;
            changed = true;
        }
        if self.min_pin_length > settings.min_pin_length {
            settings.min_pin_length = self.min_pin_length;
            if settings.pin_hash.is_some() && settings.pin_code_points < self.min_pin_length {
                settings.force_pin_change = true;
            }
            changed = true;
        }
        changed
    }
}

/// A certified attestation key: the private key and its chain (DER, leaf first).
pub struct OrgAttestation {
    pub key: Es256Key,
    pub chain: Vec<Vec<u8>>,
}

impl OrgAttestation {
    fn attestation_key(&self) -> Result<AttestationKey, StoreError> {
        Ok(AttestationKey {
            key: Es256Key::from_parts(self.key.scalar(), self.key.public_point())
                .map_err(|_| corrupt("attestation key"))?,
            chain: self.chain.clone(),
        })
    }
}

/// The organisation identity. Never printed with its keys.
pub struct OrgIdentity {
    pub org_name: String,
    /// The server's base URL (what the activation link started with).
    pub server_url: String,
    /// The server's id of this key (the inventory entry).
    pub key_id: String,
    pub status: OrgStatus,
    /// Authenticates this phone to the server.
    pub device_key: Es256Key,
    /// The organisation's batch attestation key (shared by its keys); gone once revoked.
    pub batch: Option<OrgAttestation>,
    /// This device's enterprise attestation key; gone once revoked.
    pub enterprise: Option<OrgAttestation>,
    pub policy: OrgPolicy,
    /// The wake id this phone last registered with the organisation with its push target
    /// (docs/org.md, "Wake-ups"): a push carrying it asks for a sync. Kept here because the
    /// app that registered may not be the process the push wakes.
    pub push_wake: Option<WakeId>,
}

impl std::fmt::Debug for OrgIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgIdentity")
            .field("org_name", &self.org_name)
            .field("server_url", &self.server_url)
            .field("key_id", &self.key_id)
            .field("status", &self.status)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl OrgIdentity {
    /// How the engine attests while this identity holds: the organisation's batch key for
    /// `direct` attestation and its enterprise key for the policy's enterprise RP ids, only
    /// while active. Suspended or revoked, the key attests as it would without it.
    pub fn attestation_config(&self) -> Result<Option<AttestationConfig>, StoreError> {
        if self.status != OrgStatus::Active {
            return Ok(None);
        }
        let batch = self
            .batch
            .as_ref()
            .map(|a| a.attestation_key())
            .transpose()?;
        let enterprise = match &self.enterprise {
            Some(a) if !self.policy.enterprise_rp_ids.is_empty() => {
                Some((a.attestation_key()?, self.policy.enterprise_rp_ids.clone()))
            }
            _ => None,
        };
        Ok(Some(AttestationConfig {
            batch,
            enterprise,
            vendor_facilitated_only: true,
        }))
    }

    /// The RP ids the key must not serve for the organisation now: while suspended or
    /// revoked, the policy's RPs (those it may serve and those given enterprise attestation).
    pub fn refused_rp_ids(&self) -> Vec<String> {
        if self.status == OrgStatus::Active {
            return Vec::new();
        }
        let mut ids: Vec<String> = self
            .policy
            .allowed_rp_ids
            .iter()
            .chain(&self.policy.enterprise_rp_ids)
            .cloned()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The only RP ids the key may make credentials for (empty: any): while active, the
    /// policy's `allowed_rp_ids`. Sign-ins are not restricted, so credentials made before
    /// the policy named its RPs keep working; a suspended or revoked key is restricted by
    /// [`Self::refused_rp_ids`] instead.
    pub fn registrable_rp_ids(&self) -> Vec<String> {
        match self.status {
            OrgStatus::Active => self.policy.allowed_rp_ids.clone(),
            _ => Vec::new(),
        }
    }

    /// What the identity's status means for the key's settings; returns whether anything
    /// changed. Active: the policy tightens them ([`OrgPolicy::enforce`]) and enterprise
    /// attestation is on when the policy names enterprise RP ids (activation is the
    /// organisation's enablement, CTAP 2.1 §7.1 vendor-facilitated). Revoked: enterprise
    /// attestation is off. Suspended: unchanged.
    pub fn apply_to_settings(&self, settings: &mut Settings) -> bool {
        let mut changed = false;
        match self.status {
            OrgStatus::Active => {
                changed |= self.policy.enforce(settings);
                if !self.policy.enterprise_rp_ids.is_empty() && !settings.enterprise_attestation {
                    settings.enterprise_attestation = true;
                    changed = true;
                }
            }
            OrgStatus::Revoked if settings.enterprise_attestation => {
                settings.enterprise_attestation = false;
                changed = true;
            }
            OrgStatus::Revoked | OrgStatus::Suspended => {}
        }
        changed
    }

    /// Whether the organisation's policy holds alwaysUv on now (only while active).
    pub fn locks_always_uv(&self) -> bool {
        self.status == OrgStatus::Active && self.policy.user_verification_required
    }

    /// Forgets the attestation keys and certificates (revocation).
    pub fn drop_attestation(&mut self) {
        self.batch = None;
        self.enterprise = None;
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("org identity: bad {what}"))
}

// CBOR keys of the sealed record, in one place.
mod k {
    pub const ORG_NAME: i64 = 1;
    pub const SERVER_URL: i64 = 2;
    pub const KEY_ID: i64 = 3;
    pub const STATUS: i64 = 4;
    pub const DEVICE_KEY: i64 = 5;
    pub const BATCH: i64 = 6;
    pub const ENTERPRISE: i64 = 7;
    pub const POLICY: i64 = 8;
    pub const PUSH_WAKE: i64 = 9;
    // Inside BATCH / ENTERPRISE.
    pub const SCALAR: i64 = 1;
    pub const CHAIN: i64 = 2;
    // Inside POLICY.
    pub const ENTERPRISE_RP_IDS: i64 = 1;
    pub const UV_REQUIRED: i64 = 2;
    pub const MIN_PIN_LENGTH: i64 = 3;
    pub const ALLOWED_RP_IDS: i64 = 4;
}

fn texts(list: &[String]) -> Value {
    Value::Array(list.iter().map(|s| Value::Text(s.clone())).collect())
}

fn attestation_value(a: &OrgAttestation) -> Value {
    MapBuilder::new()
        .put(int(k::SCALAR), Value::Bytes(a.key.scalar().to_vec()))
        .put(
            int(k::CHAIN),
            Value::Array(a.chain.iter().map(|c| Value::Bytes(c.clone())).collect()),
        )
        .build()
}

fn encode(id: &OrgIdentity) -> Zeroizing<Vec<u8>> {
    let policy = MapBuilder::new()
        .put(
            int(k::ENTERPRISE_RP_IDS),
            texts(&id.policy.enterprise_rp_ids),
        )
        .put(
            int(k::UV_REQUIRED),
            Value::Bool(id.policy.user_verification_required),
        )
        .put(
            int(k::MIN_PIN_LENGTH),
            int(i64::from(id.policy.min_pin_length)),
        )
        .put(int(k::ALLOWED_RP_IDS), texts(&id.policy.allowed_rp_ids))
        .build();
    let value = MapBuilder::new()
        .put(int(k::ORG_NAME), Value::Text(id.org_name.clone()))
        .put(int(k::SERVER_URL), Value::Text(id.server_url.clone()))
        .put(int(k::KEY_ID), Value::Text(id.key_id.clone()))
        .put(int(k::STATUS), Value::Text(id.status.as_str().into()))
        .put(
            int(k::DEVICE_KEY),
            Value::Bytes(id.device_key.scalar().to_vec()),
        )
        .put_opt(int(k::BATCH), id.batch.as_ref().map(attestation_value))
        .put_opt(
            int(k::ENTERPRISE),
            id.enterprise.as_ref().map(attestation_value),
        )
        .put(int(k::POLICY), policy)
        .put_opt(
            int(k::PUSH_WAKE),
            id.push_wake.map(|w| Value::Bytes(w.0.to_vec())),
        )
        .build();
    // Written from a reference into a buffer sized up front (no reallocation leaves a copy
    // behind); then the scalars in `value`'s byte strings are wiped.
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    ciborium::ser::into_writer(&value, &mut *bytes).expect("CBOR into a Vec cannot fail");
    wipe(value);
    bytes
}

fn wipe(value: Value) {
    use zeroize::Zeroize;
    match value {
        Value::Bytes(mut b) => b.zeroize(),
        Value::Array(items) => items.into_iter().for_each(wipe),
        Value::Map(entries) => entries.into_iter().for_each(|(_, v)| wipe(v)),
        _ => {}
    }
}

fn read_texts(v: Value) -> Result<Vec<String>, StoreError> {
    cbor::as_array(v)
        .map_err(|_| corrupt("list"))?
        .into_iter()
        .map(|t| cbor::as_text(t).map_err(|_| corrupt("text")))
        .collect()
}

fn read_attestation(v: Value) -> Result<OrgAttestation, StoreError> {
    let mut m = MapReader::new(v).map_err(|_| corrupt("attestation"))?;
    let scalar = Zeroizing::new(
        m.take(k::SCALAR)
            .and_then(|v| cbor::as_bytes(v).ok())
            .ok_or_else(|| corrupt("attestation key"))?,
    );
    let chain = cbor::as_array(m.take(k::CHAIN).ok_or_else(|| corrupt("chain"))?)
        .map_err(|_| corrupt("chain"))?
        .into_iter()
        .map(|c| cbor::as_bytes(c).map_err(|_| corrupt("certificate")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(OrgAttestation {
        key: Es256Key::from_scalar(&scalar).map_err(|_| corrupt("attestation key"))?,
        chain,
    })
}

fn decode(bytes: &[u8]) -> Result<OrgIdentity, StoreError> {
    let value = cbor::decode(bytes).map_err(|_| corrupt("record"))?;
    let mut m = MapReader::new(value).map_err(|_| corrupt("record"))?;
    let text = |m: &mut MapReader, key, what| {
        m.take(key)
            .and_then(|v| cbor::as_text(v).ok())
            .ok_or_else(|| corrupt(what))
    };
    let org_name = text(&mut m, k::ORG_NAME, "name")?;
    let server_url = text(&mut m, k::SERVER_URL, "server URL")?;
    let key_id = text(&mut m, k::KEY_ID, "key id")?;
    let status =
        OrgStatus::parse(&text(&mut m, k::STATUS, "status")?).ok_or_else(|| corrupt("status"))?;
    let device_scalar = Zeroizing::new(
        m.take(k::DEVICE_KEY)
            .and_then(|v| cbor::as_bytes(v).ok())
            .ok_or_else(|| corrupt("device key"))?,
    );
    let device_key = Es256Key::from_scalar(&device_scalar).map_err(|_| corrupt("device key"))?;
    let batch = m.take(k::BATCH).map(read_attestation).transpose()?;
    let enterprise = m.take(k::ENTERPRISE).map(read_attestation).transpose()?;
    let mut p = MapReader::new(m.take(k::POLICY).ok_or_else(|| corrupt("policy"))?)
        .map_err(|_| corrupt("policy"))?;
    let policy = OrgPolicy {
        enterprise_rp_ids: read_texts(
            p.take(k::ENTERPRISE_RP_IDS).unwrap_or(Value::Array(vec![])),
        )?,
        user_verification_required: p
            .take(k::UV_REQUIRED)
            .and_then(|v| cbor::as_bool(v).ok())
            .unwrap_or(false),
        min_pin_length: p
            .take(k::MIN_PIN_LENGTH)
            .and_then(|v| cbor::as_uint(v).ok())
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(4),
        allowed_rp_ids: read_texts(p.take(k::ALLOWED_RP_IDS).unwrap_or(Value::Array(vec![])))?,
    };
    let push_wake = m
        .take(k::PUSH_WAKE)
        .map(|v| {
            cbor::as_bytes(v)
                .ok()
                .and_then(|b| b.try_into().ok())
                .map(WakeId)
                .ok_or_else(|| corrupt("push wake id"))
        })
        .transpose()?;
    Ok(OrgIdentity {
        org_name,
        server_url,
        key_id,
        status,
        device_key,
        batch,
        enterprise,
        policy,
        push_wake,
    })
}

impl Store {
    /// The organisation this key belongs to, if it was activated with one.
    pub fn load_org_identity(&self) -> Result<Option<OrgIdentity>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT sealed FROM org_identity WHERE id = 0")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = self.keys.open(&sealed, AAD)?;
        decode(&plain).map(Some)
    }

    /// Stores (or replaces) the organisation identity.
    pub fn save_org_identity(&mut self, identity: &OrgIdentity) -> Result<(), StoreError> {
        let plain = encode(identity);
        let sealed = self.keys.sealer.seal(&plain, AAD);
        self.conn
            .prepare_cached(
                "INSERT INTO org_identity (id, sealed) VALUES (0, ?1) \
                 ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed",
            )?
            .execute([sealed])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::master_key::MasterKey;

    fn identity() -> OrgIdentity {
        OrgIdentity {
            org_name: "Acme".into(),
            server_url: "https://org.example".into(),
            key_id: "k1".into(),
            status: OrgStatus::Active,
            device_key: Es256Key::generate(),
            batch: Some(OrgAttestation {
                key: Es256Key::generate(),
                chain: vec![vec![1, 2, 3]],
            }),
            enterprise: Some(OrgAttestation {
                key: Es256Key::generate(),
                chain: vec![vec![4]],
            }),
            policy: OrgPolicy {
                enterprise_rp_ids: vec!["corp.example".into()],
                user_verification_required: true,
                min_pin_length: 6,
                allowed_rp_ids: vec![],
            },
            push_wake: Some(WakeId([7; 16])),
        }
    }

    #[test]
    fn the_policy_only_tightens_settings() {
        let mut settings = Settings {
            pin_hash: Some(zeroize::Zeroizing::new([1; 16])),
            pin_code_points: 6,
            ..Settings::default()
        };
        let policy = OrgPolicy {
            user_verification_required: true,
            min_pin_length: 8,
            ..OrgPolicy::default()
        };
        assert!(policy.enforce(&mut settings));
        assert!(settings.always_uv && settings.force_pin_change);
        assert_eq!(settings.min_pin_length, 8);
        let loose = OrgPolicy {
            min_pin_length: 4,
            ..OrgPolicy::default()
        };
        assert!(!loose.enforce(&mut settings));
        assert!(settings.always_uv);
        assert_eq!(settings.min_pin_length, 8);
    }

    #[test]
    fn round_trips_sealed_and_revocation_drops_the_keys() {
        let master = MasterKey::from_bytes([9; 32]);
        let mut store = Store::open_in_memory(&master).unwrap();
        assert!(store.load_org_identity().unwrap().is_none());
        let mut id = identity();
        store.save_org_identity(&id).unwrap();
        let back = store.load_org_identity().unwrap().unwrap();
        assert_eq!(back.device_key.scalar(), id.device_key.scalar());
        assert_eq!(back.policy, id.policy);
        assert_eq!(back.push_wake, id.push_wake);
        let cfg = back.attestation_config().unwrap().unwrap();
        assert_eq!(cfg.enterprise.unwrap().1, vec!["corp.example".to_string()]);
        let raw: Vec<u8> = store
            .conn
            .query_row("SELECT sealed FROM org_identity", [], |r| r.get(0))
            .unwrap();
        assert!(!raw
            .windows(8)
            .any(|w| id.device_key.scalar().windows(8).any(|s| s == w)));

        id.status = OrgStatus::Revoked;
        id.drop_attestation();
        store.save_org_identity(&id).unwrap();
        let back = store.load_org_identity().unwrap().unwrap();
        assert!(back.batch.is_none() && back.enterprise.is_none());
        assert!(back.attestation_config().unwrap().is_none());
        assert_eq!(back.refused_rp_ids(), vec!["corp.example".to_string()]);
    }
}
