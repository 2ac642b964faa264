"""authenticatorCredentialManagement (CTAP 2.1 §6.8), and its vendor alias 0x41."""

from __future__ import annotations

import struct

import pytest
from fido2 import cbor
from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2
from fido2.hid import CTAPHID

from pk_helpers import (
    ERR,
    EDDSA,
    ES256,
    PROTOCOLS,
    cred_id,
    ctap_error,
    get_assertion,
    make_cred,
    pin_token,
    sha256,
    user,
    uv_token,
)

P = ClientPin.PERMISSION
R = CredentialManagement.RESULT
CMD = CredentialManagement.CMD
PIN = "424242"


@pytest.fixture
def populated(fresh_authenticator):
    """A key with a PIN, 2 discoverable credentials for rp-a, 1 for rp-b, 1 non-discoverable."""
    pk = fresh_authenticator
    ctap = pk.ctap2()
    ClientPin(ctap).set_pin(PIN)
    creds = {}
    for rp_id, name, alg in (("rp-a.example", "ann", ES256), ("rp-a.example", "bob", EDDSA),
                             ("rp-b.example", "cat", ES256)):
        tok = pin_token(ctap, PIN, P.MAKE_CREDENTIAL, rp_id)
        resp, _, u = make_cred(ctap, rp_id, alg=alg, rk=True, user_entity=user(name), token=tok,
                               extensions={"credProtect": 2})
        creds[name] = (rp_id, cred_id(resp), resp.auth_data.credential_data.public_key, u)
    tok = pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "rp-a.example")
    make_cred(ctap, "rp-a.example", token=tok)  # non-discoverable: not managed
    return pk, ctap, creds


def cm(ctap: Ctap2, permissions=P.CREDENTIAL_MGMT, rp_id=None, protocol=2):
    proto, tok = pin_token(ctap, PIN, permissions, rp_id, protocol)
    return CredentialManagement(ctap, proto, tok)


@pytest.mark.parametrize("protocol", [1, 2])
def test_metadata_and_enumeration(populated, protocol):
    _, ctap, creds = populated
    mgmt = cm(ctap, protocol=protocol)
    meta = mgmt.get_metadata()
    assert meta[R.EXISTING_CRED_COUNT] == 3
    assert meta[R.MAX_REMAINING_COUNT] >= 1

    rps = mgmt.enumerate_rps()
    assert len(rps) == 2
    assert rps[0][R.TOTAL_RPS] == 2
    by_id = {r[R.RP]["id"]: r for r in rps}
    assert set(by_id) == {"rp-a.example", "rp-b.example"}
    for rp_id, r in by_id.items():
        assert r[R.RP_ID_HASH] == sha256(rp_id.encode())

    listed = mgmt.enumerate_creds(sha256(b"rp-a.example"))
    assert len(listed) == 2
    assert listed[0][R.TOTAL_CREDENTIALS] == 2
    seen = {}
    for c in listed:
        seen[c[R.CREDENTIAL_ID]["id"]] = c
        assert c[R.CREDENTIAL_ID]["type"] == "public-key"
    for name in ("ann", "bob"):
        _, cid, key, u = creds[name]
        entry = seen[cid]
        assert entry[R.USER]["id"] == u["id"]
        assert entry[R.USER]["name"] == u["name"]
        assert dict(entry[R.PUBLIC_KEY]) == dict(key)
        if R.CRED_PROTECT in entry:
            assert entry[R.CRED_PROTECT] == 2


def test_enumerate_past_the_end(populated):
    _, ctap, _ = populated
    mgmt = cm(ctap)
    mgmt.enumerate_rps_begin()
    mgmt.enumerate_rps_next()
    with ctap_error(ERR.NOT_ALLOWED, "enumerateRPsGetNextRP past the last RP"):
        mgmt.enumerate_rps_next()
    mgmt = cm(ctap)
    mgmt.enumerate_creds_begin(sha256(b"rp-b.example"))
    with ctap_error(ERR.NOT_ALLOWED, "enumerateCredentialsGetNextCredential past the end"):
        mgmt.enumerate_creds_next()


def test_enumerate_unknown_rp(populated):
    _, ctap, _ = populated
    with ctap_error(ERR.NO_CREDENTIALS):
        cm(ctap).enumerate_creds_begin(sha256(b"nobody.example"))


