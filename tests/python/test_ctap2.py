"""Raw CTAP2 commands through python-fido2's Ctap2, with strict canonical-CBOR checking.

Every response goes through RecordingDevice, which decodes it with fido2.cbor, re-encodes
it and demands identical bytes (see pocketkey_udp.RecordingDevice).
"""

from __future__ import annotations

import os

import pytest
from fido2 import cbor
from fido2.ctap2 import ClientPin, Ctap2

from pk_helpers import (
    EDDSA,
    ERR,
    ES256,
    PUBKEY_ES256,
    RS256,
    cdh,
    cred_id,
    cred_key,
    ctap_error,
    get_assertion,
    make_cred,
    rp,
    sha256,
    user,
    uv_token,
    verify_assertion,
)
from pocketkey_udp import check_canonical, raw_cbor

MC, GA, INFO, NEXT = 0x01, 0x02, 0x04, 0x08


def mc_uv(ctap: Ctap2, rp_id: str, **kw):
    """makeCredential authorised by a fresh built-in-UV token scoped to rp_id."""
    tok = uv_token(ctap, ClientPin.PERMISSION.MAKE_CREDENTIAL, rp_id)
    return make_cred(ctap, rp_id, token=tok, **kw)


# --------------------------------------------------------------------------------------
# getInfo


def test_get_info_contents(ctap2):
    info = ctap2.get_info()
    assert set(info.versions) == {"U2F_V2", "FIDO_2_0", "FIDO_2_1"}, info.versions
    assert len(bytes(info.aaguid)) == 16
    opts = info.options
    for name in ("rk", "up", "uv", "pinUvAuthToken", "credMgmt", "authnrCfg", "makeCredUvNotRqd",
                 "largeBlobs"):
        assert opts.get(name) is True, f"option {name} should be true, options={opts}"
    assert "clientPin" in opts, f"clientPin option missing: {opts}"
    assert info.pin_uv_protocols == [2, 1]
    algs = [(a.get("type"), a.get("alg")) for a in info.algorithms]
    assert ("public-key", ES256) in algs and ("public-key", EDDSA) in algs, algs
    for ext in ("credProtect", "hmac-secret", "credBlob", "largeBlobKey", "minPinLength"):
        assert ext in info.extensions, f"extension {ext} missing: {info.extensions}"
    assert info.max_msg_size >= 1024
    assert info.max_cred_blob_length >= 32, "credBlob needs maxCredBlobLength >= 32"
    assert info.max_large_blob >= 1024, "largeBlobs needs maxSerializedLargeBlobArray >= 1024"
    assert info.min_pin_length >= 4


def test_get_info_fresh_key_has_no_pin(ctap2):
    assert ctap2.get_info().options.get("clientPin") is False


def test_get_info_raw_bytes_canonical(device):
    status, _ = raw_cbor(device, INFO)
    assert status == 0
    body = device.log[-1].response[1:]
    decoded = check_canonical(body, "getInfo")
    assert list(decoded.keys()) == sorted(decoded.keys())


# --------------------------------------------------------------------------------------
# makeCredential / getAssertion basics


@pytest.mark.parametrize("alg", [ES256, EDDSA])
def test_make_credential_and_assert(ctap2, alg):
    resp, h, _ = make_cred(ctap2, "basic.example", alg=alg)
    assert resp.fmt == "packed"
    ad = resp.auth_data
    assert ad.rp_id_hash == sha256(b"basic.example")
    assert ad.is_user_present()
    key = cred_key(resp)
    assert key[3] == alg
    ga, h2 = get_assertion(ctap2, "basic.example", allow=[cred_id(resp)])
    verify_assertion(ga, h2, key)
    # One signature counter for the key, durable and never 0 once used (docs/architecture.md
    # §3): the assertion right after the registration gets the next value.
    assert ad.counter >= 1, ad.counter
    assert ga.auth_data.counter == ad.counter + 1, (ad.counter, ga.auth_data.counter)


def test_first_supported_algorithm_is_chosen(ctap2):
    h = cdh()
    resp = ctap2.make_credential(
        h,
        rp("algs.example"),
        user(),
        [{"type": "public-key", "alg": RS256}, {"type": "public-key", "alg": EDDSA},
         {"type": "public-key", "alg": ES256}],
    )
    assert resp.auth_data.credential_data.public_key[3] == EDDSA


