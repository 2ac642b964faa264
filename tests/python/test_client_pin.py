"""authenticatorClientPIN (CTAP 2.1 §6.5) with PIN/UV auth protocols 1 and 2."""

from __future__ import annotations

import pytest
from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2
from fido2.ctap2.pin import _pad_pin

from pocketkey_udp import raw_init, send_power_cycle
from pk_helpers import (
    ERR,
    PROTOCOLS,
    cred_id,
    ctap_error,
    get_assertion,
    make_cred,
    pin_token,
    sha256,
    uv_token,
)

P = ClientPin.PERMISSION
PIN = "271828"
protocols = pytest.mark.parametrize("protocol", [1, 2], ids=["pinUvAuthProtocol1", "pinUvAuthProtocol2"])


def cp(ctap: Ctap2, protocol: int) -> ClientPin:
    return ClientPin(ctap, PROTOCOLS[protocol]())


def with_pin(pk, protocol: int, pin: str = PIN) -> Ctap2:
    ctap = pk.ctap2()
    cp(ctap, protocol).set_pin(pin)
    return ctap


def retries(ctap: Ctap2) -> int:
    return cp(ctap, 2).get_pin_retries()[0]


def metadata(ctap: Ctap2, token) -> dict:
    proto, tok = token
    return CredentialManagement(ctap, proto, tok).get_metadata()


# --------------------------------------------------------------------------------------
# Setting and changing the PIN


def test_fresh_key(fresh_authenticator):
    ctap = fresh_authenticator.ctap2()
    assert ctap.info.options.get("clientPin") is False
    assert retries(ctap) == 8
    with ctap_error(ERR.PIN_NOT_SET):
        pin_token(ctap, "1234", P.MAKE_CREDENTIAL, "example.com")


def test_key_agreement_is_p256_cose_key(fresh_authenticator):
    ctap = fresh_authenticator.ctap2()
    for protocol in (1, 2):
        resp = ctap.client_pin(protocol, ClientPin.CMD.GET_KEY_AGREEMENT)
        key = resp[ClientPin.RESULT.KEY_AGREEMENT]
        assert key[1] == 2 and key[-1] == 1 and key[3] == -25, key
        assert len(key[-2]) == 32 and len(key[-3]) == 32
        assert set(key) == {1, 3, -1, -2, -3}, f"unexpected COSE key members {sorted(key)}"


def test_unsupported_protocol(fresh_authenticator):
    ctap = fresh_authenticator.ctap2()
    with ctap_error(ERR.INVALID_PARAMETER):
        ctap.client_pin(3, ClientPin.CMD.GET_KEY_AGREEMENT)


@protocols
def test_set_pin(fresh_authenticator, protocol):
    ctap = with_pin(fresh_authenticator, protocol)
    assert ctap.get_info().options.get("clientPin") is True
    assert retries(ctap) == 8
    # §6.5.5.5: "If a PIN has already been set, authenticator returns CTAP2_ERR_PIN_AUTH_INVALID".
    with ctap_error(ERR.PIN_AUTH_INVALID, "setPIN when a PIN is already set"):
        cp(ctap, protocol).set_pin("9999")
    proto, tok = pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "example.com", protocol)
    assert len(tok) == 32 if protocol == 2 else len(tok) in (16, 32)


@protocols
def test_set_pin_bad_auth(fresh_authenticator, protocol):
    ctap = fresh_authenticator.ctap2()
    client = cp(ctap, protocol)
    ka, secret = client._get_shared_secret()
    enc = client.protocol.encrypt(secret, _pad_pin(PIN))
    bad = bytearray(client.protocol.authenticate(secret, enc))
    bad[0] ^= 1
    with ctap_error(ERR.PIN_AUTH_INVALID):
        ctap.client_pin(protocol, ClientPin.CMD.SET_PIN, key_agreement=ka, new_pin_enc=enc,
                        pin_uv_param=bytes(bad))
    assert ctap.get_info().options.get("clientPin") is False


