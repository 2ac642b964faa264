"""CTAP2 extensions: hmac-secret (and WebAuthn prf on top), credProtect, credBlob,
largeBlobKey + authenticatorLargeBlobs, minPinLength."""

from __future__ import annotations

import os

import pytest
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Config, LargeBlobs
from fido2.ctap2.extensions import (
    CredBlobExtension,
    CredPropsExtension,
    CredProtectExtension,
    HmacSecretExtension,
    LargeBlobExtension,
    MinPinLengthExtension,
)
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from pk_helpers import (
    ERR,
    client,
    cred_id,
    cred_key,
    ctap_error,
    get_assertion,
    make_cred,
    pin_token,
    sha256,
    uv_token,
    verify_assertion,
)

P = ClientPin.PERMISSION
UVR = UserVerificationRequirement
RKR = ResidentKeyRequirement
EXTENSIONS = [
    HmacSecretExtension(allow_hmac_secret=True),
    LargeBlobExtension(),
    CredBlobExtension(),
    CredProtectExtension(),
    MinPinLengthExtension(),
    CredPropsExtension(),
]
_n = iter(range(10**6))


def unique_rp() -> tuple[str, str]:
    rp_id = f"ext{next(_n)}-{os.urandom(3).hex()}.example.net"
    return rp_id, f"https://{rp_id}"


def mc_uv(ctap, rp_id, protocol=2, **kw):
    return make_cred(ctap, rp_id, token=uv_token(ctap, P.MAKE_CREDENTIAL, rp_id, protocol), **kw)


def ga_uv(ctap, rp_id, protocol=2, **kw):
    return get_assertion(ctap, rp_id, token=uv_token(ctap, P.GET_ASSERTION, rp_id, protocol), **kw)


class WebAuthnRp:
    """Fido2Server + Fido2Client (with hmac-secret allowed) for one RP."""

    def __init__(self, dev):
        self.rp_id, self.origin = unique_rp()
        self.server = Fido2Server(PublicKeyCredentialRpEntity(id=self.rp_id, name="ext"))
        self.client = client(dev, self.origin, extensions=EXTENSIONS)
        self.credential = None

    def register(self, extensions, rk=RKR.DISCOURAGED, uv=UVR.DISCOURAGED):
        options, state = self.server.register_begin(
            PublicKeyCredentialUserEntity(id=os.urandom(16), name="eve", display_name="Eve"),
            resident_key_requirement=rk,
            user_verification=uv,
            extensions=extensions,
        )
        result = self.client.make_credential(options.public_key)
        self.credential = self.server.register_complete(state, result).credential_data
        return result

    def authenticate(self, extensions, uv=UVR.DISCOURAGED, discoverable=False):
        options, state = self.server.authenticate_begin(
            None if discoverable else [self.credential], user_verification=uv,
            extensions=extensions,
        )
        selection = self.client.get_assertion(options.public_key)
        response = selection.get_response(0)
        self.server.authenticate_complete(state, [self.credential], response)
        return response


# --------------------------------------------------------------------------------------
# hmac-secret


def test_hmac_secret(pk):
    rp = WebAuthnRp(pk.device())
    # Discoverable, so assertions need no allowList (no client-side pre-flight).
    reg = rp.register({"hmacCreateSecret": True}, rk=RKR.REQUIRED)
    assert reg.client_extension_results["hmacCreateSecret"] is True
    assert reg.response.attestation_object.auth_data.extensions.get("hmac-secret") is True

    s1, s2, s3 = os.urandom(32), os.urandom(32), os.urandom(32)

    def get(salt1, salt2=None, uv=UVR.DISCOURAGED):
        salts = {"salt1": salt1} if salt2 is None else {"salt1": salt1, "salt2": salt2}
        resp = rp.authenticate({"hmacGetSecret": salts}, uv=uv, discoverable=True)
        out = resp.client_extension_results.hmac_get_secret
        assert out is not None, "no hmac-secret output"
        assert resp.response.authenticator_data.is_user_verified() == (uv == UVR.REQUIRED)
        return out

    a = get(s1)
    assert len(a.output1) == 32 and not a.output2
    assert get(s1).output1 == a.output1, "same salt must give the same output"
    both = get(s1, s2)
    assert both.output1 == a.output1
    assert len(both.output2) == 32 and both.output2 != both.output1
    assert get(s3).output1 not in (a.output1, both.output2)
    assert get(s2).output1 == both.output2, "salt2 output equals salt1 output for that salt"

    with_uv = get(s1, uv=UVR.REQUIRED)
    assert get(s1, uv=UVR.REQUIRED).output1 == with_uv.output1
    # CTAP 2.1 §12.5: CredRandomWithUV and CredRandomWithoutUV are two different secrets.
    assert with_uv.output1 != a.output1

    # WebAuthn prf is hmac-secret with salt = SHA-256("WebAuthn PRF" ‖ 0x00 ‖ input).
    prf_in = b"prf input"
    resp = rp.authenticate({"prf": {"eval": {"first": prf_in}}}, discoverable=True)
    prf_out = resp.client_extension_results.prf.results.first
    assert prf_out == get(sha256(b"WebAuthn PRF\0" + prf_in)).output1