def test_missing_client_data_hash(device):
    req = cbor.encode({2: rp(), 3: user(), 4: [PUBKEY_ES256]})
    status, _ = raw_cbor(device, MC, req)
    assert status == ERR.MISSING_PARAMETER, f"got 0x{status:02x}"


@pytest.mark.parametrize("missing", [2, 3, 4])
def test_missing_rp_user_or_params(device, missing):
    params = {1: cdh(), 2: rp(), 3: user(), 4: [PUBKEY_ES256]}
    del params[missing]
    status, _ = raw_cbor(device, MC, cbor.encode(params))
    assert status == ERR.MISSING_PARAMETER, f"key {missing} missing: got 0x{status:02x}"


@pytest.mark.parametrize(
    "field,value",
    [(1, "not bytes"), (2, "not a map"), (3, 42), (4, {"alg": -7}), (7, ["rk"])],
)
def test_wrong_cbor_type(device, field, value):
    params = {1: cdh(), 2: rp(), 3: user(), 4: [PUBKEY_ES256]}
    params[field] = value
    status, _ = raw_cbor(device, MC, cbor.encode(params))
    assert status == ERR.CBOR_UNEXPECTED_TYPE, f"key {field}={value!r}: got 0x{status:02x}"


@pytest.mark.parametrize("entity", [2, 3], ids=["rp", "user"])
@pytest.mark.parametrize("icon", [42, b"https://example.com/icon.png", ["x"], {"url": "x"}])
def test_icon_of_the_wrong_type(device, entity, icon):
    """`icon` (a URL string in CTAP 2.0's RP and user entities) of another CBOR type is
    CBOR_UNEXPECTED_TYPE, as for `name`; a text icon is still accepted (and not kept)."""
    params = {1: cdh(), 2: rp(), 3: user(), 4: [PUBKEY_ES256]}
    params[entity] = {**params[entity], "icon": icon}
    status, _ = raw_cbor(device, MC, cbor.encode(params))
    assert status == ERR.CBOR_UNEXPECTED_TYPE, f"{entity}.icon={icon!r}: got 0x{status:02x}"
    params[entity]["icon"] = "https://example.com/icon.png"
    status, _ = raw_cbor(device, MC, cbor.encode(params))
    assert status == 0, f"text icon: got 0x{status:02x}"


def test_request_not_a_map(device):
    status, _ = raw_cbor(device, MC, cbor.encode([cdh(), rp()]))
    assert status == ERR.CBOR_UNEXPECTED_TYPE, f"got 0x{status:02x}"


@pytest.mark.parametrize(
    "garbage",
    [
        bytes.fromhex("a201"),  # map of two pairs, truncated after one key
        bytes.fromhex("a10158"),  # byte string header without its length byte
        bytes.fromhex("ff"),  # a lone "break"
        bytes.fromhex("a1015820") + b"\x00" * 8,  # 32-byte string with 8 bytes present
    ],
)
def test_garbage_cbor(device, garbage):
    status, _ = raw_cbor(device, MC, garbage)
    assert status == ERR.INVALID_CBOR, f"{garbage.hex()}: got 0x{status:02x}"


@pytest.mark.parametrize("command", [0x03, 0x20, 0x3F, 0x55])
def test_unknown_command_byte(device, command):
    status, _ = raw_cbor(device, command)
    assert status == ERR.INVALID_COMMAND, f"command 0x{command:02x}: got 0x{status:02x}"


def test_unsupported_algorithm_only(ctap2):
    with ctap_error(ERR.UNSUPPORTED_ALGORITHM):
        ctap2.make_credential(cdh(), rp(), user(), [{"type": "public-key", "alg": RS256}])


def test_up_false_in_make_credential_is_invalid(ctap2):
    with ctap_error(ERR.INVALID_OPTION):
        ctap2.make_credential(cdh(), rp(), user(), [PUBKEY_ES256], options={"up": False})


def test_exclude_list_hit(ctap2):
    resp, _, _ = make_cred(ctap2, "exclude.example")
    excl = [{"type": "public-key", "id": cred_id(resp)}]
    with ctap_error(ERR.CREDENTIAL_EXCLUDED):
        make_cred(ctap2, "exclude.example", exclude_list=excl)
    # An excludeList entry of another RP, or an unknown ID, does not block.
    make_cred(ctap2, "other.example", exclude_list=excl)
    make_cred(ctap2, "exclude.example", exclude_list=[{"type": "public-key", "id": os.urandom(64)}])


def test_get_assertion_unknown_rp(ctap2):
    with ctap_error(ERR.NO_CREDENTIALS):
        get_assertion(ctap2, "never-registered.example")


