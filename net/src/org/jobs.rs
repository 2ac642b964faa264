//! Registrations on the user's behalf, the phone's side (docs/org.md, "Registering on the
//! user's behalf"): a sync answer's jobs, the authenticatorMakeCredential request each one is
//! run as through the engine, the attestation object made from the engine's answer, and the
//! signed post of the outcome. Shared by the CLI (`pocketkey org sync`) and the app facade.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use ciborium::value::{Integer, Value};
use pocketkey_core::org_protocol;
use pocketkey_core::store::OrgIdentity;
use url::Url;

use super::{http, protocol, refusal, OrgClientError};

/// authenticatorMakeCredential's command byte and request keys (CTAP 2.1 §6.1; 0x0B is
/// CTAP 2.2's attestationFormatsPreference).
const MAKE_CREDENTIAL: u8 = 0x01;
const CLIENT_DATA_HASH: i64 = 0x01;
const RP: i64 = 0x02;
const USER: i64 = 0x03;
const PUB_KEY_CRED_PARAMS: i64 = 0x04;
const EXCLUDE_LIST: i64 = 0x05;
const OPTIONS: i64 = 0x07;
const ENTERPRISE_ATTESTATION: i64 = 0x0A;
const ATTESTATION_FORMATS_PREFERENCE: i64 = 0x0B;
/// Response keys (CTAP 2.1 §6.1).
const FMT: i64 = 0x01;
const AUTH_DATA: i64 = 0x02;
const ATT_STMT: i64 = 0x03;
/// CTAP2_ERR_OPERATION_DENIED: the person said no.
pub const STATUS_OPERATION_DENIED: u8 = 0x27;

use pocketkey_core::org_protocol::wire::{Job, RegistrationResult};
pub use pocketkey_core::org_protocol::wire::{JobRp, JobUser, RegistrationJob};

/// The server's text as a prompt may show it. Control characters (a newline could fake a
/// second line) and the bidirectional controls (U+202E could show "elpmaxe.evil" as
/// "live.example") become '?'.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// The phone's side of a registration job (the type itself is the wire type both sides
/// share): the prompt it shows and the request it runs through the engine.
pub trait RegistrationJobExt {
    /// The approval prompt: who asks, for which site, for which account.
    fn prompt(&self) -> String;
    /// The authenticatorMakeCredential request (command byte ‖ CBOR) for this job.
    /// `enterprise_available`: the key holds an enterprise attestation key (the engine
    /// refuses the parameter otherwise); whether this RP gets it is the engine's decision.
    fn make_credential_request(
        &self,
        enterprise_available: bool,
    ) -> Result<Vec<u8>, OrgClientError>;
}

impl RegistrationJobExt for RegistrationJob {
    fn prompt(&self) -> String {
        format!(
            "{} asks to register this key with {} for {}",
            printable(&self.org_name),
            printable(&self.rp.id),
            printable(&self.user.name)
        )
    }

    fn make_credential_request(
        &self,
        enterprise_available: bool,
    ) -> Result<Vec<u8>, OrgClientError> {
        let bytes = |field: &str, v: &str| {
            B64URL
                .decode(v)
                .map_err(|_| protocol(format!("job {field} is not base64url")))
        };
        let text = |s: &str| Value::Text(s.to_string());
        let int = |i: i64| Value::Integer(Integer::from(i));
        let map = |entries: Vec<(Value, Value)>| Value::Map(entries);
        let mut request = vec![
            (
                int(CLIENT_DATA_HASH),
                Value::Bytes(bytes("client_data_hash", &self.client_data_hash)?),
            ),
            (
                int(RP),
                map(vec![
                    (text("id"), text(&self.rp.id)),
                    (text("name"), text(&self.rp.name)),
                ]),
            ),
            (
                int(USER),
                map(vec![
                    (text("id"), Value::Bytes(bytes("user.id", &self.user.id)?)),
                    (text("name"), text(&self.user.name)),
                    (text("displayName"), text(&self.user.display_name)),
                ]),
            ),
            (
                int(PUB_KEY_CRED_PARAMS),
                Value::Array(
                    self.algorithms
                        .iter()
                        .map(|&alg| {
                            map(vec![
                                (text("alg"), int(alg)),
                                (text("type"), text("public-key")),
                            ])
                        })
                        .collect(),
                ),
            ),
        ];
        if !self.exclude_credentials.is_empty() {
            let list = self
                .exclude_credentials
                .iter()
                .map(|id| {
                    Ok(map(vec![
                        (text("id"), Value::Bytes(bytes("exclude_credentials", id)?)),
                        (text("type"), text("public-key")),
                    ]))
                })
                .collect::<Result<Vec<_>, OrgClientError>>()?;
            request.push((int(EXCLUDE_LIST), Value::Array(list)));
        }
        let mut options = vec![(text("rk"), Value::Bool(self.resident_key))];
        // The person is asked on the phone whatever the RP wants; "discouraged" only means
        // the RP does not need the verified flag.
        if self.user_verification != "discouraged" {
            options.push((text("uv"), Value::Bool(true)));
        }
        request.push((int(OPTIONS), map(options)));
        match self.attestation.as_str() {
            // Vendor-facilitated (CTAP 2.1 §7.1): granted by the engine only for the policy's
            // enterprise RP ids; otherwise it answers with the batch statement.
            "enterprise" if enterprise_available => {
                request.push((int(ENTERPRISE_ATTESTATION), int(1)))
            }
            "direct" | "enterprise" => {}
            // WebAuthn "none"/"indirect": the engine is asked for the "none" format.
            _ => request.push((
                int(ATTESTATION_FORMATS_PREFERENCE),
                Value::Array(vec![text("none")]),
            )),
        }
        let mut out = vec![MAKE_CREDENTIAL];
        ciborium::into_writer(&map(request), &mut out).map_err(protocol)?;
        Ok(out)
    }
}

