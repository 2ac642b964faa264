//! Discoverable credentials: insert (sealing the secrets), look up, delete, rename, and list
//! the relying parties.

use rusqlite::{params, Connection, OptionalExtension};

use super::counter::bump_counter;
use super::open::Store;
use super::rows::{
    decode_credential, hash32, opt_text, private_key_len_ok, raw_credential, text,
    CREDENTIALS_FOR_RP_SQL, CREDENTIAL_BY_ID_SQL, INSERT_CREDENTIAL_SQL,
};
use super::sealing::CredentialBinding;
use super::types::*;
use super::write_tx::WriteTx;

impl Store {
    /// Stores a credential, replacing any with the same rp_id_hash and user_id (CTAP 2.1 §6.1.2
    /// step 16). Fails with `Full` past [`super::MAX_DISCOVERABLE_CREDENTIALS`].
    pub fn insert_credential(&mut self, cred: &Credential) -> Result<(), StoreError> {
        self.insert_credential_inner(cred, false).map(|_| ())
    }

    /// [`insert_credential`](Self::insert_credential) and [`next_sign_count`](Self::next_sign_count)
    /// in one transaction: a discoverable makeCredential costs one durable commit (one WAL
    /// fsync), not two. Nothing is stored and the counter is unchanged if either fails.
    pub fn insert_credential_and_count(&mut self, cred: &Credential) -> Result<u32, StoreError> {
        self.insert_credential_inner(cred, true)
            .map(|count| count.expect("counted"))
    }

    fn insert_credential_inner(
        &mut self,
        cred: &Credential,
        count: bool,
    ) -> Result<Option<u32>, StoreError> {
        if !private_key_len_ok(cred.private_key.len()) {
            return Err(StoreError::Corrupt(format!(
                "refusing to store a {}-byte private key",
                cred.private_key.len()
            )));
        }
        let binding = CredentialBinding::new(
            &cred.id,
            &cred.rp_id_hash,
            &cred.user_id,
            cred.algorithm.cose_id(),
            cred.cred_protect as i64,
            cred.hmac_secret,
            cred.backup_eligible,
            cred.backup_state,
        );
        let sealed_key = self
            .keys
            .sealer
            .seal(&cred.private_key, &binding.aad("private_key"));
        let sealed_blob = cred
            .cred_blob
            .as_ref()
            .map(|b| self.keys.sealer.seal(b, &binding.aad("cred_blob")));
        let sealed_lbk = cred.large_blob_key.as_ref().map(|k| {
            self.keys
                .sealer
                .seal(&k[..], &binding.aad("large_blob_key"))
        });

        // A replaced credential's key must not stay in memory.
        self.keys.forget_opened_keys();
        let tx = WriteTx::begin(&self.conn)?;
        let replaced = tx
            .prepare_cached("DELETE FROM credentials WHERE rp_id_hash = ?1 AND user_id = ?2")?
            .execute(params![&cred.rp_id_hash[..], cred.user_id])?
            > 0;
        if !replaced && count_credentials(&tx)? >= self.max_credentials {
            return Err(StoreError::Full); // dropping `tx` rolls back
        }
        let seq: i64 = tx
            .prepare_cached(
                "UPDATE store_meta SET next_credential_seq = next_credential_seq + 1 \
                 WHERE id = 0 RETURNING next_credential_seq - 1",
            )?
            .query_row([], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt("store metadata is missing".into()))?;
        tx.prepare_cached(INSERT_CREDENTIAL_SQL)?.execute(params![
            seq,
            cred.id,
            cred.rp_id,
            &cred.rp_id_hash[..],
            cred.rp_name,
            cred.user_id,
            cred.user_name,
            cred.user_display_name,
            cred.algorithm.cose_id(),
            sealed_key,
            cred.cred_protect as i64,
            cred.hmac_secret,
            sealed_blob,
            sealed_lbk,
            cred.backup_eligible,
            cred.backup_state,
            cred.created_at,
        ])?;
        let counter = count.then(|| bump_counter(&tx, &self.keys)).transpose()?;
        tx.commit()?;
        Ok(counter)
    }

    /// Credentials of one RP, most recently created first.
    pub fn credentials_for_rp(&self, rp_id_hash: &[u8; 32]) -> Result<Vec<Credential>, StoreError> {
        let mut stmt = self.conn.prepare_cached(CREDENTIALS_FOR_RP_SQL)?;
        let mut rows = stmt.query([&rp_id_hash[..]])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(decode_credential(&self.keys, raw_credential(row)?)?);
        }
        Ok(out)
    }

    pub fn credential_by_id(&self, id: &[u8]) -> Result<Option<Credential>, StoreError> {
        let raw = self
            .conn
            .prepare_cached(CREDENTIAL_BY_ID_SQL)?
            .query_row([id], raw_credential)
            .optional()?;
        raw.map(|raw| decode_credential(&self.keys, raw))
            .transpose()
    }

    /// Returns whether a credential was deleted.
    pub fn delete_credential(&mut self, id: &[u8]) -> Result<bool, StoreError> {
        self.keys.forget_opened_keys();
        let n = self
            .conn
            .prepare_cached("DELETE FROM credentials WHERE id = ?1")?
            .execute([id])?;
        Ok(n > 0)
    }

    /// Replaces user name and display name (credMgmt updateUserInformation).
    pub fn update_user(
        &mut self,
        id: &[u8],
        name: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE credentials SET user_name = ?2, user_display_name = ?3 WHERE id = ?1",
            )?
            .execute(params![id, name, display_name])?;
        Ok(n > 0)
    }

    /// RPs with discoverable credentials, ordered by RP id.
    ///
    /// The id and name shown are those of the RP's most recently created credential.
    pub fn relying_parties(&self) -> Result<Vec<RelyingParty>, StoreError> {
        // SQLite takes the bare columns of an aggregate query with max() from the max row.
        let mut stmt = self.conn.prepare_cached(
            "SELECT rp_id_hash, rp_id, rp_name, max(seq), count(*) FROM credentials \
             GROUP BY rp_id_hash ORDER BY rp_id, rp_id_hash",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id_hash = hash32(r.get(0)?, "rp_id_hash")?;
            let id = text(r.get(1)?, "rp_id")?;
            let name = opt_text(r.get(2)?, "rp_name")?;
            let count = r.get::<_, i64>(4)?;
            let credential_count = u32::try_from(count)
                .map_err(|_| StoreError::Corrupt(format!("credential count {count} is invalid")))?;
            out.push(RelyingParty {
                id,
                id_hash,
                name,
                credential_count,
            });
        }
        Ok(out)
    }

    pub fn credential_count(&self) -> Result<u32, StoreError> {
        count_credentials(&self.conn)
    }
}

fn count_credentials(conn: &Connection) -> Result<u32, StoreError> {
    let n: Option<i64> = conn
        .prepare_cached("SELECT credential_count FROM store_meta WHERE id = 0")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let n = n.ok_or_else(|| StoreError::Corrupt("store metadata is missing".into()))?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("credential count {n} is invalid")))
}