def test_delete_credential(populated):
    _, ctap, creds = populated
    rp_id, cid, _, _ = creds["ann"]
    cm(ctap).delete_cred({"type": "public-key", "id": cid})
    assert cm(ctap).get_metadata()[R.EXISTING_CRED_COUNT] == 2
    left = cm(ctap).enumerate_creds(sha256(rp_id.encode()))
    assert [c[R.CREDENTIAL_ID]["id"] for c in left] == [creds["bob"][1]]
    tok = pin_token(ctap, PIN, P.GET_ASSERTION, rp_id)
    with ctap_error(ERR.NO_CREDENTIALS, "assertion with a deleted credential"):
        get_assertion(ctap, rp_id, allow=[cid], token=tok)
    with ctap_error(ERR.NO_CREDENTIALS, "deleting it again"):
        cm(ctap).delete_cred({"type": "public-key", "id": cid})


def test_delete_last_credential_of_rp(populated):
    _, ctap, creds = populated
    cm(ctap).delete_cred({"type": "public-key", "id": creds["cat"][1]})
    rps = cm(ctap).enumerate_rps()
    assert [r[R.RP]["id"] for r in rps] == ["rp-a.example"]


def test_update_user_information(populated):
    pk, ctap, creds = populated
    rp_id, cid, _, u = creds["bob"]
    new_user = {"id": u["id"], "name": "robert", "displayName": "Robert Tables"}
    cm(ctap).update_user_info({"type": "public-key", "id": cid}, new_user)
    listed = cm(ctap).enumerate_creds(sha256(rp_id.encode()))
    entry = next(c for c in listed if c[R.CREDENTIAL_ID]["id"] == cid)
    assert entry[R.USER]["name"] == "robert"
    assert entry[R.USER]["displayName"] == "Robert Tables"

    tok = pin_token(ctap, PIN, P.GET_ASSERTION, rp_id)
    first, _ = get_assertion(ctap, rp_id, token=tok)  # discoverable, with UV
    found = [first] + [ctap.get_next_assertion() for _ in range((first.number_of_credentials or 1) - 1)]
    ga = next(a for a in found if a.credential["id"] == cid)
    assert ga.user["id"] == u["id"]
    assert ga.user.get("name") == "robert"

    pk.restart()
    ctap = pk.ctap2()
    listed = cm(ctap).enumerate_creds(sha256(rp_id.encode()))
    entry = next(c for c in listed if c[R.CREDENTIAL_ID]["id"] == cid)
    assert entry[R.USER]["name"] == "robert", "updated user information must be persistent"


def test_update_user_with_other_user_id(populated):
    _, ctap, creds = populated
    _, cid, _, _ = creds["bob"]
    with ctap_error(ERR.INVALID_PARAMETER):
        cm(ctap).update_user_info({"type": "public-key", "id": cid},
                                  {"id": b"someone else", "name": "mallory"})


def test_authorization_required(populated):
    _, ctap, _ = populated
    with ctap_error(ERR.PUAT_REQUIRED, "no pinUvAuthParam"):
        ctap.credential_mgmt(CMD.GET_CREDS_METADATA)
    proto, tok = pin_token(ctap, PIN, P.CREDENTIAL_MGMT)
    with ctap_error(ERR.PIN_AUTH_INVALID, "pinUvAuthParam over the wrong message"):
        ctap.credential_mgmt(CMD.GET_CREDS_METADATA, None, proto.VERSION,
                             proto.authenticate(tok, b"\x02"))
    with ctap_error(ERR.PIN_AUTH_INVALID, "token without the cm permission"):
        cm(ctap, P.GET_ASSERTION, "rp-a.example").get_metadata()


def test_rp_scoped_token(populated):
    """A cm token bound to an RP may only touch that RP's credentials (§6.8.2)."""
    _, ctap, creds = populated
    mgmt = cm(ctap, P.CREDENTIAL_MGMT, "rp-a.example")
    assert len(mgmt.enumerate_creds(sha256(b"rp-a.example"))) == 2
    mgmt = cm(ctap, P.CREDENTIAL_MGMT, "rp-a.example")
    with ctap_error(ERR.PIN_AUTH_INVALID, "enumerate another RP's credentials"):
        mgmt.enumerate_creds_begin(sha256(b"rp-b.example"))
    mgmt = cm(ctap, P.CREDENTIAL_MGMT, "rp-a.example")
    with ctap_error(ERR.PIN_AUTH_INVALID, "enumerate RPs with an RP-scoped token"):
        mgmt.enumerate_rps_begin()
    mgmt = cm(ctap, P.CREDENTIAL_MGMT, "rp-a.example")
    with ctap_error(ERR.PIN_AUTH_INVALID, "delete another RP's credential"):
        mgmt.delete_cred({"type": "public-key", "id": creds["cat"][1]})


def test_with_uv_token(populated):
    _, ctap, _ = populated
    proto, tok = uv_token(ctap, P.CREDENTIAL_MGMT)
    meta = CredentialManagement(ctap, proto, tok).get_metadata()
    assert meta[R.EXISTING_CRED_COUNT] == 3


