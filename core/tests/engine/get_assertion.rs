//! authenticatorGetAssertion and authenticatorGetNextAssertion (CTAP 2.1 §6.2, §6.3): the
//! signature counter, choosing among accounts, and pinUvAuthToken use.

use pocketkey_core::approver::{ApprovalOutcome, Operation};
use pocketkey_core::crypto::master_key::MasterKey;
use pocketkey_core::store::Store;
use pocketkey_testkit::approver::{present, verified};
use pocketkey_testkit::cbor::get_text;
use pocketkey_testkit::cbor::{as_int, get};
use pocketkey_testkit::cose::{EDDSA, ES256};
use pocketkey_testkit::key::Key;
use pocketkey_testkit::pin_platform::permission;
use pocketkey_testkit::requests::{GetAssertion, MakeCredential};
use pocketkey_testkit::sha256;
use pocketkey_testkit::status::*;

use crate::three_accounts;
use rand_core::{OsRng, RngCore};

#[test]
fn sign_counter_strictly_increases_and_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pocketkey.sqlite");
    let master = MasterKey::generate();
    let mut counts = Vec::new();

    let (rk_id, rk_key, nrk_id, nrk_key) = {
        let mut key = Key::with_store(Store::open(&path, &master).unwrap(), &master, true);
        key.queue([verified(), present()]);
        let rk = key
            .register(
                &MakeCredential::typical("example.com", "alice")
                    .rk(true)
                    .uv(true),
            )
            .unwrap();
        let nrk = key
            .register(&MakeCredential::typical("example.com", "bob").algs([EDDSA]))
            .unwrap();
        counts.extend([rk.parsed.sign_count, nrk.parsed.sign_count]);
        for _ in 0..3 {
            let ga = GetAssertion::typical("example.com").allow(nrk.id());
            key.queue([present()]);
            let a = key.assert(&ga).unwrap();
            a.verify(nrk.key(), "example.com", &ga.client_data_hash);
            counts.push(a.parsed.sign_count);
        }
        (rk.id(), rk.key().clone(), nrk.id(), nrk.key().clone())
    };

    // A new process: the same file, the same master key.
    let mut key = Key::with_store(Store::open(&path, &master).unwrap(), &master, true);
    let ga = GetAssertion::typical("example.com").uv(true);
    key.queue([verified()]);
    let a = key.assert(&ga).unwrap();
    assert_eq!(
        a.credential_id, rk_id,
        "the discoverable credential is still there"
    );
    a.verify(&rk_key, "example.com", &ga.client_data_hash);
    counts.push(a.parsed.sign_count);
    let ga = GetAssertion::typical("example.com").allow(&nrk_id);
    key.queue([present()]);
    let a = key.assert(&ga).unwrap();
    a.verify(&nrk_key, "example.com", &ga.client_data_hash);
    counts.push(a.parsed.sign_count);

    assert!(
        counts.windows(2).all(|w| w[0] < w[1]),
        "counter must strictly increase: {counts:?}"
    );
    assert!(counts[0] >= 1);
}

#[test]
fn several_discoverable_accounts_are_offered_and_the_chosen_one_is_returned() {
    let mut key = Key::new();
    let regs = three_accounts(&mut key);
    key.seen();

    let ga = GetAssertion::typical("example.com").uv(true);
    key.queue([ApprovalOutcome::Verified {
        account: Some(1),
        proof: None,
    }]);
    let a = key.assert(&ga).unwrap();
    let r = key.seen().pop().unwrap();
    assert_eq!(r.operation, Operation::SignIn);
    assert_eq!(r.rp_id.as_deref(), Some("example.com"));
    let mut names: Vec<_> = r
        .accounts
        .iter()
        .map(|c| c.user_name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["alice", "bob", "carol"]);
    for c in &r.accounts {
        assert_eq!(
            c.display_name.as_deref(),
            Some(format!("{} display", c.user_name.as_ref().unwrap()).as_str())
        );
        assert_eq!(
            c.user_id,
            sha256(c.user_name.as_ref().unwrap().as_bytes())[..16].to_vec()
        );
    }

    // Account 1 as the user saw it is the one signed with.
    let chosen = &r.accounts[1];
    assert_eq!(a.user_id().as_deref(), Some(chosen.user_id.as_slice()));
    assert_eq!(
        a.user_name(),
        chosen.user_name,
        "names are returned after UV"
    );
    assert!(a.user_selected, "userSelected");
    assert!(
        a.number_of_credentials.is_none(),
        "no numberOfCredentials after selection on the authenticator"
    );
    let reg = regs
        .iter()
        .find(|g| g.parsed.credential_id.as_deref() == Some(&a.credential_id[..]))
        .unwrap();
    a.verify(reg.key(), "example.com", &ga.client_data_hash);
    assert!(a.parsed.uv());
    // Nothing left to iterate.
    assert_eq!(key.next_assertion().err(), Some(NOT_ALLOWED));
}