@protocols
def test_set_pin_too_short(fresh_authenticator, protocol):
    ctap = fresh_authenticator.ctap2()
    client = cp(ctap, protocol)
    ka, secret = client._get_shared_secret()
    enc = client.protocol.encrypt(secret, b"123".ljust(64, b"\0"))
    with ctap_error(ERR.PIN_POLICY_VIOLATION, "3-character PIN"):
        ctap.client_pin(protocol, ClientPin.CMD.SET_PIN, key_agreement=ka, new_pin_enc=enc,
                        pin_uv_param=client.protocol.authenticate(secret, enc))
    assert ctap.get_info().options.get("clientPin") is False


@protocols
def test_change_pin(fresh_authenticator, protocol):
    ctap = with_pin(fresh_authenticator, protocol)
    cp(ctap, protocol).change_pin(PIN, "314159")
    with ctap_error(ERR.PIN_INVALID, "old PIN after change"):
        pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "example.com", protocol)
    pin_token(ctap, "314159", P.MAKE_CREDENTIAL, "example.com", protocol)
    with ctap_error(ERR.PIN_INVALID, "changePIN with a wrong current PIN"):
        cp(ctap, protocol).change_pin("000000", "111111")
    assert retries(ctap) == 7
    pin_token(ctap, "314159", P.GET_ASSERTION, "example.com", protocol)
    assert retries(ctap) == 8


# --------------------------------------------------------------------------------------
# Tokens and permissions


@protocols
def test_token_permissions(fresh_authenticator, protocol):
    ctap = with_pin(fresh_authenticator, protocol)

    def tok(perm, rp_id=None):
        return pin_token(ctap, PIN, perm, rp_id, protocol)

    resp, _, _ = make_cred(ctap, "a.example", token=tok(P.MAKE_CREDENTIAL, "a.example"))
    assert resp.auth_data.is_user_verified()
    cid = cred_id(resp)

    with ctap_error(ERR.PIN_AUTH_INVALID, "mc token scoped to another RP"):
        make_cred(ctap, "b.example", token=tok(P.MAKE_CREDENTIAL, "a.example"))
    with ctap_error(ERR.PIN_AUTH_INVALID, "ga-only token used for makeCredential"):
        make_cred(ctap, "a.example", token=tok(P.GET_ASSERTION, "a.example"))
    with ctap_error(ERR.PIN_AUTH_INVALID, "mc-only token used for getAssertion"):
        get_assertion(ctap, "a.example", allow=[cid], token=tok(P.MAKE_CREDENTIAL, "a.example"))
    with ctap_error(ERR.PIN_AUTH_INVALID, "ga token scoped to another RP"):
        get_assertion(ctap, "a.example", allow=[cid], token=tok(P.GET_ASSERTION, "b.example"))
    with ctap_error(ERR.PIN_AUTH_INVALID, "mc|ga token used for credentialManagement"):
        metadata(ctap, tok(P.MAKE_CREDENTIAL | P.GET_ASSERTION, "a.example"))

    ga, _ = get_assertion(ctap, "a.example", allow=[cid], token=tok(P.GET_ASSERTION, "a.example"))
    assert ga.auth_data.is_user_verified()
    meta = metadata(ctap, tok(P.CREDENTIAL_MGMT))
    assert CredentialManagement.RESULT.EXISTING_CRED_COUNT in meta


@protocols
def test_wrong_pin_uv_auth_param(fresh_authenticator, protocol):
    ctap = with_pin(fresh_authenticator, protocol)
    proto, token = pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "a.example", protocol)
    wrong = bytes(len(token))
    with ctap_error(ERR.PIN_AUTH_INVALID):
        make_cred(ctap, "a.example", token=(proto, wrong))


@protocols
def test_legacy_get_pin_token(fresh_authenticator, protocol):
    """getPinToken (0x05) gives a token with the default mc and ga permissions."""
    ctap = with_pin(fresh_authenticator, protocol)
    client = cp(ctap, protocol)
    token = client.get_pin_token(PIN)  # no permissions → subcommand 0x05
    resp, _, _ = make_cred(ctap, "legacy.example", token=(client.protocol, token))
    assert resp.auth_data.is_user_verified()