@pytest.mark.parametrize("rk", [RKR.REQUIRED, RKR.DISCOURAGED], ids=["discoverable", "non-discoverable"])
def test_hmac_secret_for_a_credential_made_without_it(pk, rk):
    """As on a YubiKey 5 or a SoloKey, every credential answers hmac-secret, also one whose
    makeCredential did not ask for it (CTAP 2.1 §12.5 does not forbid it): the same salt gives
    the same output, and CredRandomWithUV differs from CredRandomWithoutUV."""
    rp = WebAuthnRp(pk.device())
    reg = rp.register({}, rk=rk)
    assert "hmac-secret" not in (reg.response.attestation_object.auth_data.extensions or {})
    discoverable = rk == RKR.REQUIRED
    salt = os.urandom(32)

    def get(uv):
        resp = rp.authenticate({"hmacGetSecret": {"salt1": salt}}, uv=uv,
                               discoverable=discoverable)
        out = resp.client_extension_results.hmac_get_secret
        assert out is not None, "no hmac-secret output for a credential made without it"
        assert resp.response.authenticator_data.is_user_verified() == (uv == UVR.REQUIRED)
        assert len(out.output1) == 32 and not out.output2
        return out.output1

    without_uv = get(UVR.DISCOURAGED)
    assert get(UVR.DISCOURAGED) == without_uv, "same salt, same output"
    with_uv = get(UVR.REQUIRED)
    assert get(UVR.REQUIRED) == with_uv
    assert with_uv != without_uv


def test_hmac_secret_not_requested_gives_no_output(pk):
    ctap = pk.ctap2()
    resp, _, _ = make_cred(ctap, "nohmac.example")
    assert not resp.auth_data.extensions or "hmac-secret" not in resp.auth_data.extensions


# --------------------------------------------------------------------------------------
# credProtect


@pytest.mark.parametrize("protocol", [1, 2])
def test_cred_protect_discoverable(pk, protocol):
    ctap = pk.ctap2()
    results = {}
    for level in (1, 2, 3):
        rp_id = unique_rp()[0]
        resp, _, _ = mc_uv(ctap, rp_id, protocol, rk=True, extensions={"credProtect": level})
        assert resp.auth_data.extensions.get("credProtect") == level
        cid, key = cred_id(resp), cred_key(resp)

        def outcome(**kw):
            try:
                ga, h = get_assertion(ctap, rp_id, **kw)
            except CtapError as e:
                return e.code
            verify_assertion(ga, h, key)
            return "ok"

        results[level] = {
            "no-uv, discoverable": outcome(),
            "no-uv, allowList": outcome(allow=[cid]),
            "uv, discoverable": outcome(token=uv_token(ctap, P.GET_ASSERTION, rp_id, protocol)),
            "uv, allowList": outcome(allow=[cid],
                                     token=uv_token(ctap, P.GET_ASSERTION, rp_id, protocol)),
        }
    expected = {
        1: {"no-uv, discoverable": "ok", "no-uv, allowList": "ok",
            "uv, discoverable": "ok", "uv, allowList": "ok"},
        2: {"no-uv, discoverable": ERR.NO_CREDENTIALS, "no-uv, allowList": "ok",
            "uv, discoverable": "ok", "uv, allowList": "ok"},
        3: {"no-uv, discoverable": ERR.NO_CREDENTIALS, "no-uv, allowList": ERR.NO_CREDENTIALS,
            "uv, discoverable": "ok", "uv, allowList": "ok"},
    }
    assert results == expected


def test_cred_protect_non_discoverable_level3(pk):
    ctap = pk.ctap2()
    rp_id = unique_rp()[0]
    resp, _, _ = make_cred(ctap, rp_id, extensions={"credProtect": 3})
    assert resp.auth_data.extensions.get("credProtect") == 3
    with ctap_error(ERR.NO_CREDENTIALS, "level 3 without UV"):
        get_assertion(ctap, rp_id, allow=[cred_id(resp)])
    ga, h = ga_uv(ctap, rp_id, allow=[cred_id(resp)])
    verify_assertion(ga, h, cred_key(resp))
    assert ga.auth_data.is_user_verified()


