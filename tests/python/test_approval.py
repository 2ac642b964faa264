"""Waiting for the user (DESIGN §3): while the Approver is asked, CTAPHID sends KEEPALIVE
with status UPNEEDED at least every 100 ms; CTAPHID_CANCEL ends the wait with
CTAP2_ERR_KEEPALIVE_CANCEL; a refusal is CTAP2_ERR_OPERATION_DENIED.

These run `pocketkey serve` without --auto-approve; its terminal approver reads the answers
from our pipe."""

from __future__ import annotations

import os
import struct
import time

import pytest
from fido2 import cbor
from fido2.hid import CTAPHID

from pk_helpers import ERR, PUBKEY_ES256, rp, user
from pocketkey_udp import RawHid

UPNEEDED, PROCESSING = 0x02, 0x01


@pytest.fixture
def hid(manual_authenticator):
    h = RawHid(manual_authenticator.addr)
    yield h
    h.close()


def send_make_credential(hid: RawHid, cid: int, rp_id: str = "approve.example") -> None:
    req = {1: os.urandom(32), 2: rp(rp_id), 3: user(), 4: [PUBKEY_ES256]}
    hid.send(cid, CTAPHID.CBOR, bytes([0x01]) + cbor.encode(req))


def keepalives(hid: RawHid, cid: int, duration: float) -> list[tuple[float, int]]:
    """Read packets for `duration` seconds; every one must be a KEEPALIVE for `cid`."""
    seen = []
    end = time.monotonic() + duration
    while time.monotonic() < end:
        pkt = hid.recv_packet(timeout=1.0)
        r_cid, r_cmd, bcnt = struct.unpack_from(">IBH", pkt)
        assert r_cid == cid, f"packet on channel {r_cid:08x}"
        assert r_cmd == 0x80 | CTAPHID.KEEPALIVE, f"expected KEEPALIVE while waiting, got {pkt.hex()}"
        assert bcnt == 1
        seen.append((time.monotonic(), pkt[7]))
    return seen


def final_status(hid: RawHid, cid: int, timeout: float = 2.0) -> int:
    cmd, data = hid.recv(cid, timeout=timeout)
    assert cmd == CTAPHID.CBOR, f"expected a CBOR response, got command {cmd:#x} {data.hex()}"
    return data[0]


def test_keepalive_while_waiting_then_deny(manual_authenticator, hid):
    cid, _ = hid.allocate()
    send_make_credential(hid, cid)
    seen = keepalives(hid, cid, 0.8)
    statuses = [s for _, s in seen]
    assert all(s in (PROCESSING, UPNEEDED) for s in statuses), statuses
    assert statuses[-1] == UPNEEDED, "waiting for the user must be reported as UPNEEDED"
    assert len(seen) >= 6, f"only {len(seen)} KEEPALIVEs in 0.8 s"
    gaps = sorted(b[0] - a[0] for a, b in zip(seen, seen[1:]))
    median = gaps[len(gaps) // 2]
    # 100 ms nominal: the median shows the cadence; the maximum has slack for a loaded machine.
    assert median <= 0.12, f"median KEEPALIVE interval {median * 1000:.0f} ms"
    assert gaps[-1] < 0.3, f"KEEPALIVE gap of {gaps[-1] * 1000:.0f} ms"

    manual_authenticator.answer("n")
    assert final_status(hid, cid) == ERR.OPERATION_DENIED


def test_cancel_ends_the_wait(manual_authenticator, hid):
    cid, _ = hid.allocate()
    send_make_credential(hid, cid)
    keepalives(hid, cid, 0.3)
    hid.send(cid, CTAPHID.CANCEL)
    assert final_status(hid, cid) == ERR.KEEPALIVE_CANCEL

    # The key is usable again, and a new request can be approved.
    hid.send(cid, CTAPHID.PING, b"still alive")
    assert hid.recv(cid) == (CTAPHID.PING, b"still alive")
    send_make_credential(hid, cid)
    keepalives(hid, cid, 0.3)
    manual_authenticator.answer("y")
    assert final_status(hid, cid) == 0x00


def test_approve(manual_authenticator, hid):
    cid, _ = hid.allocate()
    send_make_credential(hid, cid)
    keepalives(hid, cid, 0.2)
    manual_authenticator.answer("y")
    cmd, data = hid.recv(cid, timeout=2.0)
    assert cmd == CTAPHID.CBOR and data[0] == 0
    att = cbor.decode(data[1:])
    assert att[1] == "packed"


def test_other_channel_gets_busy_while_waiting(manual_authenticator, hid):
    cid, _ = hid.allocate()
    other = RawHid(manual_authenticator.addr)
    try:
        cid2, _ = other.allocate()
        send_make_credential(hid, cid)
        keepalives(hid, cid, 0.2)
        other.send(cid2, CTAPHID.CBOR, b"\x04")
        cmd, data = other.recv(cid2)
        assert cmd == CTAPHID.ERROR and data[:1] == b"\x06", (
            f"expected ERR_CHANNEL_BUSY on another channel, got {cmd:#x} {data.hex()}"
        )
    finally:
        other.close()
    hid.send(cid, CTAPHID.CANCEL)
    assert final_status(hid, cid) == ERR.KEEPALIVE_CANCEL
