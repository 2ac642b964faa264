"""authenticatorReset (CTAP 2.1 §6.6): only within 10 s of power-up; wipes everything."""

from __future__ import annotations

import time

import pytest
from fido2.ctap2 import ClientPin, CredentialManagement, LargeBlobs

from pk_helpers import (
    ERR,
    cred_id,
    ctap_error,
    get_assertion,
    make_cred,
    pin_token,
    sha256,
    uv_token,
)

P = ClientPin.PERMISSION
PIN = "86753090"

pytestmark = pytest.mark.power_cycle


def populate(ctap):
    ClientPin(ctap).set_pin(PIN)
    rk, _, _ = make_cred(ctap, "reset.example", rk=True, extensions={"largeBlobKey": True},
                         token=pin_token(ctap, PIN, P.MAKE_CREDENTIAL, "reset.example"))
    non_rk, _, _ = make_cred(ctap, "reset.example")
    proto, tok = pin_token(ctap, PIN, P.LARGE_BLOB_WRITE)
    LargeBlobs(ctap, proto, tok).put_blob(rk.large_blob_key, b"to be wiped")
    return rk, non_rk


def assert_factory_state(ctap, rk, non_rk):
    info = ctap.get_info()
    assert info.options.get("clientPin") is False, "PIN survived reset"
    assert info.min_pin_length == 4
    assert ClientPin(ctap).get_pin_retries()[0] == 8
    with ctap_error(ERR.NO_CREDENTIALS, "discoverable credential after reset"):
        get_assertion(ctap, "reset.example")
    with ctap_error(ERR.NO_CREDENTIALS, "non-discoverable credential ID after reset"):
        get_assertion(ctap, "reset.example", allow=[cred_id(non_rk), cred_id(rk)])
    proto, tok = uv_token(ctap, P.CREDENTIAL_MGMT)
    meta = CredentialManagement(ctap, proto, tok).get_metadata()
    assert meta[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 0
    assert ctap.large_blobs(0, get=1024)[1] == b"\x80" + sha256(b"\x80")[:16]


def test_reset_within_10s_of_power_up(fresh_authenticator):
    pk = fresh_authenticator
    ctap = pk.ctap2()
    rk, non_rk = populate(ctap)
    # Still usable before the reset.
    get_assertion(ctap, "reset.example", allow=[cred_id(non_rk)])

    pk.power_cycle()
    ctap = pk.ctap2()
    ctap.reset()
    assert_factory_state(ctap, rk, non_rk)

    pk.restart()  # and it stays that way
    assert_factory_state(pk.ctap2(), rk, non_rk)


def test_reset_right_after_process_start(fresh_authenticator):
    """Starting the process is a power-up too."""
    ctap = fresh_authenticator.ctap2()
    ctap.reset()
    assert ctap.get_info().options.get("clientPin") is False


@pytest.mark.slow
def test_reset_after_10s_not_allowed(fresh_authenticator):
    pk = fresh_authenticator
    ctap = pk.ctap2()
    rk, non_rk = populate(ctap)
    pk.power_cycle()
    elapsed = time.monotonic() - pk.started_at
    time.sleep(max(0.0, 10.5 - elapsed))
    ctap = pk.ctap2()
    with ctap_error(ERR.NOT_ALLOWED, "reset more than 10 s after power-up"):
        ctap.reset()
    # Nothing was wiped.
    assert ctap.get_info().options.get("clientPin") is True
    ga, _ = get_assertion(ctap, "reset.example", allow=[cred_id(non_rk)])
    assert ga.credential["id"] == cred_id(non_rk)

    # A new power cycle opens a new window.
    pk.power_cycle()
    ctap = pk.ctap2()
    ctap.reset()
    assert_factory_state(ctap, rk, non_rk)
