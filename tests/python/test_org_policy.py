"""The organisation's policy on the phone: after `pocketkey activate`, "user verification
required" holds alwaysUv on (authenticatorConfig may not turn it off while the key is
active), and the minimum PIN length raises the key's own (a shorter PIN set before must be
changed). Checked with python-fido2 against `pocketkey serve --udp`."""

from __future__ import annotations

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Config

from pk_helpers import cdh, ctap_error, make_cred, pin_token
from pocketkey_udp import Authenticator
from test_org import run as org_run
from test_org_activation import LoopbackOrg, activate
from test_org_lifecycle import sync

P = ClientPin.PERMISSION


@pytest.fixture
def org(tmp_path):
    o = LoopbackOrg(tmp_path)
    org_run("policy", "set", "--state-dir", str(o.state), "--min-pin-length", "8",
            "--user-verification-required", "true")
    yield o
    o.stop()


def running(phone):
    auth = Authenticator(state_dir=phone)
    auth.start()
    return auth


def test_policy_raises_min_pin_length_and_locks_always_uv(org, tmp_path):
    phone = tmp_path / "phone"
    # Before joining: a plain key with a 4-digit PIN and alwaysUv off.
    auth = running(phone)
    ctap = auth.ctap2()
    assert ctap.get_info().options.get("alwaysUv") is False
    ClientPin(ctap).set_pin("1234")
    auth.stop()

    proc = activate(org.invite_link(), phone)
    assert proc.returncode == 0, proc.stderr

    auth = running(phone)
    try:
        ctap = auth.ctap2()
        info = ctap.get_info()
        assert info.options.get("alwaysUv") is True
        assert info.min_pin_length == 8
        assert info.force_pin_change is True, "the old PIN is shorter than the policy's"
        with pytest.raises(CtapError) as e:
            ClientPin(ctap).change_pin("1234", "7654321")
        assert e.value.code == CtapError.ERR.PIN_POLICY_VIOLATION
        ClientPin(ctap).change_pin("1234", "87654321")
        assert ctap.get_info().force_pin_change is False
        proto, tok = pin_token(ctap, "87654321", P.AUTHENTICATOR_CFG)
        with pytest.raises(CtapError) as e:
            Config(ctap, proto, tok).toggle_always_uv()
        assert e.value.code == CtapError.ERR.OPERATION_DENIED
        assert ctap.get_info().options.get("alwaysUv") is True
    finally:
        auth.stop()

    # Revoked, the organisation no longer holds alwaysUv (the key keeps what it has).
    kid = org.sql("SELECT id FROM keys")[0][0]
    assert org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "left"})[0] == 200
    assert sync(phone).stdout == "org: Acme status: revoked\n"
    auth = running(phone)
    try:
        ctap = auth.ctap2()
        assert ctap.get_info().options.get("alwaysUv") is True
        proto, tok = pin_token(ctap, "87654321", P.AUTHENTICATOR_CFG)
        Config(ctap, proto, tok).toggle_always_uv()
        assert ctap.get_info().options.get("alwaysUv") is False
        assert ctap.get_info().min_pin_length == 8, "a minimum PIN length never goes down"
    finally:
        auth.stop()


ALLOWED_RP = "allowed.example"
OTHER_RP = "unrelated.example"


def test_allowed_rp_ids_restrict_new_registrations_of_an_active_key(tmp_path):
    org = LoopbackOrg(tmp_path)
    try:
        phone = tmp_path / "phone"
        proc = activate(org.invite_link(), phone)
        assert proc.returncode == 0, proc.stderr
        # Before the policy names RPs the key registers anywhere.
        auth = running(phone)
        try:
            make_cred(auth.ctap2(), OTHER_RP, rk=True)
        finally:
            auth.stop()

        org_run("policy", "set", "--state-dir", str(org.state),
                "--allowed-rp-id", ALLOWED_RP)
        assert sync(phone).stdout == "org: Acme status: active\n"
        auth = running(phone)
        try:
            ctap = auth.ctap2()
            make_cred(ctap, ALLOWED_RP, rk=True)
            with ctap_error(CtapError.ERR.OPERATION_DENIED, "makeCredential outside the list"):
                make_cred(ctap, "second.example", rk=True)
            # Nothing was stored for the refused RP ...
            with ctap_error(CtapError.ERR.NO_CREDENTIALS, "getAssertion after the refusal"):
                ctap.get_assertion("second.example", cdh())
            # ... and sign-ins are not restricted: the credential made before still works,
            # though no new one is made for its RP.
            assert ctap.get_assertion(OTHER_RP, cdh()).credential is not None
            assert ctap.get_assertion(ALLOWED_RP, cdh()).credential is not None
            with ctap_error(CtapError.ERR.OPERATION_DENIED, "a second credential"):
                make_cred(ctap, OTHER_RP, rk=True)
        finally:
            auth.stop()
    finally:
        org.stop()