def test_permission_parameter_checks(fresh_authenticator):
    ctap = with_pin(fresh_authenticator, 2)
    client = cp(ctap, 2)

    def request(permissions):
        ka, secret = client._get_shared_secret()
        enc = client.protocol.encrypt(secret, sha256(PIN.encode())[:16])
        return ctap.client_pin(2, ClientPin.CMD.GET_TOKEN_USING_PIN, key_agreement=ka,
                               pin_hash_enc=enc, permissions=permissions,
                               permissions_rpid="example.com")

    with ctap_error(ERR.INVALID_PARAMETER, "permissions = 0"):
        request(0)
    with ctap_error(ERR.UNAUTHORIZED_PERMISSION, "bio enrollment permission without bioEnroll"):
        request(int(P.BIO_ENROLL))
    assert request(int(P.MAKE_CREDENTIAL))[ClientPin.RESULT.PIN_UV_TOKEN]


def test_pin_uv_auth_param_without_protocol(fresh_authenticator):
    ctap = with_pin(fresh_authenticator, 2)
    proto, tok = pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "example.com")
    h = b"\x01" * 32
    with ctap_error(ERR.MISSING_PARAMETER):
        ctap.make_credential(h, {"id": "example.com", "name": "x"}, {"id": b"u", "name": "u"},
                             [{"type": "public-key", "alg": -7}],
                             pin_uv_param=proto.authenticate(tok, h))


def test_zero_length_pin_uv_auth_param(fresh_authenticator):
    """Platforms probe with an empty pinUvAuthParam to have the user pick a key (§6.1.2 1.)."""
    pk = fresh_authenticator
    ctap = pk.ctap2()
    args = (b"\x02" * 32, {"id": "example.com", "name": "x"}, {"id": b"u", "name": "u"},
            [{"type": "public-key", "alg": -7}])
    with ctap_error(ERR.PIN_NOT_SET, "no PIN set"):
        ctap.make_credential(*args, pin_uv_param=b"", pin_uv_protocol=2)
    cp(ctap, 2).set_pin(PIN)
    with ctap_error(ERR.PIN_INVALID, "PIN set"):
        ctap.make_credential(*args, pin_uv_param=b"", pin_uv_protocol=2)


@pytest.mark.parametrize("source", ["pin", "uv"])
def test_token_survives_silent_preflight(fresh_authenticator, source):
    """Clients pre-flight allowList/excludeList entries with up=false getAssertions using the
    token they then use for the real request (python-fido2's _filter_creds, browsers alike).
    CTAP 2.1 §6.2.2 step 9 clears the token's permissions only when user presence is
    collected (up=true), so a silent getAssertion must leave the token usable."""
    ctap = fresh_authenticator.ctap2()
    if source == "pin":
        cp(ctap, 2).set_pin(PIN)

    def token(perms):
        if source == "pin":
            return pin_token(ctap, PIN, perms, "silent.example")
        return uv_token(ctap, perms, "silent.example")

    resp, _, _ = make_cred(ctap, "silent.example")
    cid = cred_id(resp)

    tok = token(P.GET_ASSERTION)
    pre, _ = get_assertion(ctap, "silent.example", allow=[cid], token=tok, options={"up": False})
    assert not pre.auth_data.is_user_present()
    ga, _ = get_assertion(ctap, "silent.example", allow=[cid], token=tok)
    assert ga.auth_data.is_user_present() and ga.auth_data.is_user_verified()

    # excludeList filtering before makeCredential: a miss, then the real request.
    tok = token(P.MAKE_CREDENTIAL | P.GET_ASSERTION)
    with ctap_error(ERR.NO_CREDENTIALS):
        get_assertion(ctap, "silent.example", allow=[bytes(48)], token=tok, options={"up": False})
    mc, _, _ = make_cred(ctap, "silent.example", token=tok)
    assert mc.auth_data.is_user_verified()