/// What the phone made of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed {
        credential_id: Vec<u8>,
        attestation_object: Vec<u8>,
    },
    Denied,
}

/// The engine's answer (status ‖ CBOR) as an outcome: the WebAuthn attestation object
/// (`fmt`, `attStmt`, `authData`, WebAuthn L2 §6.5) and the credential id inside it; the
/// person's "no" (CTAP2_ERR_OPERATION_DENIED) as `Denied`; any other status an error.
pub fn outcome_from_response(response: &[u8]) -> Result<Outcome, OrgClientError> {
    let (&status, cbor) = response
        .split_first()
        .ok_or_else(|| protocol("the engine answered nothing"))?;
    match status {
        0 => {}
        STATUS_OPERATION_DENIED => return Ok(Outcome::Denied),
        other => {
            return Err(OrgClientError::Protocol(format!(
                "the key refused the registration: CTAP status 0x{other:02x}"
            )))
        }
    }
    let value: Value = ciborium::from_reader(cbor).map_err(protocol)?;
    let Value::Map(entries) = value else {
        return Err(protocol("makeCredential's answer is not a map"));
    };
    let take = |key: i64| {
        entries
            .iter()
            .find(|(k, _)| k.as_integer() == Some(Integer::from(key)))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| protocol(format!("makeCredential's answer lacks key {key}")))
    };
    let (fmt, auth_data, att_stmt) = (take(FMT)?, take(AUTH_DATA)?, take(ATT_STMT)?);
    let data = auth_data
        .as_bytes()
        .ok_or_else(|| protocol("authData is not bytes"))?;
    // rpIdHash (32) ‖ flags ‖ signCount (4) ‖ aaguid (16) ‖ idLength (2) ‖ id (§6.5.1).
    let len = data
        .get(53..55)
        .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        .ok_or_else(|| protocol("authData is too short"))?;
    let credential_id = data
        .get(55..55 + len)
        .ok_or_else(|| protocol("authData's credential id is cut short"))?
        .to_vec();
    let object = Value::Map(vec![
        (Value::Text("fmt".into()), fmt),
        (Value::Text("attStmt".into()), att_stmt),
        (Value::Text("authData".into()), auth_data),
    ]);
    let mut attestation_object = Vec::new();
    ciborium::into_writer(&object, &mut attestation_object).map_err(protocol)?;
    Ok(Outcome::Completed {
        credential_id,
        attestation_object,
    })
}

/// The sync answer's `jobs`: the registrations among them (kinds this phone does not know
/// are left for a newer one).
pub(super) fn registrations(jobs: Vec<Job>) -> Vec<RegistrationJob> {
    jobs.into_iter()
        .filter_map(|job| match job {
            Job::Registration(r) => Some(r),
            Job::Unknown => None,
        })
        .collect()
}