def test_cred_protect_level3_excludes_silently(pk):
    """excludeList must still match a level-3 credential when the request has UV."""
    ctap = pk.ctap2()
    rp_id = unique_rp()[0]
    resp, _, _ = mc_uv(ctap, rp_id, extensions={"credProtect": 3})
    with ctap_error(ERR.CREDENTIAL_EXCLUDED):
        mc_uv(ctap, rp_id, exclude_list=[{"type": "public-key", "id": cred_id(resp)}])


def test_cred_protect_through_client(pk):
    rp = WebAuthnRp(pk.device())
    reg = rp.register(
        {"credentialProtectionPolicy": "userVerificationRequired",
         "enforceCredentialProtectionPolicy": True},
        rk=RKR.REQUIRED,
        uv=UVR.REQUIRED,
    )
    assert reg.response.attestation_object.auth_data.extensions.get("credProtect") == 3
    resp = rp.authenticate({}, uv=UVR.REQUIRED, discoverable=True)
    assert resp.response.authenticator_data.is_user_verified()
    with pytest.raises(ClientError) as e:
        rp.authenticate({}, uv=UVR.DISCOURAGED)
    assert e.value.code == ClientError.ERR.DEVICE_INELIGIBLE, repr(e.value)


# --------------------------------------------------------------------------------------
# credBlob


def test_cred_blob(pk):
    ctap = pk.ctap2()
    max_len = ctap.info.max_cred_blob_length
    assert max_len >= 32
    rp_id = unique_rp()[0]
    blob = os.urandom(max_len)
    resp, _, _ = mc_uv(ctap, rp_id, rk=True, extensions={"credBlob": blob})
    assert resp.auth_data.extensions.get("credBlob") is True
    ga, _ = get_assertion(ctap, rp_id, extensions={"credBlob": True})
    assert ga.auth_data.extensions.get("credBlob") == blob
    ga, _ = ga_uv(ctap, rp_id, allow=[cred_id(resp)], extensions={"credBlob": True})
    assert ga.auth_data.extensions.get("credBlob") == blob

    pk.restart()
    ctap = pk.ctap2()
    ga, _ = get_assertion(ctap, rp_id, extensions={"credBlob": True})
    assert ga.auth_data.extensions.get("credBlob") == blob, "credBlob must be persistent"


def test_cred_blob_too_long(pk):
    ctap = pk.ctap2()
    rp_id = unique_rp()[0]
    resp, _, _ = mc_uv(ctap, rp_id, rk=True,
                       extensions={"credBlob": os.urandom(ctap.info.max_cred_blob_length + 1)})
    assert resp.auth_data.extensions.get("credBlob") is False
    ga, _ = get_assertion(ctap, rp_id, extensions={"credBlob": True})
    assert ga.auth_data.extensions.get("credBlob") == b""


# --------------------------------------------------------------------------------------
# largeBlobKey + authenticatorLargeBlobs


def empty_large_blob_array() -> bytes:
    return b"\x80" + sha256(b"\x80")[:16]


def test_large_blobs(fresh_authenticator):
    pk = fresh_authenticator
    ctap = pk.ctap2()
    assert ctap.large_blobs(0, get=1024)[1] == empty_large_blob_array()
    assert LargeBlobs(ctap).read_blob_array() == []

    rp_id = unique_rp()[0]
    resp, _, _ = mc_uv(ctap, rp_id, rk=True, extensions={"largeBlobKey": True})
    key = resp.large_blob_key
    assert key is not None and len(key) == 32
    ga, _ = get_assertion(ctap, rp_id, extensions={"largeBlobKey": True})
    assert ga.large_blob_key == key
    other, _, _ = mc_uv(ctap, unique_rp()[0], rk=True, extensions={"largeBlobKey": True})
    assert other.large_blob_key != key

    # Incompressible data larger than one fragment, so the write spans several commands.
    size = min(3000, ctap.info.max_large_blob - 200)
    data = os.urandom(size)
    proto, tok = uv_token(ctap, P.LARGE_BLOB_WRITE)
    LargeBlobs(ctap, proto, tok).put_blob(key, data)
    assert LargeBlobs(ctap).get_blob(key) == data
    assert LargeBlobs(ctap).get_blob(other.large_blob_key) is None

    pk.restart()
    ctap = pk.ctap2()
    assert LargeBlobs(ctap).get_blob(key) == data, "large blob array must be persistent"

    proto, tok = uv_token(ctap, P.LARGE_BLOB_WRITE)
    LargeBlobs(ctap, proto, tok).delete_blob(key)
    assert LargeBlobs(ctap).get_blob(key) is None


def test_large_blob_write_needs_authorization(pk):
    ctap = pk.ctap2()
    arr = empty_large_blob_array()
    with ctap_error(ERR.PUAT_REQUIRED, "write without pinUvAuthParam"):
        ctap.large_blobs(0, set=arr, length=len(arr))
    proto, tok = uv_token(ctap, P.GET_ASSERTION, "example.com")
    with ctap_error(ERR.PIN_AUTH_INVALID, "token without the lbw permission"):
        LargeBlobs(ctap, proto, tok).write_blob_array([])