def test_token_permissions_cleared_after_user_presence(fresh_authenticator):
    """…while a request that collected user presence does clear them (mc/ga are one-shot)."""
    ctap = fresh_authenticator.ctap2()
    resp, _, _ = make_cred(ctap, "oneshot.example")
    tok = uv_token(ctap, P.GET_ASSERTION, "oneshot.example")
    get_assertion(ctap, "oneshot.example", allow=[cred_id(resp)], token=tok)
    with ctap_error(ERR.PIN_AUTH_INVALID, "token reused after a getAssertion with up=true"):
        get_assertion(ctap, "oneshot.example", allow=[cred_id(resp)], token=tok)


@pytest.mark.power_cycle
def test_power_cycle_invalidates_tokens(fresh_authenticator):
    pk = fresh_authenticator
    ctap = with_pin(pk, 2)
    token = pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "example.com")
    pk.power_cycle()
    ctap = pk.ctap2()
    with ctap_error(ERR.PIN_AUTH_INVALID, "token from before the power cycle"):
        make_cred(ctap, "example.com", token=token)


# --------------------------------------------------------------------------------------
# Retries and lockout


@pytest.mark.power_cycle
@protocols
def test_three_wrong_pins_block_until_power_cycle(fresh_authenticator, protocol):
    pk = fresh_authenticator
    ctap = with_pin(pk, protocol)

    def attempt(pin):
        return pin_token(ctap, pin, P.GET_ASSERTION, "example.com", protocol)

    with ctap_error(ERR.PIN_INVALID, "1st wrong PIN"):
        attempt("000000")
    assert retries(ctap) == 7
    with ctap_error(ERR.PIN_INVALID, "2nd wrong PIN"):
        attempt("000001")
    assert retries(ctap) == 6
    with ctap_error(ERR.PIN_AUTH_BLOCKED, "3rd wrong PIN in a row"):
        attempt("000002")
    assert retries(ctap) == 5
    with ctap_error(ERR.PIN_AUTH_BLOCKED, "correct PIN while blocked"):
        attempt(PIN)
    assert retries(ctap) == 5, "attempts while blocked must not consume retries"

    pk.power_cycle()
    ctap = pk.ctap2()
    attempt(PIN)
    assert retries(ctap) == 8, "a correct PIN restores the retry counter"


def test_power_cycle_datagram_is_ignored_without_the_flag(fresh_authenticator):
    """Without --allow-power-cycle the datagram is an ordinary invalid report: it does not
    forget the PIN strikes (issue 9: any UDP sender could reset them)."""
    pk = fresh_authenticator
    assert not pk.allow_power_cycle
    ctap = with_pin(pk, 2)

    def attempt(pin):
        return pin_token(ctap, pin, P.GET_ASSERTION, "example.com")

    for wrong in ("000000", "000001"):
        with ctap_error(ERR.PIN_INVALID, f"wrong PIN {wrong}"):
            attempt(wrong)
    with ctap_error(ERR.PIN_AUTH_BLOCKED, "3rd wrong PIN in a row"):
        attempt("000002")
    send_power_cycle(pk.addr)
    # Datagrams are handled in order: once this INIT is answered, the datagram was handled.
    assert raw_init(pk.addr, timeout=2.0) is not None
    with ctap_error(ERR.PIN_AUTH_BLOCKED, "correct PIN after an ignored power-cycle datagram"):
        attempt(PIN)
    assert retries(ctap) == 5
    assert "power-cycle datagram" in pk.read_log()


