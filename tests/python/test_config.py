"""authenticatorSelection and authenticatorConfig (CTAP 2.1 §6.9, §6.11)."""

from __future__ import annotations

from fido2.ctap2 import ClientPin, Config

from pocketkey_fixtures import _finish, _start, _track
from pk_helpers import ERR, cred_id, ctap_error, get_assertion, make_cred, pin_token, uv_token

P = ClientPin.PERMISSION
PIN = "314159"


def test_selection(ctap2):
    ctap2.selection()  # auto-approved: the user "touched" the key


def always_uv_on(ctap) -> None:
    assert ctap.get_info().options.get("alwaysUv") is False, ctap.info.options
    proto, tok = uv_token(ctap, P.AUTHENTICATOR_CFG)
    Config(ctap, proto, tok).toggle_always_uv()
    assert ctap.get_info().options.get("alwaysUv") is True


def test_toggle_always_uv_needs_authorization(fresh_authenticator):
    ctap = fresh_authenticator.ctap2()
    with ctap_error(ERR.PUAT_REQUIRED, "toggleAlwaysUv without pinUvAuthParam"):
        Config(ctap).toggle_always_uv()
    proto, tok = uv_token(ctap, P.MAKE_CREDENTIAL, "example.com")
    with ctap_error(ERR.PIN_AUTH_INVALID, "token without the acfg permission"):
        Config(ctap, proto, tok).toggle_always_uv()
    assert ctap.get_info().options.get("alwaysUv") is False


def test_always_uv_get_info(fresh_authenticator):
    """getInfo: "If alwaysUv is present and true, makeCredUvNotRqd MUST be false"."""
    ctap = fresh_authenticator.ctap2()
    always_uv_on(ctap)
    assert ctap.get_info().options.get("makeCredUvNotRqd") is not True, ctap.get_info().options


def test_always_uv_means_no_operation_without_uv(fresh_authenticator):
    """With alwaysUv on, a makeCredential/getAssertion that brings no pinUvAuthParam is still
    user-verified: this key has built-in UV (`serve`'s default), so it performs it itself and
    sets the UV flag (§6.1.2 step 6, §6.2.2 step 5) instead of refusing."""
    ctap = fresh_authenticator.ctap2()
    assert ctap.get_info().options.get("uv") is True, ctap.info.options
    always_uv_on(ctap)
    mc, _, _ = make_cred(ctap, "always.example")
    assert mc.auth_data.is_user_verified()
    ga, _ = get_assertion(ctap, "always.example", allow=[cred_id(mc)])
    assert ga.auth_data.is_user_verified()


def test_always_uv_on_a_pin_only_key_needs_a_pin_token(tmp_path_factory, request):
    """The same on a key whose only UV is the PIN (`--uv off`): the steps above end with
    PUAT_REQUIRED, and a PIN token with the operation's permission is what works."""
    auth = _start(tmp_path_factory, request, "pin-only-key", extra_args=["--uv", "off"])
    _track(request, auth)
    try:
        ctap = auth.ctap2()
        ClientPin(ctap).set_pin(PIN)
        Config(ctap, *pin_token(ctap, PIN, P.AUTHENTICATOR_CFG)).toggle_always_uv()
        assert ctap.get_info().options.get("alwaysUv") is True
        with ctap_error(ERR.PUAT_REQUIRED, "makeCredential without pinUvAuthParam"):
            make_cred(ctap, "always.example")
        mc, _, _ = make_cred(ctap, "always.example",
                             token=pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "always.example"))
        assert mc.auth_data.is_user_verified()
        with ctap_error(ERR.PUAT_REQUIRED, "getAssertion without pinUvAuthParam"):
            get_assertion(ctap, "always.example", allow=[cred_id(mc)])
        ga, _ = get_assertion(ctap, "always.example", allow=[cred_id(mc)],
                              token=pin_token(ctap, PIN, P.GET_ASSERTION, "always.example"))
        assert ga.auth_data.is_user_verified()
    finally:
        _finish(auth, request, False)


def test_always_uv_persists_and_toggles_back(fresh_authenticator):
    pk = fresh_authenticator
    always_uv_on(pk.ctap2())
    pk.restart()
    ctap = pk.ctap2()
    assert ctap.get_info().options.get("alwaysUv") is True, "alwaysUv must be persistent"
    proto, tok = uv_token(ctap, P.AUTHENTICATOR_CFG)
    Config(ctap, proto, tok).toggle_always_uv()
    info = ctap.get_info()
    assert info.options.get("alwaysUv") is False
    assert info.options.get("makeCredUvNotRqd") is True
    make_cred(ctap, "always.example")


def test_config_unknown_subcommand(fresh_authenticator):
    ctap = fresh_authenticator.ctap2()
    proto, tok = uv_token(ctap, P.AUTHENTICATOR_CFG)
    msg = b"\xff" * 32 + b"\x0d" + bytes([0x42])
    with ctap_error(ERR.INVALID_SUBCOMMAND):
        ctap.config(0x42, None, proto.VERSION, proto.authenticate(tok, msg))
