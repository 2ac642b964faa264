//! The engine under test as a platform drives it: real CTAP2 and U2F requests through
//! `Authenticator::process_cbor` and `process_u2f`, approvals from a [`ScriptedApprover`], and
//! the clientPIN subcommands (CTAP 2.1 §6.5.5) done with [`crate::pin_platform`].

use std::sync::{Arc, Mutex};

use ciborium::value::Value;
use pocketkey_core::approver::{ApprovalOutcome, ApprovalRequest, Requester, UvBinding};
use pocketkey_core::authenticator::{Authenticator, Config, RequestContext};
use pocketkey_core::cancel::CancelToken;
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;

use crate::approver::{Answer, Script, ScriptedApprover};

const SOFTWARE: UvBinding = UvBinding::Software {
    reason: "a test script answers",
};
use crate::cbor::{as_int, bytes, get, imap, int, text};
use crate::command;
use crate::pin_platform::{padded, pin_hash, Shared, Token};
use crate::requests::{GetAssertion, MakeCredential};
use crate::responses::{decode_response, Assertion, Registration};

/// clientPIN subcommands (CTAP 2.1 §6.5.5).
mod subcommand {
    pub const GET_PIN_RETRIES: i64 = 0x01;
    pub const GET_KEY_AGREEMENT: i64 = 0x02;
    pub const SET_PIN: i64 = 0x03;
    pub const CHANGE_PIN: i64 = 0x04;
    pub const GET_PIN_TOKEN: i64 = 0x05;
    pub const GET_PIN_UV_AUTH_TOKEN_USING_UV_WITH_PERMISSIONS: i64 = 0x06;
    pub const GET_UV_RETRIES: i64 = 0x07;
    pub const GET_PIN_UV_AUTH_TOKEN_USING_PIN_WITH_PERMISSIONS: i64 = 0x09;
}

/// An authenticator with a scripted approver, asked by "Work laptop".
pub struct Key {
    pub auth: Authenticator,
    pub script: Arc<Mutex<Script>>,
    pub cx: RequestContext,
}

impl Key {
    /// In-memory store, built-in UV available.
    pub fn new() -> Self {
        Self::in_memory(true)
    }

    pub fn in_memory(can_verify: bool) -> Self {
        let master = MasterKey::generate();
        Self::with_store(Store::open_in_memory(&master).unwrap(), &master, can_verify)
    }

    pub fn with_store(store: Store, master: &MasterKey, can_verify: bool) -> Self {
        Self::with_config(store, master, can_verify, Config::default())
    }