@pytest.mark.power_cycle
def test_pin_blocked_after_eight_wrong(fresh_authenticator):
    pk = fresh_authenticator
    ctap = with_pin(pk, 2)

    def attempt(pin):
        return pin_token(ctap, pin, P.GET_ASSERTION, "example.com")

    for cycle in range(3):
        n = 3 if cycle < 2 else 2
        for i in range(n):
            wrong = f"9{cycle}{i}999"
            total = 3 * cycle + i + 1
            if total == 8:
                code = ERR.PIN_BLOCKED
            elif i == 2:
                code = ERR.PIN_AUTH_BLOCKED
            else:
                code = ERR.PIN_INVALID
            with ctap_error(code, f"wrong PIN #{total}"):
                attempt(wrong)
            assert retries(ctap) == 8 - total
        if cycle < 2:
            pk.power_cycle()
            ctap = pk.ctap2()

    with ctap_error(ERR.PIN_BLOCKED, "correct PIN after 8 failures"):
        attempt(PIN)
    assert retries(ctap) == 0
    pk.power_cycle()
    ctap = pk.ctap2()
    with ctap_error(ERR.PIN_BLOCKED, "after power cycle"):
        attempt(PIN)
    pk.restart()
    ctap = pk.ctap2()
    assert retries(ctap) == 0, "PIN retry counter must be persistent"
    with ctap_error(ERR.PIN_BLOCKED, "after restart"):
        attempt(PIN)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_failed_attempts_persist_across_restart(fresh_authenticator, kill):
    pk = fresh_authenticator
    ctap = with_pin(pk, 2)
    with ctap_error(ERR.PIN_INVALID):
        pin_token(ctap, "000000", P.GET_ASSERTION, "example.com")
    # Right after the wrong-PIN reply: the spent retry was durable before it was sent.
    pk.restart(kill=kill)
    assert retries(pk.ctap2()) == 7


# --------------------------------------------------------------------------------------
# Built-in user verification (the phone's biometric through the Approver)


def test_get_uv_retries(pk):
    ctap = pk.ctap2()
    n = cp(ctap, 2).get_uv_retries()
    # A fresh key's built-in UV allows 8 attempts (core/src/store/types.rs, MAX_UV_RETRIES);
    # the module's key has used none.
    assert n == 8, n


@protocols
@pytest.mark.parametrize("with_pin_set", [False, True], ids=["no-pin", "pin-set"])
def test_uv_token_with_permissions(fresh_authenticator, protocol, with_pin_set):
    pk = fresh_authenticator
    ctap = with_pin(pk, protocol) if with_pin_set else pk.ctap2()

    token = uv_token(ctap, P.MAKE_CREDENTIAL, "uv.example", protocol)
    resp, _, _ = make_cred(ctap, "uv.example", rk=True, token=token)
    assert resp.auth_data.is_user_verified()
    cid = cred_id(resp)

    token = uv_token(ctap, P.MAKE_CREDENTIAL, "uv.example", protocol)
    with ctap_error(ERR.PIN_AUTH_INVALID, "mc-only UV token used for getAssertion"):
        get_assertion(ctap, "uv.example", allow=[cid], token=token)
    token = uv_token(ctap, P.MAKE_CREDENTIAL, "uv.example", protocol)
    with ctap_error(ERR.PIN_AUTH_INVALID, "mc-only UV token used for credentialManagement"):
        metadata(ctap, token)
    token = uv_token(ctap, P.MAKE_CREDENTIAL, "uv.example", protocol)
    with ctap_error(ERR.PIN_AUTH_INVALID, "UV token scoped to another RP"):
        make_cred(ctap, "elsewhere.example", token=token)

    ga, _ = get_assertion(ctap, "uv.example",
                          token=uv_token(ctap, P.GET_ASSERTION, "uv.example", protocol))
    assert ga.auth_data.is_user_verified()
    assert ga.credential["id"] == cid
    meta = metadata(ctap, uv_token(ctap, P.CREDENTIAL_MGMT, None, protocol))
    assert meta[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 1


def test_uv_token_parameter_checks(pk):
    ctap = pk.ctap2()
    client = cp(ctap, 2)
    ka, _ = client._get_shared_secret()
    with ctap_error(ERR.MISSING_PARAMETER, "no permissions"):
        ctap.client_pin(2, ClientPin.CMD.GET_TOKEN_USING_UV, key_agreement=ka)
    ka, _ = client._get_shared_secret()
    with ctap_error(ERR.INVALID_PARAMETER, "permissions = 0"):
        ctap.client_pin(2, ClientPin.CMD.GET_TOKEN_USING_UV, key_agreement=ka, permissions=0)
    with ctap_error(ERR.MISSING_PARAMETER, "no keyAgreement"):
        ctap.client_pin(2, ClientPin.CMD.GET_TOKEN_USING_UV, permissions=int(P.MAKE_CREDENTIAL),
                        permissions_rpid="example.com")
