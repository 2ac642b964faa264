"""Revoke, suspend and resume through the real processes: the admin changes a key's status
with the API key, `pocketkey org sync` proves the device key with a single-use challenge and
applies the answer, and `pocketkey serve --udp` then refuses (or serves again) the
organisation's RP ids, checked with python-fido2."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap import CtapError

from pk_helpers import make_cred
from pocketkey_udp import Authenticator, default_binary
from test_org_activation import ENTERPRISE_RP, LoopbackOrg, activate
import subprocess

OTHER_RP = "unrelated.example"


def sync(phone, *extra):
    return subprocess.run(
        [str(default_binary()), "org", "sync", "--state-dir", str(phone), *extra],
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def org(tmp_path):
    o = LoopbackOrg(tmp_path)
    yield o
    o.stop()


@pytest.fixture
def phone(org, tmp_path):
    path = tmp_path / "phone"
    proc = activate(org.invite_link(), path)
    assert proc.returncode == 0, proc.stderr
    return path


def key_id(org):
    [(kid,)] = org.sql("SELECT id FROM keys")
    return kid


def serves(phone, rp_id):
    """Whether `pocketkey serve` registers for `rp_id` (else the CTAP error code)."""
    auth = Authenticator(state_dir=phone)
    auth.start()
    try:
        make_cred(auth.ctap2(), rp_id)
        return True
    except CtapError as e:
        return e.code
    finally:
        auth.stop()


def test_sync_reports_active_and_updates_last_seen(org, phone):
    org.sql("UPDATE keys SET last_seen_at = '2000-01-01T00:00:00Z'")
    proc = sync(phone, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "org: Acme status: active\n"
    [(seen,)] = org.sql("SELECT last_seen_at FROM keys")
    assert seen > "2000-01-01T00:00:00Z"
    assert org.sql("SELECT COUNT(*) FROM device_nonces") == [(0,)], "the nonce was spent"


def test_suspend_then_resume(org, phone):
    kid = key_id(org)
    status, body = org.json("POST", f"/api/v1/keys/{kid}/suspend", {"reason": "lost, maybe"})
    assert (status, body) == (200, {"id": kid, "status": "suspended"})
    proc = sync(phone)
    assert (proc.returncode, proc.stdout) == (0, "org: Acme status: suspended\n"), proc.stderr
    assert "lost, maybe" in proc.stderr
    assert serves(phone, ENTERPRISE_RP) == CtapError.ERR.OPERATION_DENIED
    assert serves(phone, OTHER_RP) is True, "only the organisation's RPs are refused"
    # Wrong transitions are typed and change nothing.
    status, body = org.json("POST", f"/api/v1/keys/{kid}/suspend", {})
    assert (status, body["error"]) == (409, "invalid_transition")
    status, body = org.json("POST", f"/api/v1/keys/{kid}/resume", None)
    assert (status, body) == (200, {"id": kid, "status": "active"})
    assert sync(phone).stdout == "org: Acme status: active\n"
    assert serves(phone, ENTERPRISE_RP) is True
    _, keys = org.json("GET", "/api/v1/keys")
    assert keys["keys"][0]["status_actor"] == "api-key:ci"
    _, _, raw = org.request("GET", "/api/v1/audit")
    entries = [json.loads(line) for line in raw.decode().splitlines()]
    suspend = next(e for e in entries if e["action"] == "key.suspend")
    assert (suspend["actor"], suspend["subject"]) == ("api-key:ci", kid)
    assert "lost, maybe" in json.dumps(suspend["detail"])
    assert [e["action"] for e in entries][-2:] == ["key.suspend", "key.resume"]


def test_revoke_drops_the_org_attestation_and_is_final(org, phone):
    kid = key_id(org)
    status, body = org.json("POST", f"/api/v1/keys/{kid}/revoke", {})
    assert (status, body["error"]) == (400, "invalid_reason"), "revoking needs a reason"
    status, body = org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "phone stolen"})
    assert (status, body) == (200, {"id": kid, "status": "revoked"})
    proc = sync(phone)
    assert (proc.returncode, proc.stdout) == (0, "org: Acme status: revoked\n"), proc.stderr
    assert "revoked" in proc.stderr and "deleted" in proc.stderr
    assert serves(phone, ENTERPRISE_RP) == CtapError.ERR.OPERATION_DENIED
    # The organisation's attestation is gone: getInfo has no ep, registrations self-attest.
    auth = Authenticator(state_dir=phone)
    auth.start()
    try:
        ctap = auth.ctap2()
        assert "ep" not in ctap.get_info().options
        resp, _, _ = make_cred(ctap, OTHER_RP)
        assert "x5c" not in resp.att_stmt
    finally:
        auth.stop()
    for action in ("resume", "suspend", "revoke"):
        status, body = org.json("POST", f"/api/v1/keys/{kid}/{action}", {"reason": "again"})
        assert (status, body["error"]) == (409, "invalid_transition"), action
    status, body = org.json("POST", "/api/v1/keys/nope/revoke", {"reason": "x"})
    assert (status, body["error"]) == (404, "not_found")
    status, body = org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "x"}, key=None)
    assert status == 401
    assert org.audit_verify().returncode == 0


def test_revoking_an_invited_key_kills_its_link(org, tmp_path):
    link = org.invite_link()
    kid = key_id(org)
    status, _ = org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "left"})
    assert status == 200
    proc = activate(link, tmp_path / "p")
    assert proc.returncode == 1 and "activation failed: revoked:" in proc.stderr, proc.stderr


def test_sync_answers_need_the_device_key_and_a_fresh_single_use_nonce(org, phone):
    kid = key_id(org)
    status, ch = org.json("POST", "/api/v1/device/challenge", {"key_id": kid}, key=None)
    assert status == 200 and len(ch["nonce"]) == 64
    stranger = ec.generate_private_key(ec.SECP256R1())
    msg = (b"pocketkey-org sync v1\0" + len(kid).to_bytes(8, "big") + kid.encode()
           + len(ch["nonce"]).to_bytes(8, "big") + ch["nonce"].encode())
    sig = base64.b64encode(stranger.sign(msg, ec.ECDSA(hashes.SHA256()))).decode()
    body = {"key_id": kid, "nonce": ch["nonce"], "signature": sig}
    status, answer = org.json("POST", "/api/v1/device/sync", body, key=None)
    assert (status, answer["error"]) == (401, "bad_signature")
    # The nonce was spent by that attempt: a second try with it is refused outright.
    status, answer = org.json("POST", "/api/v1/device/sync", body, key=None)
    assert (status, answer["error"]) == (401, "challenge_invalid")
    status, answer = org.json("POST", "/api/v1/device/challenge", {"key_id": "0" * 32}, key=None)
    assert (status, answer["error"]) == (401, "unknown_device")
    # An expired challenge is refused too.
    status, ch = org.json("POST", "/api/v1/device/challenge", {"key_id": kid}, key=None)
    org.sql("UPDATE device_nonces SET expires_at = '2000-01-01T00:00:00Z'")
    status, answer = org.json("POST", "/api/v1/device/sync",
                              {"key_id": kid, "nonce": ch["nonce"], "signature": sig}, key=None)
    assert (status, answer["error"]) == (401, "challenge_invalid")
    # The real phone still syncs.
    assert sync(phone).stdout == "org: Acme status: active\n"


def test_sync_without_an_organisation_says_so(tmp_path):
    phone = tmp_path / "lonely"
    phone.mkdir(mode=0o700)
    proc = sync(phone)
    assert proc.returncode == 1 and "belongs to no organisation" in proc.stderr
