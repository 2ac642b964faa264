"""authenticatorSelection and authenticatorConfig (CTAP 2.1 §6.9, §6.11)."""

from __future__ import annotations

from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Config

from pk_helpers import ERR, cred_id, ctap_error, get_assertion, make_cred, uv_token

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


def test_always_uv_means_no_operation_without_uv(fresh_authenticator):
    """With alwaysUv on, every makeCredential/getAssertion is user-verified: a request that
    brings no pinUvAuthParam either fails with PUAT_REQUIRED or the key performs its
    built-in UV (§6.1.2 step 6, §6.2.2 step 5) and says so with the UV flag."""
    ctap = fresh_authenticator.ctap2()
    always_uv_on(ctap)

    def no_uv_or_verified(fn, what):
        try:
            resp = fn()
        except CtapError as e:
            assert e.code == ERR.PUAT_REQUIRED, f"{what}: got {e.code!r}"
            return None
        assert resp.auth_data.is_user_verified(), f"{what} succeeded without the UV flag"
        return resp

    mc = no_uv_or_verified(lambda: make_cred(ctap, "always.example")[0], "makeCredential")
    if mc is None:
        mc, _, _ = make_cred(ctap, "always.example",
                             token=uv_token(ctap, P.MAKE_CREDENTIAL, "always.example"))
    assert mc.auth_data.is_user_verified()
    no_uv_or_verified(
        lambda: get_assertion(ctap, "always.example", allow=[cred_id(mc)])[0], "getAssertion"
    )
    ga, _ = get_assertion(ctap, "always.example", allow=[cred_id(mc)],
                          token=uv_token(ctap, P.GET_ASSERTION, "always.example"))
    assert ga.auth_data.is_user_verified()


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