def test_no_credentials(fresh_authenticator):
    ctap = fresh_authenticator.ctap2()
    proto, tok = uv_token(ctap, P.CREDENTIAL_MGMT)
    mgmt = CredentialManagement(ctap, proto, tok)
    assert mgmt.get_metadata()[R.EXISTING_CRED_COUNT] == 0
    with ctap_error(ERR.NO_CREDENTIALS):
        mgmt.enumerate_rps_begin()


# --------------------------------------------------------------------------------------
# Vendor command 0x41 (credentialManagement preview), used by libfido2 and OpenSSH


def cm_raw(dev, command: int, sub_cmd: int, params=None, token=None):
    req = {1: sub_cmd}
    if params is not None:
        req[2] = params
    if token is not None:
        proto, tok = token
        msg = struct.pack(">B", sub_cmd) + (cbor.encode(params) if params is not None else b"")
        req[3] = proto.VERSION
        req[4] = proto.authenticate(tok, msg)
    resp = dev.call(CTAPHID.CBOR, bytes([command]) + cbor.encode(req))
    return resp[0], (cbor.decode(resp[1:]) if len(resp) > 1 else None)


@pytest.mark.parametrize("protocol", [1, 2])
def test_vendor_alias_0x41(populated, protocol):
    pk, ctap, creds = populated
    dev = ctap.device

    def token():
        return PROTOCOLS[protocol](), pin_token(ctap, PIN, P.CREDENTIAL_MGMT, None, protocol)[1]

    results = {}
    for command in (0x0A, 0x41):
        status, meta = cm_raw(dev, command, CMD.GET_CREDS_METADATA, token=token())
        assert status == 0, f"command 0x{command:02x} metadata: status 0x{status:02x}"
        status, first = cm_raw(dev, command, CMD.ENUMERATE_RPS_BEGIN, token=token())
        assert status == 0, f"command 0x{command:02x} enumerateRPsBegin: status 0x{status:02x}"
        status, second = cm_raw(dev, command, CMD.ENUMERATE_RPS_NEXT)
        assert status == 0, f"command 0x{command:02x} enumerateRPsGetNextRP: status 0x{status:02x}"
        params = {1: sha256(b"rp-a.example")}
        status, c1 = cm_raw(dev, command, CMD.ENUMERATE_CREDS_BEGIN, params, token=token())
        assert status == 0, f"command 0x{command:02x} enumerateCredentialsBegin: 0x{status:02x}"
        status, c2 = cm_raw(dev, command, CMD.ENUMERATE_CREDS_NEXT)
        assert status == 0
        results[command] = (meta, first, second, c1, c2)
    assert results[0x0A] == results[0x41]
    assert results[0x41][0][R.EXISTING_CRED_COUNT] == 3

    status, _ = cm_raw(dev, 0x41, CMD.GET_CREDS_METADATA)
    assert status == ERR.PUAT_REQUIRED, f"0x41 without auth: 0x{status:02x}"

    _, cid, _, _ = creds["cat"]
    status, _ = cm_raw(dev, 0x41, CMD.DELETE_CREDENTIAL,
                       {2: {"type": "public-key", "id": cid}}, token=token())
    assert status == 0, f"0x41 deleteCredential: status 0x{status:02x}"
    status, meta = cm_raw(dev, 0x41, CMD.GET_CREDS_METADATA, token=token())
    assert status == 0 and meta[R.EXISTING_CRED_COUNT] == 2


@pytest.mark.parametrize("command", [0x0A, 0x41])
def test_legacy_pin_token_is_refused(populated, command):
    """A token from the superseded getPinToken (0x05) has the default permissions mc and ga
    only (CTAP 2.1 §6.5.5.7.1 step 14); credentialManagement needs cm, through the 0x41
    alias too, so it answers PIN_AUTH_INVALID. A token asked for with cm works."""
    _, ctap, _ = populated
    client_pin = ClientPin(ctap, PROTOCOLS[2]())
    legacy = client_pin.get_pin_token(PIN)  # no permissions: subcommand 0x05
    status, _ = cm_raw(ctap.device, command, CMD.GET_CREDS_METADATA,
                       token=(client_pin.protocol, legacy))
    assert status == ERR.PIN_AUTH_INVALID, f"0x{command:02x} with a legacy token: 0x{status:02x}"
    status, meta = cm_raw(ctap.device, command, CMD.GET_CREDS_METADATA,
                          token=pin_token(ctap, PIN, P.CREDENTIAL_MGMT))
    assert status == 0 and meta[R.EXISTING_CRED_COUNT] == 3