/// Posts the outcome of registration `job_id`, signed by the device key over a fresh
/// single-use challenge (as a sync is).
pub fn post_outcome(
    identity: &OrgIdentity,
    job_id: &str,
    outcome: &Outcome,
) -> Result<(), OrgClientError> {
    let server =
        Url::parse(&identity.server_url).map_err(|e| OrgClientError::InvalidLink(e.to_string()))?;
    let nonce = super::challenge(&server, &identity.key_id)?;
    let (name, credential_id, attestation_object): (&str, &[u8], &[u8]) = match outcome {
        Outcome::Completed {
            credential_id,
            attestation_object,
        } => ("completed", credential_id, attestation_object),
        Outcome::Denied => ("denied", &[], &[]),
    };
    let signature = identity
        .device_key
        .sign(&org_protocol::registration_signed_bytes(
            &identity.key_id,
            &nonce,
            job_id,
            name,
            credential_id,
            attestation_object,
        ));
    let completed = matches!(outcome, Outcome::Completed { .. });
    let body = serde_json::to_vec(&RegistrationResult {
        key_id: identity.key_id.clone(),
        nonce,
        signature: B64.encode(signature),
        outcome: name.to_string(),
        credential_id: completed.then(|| B64URL.encode(credential_id)),
        attestation_object: completed.then(|| B64URL.encode(attestation_object)),
    })
    .map_err(protocol)?;
    let path = format!("/api/v1/device/registrations/{job_id}");
    let (status, answer) = http::exchange(&server, "POST", &path, Some(&body))?;
    if status != 200 {
        return Err(refusal(status, &answer));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> RegistrationJob {
        RegistrationJob {
            id: "r1".into(),
            org_name: "Acme IT".into(),
            origin: "https://login.microsoft.com".into(),
            rp: JobRp {
                id: "login.microsoft.com".into(),
                name: "Microsoft".into(),
            },
            user: JobUser {
                id: "AQID".into(),
                name: "alice@acme.example".into(),
                display_name: "Alice".into(),
            },
            client_data_hash: B64URL.encode([7u8; 32]),
            algorithms: vec![-7],
            exclude_credentials: vec!["CQk".into()],
            resident_key: true,
            user_verification: "required".into(),
            attestation: "direct".into(),
            expires_at: "2026-12-07T18:00:00Z".into(),
        }
    }

    #[test]
    fn the_prompt_names_the_organisation_the_rp_and_the_account() {
        assert_eq!(
            job().prompt(),
            "Acme IT asks to register this key with login.microsoft.com for alice@acme.example"
        );
    }

    #[test]
    fn text_that_could_fake_the_prompt_is_replaced() {
        assert_eq!(printable("Acme\nIT\u{7}"), "Acme?IT?");
        assert_eq!(printable("evil\u{202E}elpmaxe"), "evil?elpmaxe");
        assert_eq!(printable("a\u{2066}b\u{200F}c"), "a?b?c");
        assert_eq!(printable("alice@acme.example"), "alice@acme.example");
    }

    #[test]
    fn the_request_is_a_make_credential_the_engine_parses() {
        use pocketkey_core::ctap::make_credential::Request;
        let bytes = job().make_credential_request(true).unwrap();
        assert_eq!(bytes[0], MAKE_CREDENTIAL);
        let req = Request::parse(&bytes[1..]).unwrap();
        assert_eq!(req.rp.id, "login.microsoft.com");
        assert_eq!(req.user.id, [1, 2, 3]);
        assert_eq!(req.options.rk, Some(true));
        assert_eq!(req.options.uv, Some(true));
        assert_eq!(req.enterprise_attestation, None, "direct: no enterprise");
        let mut none = job();
        none.attestation = "none".into();
        let req = Request::parse(&none.make_credential_request(true).unwrap()[1..]).unwrap();
        assert_eq!(
            req.attestation_formats_preference,
            Some(vec!["none".to_string()])
        );
        let mut ep = job();
        ep.attestation = "enterprise".into();
        let req = Request::parse(&ep.make_credential_request(true).unwrap()[1..]).unwrap();
        assert_eq!(req.enterprise_attestation, Some(1));
        let req = Request::parse(&ep.make_credential_request(false).unwrap()[1..]).unwrap();
        assert_eq!(req.enterprise_attestation, None);
    }

    #[test]
    fn a_denial_and_an_error_status_are_told_apart() {
        assert_eq!(
            outcome_from_response(&[STATUS_OPERATION_DENIED]).unwrap(),
            Outcome::Denied
        );
        assert!(outcome_from_response(&[0x19]).is_err());
        assert!(outcome_from_response(&[]).is_err());
    }
}