#[test]
fn without_a_choice_every_account_comes_through_get_next_assertion() {
    let mut key = Key::new();
    let regs = three_accounts(&mut key);
    key.seen();
    let ga = GetAssertion::typical("example.com");
    key.queue([present()]);
    let first = key.assert(&ga).unwrap();
    assert_eq!(first.number_of_credentials, Some(3));
    assert!(!first.user_selected);
    let mut all = vec![first];
    all.push(key.next_assertion().unwrap());
    all.push(key.next_assertion().unwrap());
    assert_eq!(key.next_assertion().err(), Some(NOT_ALLOWED));
    // Most recently created first (§6.2.2: credentials ordered by creation time, newest first).
    let order: Vec<_> = all.iter().map(|a| a.credential_id.clone()).collect();
    assert_eq!(order, vec![regs[2].id(), regs[1].id(), regs[0].id()]);
    let mut ids: Vec<_> = all.iter().map(|a| a.credential_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    for a in &all {
        let reg = regs.iter().find(|g| g.id() == a.credential_id).unwrap();
        a.verify(reg.key(), "example.com", &ga.client_data_hash);
        assert!(a.parsed.up() && !a.parsed.uv());
        // No UV: no user-identifiable information (§6.2.2 step 12), only the handle.
        assert!(a.user_id().is_some());
        assert_eq!(a.user_name(), None);
        assert!(a
            .user
            .as_ref()
            .and_then(|u| get_text(u, "displayName"))
            .is_none());
    }
    assert!(all
        .windows(2)
        .all(|w| w[0].parsed.sign_count < w[1].parsed.sign_count));
    assert_eq!(
        key.seen().len(),
        1,
        "one approval for the whole enumeration"
    );
}

#[test]
fn get_next_assertion_without_a_pending_list_is_not_allowed() {
    let mut key = Key::new();
    assert_eq!(key.next_assertion().err(), Some(NOT_ALLOWED));
}

/// CTAP 2.1 §6.2.2: the token's flags and permissions are cleared in the user-presence step,
/// so a silent (up=false) assertion leaves the token usable; a normal one spends it.
#[test]
fn silent_assertion_does_not_spend_the_token() {
    let mut key = Key::new();
    key.queue([present()]);
    let reg = key
        .register(&MakeCredential::typical("example.com", "alice"))
        .unwrap();
    key.queue([verified()]);
    let token = key
        .uv_token(2, permission::GET_ASSERTION, Some("example.com"))
        .unwrap();
    key.seen();

    let mut silent = GetAssertion::typical("example.com").allow(reg.id());
    silent.up = Some(false);
    silent.pin_uv_auth = Some(token.param(&silent.client_data_hash));
    let a = key.assert(&silent).unwrap();
    a.verify(reg.key(), "example.com", &silent.client_data_hash);
    assert!(
        !a.parsed.up() && a.parsed.uv(),
        "silent: UV from the token, no UP"
    );

    let mut ga = GetAssertion::typical("example.com").allow(reg.id());
    ga.pin_uv_auth = Some(token.param(&ga.client_data_hash));
    let a = key.assert(&ga).unwrap();
    assert!(a.parsed.up() && a.parsed.uv());
    assert!(key.seen().is_empty(), "presence came from the token");

    let mut again = GetAssertion::typical("example.com").allow(reg.id());
    again.pin_uv_auth = Some(token.param(&again.client_data_hash));
    assert_eq!(
        key.assert(&again).err(),
        Some(PIN_AUTH_INVALID),
        "spent by the assertion with up"
    );
}

/// getInfo's promise to platforms that batch allowLists: maxCredentialCountInList IDs of
/// maxCredentialIdLength bytes fit in one request of maxMsgSize (CTAP 2.1 §6.4), so the request
/// is looked at (none of these random IDs is ours: NO_CREDENTIALS), not refused for its length.
/// And the IDs made are no longer than announced.
#[test]
fn an_allow_list_of_the_announced_size_fits_one_message() {
    let mut key = Key::new();
    let info = key.info();
    let count = as_int(get(&info, 0x07).expect("maxCredentialCountInList")) as usize;
    let id_len = as_int(get(&info, 0x08).expect("maxCredentialIdLength")) as usize;
    let ids: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            let mut id = vec![0u8; id_len];
            OsRng.fill_bytes(&mut id);
            id
        })
        .collect();
    let mut ga = GetAssertion::typical("a-relying-party-with-a-long-name.example.com");
    for id in &ids {
        ga = ga.allow(id);
    }
    assert_eq!(key.assert(&ga).err(), Some(NO_CREDENTIALS));
    for alg in [ES256, EDDSA] {
        key.queue([present()]);
        let reg = key
            .register(&MakeCredential::typical("example.com", "alice").algs([alg]))
            .unwrap();
        assert!(reg.id().len() <= id_len, "{alg}: {} bytes", reg.id().len());
    }
    key.assert_script_used_up();
}
