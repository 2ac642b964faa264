"""authenticatorSelection and authenticatorConfig (CTAP 2.1 §6.9, §6.11)."""

from __future__ import annotations

from fido2.ctap2 import ClientPin, Config

from pk_helpers import ERR, ctap_error, make_cred, uv_token

P = ClientPin.PERMISSION


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


def test_always_uv_make_credential_needs_uv(fresh_authenticator):
    ctap = fresh_authenticator.ctap2()
    always_uv_on(ctap)
    with ctap_error(ERR.PUAT_REQUIRED, "makeCredential without UV while alwaysUv is on"):
        make_cred(ctap, "always.example")
    resp, _, _ = make_cred(ctap, "always.example",
                           token=uv_token(ctap, P.MAKE_CREDENTIAL, "always.example"))
    assert resp.auth_data.is_user_verified()


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