def test_get_assertion_unknown_credential_id(ctap2):
    with ctap_error(ERR.NO_CREDENTIALS):
        get_assertion(ctap2, "example.com", allow=[os.urandom(70)])


def test_get_assertion_other_rps_credential(ctap2):
    resp, _, _ = make_cred(ctap2, "owner.example")
    with ctap_error(ERR.NO_CREDENTIALS):
        get_assertion(ctap2, "thief.example", allow=[cred_id(resp)])


def test_get_assertion_missing_parameters(device):
    status, _ = raw_cbor(device, GA, cbor.encode({2: cdh()}))
    assert status == ERR.MISSING_PARAMETER, f"no rpId: got 0x{status:02x}"
    status, _ = raw_cbor(device, GA, cbor.encode({1: "example.com"}))
    assert status == ERR.MISSING_PARAMETER, f"no clientDataHash: got 0x{status:02x}"


def test_silent_assertion_has_no_up_flag(ctap2):
    resp, _, _ = make_cred(ctap2, "silent.example")
    ga, h = get_assertion(ctap2, "silent.example", allow=[cred_id(resp)], options={"up": False})
    assert not ga.auth_data.is_user_present()
    verify_assertion(ga, h, cred_key(resp))


def test_non_discoverable_credential_is_not_discoverable(ctap2):
    make_cred(ctap2, "nonrk.example")
    with ctap_error(ERR.NO_CREDENTIALS):
        get_assertion(ctap2, "nonrk.example")


def test_discoverable_needs_uv_when_protected(ctap2):
    """The key has built-in UV (uv=true), so it is "protected by user verification": with
    makeCredUvNotRqd a discoverable credential still needs a pinUvAuthToken (§6.1.2)."""
    with ctap_error(ERR.PUAT_REQUIRED):
        make_cred(ctap2, "rk-no-uv.example", rk=True)


# --------------------------------------------------------------------------------------
# getNextAssertion and account selection
#
# CTAP 2.1 §6.2.2 step 12: with several discoverable credentials, an authenticator without
# a display - or with one, when both "up" and "uv" are false - returns numberOfCredentials
# and serves the rest through getNextAssertion. An authenticator with a display (a phone)
# may instead let the user pick one when up/uv is requested, and sets userSelected.

NO_UP = {"up": False}


def three_accounts(ctap2, rp_id):
    created = []
    for name in ("first", "second", "third"):
        resp, _, u = mc_uv(ctap2, rp_id, rk=True, user_entity=user(name))
        created.append((cred_id(resp), cred_key(resp), u))
    return created


def test_get_next_assertion(ctap2):
    rp_id = "multi.example"
    created = three_accounts(ctap2, rp_id)

    first, h = get_assertion(ctap2, rp_id, options=NO_UP)
    assert first.number_of_credentials == 3
    assert not first.user_selected
    responses = [first] + [ctap2.get_next_assertion() for _ in range(2)]
    with ctap_error(ERR.NOT_ALLOWED, "getNextAssertion past the last credential"):
        ctap2.get_next_assertion()

    # Most recently created first.
    expected = list(reversed(created))
    for resp, (cid, key, u) in zip(responses, expected):
        assert resp.credential["id"] == cid
        verify_assertion(resp, h, key)
        assert not resp.auth_data.is_user_present()
        assert resp.user["id"] == u["id"]
        # No user verification → no personally identifying user fields.
        assert "name" not in resp.user and "displayName" not in resp.user, resp.user
    for resp in responses[1:]:
        assert resp.number_of_credentials is None


def test_account_selection_with_user_presence(ctap2):
    """The module's key runs with --auto-approve: presence is given, but no person chose an
    account, so the key behaves as one without a display (§6.2.2 step 12): numberOfCredentials
    and the rest through getNextAssertion, never userSelected."""
    rp_id = "pick.example"
    created = three_accounts(ctap2, rp_id)
    keys = {cid: (key, u) for cid, key, u in created}
    first, h = get_assertion(ctap2, rp_id)
    assert first.auth_data.is_user_present()
    assert not first.user_selected, "nobody picked an account"
    assert first.number_of_credentials == 3
    found = [first] + [ctap2.get_next_assertion() for _ in range(2)]
    with ctap_error(ERR.NOT_ALLOWED, "getNextAssertion past the last credential"):
        ctap2.get_next_assertion()
    assert [a.credential["id"] for a in found] == [cid for cid, _, _ in reversed(created)]
    for a in found:
        assert a.auth_data.is_user_present()
        key, u = keys[a.credential["id"]]
        verify_assertion(a, h, key)
        assert a.user["id"] == u["id"]


