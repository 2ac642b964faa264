"""Built-in user verification as a property of the key: `pocketkey serve --uv off` is a plain
CTAP 2.1 security key whose only user verification is the PIN (a phone with no biometric or
device credential enrolled)."""

from __future__ import annotations

import os

import pytest
from fido2.ctap2 import ClientPin
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from pocketkey_fixtures import _finish, _start, _track
from pk_helpers import (
    ERR,
    PROTOCOLS,
    client,
    cred_id,
    ctap_error,
    get_assertion,
    make_cred,
    pin_token,
)

P = ClientPin.PERMISSION
PIN = "314159"


@pytest.fixture
def pin_only(tmp_path_factory, request):
    """A new `pocketkey serve --udp --auto-approve --uv off`."""
    auth = _start(tmp_path_factory, request, "pin-only-key", extra_args=["--uv", "off"])
    _track(request, auth)
    yield auth
    _finish(auth, request, False)


def test_get_info_claims_no_builtin_uv(pin_only):
    info = pin_only.ctap2().get_info()
    assert "uv" not in info.options, info.options
    assert "bioEnroll" not in info.options and "uvBioEnroll" not in info.options
    # Both describe getPinUvAuthTokenUsingUvWithPermissions (CTAP 2.1 §6.4).
    assert not info.uv_modality, info.uv_modality
    assert not info.preferred_platform_uv_attempts, info.preferred_platform_uv_attempts
    # Still a CTAP 2.1 key with PIN-based tokens.
    assert info.options.get("clientPin") is False
    assert info.options.get("pinUvAuthToken") is True
    assert info.options.get("makeCredUvNotRqd") is True
    assert "FIDO_2_1" in info.versions


@pytest.mark.parametrize("protocol", [1, 2])
def test_uv_subcommands_are_not_there(pin_only, protocol):
    """getPinUvAuthTokenUsingUvWithPermissions "is only applicable when the authenticator
    supports built-in user verification methods" (§6.5.5.7.3): without it, it and getUVRetries
    are subcommands the key does not have."""
    ctap = pin_only.ctap2()
    client_pin = ClientPin(ctap, PROTOCOLS[protocol]())
    ka, _ = client_pin._get_shared_secret()
    with ctap_error(ERR.INVALID_SUBCOMMAND, "getPinUvAuthTokenUsingUvWithPermissions"):
        ctap.client_pin(protocol, ClientPin.CMD.GET_TOKEN_USING_UV, key_agreement=ka,
                        permissions=int(P.MAKE_CREDENTIAL), permissions_rpid="example.com")
    with ctap_error(ERR.INVALID_SUBCOMMAND, "getUVRetries"):
        ctap.client_pin(protocol, ClientPin.CMD.GET_UV_RETRIES)


def test_uv_option_is_invalid(pin_only):
    """§6.1.2 step 5 / §6.2.2 step 4: "uv" true on a key without built-in UV is
    CTAP2_ERR_INVALID_OPTION."""
    ctap = pin_only.ctap2()
    with ctap_error(ERR.INVALID_OPTION, "makeCredential uv=true"):
        make_cred(ctap, "pin-only.example", options={"uv": True})
    resp, _, _ = make_cred(ctap, "pin-only.example")
    with ctap_error(ERR.INVALID_OPTION, "getAssertion uv=true"):
        get_assertion(ctap, "pin-only.example", allow=[cred_id(resp)], options={"uv": True})


def test_without_a_pin_presence_is_all_there_is(pin_only):
    """No PIN and no built-in UV: the key is not protected by user verification, so even a
    discoverable credential needs only a touch and carries no UV flag."""
    ctap = pin_only.ctap2()
    resp, _, _ = make_cred(ctap, "nopin.example", rk=True)
    assert resp.auth_data.is_user_present() and not resp.auth_data.is_user_verified()
    ga, _ = get_assertion(ctap, "nopin.example")
    assert not ga.auth_data.is_user_verified()


def test_with_a_pin_make_cred_uv_not_rqd(pin_only):
    """With a PIN set: non-discoverable credentials need no UV (makeCredUvNotRqd), a
    discoverable one needs a pinUvAuthToken (§6.1.2 step 7), and a PIN token gives UV."""
    ctap = pin_only.ctap2()
    ClientPin(ctap).set_pin(PIN)
    resp, _, _ = make_cred(ctap, "pin.example")
    assert not resp.auth_data.is_user_verified()
    with ctap_error(ERR.PUAT_REQUIRED, "rk without a token"):
        make_cred(ctap, "pin.example", rk=True)
    resp, _, _ = make_cred(ctap, "pin.example", rk=True,
                           token=pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "pin.example"))
    assert resp.auth_data.is_user_verified()


def test_fido2_client_registers_and_signs_in_with_the_pin(pin_only):
    """python-fido2's Fido2Client sees a PIN-only key: for user verification it asks for the
    PIN, never for built-in UV, and the relying party gets UV-flagged responses."""
    ctap = pin_only.ctap2()
    ClientPin(ctap).set_pin(PIN)
    rp_id = "pin-client.example"
    server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="PIN only"))
    c = client(pin_only.device(), f"https://{rp_id}", pin=PIN)

    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="pat", display_name="Pat"),
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    reg = c.make_credential(options.public_key)
    auth_data = server.register_complete(state, reg)
    assert reg.response.attestation_object.auth_data.is_user_verified()

    options, state = server.authenticate_begin(
        user_verification=UserVerificationRequirement.REQUIRED
    )
    selection = c.get_assertion(options.public_key)
    response = selection.get_response(0)
    server.authenticate_complete(state, [auth_data.credential_data], response)
    assert response.response.authenticator_data.is_user_verified()
    assert c.ui.pin_requests >= 2 and c.ui.uv_requests == 0, (c.ui.pin_requests, c.ui.uv_requests)


@pytest.mark.parametrize(
    "auto_approve, says",
    [
        (False, "user verification: terminal prompt, not bound to hardware"),
        (True, "user verification: --auto-approve, nobody is asked; not bound to hardware"),
    ],
)
def test_the_desktop_approver_says_once_that_its_uv_is_not_bound_to_hardware(tmp_path, auto_approve, says):
    """The terminal prompt and --auto-approve verify in software (UvBinding::Software): `serve`
    says so on stderr once, at start, and its verified answers still verify users (the
    python-fido2 UV tests run through it)."""
    from pocketkey_udp import Authenticator

    auth = Authenticator(state_dir=tmp_path / "state", auto_approve=auto_approve)
    try:
        auth.start()
        info = auth.ctap2().get_info()
        assert info.options.get("uv") is True
    finally:
        auth.stop()
    log = auth.read_log()
    assert log.count("user verification: ") == 1, log
    assert says in log, log
