"""CTAP1/U2F over CTAPHID_MSG (FIDO U2F raw message formats), checked with `cryptography`."""

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
from fido2.hid import CTAPHID

from pk_helpers import sha256

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
    assert 1 <= len(reg.key_handle) <= 255
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
