//! authenticatorCredentialManagement (CTAP 2.1 §6.8).

use pocketkey_testkit::cbor::{as_int, bytes, encode, get, imap, int};
use pocketkey_testkit::command;
use pocketkey_testkit::cose::PublicKey;
use pocketkey_testkit::key::Key;
use pocketkey_testkit::pin_platform::permission;
use pocketkey_testkit::sha256;
use pocketkey_testkit::status::*;

use crate::three_accounts;

#[test]
fn credential_management_through_the_0x41_alias() {
    let mut key = Key::new();
    three_accounts(&mut key);
    key.set_pin(2, "1234").unwrap();
    let token = key
        .pin_token(2, "1234", Some((permission::CREDENTIAL_MANAGEMENT, None)))
        .unwrap();
    // getCredsMetadata: pinUvAuthParam = authenticate(token, 0x01).
    let (param, protocol) = token.param(&[0x01]);
    let r = key
        .call(
            command::CREDENTIAL_MANAGEMENT_PREVIEW,
            Some(&imap(vec![
                (1, int(1)),
                (3, int(protocol as i64)),
                (4, bytes(&param)),
            ])),
        )
        .unwrap();
    assert_eq!(as_int(get(&r, 1).unwrap()), 3);
    // enumerateCredentialsBegin for example.com: subCommandParams {1: rpIdHash}.
    let params = imap(vec![(1, bytes(&sha256(b"example.com")))]);
    let (param, _) = token.param(&[&[0x04][..], &encode(&params)].concat());
    let r = key
        .call(
            command::CREDENTIAL_MANAGEMENT,
            Some(&imap(vec![
                (1, int(4)),
                (2, params),
                (3, int(2)),
                (4, bytes(&param)),
            ])),
        )
        .unwrap();
    assert_eq!(as_int(get(&r, 9).unwrap()), 3);
    PublicKey::from_cose(get(&r, 8).unwrap());
    let next = key
        .call(
            command::CREDENTIAL_MANAGEMENT_PREVIEW,
            Some(&imap(vec![(1, int(5))])),
        )
        .unwrap();
    assert!(get(&next, 6).is_some());
    // Without a token: PUAT_REQUIRED.
    assert_eq!(
        key.call(
            command::CREDENTIAL_MANAGEMENT,
            Some(&imap(vec![(1, int(1))]))
        )
        .err(),
        Some(PUAT_REQUIRED)
    );
}