def test_two_accounts_with_presence_only_come_back_one_by_one(ctap2):
    rp_id = "two.example"
    for name in ("ann", "bob"):
        mc_uv(ctap2, rp_id, rk=True, user_entity=user(name))
    first, _ = get_assertion(ctap2, rp_id)
    assert first.number_of_credentials == 2 and not first.user_selected
    second = ctap2.get_next_assertion()
    assert first.user["id"] != second.user["id"]
    assert second.number_of_credentials is None


@pytest.mark.parametrize("allow", [False, True], ids=["discoverable", "allowList"])
def test_no_user_names_without_user_verification(ctap2, allow):
    """CTAP 2.1 §6.2.2: "User identifiable information (name, DisplayName, icon) inside the
    publicKeyCredentialUserEntity MUST NOT be returned if user verification is not done by
    the authenticator" - presence only gives the user id alone; with UV the names come."""
    rp_id = f"private-{allow}.example"
    resp, _, u = mc_uv(ctap2, rp_id, rk=True, user_entity=user("carol"))
    allow_list = [cred_id(resp)] if allow else None
    for options in ({}, {"up": False}):
        ga, _ = get_assertion(ctap2, rp_id, allow=allow_list, options=options)
        assert not ga.auth_data.is_user_verified()
        assert ga.user == {"id": u["id"]}, (options, ga.user)
    tok = uv_token(ctap2, ClientPin.PERMISSION.GET_ASSERTION, rp_id)
    ga, _ = get_assertion(ctap2, rp_id, allow=allow_list, token=tok)
    assert ga.auth_data.is_user_verified()
    assert ga.user == {"id": u["id"], "name": "carol", "displayName": "Carol"}, ga.user


def test_get_next_assertion_with_uv_returns_user_details(ctap2):
    rp_id = "multi-uv.example"
    for name in ("ann", "bob"):
        mc_uv(ctap2, rp_id, rk=True, user_entity=user(name))
    tok = uv_token(ctap2, ClientPin.PERMISSION.GET_ASSERTION, rp_id)
    first, _ = get_assertion(ctap2, rp_id, token=tok, options=NO_UP)
    assert first.auth_data.is_user_verified()
    found = [first] + [ctap2.get_next_assertion()
                       for _ in range((first.number_of_credentials or 1) - 1)]
    names = {a.user.get("name") for a in found}
    if first.user_selected:
        assert names <= {"ann", "bob"} and len(names) == 1, names
    else:
        assert names == {"ann", "bob"}, [a.user for a in found]


def test_get_next_assertion_without_get_assertion(ctap2):
    ctap2.get_info()
    with ctap_error(ERR.NOT_ALLOWED):
        ctap2.get_next_assertion()


def test_get_next_assertion_after_other_command(ctap2):
    rp_id = "interrupted.example"
    for name in ("x", "y"):
        mc_uv(ctap2, rp_id, rk=True, user_entity=user(name))
    first, _ = get_assertion(ctap2, rp_id, options=NO_UP)
    assert first.number_of_credentials == 2
    ctap2.get_info()  # any other command ends the getNextAssertion sequence
    with ctap_error(ERR.NOT_ALLOWED):
        ctap2.get_next_assertion()


# --------------------------------------------------------------------------------------
# Canonical CBOR across many responses


def test_all_responses_canonical(pk):
    dev = pk.device(strict=False)
    ctap = Ctap2(dev)
    ctap.get_info()
    for alg in (ES256, EDDSA):
        resp, _, _ = make_cred(ctap, "canon.example", alg=alg,
                               extensions={"credProtect": 2, "hmac-secret": True})
        get_assertion(ctap, "canon.example", allow=[cred_id(resp)])
    mc_uv(ctap, "canon.example", rk=True, extensions={"credBlob": b"blob", "largeBlobKey": True})
    get_assertion(ctap, "canon.example", extensions={"credBlob": True, "largeBlobKey": True})
    cp = ClientPin(ctap)
    cp.get_pin_retries()
    cp.get_uv_retries()
    cp._get_shared_secret()
    checked = [ex for ex in dev.log if ex.response and ex.response[0] == 0 and len(ex.response) > 1]
    assert len(checked) >= 10
    assert dev.violations == [], "\n".join(dev.violations)
