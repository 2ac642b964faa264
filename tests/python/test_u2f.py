"""CTAP1/U2F over CTAPHID_MSG (FIDO U2F raw message formats), checked with `cryptography`;
and the CTAP 2.1 rules that keep U2F from bypassing user verification (credProtect level 3,
alwaysUv)."""

from __future__ import annotations

import os
import struct
import time

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.ctap1 import APDU, ApduError, Ctap1
from fido2.ctap2 import ClientPin, Config
from fido2.hid import CTAPHID

from pk_helpers import cred_id, cred_key, make_cred, sha256, uv_token

APP = sha256(b"https://u2f.example.com")


@pytest.fixture
def ctap1(pk):
    return Ctap1(pk.device())


def until_present(fn, *args, timeout=10.0):
    """U2F keys answer 0x6985 until the user is present; clients poll. So do we."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn(*args)
        except ApduError as e:
            if e.code != APDU.USE_NOT_SATISFIED or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def register(ctap1, app=APP):
    chal = os.urandom(32)
    return until_present(ctap1.register, chal, app), chal


def verify_registration(reg, app, chal):
    assert len(reg.public_key) == 65 and reg.public_key[0] == 0x04
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), reg.public_key)
    cert = x509.load_der_x509_certificate(reg.certificate)
    msg = b"\x00" + app + chal + reg.key_handle + reg.public_key
    cert.public_key().verify(reg.signature, msg, ec.ECDSA(hashes.SHA256()))


def verify_authentication(sig, reg, app, chal):
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), reg.public_key)
    msg = app + sig[:5] + chal  # app ‖ user presence ‖ counter ‖ challenge
    pub.verify(sig.signature, msg, ec.ECDSA(hashes.SHA256()))


def test_version(ctap1):
    assert ctap1.get_version() == "U2F_V2"


def test_register(ctap1):
    reg, chal = register(ctap1)
    # format ‖ sealed(alg, credProtect, flags, 32-byte key, credBlob length 0): 1 + 29 + 37
    # (core/src/credential_id.rs; the seal adds a version byte, a 12-byte nonce, a 16-byte tag).
    assert len(reg.key_handle) == 66
    verify_registration(reg, APP, chal)
    reg.verify(APP, chal)  # python-fido2's own check agrees
    with pytest.raises(InvalidSignature):
        verify_registration(reg, APP, os.urandom(32))


def test_authenticate(ctap1):
    reg, _ = register(ctap1)
    counters = []
    for _ in range(3):
        chal = os.urandom(32)
        sig = until_present(ctap1.authenticate, chal, APP, reg.key_handle)
        assert sig.user_presence & 0x01, "enforce-user-presence must report UP"
        verify_authentication(sig, reg, APP, chal)
        sig.verify(APP, chal, reg.public_key)
        counters.append(sig.counter)
    assert counters == sorted(counters) and len(set(counters)) == 3, counters


def test_check_only(ctap1):
    reg, _ = register(ctap1)
    with pytest.raises(ApduError) as e:
        ctap1.authenticate(os.urandom(32), APP, reg.key_handle, check_only=True)
    assert e.value.code == APDU.USE_NOT_SATISFIED, hex(e.value.code)

    with pytest.raises(ApduError) as e:
        ctap1.authenticate(os.urandom(32), APP, os.urandom(len(reg.key_handle)), check_only=True)
    assert e.value.code == APDU.WRONG_DATA, hex(e.value.code)

    with pytest.raises(ApduError) as e:
        ctap1.authenticate(os.urandom(32), sha256(b"other app"), reg.key_handle, check_only=True)
    assert e.value.code == APDU.WRONG_DATA, "key handle must be bound to its application"


def test_authenticate_bad_key_handle(ctap1):
    with pytest.raises(ApduError) as e:
        ctap1.authenticate(os.urandom(32), APP, os.urandom(64))
    assert e.value.code == APDU.WRONG_DATA, hex(e.value.code)


def test_key_handles_differ(ctap1):
    a, _ = register(ctap1)
    b, _ = register(ctap1)
    assert a.key_handle != b.key_handle
    assert a.public_key != b.public_key


def msg_status(dev, apdu: bytes) -> int:
    resp = dev.call(CTAPHID.MSG, apdu)
    return struct.unpack(">H", resp[-2:])[0]


def test_unknown_instruction(pk):
    dev = pk.device()
    assert msg_status(dev, bytes([0x00, 0x55, 0, 0, 0, 0, 0])) == 0x6D00


def test_wrong_class(pk):
    dev = pk.device()
    assert msg_status(dev, bytes([0x80, 0x03, 0, 0, 0, 0, 0])) == 0x6E00


def test_register_wrong_length(pk):
    dev = pk.device()
    data = os.urandom(40)  # register needs exactly 64 bytes
    apdu = struct.pack(">BBBBBH", 0, 0x01, 0, 0, 0, len(data)) + data + b"\0\0"
    assert msg_status(dev, apdu) == 0x6700


# --------------------------------------------------------------------------------------
# U2F must not bypass user verification (CTAP 2.1 §12.1 credProtect, §7.2 alwaysUv)

# What OpenSK's ctap1.rs answers while CTAP1 is disabled.
SW_COMMAND_NOT_ALLOWED = 0x6986


def u2f_key_handle_from_ctap2(pk, rp_id: str, level: int):
    """A non-discoverable CTAP2 credential made with credProtect `level`, whose ID is also a
    U2F key handle for application SHA-256(rp_id)."""
    resp, _, _ = make_cred(pk.ctap2(), rp_id, extensions={"credProtect": level})
    assert resp.auth_data.extensions.get("credProtect") == level
    return cred_id(resp), cred_key(resp)


def test_cred_protect_uv_required_credential_is_unknown_to_u2f(pk, ctap1):
    """A userVerificationRequired credential is never usable over U2F, which cannot verify
    the user: AUTHENTICATE answers as for a key handle the key does not know (0x6A80), with
    presence enforced, not enforced, or check-only."""
    rp_id = "cp3.u2f.example.com"
    app = sha256(rp_id.encode())
    kh, _ = u2f_key_handle_from_ctap2(pk, rp_id, 3)
    for kwargs in ({}, {"check_only": True}):
        with pytest.raises(ApduError) as e:
            ctap1.authenticate(os.urandom(32), app, kh, **kwargs)
        assert e.value.code == APDU.WRONG_DATA, f"{kwargs}: 0x{e.value.code:04x}"
    dev = pk.device()
    apdu = struct.pack(">BBBBBH", 0, 0x02, 0x08, 0, 0, 65 + len(kh))
    apdu += os.urandom(32) + app + bytes([len(kh)]) + kh + b"\0\0"
    assert msg_status(dev, apdu) == APDU.WRONG_DATA, "dont-enforce-presence too"


def test_cred_protect_optional_credential_still_works_over_u2f(pk, ctap1):
    """The same path with credProtect level 2 signs, so it is the level that is refused."""
    rp_id = "cp2.u2f.example.com"
    app = sha256(rp_id.encode())
    kh, key = u2f_key_handle_from_ctap2(pk, rp_id, 2)
    chal = os.urandom(32)
    sig = until_present(ctap1.authenticate, chal, app, kh)
    key.verify(app + sig[:5] + chal, sig.signature)


def toggle_always_uv(ctap) -> bool:
    proto, tok = uv_token(ctap, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
    Config(ctap, proto, tok).toggle_always_uv()
    return ctap.get_info().options.get("alwaysUv")


def test_always_uv_turns_u2f_off(fresh_authenticator):
    """While alwaysUv is on, getInfo drops "U2F_V2" and every CTAPHID_MSG APDU is refused
    with SW_COMMAND_NOT_ALLOWED (as OpenSK); turning it off brings U2F back."""
    pk = fresh_authenticator
    ctap1 = Ctap1(pk.device())
    reg, _ = register(ctap1)
    ctap = pk.ctap2()
    assert "U2F_V2" in ctap.get_info().versions

    assert toggle_always_uv(ctap) is True
    assert "U2F_V2" not in ctap.get_info().versions, ctap.get_info().versions
    for what, call in (
        ("VERSION", lambda: ctap1.get_version()),
        ("REGISTER", lambda: ctap1.register(os.urandom(32), APP)),
        ("AUTHENTICATE", lambda: ctap1.authenticate(os.urandom(32), APP, reg.key_handle)),
        ("AUTHENTICATE check-only",
         lambda: ctap1.authenticate(os.urandom(32), APP, reg.key_handle, check_only=True)),
    ):
        with pytest.raises(ApduError) as e:
            call()
        assert e.value.code == SW_COMMAND_NOT_ALLOWED, f"{what}: 0x{e.value.code:04x}"

    pk.restart()  # alwaysUv is persistent, and so is U2F being off
    ctap1 = Ctap1(pk.device())
    with pytest.raises(ApduError) as e:
        ctap1.authenticate(os.urandom(32), APP, reg.key_handle)
    assert e.value.code == SW_COMMAND_NOT_ALLOWED

    assert toggle_always_uv(pk.ctap2()) is False
    assert "U2F_V2" in pk.ctap2().get_info().versions
    chal = os.urandom(32)
    sig = until_present(ctap1.authenticate, chal, APP, reg.key_handle)
    verify_authentication(sig, reg, APP, chal)