def test_large_blob_integrity_check(pk):
    ctap = pk.ctap2()
    bad = b"\x80" + bytes(16)  # wrong trailing hash
    proto, tok = uv_token(ctap, P.LARGE_BLOB_WRITE)
    msg = b"\xff" * 32 + b"\x0c\x00" + (0).to_bytes(4, "little") + sha256(bad)
    with ctap_error(ERR.INTEGRITY_FAILURE):
        ctap.large_blobs(0, set=bad, length=len(bad), pin_uv_protocol=proto.VERSION,
                         pin_uv_param=proto.authenticate(tok, msg))


def test_large_blob_through_client(fresh_authenticator):
    pk = fresh_authenticator
    rp = WebAuthnRp(pk.device())
    reg = rp.register({"largeBlob": {"support": "required"}}, rk=RKR.REQUIRED, uv=UVR.REQUIRED)
    assert reg.client_extension_results.large_blob.supported is True
    data = b"certificate chain or anything else " * 20
    resp = rp.authenticate({"largeBlob": {"write": data}}, uv=UVR.REQUIRED, discoverable=True)
    assert resp.client_extension_results.large_blob.written is True
    resp = rp.authenticate({"largeBlob": {"read": True}}, discoverable=True)
    assert resp.client_extension_results.large_blob.blob == data


# --------------------------------------------------------------------------------------
# minPinLength


def test_min_pin_length(fresh_authenticator):
    pk = fresh_authenticator
    ctap = pk.ctap2()
    info = ctap.get_info()
    assert info.min_pin_length == 4
    assert info.options.get("setMinPINLength") is True, info.options
    pin = "123456"
    ClientPin(ctap).set_pin(pin)

    def config():
        proto, tok = pin_token(ctap, pin, P.AUTHENTICATOR_CFG)
        return Config(ctap, proto, tok)

    with ctap_error(ERR.PUAT_REQUIRED, "authenticatorConfig without pinUvAuthParam"):
        Config(ctap).set_min_pin_length(min_pin_length=6)
    proto, tok = pin_token(ctap, pin, P.MAKE_CREDENTIAL, "example.com")
    with ctap_error(ERR.PIN_AUTH_INVALID, "token without the acfg permission"):
        Config(ctap, proto, tok).set_min_pin_length(min_pin_length=6)

    config().set_min_pin_length(min_pin_length=6, rp_ids=["minpin.example"])
    assert ctap.get_info().min_pin_length == 6

    resp, _, _ = make_cred(ctap, "minpin.example", extensions={"minPinLength": True},
                           token=pin_token(ctap, pin, P.MAKE_CREDENTIAL, "minpin.example"))
    assert resp.auth_data.extensions.get("minPinLength") == 6
    resp, _, _ = make_cred(ctap, "other.example", extensions={"minPinLength": True},
                           token=pin_token(ctap, pin, P.MAKE_CREDENTIAL, "other.example"))
    assert "minPinLength" not in (resp.auth_data.extensions or {})

    with ctap_error(ERR.PIN_POLICY_VIOLATION, "new PIN shorter than minPINLength"):
        ClientPin(ctap).change_pin(pin, "12345")
    with ctap_error(ERR.PIN_POLICY_VIOLATION, "decreasing minPINLength"):
        config().set_min_pin_length(min_pin_length=5)

    # Raising it above the current PIN's length forces a PIN change.
    config().set_min_pin_length(min_pin_length=8)
    info = ctap.get_info()
    assert info.min_pin_length == 8
    assert info.force_pin_change is True
    with ctap_error(ERR.PIN_POLICY_VIOLATION, "token while a PIN change is forced"):
        pin_token(ctap, pin, P.MAKE_CREDENTIAL, "example.com")
    ClientPin(ctap).change_pin(pin, "12345678")
    assert ctap.get_info().force_pin_change is False
    pin_token(ctap, "12345678", P.MAKE_CREDENTIAL, "example.com")

    pk.restart()
    assert pk.ctap2().get_info().min_pin_length == 8, "minPINLength must be persistent"


def test_min_pin_length_through_client(fresh_authenticator):
    pk = fresh_authenticator
    ctap = pk.ctap2()
    pin = "654321"
    ClientPin(ctap).set_pin(pin)
    rp = WebAuthnRp(pk.device())
    proto, tok = pin_token(ctap, pin, P.AUTHENTICATOR_CFG)
    Config(ctap, proto, tok).set_min_pin_length(rp_ids=[rp.rp_id])
    reg = rp.register({"minPinLength": True})
    assert reg.response.attestation_object.auth_data.extensions.get("minPinLength") == 4
