//! authenticatorLargeBlobs (CTAP 2.1 §6.10): the serialized large-blob array, read and written
//! in fragments.

use sha2::{Digest, Sha256};

use crate::ctap::command;
use crate::ctap::large_blobs::{Request, Response};
use crate::ctap::ok_with;
use crate::ctap::{CtapError, CtapResult};

use super::{Authenticator, Reply};
use crate::pin::Permissions;

/// The most a serialized large-blob array may hold.
pub(crate) const MAX_SERIALIZED_LARGE_BLOB_ARRAY: usize = 4096;

/// A write in progress: the fragments so far and the total announced at offset 0.
pub(crate) struct PendingWrite {
    expected_length: usize,
    buffer: Vec<u8>,
}

impl Authenticator {
    fn max_fragment(&self) -> usize {
        self.config.max_msg_size - 64
    }

    pub(crate) fn large_blobs(&mut self, req: Request) -> Reply {
        match (req.get, &req.set) {
            (Some(get), None) => self.large_blobs_get(&req, get),
            (None, Some(_)) => self.large_blobs_set(&req),
            _ => Err(CtapError::InvalidParameter),
        }
    }

    fn large_blobs_get(&mut self, req: &Request, get: u64) -> Reply {
        if req.length.is_some()
            || req.pin_uv_auth.param.is_some()
            || req.pin_uv_auth.protocol.is_some()
        {
            return Err(CtapError::InvalidParameter);
        }
        if get as usize > self.max_fragment() {
            return Err(CtapError::InvalidLength);
        }
        let array = self.store.load_large_blob_array()?;
        let offset = usize::try_from(req.offset).map_err(|_| CtapError::InvalidParameter)?;
        if offset > array.len() {
            return Err(CtapError::InvalidParameter);
        }
        let end = offset.saturating_add(get as usize).min(array.len());
        Ok(ok_with(
            Response {
                config: array[offset..end].to_vec(),
            }
            .to_value(),
        ))
    }

    fn large_blobs_set(&mut self, req: &Request) -> Reply {
        let set = req.set.as_deref().unwrap_or_default();
        if set.len() > self.max_fragment() {
            return Err(CtapError::InvalidLength);
        }
        let offset = usize::try_from(req.offset).map_err(|_| CtapError::InvalidParameter)?;
        if offset == 0 {
            let length = req.length.ok_or(CtapError::InvalidParameter)?;
            if length as usize > MAX_SERIALIZED_LARGE_BLOB_ARRAY {
                return Err(CtapError::LargeBlobStorageFull);
            }
            if length < 17 {
                return Err(CtapError::InvalidParameter);
            }
            self.volatile.large_blob_write = Some(PendingWrite {
                expected_length: length as usize,
                buffer: Vec::new(),
            });
        } else {
            if req.length.is_some() {
                return Err(CtapError::InvalidParameter);
            }
            let next = self
                .volatile
                .large_blob_write
                .as_ref()
                .map(|w| w.buffer.len());
            if next != Some(offset) {
                return Err(CtapError::InvalidSeq);
            }
        }
        if self.uv_configured()? {
            self.check_large_blob_token(req, offset, set)?;
        }
        let write = self
            .volatile
            .large_blob_write
            .as_mut()
            .ok_or(CtapError::InvalidSeq)?;
        if offset + set.len() > write.expected_length {
            return Err(CtapError::InvalidParameter);
        }
        write.buffer.extend_from_slice(set);
        if write.buffer.len() == write.expected_length {
            let write = self.volatile.large_blob_write.take().expect("present");
            let (body, check) = write.buffer.split_at(write.buffer.len() - 16);
            if Sha256::digest(body)[..16] != *check {
                return Err(CtapError::IntegrityFailure);
            }
            self.store.save_large_blob_array(&write.buffer)?;
        }
        Ok(vec![0x00])
    }

    /// pinUvAuthParam = authenticate(token, 32×0xff ‖ h'0c00' ‖ uint32LE(offset) ‖ SHA-256(set)).
    fn check_large_blob_token(
        &mut self,
        req: &Request,
        offset: usize,
        set: &[u8],
    ) -> CtapResult<()> {
        let message = [
            &[0xff; 32][..],
            &[command::LARGE_BLOBS, 0x00],
            &(offset as u32).to_le_bytes(),
            &Sha256::digest(set),
        ]
        .concat();
        self.check_command_token(&req.pin_uv_auth, &message, Permissions::LARGE_BLOB_WRITE)
            .map(|_| ())
    }
}
