//! Rows ↔ structs: the credential row's columns and the statements that read or write a
//! whole row, decoding a row into a [`Credential`], and the typed column readers (a value of
//! the wrong type or range is [`StoreError::Corrupt`], never a panic).

use rusqlite::types::Value;
use zeroize::Zeroizing;

use super::sealing::{CredentialBinding, StoreKeys};
use super::types::*;

/// Private keys are 32 bytes (P-256 scalar, Ed25519 seed) or, for ES256 keys made since the
/// public point is kept with them, scalar ‖ point (crypto::signing::ES256_STORED_LEN).
pub(super) fn private_key_len_ok(len: usize) -> bool {
    len == 32 || len == crate::crypto::signing::ES256_STORED_LEN
}

/// The credentials table's columns, in the order [`decode_credential`] reads them.
macro_rules! credential_columns {
    () => {
        "id, rp_id, rp_id_hash, rp_name, user_id, user_name, user_display_name, algorithm, \
         private_key, cred_protect, hmac_secret, cred_blob, large_blob_key, backup_eligible, \
         backup_state, created_at"
    };
}
const CREDENTIAL_COLUMN_COUNT: usize = 16;

/// The query behind [`super::Store::credentials_for_rp`] (its plan is checked by a test).
pub(super) const CREDENTIALS_FOR_RP_SQL: &str = concat!(
    "SELECT ",
    credential_columns!(),
    " FROM credentials WHERE rp_id_hash = ?1 ORDER BY seq DESC"
);
pub(super) const CREDENTIAL_BY_ID_SQL: &str = concat!(
    "SELECT ",
    credential_columns!(),
    " FROM credentials WHERE id = ?1"
);
pub(super) const INSERT_CREDENTIAL_SQL: &str = concat!(
    "INSERT INTO credentials (seq, ",
    credential_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
);

/// The columns of one credential row, undecoded (decoding errors become `Corrupt`).
pub(super) fn raw_credential(row: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<Value>> {
    (0..CREDENTIAL_COLUMN_COUNT)
        .map(|i| row.get::<_, Value>(i))
        .collect()
}

/// A credential row (as [`raw_credential`] read it), its sealed fields opened.
pub(super) fn decode_credential(
    keys: &StoreKeys,
    raw: Vec<Value>,
) -> Result<Credential, StoreError> {
    let mut raw = raw.into_iter();
    let mut next = || raw.next().unwrap_or(Value::Null);
    let id = blob(next(), "id")?;
    let rp_id = text(next(), "rp_id")?;
    let rp_id_hash = hash32(next(), "rp_id_hash")?;
    let rp_name = opt_text(next(), "rp_name")?;
    let user_id = blob(next(), "user_id")?;
    let user_name = opt_text(next(), "user_name")?;
    let user_display_name = opt_text(next(), "user_display_name")?;
    let algorithm_id = integer(next(), "algorithm")?;
    let algorithm = Algorithm::from_cose_id(algorithm_id)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown algorithm {algorithm_id}")))?;
    let sealed_key = blob(next(), "private_key")?;
    let cred_protect_id = integer(next(), "cred_protect")?;
    let cred_protect = u8::try_from(cred_protect_id)
        .ok()
        .and_then(CredProtect::from_u8)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown credProtect {cred_protect_id}")))?;
    let hmac_secret = boolean(next(), "hmac_secret")?;
    let sealed_blob = opt_blob(next(), "cred_blob")?;
    let sealed_lbk = opt_blob(next(), "large_blob_key")?;
    let backup_eligible = boolean(next(), "backup_eligible")?;
    let backup_state = boolean(next(), "backup_state")?;
    let created_at = integer(next(), "created_at")?;

    let binding = CredentialBinding::new(
        &id,
        &rp_id_hash,
        &user_id,
        algorithm_id,
        cred_protect_id,
        hmac_secret,
        backup_eligible,
        backup_state,
    );
    let private_key = keys.open_private_key(&sealed_key, &binding.aad("private_key"))?;
    if !private_key_len_ok(private_key.len()) {
        return Err(StoreError::Corrupt(format!(
            "private key is {} bytes",
            private_key.len()
        )));
    }
    let cred_blob = sealed_blob
        .map(|s| keys.open(&s, &binding.aad("cred_blob")))
        .transpose()?;
    let large_blob_key = match sealed_lbk {
        None => None,
        Some(s) => {
            let opened = keys.open(&s, &binding.aad("large_blob_key"))?;
            let key: [u8; 32] = opened[..].try_into().map_err(|_| {
                StoreError::Corrupt(format!("largeBlobKey is {} bytes, not 32", opened.len()))
            })?;
            Some(Zeroizing::new(key))
        }
    };
    Ok(Credential {
        id,
        rp_id,
        rp_id_hash,
        rp_name,
        user_id,
        user_name,
        user_display_name,
        algorithm,
        private_key,
        cred_protect,
        hmac_secret,
        cred_blob,
        large_blob_key,
        backup_eligible,
        backup_state,
        created_at,
    })
}

fn corrupt_type(column: &str, expected: &str) -> StoreError {
    StoreError::Corrupt(format!("{column} is not {expected}"))
}

pub(super) fn blob(v: Value, column: &str) -> Result<Vec<u8>, StoreError> {
    match v {
        Value::Blob(b) => Ok(b),
        _ => Err(corrupt_type(column, "a blob")),
    }
}

pub(super) fn opt_blob(v: Value, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match v {
        Value::Null => Ok(None),
        v => blob(v, column).map(Some),
    }
}

pub(super) fn text(v: Value, column: &str) -> Result<String, StoreError> {
    match v {
        Value::Text(s) => Ok(s),
        _ => Err(corrupt_type(column, "text")),
    }
}

pub(super) fn opt_text(v: Value, column: &str) -> Result<Option<String>, StoreError> {
    match v {
        Value::Null => Ok(None),
        v => text(v, column).map(Some),
    }
}

pub(super) fn integer(v: Value, column: &str) -> Result<i64, StoreError> {
    match v {
        Value::Integer(i) => Ok(i),
        _ => Err(corrupt_type(column, "an integer")),
    }
}

pub(super) fn boolean(v: Value, column: &str) -> Result<bool, StoreError> {
    match integer(v, column)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!(
            "{column} is {other}, not a boolean"
        ))),
    }
}

pub(super) fn small_int(v: Value, column: &str) -> Result<u8, StoreError> {
    let i = integer(v, column)?;
    u8::try_from(i).map_err(|_| StoreError::Corrupt(format!("{column} is {i}, out of range")))
}

pub(super) fn hash32(v: Value, column: &str) -> Result<[u8; 32], StoreError> {
    let b = blob(v, column)?;
    b[..]
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{column} is {} bytes, not 32", b.len())))
}