    pub fn with_config(store: Store, master: &MasterKey, can_verify: bool, config: Config) -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let approver = ScriptedApprover {
            can_verify,
            binding: SOFTWARE,
            script: script.clone(),
        };
        let auth = Authenticator::new(store, master, Box::new(approver), config).unwrap();
        let cx = RequestContext {
            cancel: CancelToken::new(),
            requester: Requester("Work laptop".into()),
        };
        Self { auth, script, cx }
    }

    /// A key whose approver is hardware-bound ([`UvBinding::Hardware`]): verified answers
    /// count only with a proof by the registered UV key. In-memory store; no UV key yet.
    pub fn hardware_bound() -> Self {
        let master = MasterKey::generate();
        let store = Store::open_in_memory(&master).unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let approver = ScriptedApprover {
            can_verify: true,
            binding: UvBinding::Hardware,
            script: script.clone(),
        };
        let auth =
            Authenticator::new(store, &master, Box::new(approver), Config::default()).unwrap();
        let cx = RequestContext {
            cancel: CancelToken::new(),
            requester: Requester("Work laptop".into()),
        };
        Self { auth, script, cx }
    }

    /// Outcomes for the next approvals, in order.
    pub fn queue(&self, outcomes: impl IntoIterator<Item = ApprovalOutcome>) {
        self.answer_with(outcomes.into_iter().map(Answer::Fixed));
    }

    /// Answers for the next approvals, in order (see [`Answer`]).
    pub fn answer_with(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().queue.extend(answers);
    }

    /// The approval requests shown since the last call.
    pub fn seen(&self) -> Vec<ApprovalRequest> {
        std::mem::take(&mut self.script.lock().unwrap().seen)
    }

    pub fn assert_script_used_up(&self) {
        let s = self.script.lock().unwrap();
        assert!(
            s.queue.is_empty(),
            "scripted outcomes left unused: {:?}",
            s.queue
        );
    }

    /// The engine's answer to `request` as it is, unchecked.
    pub fn raw(&mut self, request: &[u8]) -> Vec<u8> {
        self.auth.process_cbor(request, &self.cx)
    }

    /// Sends `cmd ‖ CBOR(params)` and checks the answer with [`decode_response`];
    /// `Ok(Value::Null)` for a bare success status.
    pub fn call(&mut self, cmd: u8, params: Option<&Value>) -> Result<Value, u8> {
        let mut request = vec![cmd];
        if let Some(p) = params {
            ciborium::ser::into_writer(p, &mut request).unwrap();
        }
        let response = self.raw(&request);
        decode_response(&response)
    }

    /// A U2F APDU: the response data and the status word.
    pub fn u2f(&mut self, apdu: &[u8]) -> (Vec<u8>, u16) {
        let mut out = self.auth.process_u2f(apdu, &self.cx);
        assert!(out.len() >= 2, "U2F response without status word");
        let sw = u16::from_be_bytes([out[out.len() - 2], out[out.len() - 1]]);
        out.truncate(out.len() - 2);
        (out, sw)
    }

    pub fn info(&mut self) -> Value {
        self.call(command::GET_INFO, None).unwrap()
    }

    pub fn register(&mut self, mc: &MakeCredential) -> Result<Registration, u8> {
        self.call(command::MAKE_CREDENTIAL, Some(&mc.to_cbor()))
            .map(|v| Registration::parse(&v))
    }

    pub fn assert(&mut self, ga: &GetAssertion) -> Result<Assertion, u8> {
        self.call(command::GET_ASSERTION, Some(&ga.to_cbor()))
            .map(|v| Assertion::parse(&v))
    }

    pub fn next_assertion(&mut self) -> Result<Assertion, u8> {
        self.call(command::GET_NEXT_ASSERTION, None)
            .map(|v| Assertion::parse(&v))
    }

    pub fn client_pin(&mut self, params: Vec<(i64, Value)>) -> Result<Value, u8> {
        self.call(command::CLIENT_PIN, Some(&imap(params)))
    }

    pub fn key_agreement(&mut self, protocol: u64) -> Shared {
        let r = self
            .client_pin(vec![
                (1, int(protocol as i64)),
                (2, int(subcommand::GET_KEY_AGREEMENT)),
            ])
            .unwrap();
        Shared::encapsulate(protocol, get(&r, 1).expect("keyAgreement"))
    }

    pub fn set_pin(&mut self, protocol: u64, pin: &str) -> Result<(), u8> {
        let shared = self.key_agreement(protocol);
        let new_pin_enc = shared.encrypt(&padded(pin));
        let param = shared.authenticate(&new_pin_enc);
        self.client_pin(vec![
            (1, int(protocol as i64)),
            (2, int(subcommand::SET_PIN)),
            (3, shared.cose.clone()),
            (4, bytes(&param)),
            (5, bytes(&new_pin_enc)),
        ])
        .map(|r| {
            assert!(
                matches!(&r, Value::Null) || r == Value::Map(vec![]),
                "setPIN answers with no data: {r:?}"
            )
        })
    }

    pub fn change_pin(&mut self, protocol: u64, old: &str, new: &str) -> Result<(), u8> {
        let shared = self.key_agreement(protocol);
        let new_pin_enc = shared.encrypt(&padded(new));
        let pin_hash_enc = shared.encrypt(&pin_hash(old));
        let param = shared.authenticate(&[&new_pin_enc[..], &pin_hash_enc].concat());
        self.client_pin(vec![
            (1, int(protocol as i64)),
            (2, int(subcommand::CHANGE_PIN)),
            (3, shared.cose.clone()),
            (4, bytes(&param)),
            (5, bytes(&new_pin_enc)),
            (6, bytes(&pin_hash_enc)),
        ])
        .map(|_| ())
    }

    /// getPinToken (0x05) when `permissions` is None, else
    /// getPinUvAuthTokenUsingPinWithPermissions (0x09) with the permissions and the rpId.
    pub fn pin_token(
        &mut self,
        protocol: u64,
        pin: &str,
        permissions: Option<(u64, Option<&str>)>,
    ) -> Result<Token, u8> {
        let shared = self.key_agreement(protocol);
        let pin_hash_enc = shared.encrypt(&pin_hash(pin));
        let mut params = vec![
            (1, int(protocol as i64)),
            (3, shared.cose.clone()),
            (6, bytes(&pin_hash_enc)),
        ];
        match permissions {
            None => params.push((2, int(subcommand::GET_PIN_TOKEN))),
            Some((perms, rp_id)) => {
                params.push((
                    2,
                    int(subcommand::GET_PIN_UV_AUTH_TOKEN_USING_PIN_WITH_PERMISSIONS),
                ));
                params.push((9, int(perms as i64)));
                if let Some(rp) = rp_id {
                    params.push((10, text(rp)));
                }
            }
        }
        let r = self.client_pin(params)?;
        Ok(Token::from_response(&shared, &r))
    }

    /// getPinUvAuthTokenUsingUvWithPermissions (0x06): the built-in UV path.
    pub fn uv_token(
        &mut self,
        protocol: u64,
        permissions: u64,
        rp_id: Option<&str>,
    ) -> Result<Token, u8> {
        let shared = self.key_agreement(protocol);
        let mut params = vec![
            (1, int(protocol as i64)),
            (
                2,
                int(subcommand::GET_PIN_UV_AUTH_TOKEN_USING_UV_WITH_PERMISSIONS),
            ),
            (3, shared.cose.clone()),
            (9, int(permissions as i64)),
        ];
        if let Some(rp) = rp_id {
            params.push((10, text(rp)));
        }
        let r = self.client_pin(params)?;
        Ok(Token::from_response(&shared, &r))
    }

    /// pinRetries and powerCycleState (getPINRetries).
    pub fn pin_retries(&mut self) -> (i128, bool) {
        let r = self
            .client_pin(vec![(2, int(subcommand::GET_PIN_RETRIES))])
            .unwrap();
        let power_cycle = match get(&r, 4) {
            Some(Value::Bool(b)) => *b,
            None => false,
            other => panic!("powerCycleState: {other:?}"),
        };
        (as_int(get(&r, 3).expect("pinRetries")), power_cycle)
    }

    pub fn uv_retries(&mut self) -> i128 {
        let r = self
            .client_pin(vec![(2, int(subcommand::GET_UV_RETRIES))])
            .unwrap();
        as_int(get(&r, 5).expect("uvRetries"))
    }
}

impl Default for Key {
    fn default() -> Self {
        Self::new()
    }
}
