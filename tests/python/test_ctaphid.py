"""CTAPHID framing over UDP (CTAP 2.1 §11.2), driven with raw datagrams."""

from __future__ import annotations

import os
import struct
import time

import pytest

from pocketkey_udp import BROADCAST_CID, RawHid, send_power_cycle

PING, MSG, INIT, WINK, CBOR, CANCEL, ERROR, KEEPALIVE = 0x01, 0x03, 0x06, 0x08, 0x10, 0x11, 0x3F, 0x3B
ERR_INVALID_CMD, ERR_INVALID_LEN, ERR_INVALID_SEQ, ERR_CHANNEL_BUSY = 0x01, 0x03, 0x04, 0x06
ERR_INVALID_CHANNEL = 0x0B
CAP_WINK, CAP_CBOR, CAP_NMSG = 0x01, 0x04, 0x08
MAX_PAYLOAD = 64 - 7 + 128 * (64 - 5)  # 7609

# test_power_cycle_keeps_or_reaccepts_channel sends the power-cycle datagram to the module's key.
pytestmark = pytest.mark.power_cycle


@pytest.fixture
def hid(pk):
    h = RawHid(pk.addr)
    yield h
    h.close()


def expect_error(hid: RawHid, cid: int, code: int):
    cmd, data = hid.recv(cid)
    assert cmd == ERROR, f"expected CTAPHID_ERROR 0x{code:02x}, got command 0x{cmd:02x} {data.hex()}"
    assert data[:1] == bytes([code]), f"expected CTAPHID error 0x{code:02x}, got {data.hex()}"


def test_init_allocates_channel(hid):
    cid, resp = hid.allocate()
    assert len(resp) >= 17
    assert cid not in (0, BROADCAST_CID)
    proto, _maj, _min, _build, caps = struct.unpack_from(">BBBBB", resp, 12)
    assert proto == 2, "CTAPHID protocol version must be 2"
    assert caps & CAP_CBOR, "CBOR capability must be set"
    assert not caps & CAP_NMSG, "NMSG set, but the key implements U2F (CTAPHID_MSG)"
    cid2, _ = hid.allocate()
    assert cid2 != cid, "two INITs on the broadcast channel returned the same channel id"


@pytest.mark.parametrize("size", [0, 1, 57, 58, 116, 1024, MAX_PAYLOAD])
def test_ping_echo(hid, size):
    cid, _ = hid.allocate()
    data = os.urandom(size)
    hid.send(cid, PING, data)
    cmd, echo = hid.recv(cid)
    assert cmd == PING
    assert echo == data


def test_unknown_command(hid):
    cid, _ = hid.allocate()
    hid.send(cid, 0x2A, b"\x01\x02")
    expect_error(hid, cid, ERR_INVALID_CMD)


def test_non_init_on_broadcast_channel(hid):
    hid.send(BROADCAST_CID, PING, b"hi")
    expect_error(hid, BROADCAST_CID, ERR_INVALID_CHANNEL)


def test_unallocated_channel(hid):
    hid.allocate()
    cid = 0x5EEDF00D
    hid.send(cid, PING, b"hi")
    expect_error(hid, cid, ERR_INVALID_CHANNEL)


def test_init_on_a_channel_never_allocated(pk):
    """A host whose key restarted retries INIT on its old channel: the key answers it there and
    keeps the channel, as SoloKeys and YubiKeys do (CTAP 2.1 §11.2.9.1.3 is silent on it)."""
    hid = RawHid(pk.addr)
    try:
        cid = 0x5EED0001
        nonce = os.urandom(8)
        hid.send(cid, INIT, nonce)
        cmd, resp = hid.recv(cid)
        assert cmd == INIT, f"expected an INIT answer, got command 0x{cmd:02x} {resp.hex()}"
        assert resp[:8] == nonce
        assert struct.unpack_from(">I", resp, 8)[0] == cid
        hid.send(cid, PING, b"on the old channel")
        assert hid.recv(cid) == (PING, b"on the old channel")
    finally:
        hid.close()


def test_unallocated_channel_while_busy(pk):
    """CTAP 2.1 §11.2.5.1: while another channel holds the key, a request from any channel
    fails with CHANNEL_BUSY."""
    a, b = RawHid(pk.addr), RawHid(pk.addr)
    try:
        cid_a, _ = a.allocate()
        data = os.urandom(200)
        a.send_packet(a.init_packet(cid_a, PING, len(data), data))
        b.send(0x5EED0002, PING, b"me too")
        expect_error(b, 0x5EED0002, ERR_CHANNEL_BUSY)
        rest, seq = data[57:], 0
        while rest:
            a.send_packet(a.cont_packet(cid_a, seq, rest))
            rest, seq = rest[59:], seq + 1
        assert a.recv(cid_a) == (PING, data)
        b.send(0x5EED0002, PING, b"idle now")
        expect_error(b, 0x5EED0002, ERR_INVALID_CHANNEL)
    finally:
        a.close()
        b.close()


def test_length_too_large(hid):
    cid, _ = hid.allocate()
    hid.send_packet(hid.init_packet(cid, PING, MAX_PAYLOAD + 1, b"x" * 57))
    expect_error(hid, cid, ERR_INVALID_LEN)


def test_wrong_sequence(hid):
    cid, _ = hid.allocate()
    data = os.urandom(200)
    hid.send_packet(hid.init_packet(cid, PING, len(data), data))
    hid.send_packet(hid.cont_packet(cid, 1, data[57:]))  # seq 0 skipped
    expect_error(hid, cid, ERR_INVALID_SEQ)
    # The channel is usable afterwards.
    hid.send(cid, PING, b"again")
    assert hid.recv(cid) == (PING, b"again")


def test_channel_busy(pk):
    a, b = RawHid(pk.addr), RawHid(pk.addr)
    try:
        cid_a, _ = a.allocate()
        cid_b, _ = b.allocate()
        data = os.urandom(200)
        a.send_packet(a.init_packet(cid_a, PING, len(data), data))
        b.send(cid_b, PING, b"me too")
        expect_error(b, cid_b, ERR_CHANNEL_BUSY)
        rest, seq = data[57:], 0
        while rest:
            a.send_packet(a.cont_packet(cid_a, seq, rest))
            rest, seq = rest[59:], seq + 1
        assert a.recv(cid_a) == (PING, data)
        b.send(cid_b, PING, b"now")
        assert b.recv(cid_b) == (PING, b"now")
    finally:
        a.close()
        b.close()


def test_init_on_allocated_channel_resyncs(hid):
    cid, _ = hid.allocate()
    data = os.urandom(200)
    hid.send_packet(hid.init_packet(cid, PING, len(data), data))  # left unfinished
    nonce = os.urandom(8)
    hid.send(cid, INIT, nonce)
    cmd, resp = hid.recv(cid)
    assert cmd == INIT
    assert resp[:8] == nonce
    assert struct.unpack_from(">I", resp, 8)[0] == cid, "resync INIT must keep the channel id"
    hid.send(cid, PING, b"after resync")
    assert hid.recv(cid) == (PING, b"after resync")


def test_spurious_continuation_ignored(hid):
    cid, _ = hid.allocate()
    hid.send_packet(hid.cont_packet(cid, 0, b"stray"))
    hid.expect_silence()
    hid.send(cid, PING, b"still here")
    assert hid.recv(cid) == (PING, b"still here")


def test_power_cycle_keeps_or_reaccepts_channel(pk, hid):
    cid, _ = hid.allocate()
    send_power_cycle(pk.addr)
    time.sleep(0.1)
    hid.send(cid, PING, b"after power cycle")
    assert hid.recv(cid) == (PING, b"after power cycle")


def test_cbor_get_info_over_raw_hid(hid):
    cid, _ = hid.allocate()
    hid.send(cid, CBOR, b"\x04")
    cmd, resp = hid.recv(cid)
    assert cmd == CBOR
    assert resp[0] == 0x00
    assert resp[1] & 0xE0 == 0xA0, "getInfo response must be a CBOR map"


def test_wink_if_advertised(hid):
    cid, resp = hid.allocate()
    caps = resp[16]
    hid.send(cid, WINK)
    cmd, data = hid.recv(cid)
    if caps & CAP_WINK:
        assert (cmd, data) == (WINK, b""), f"WINK advertised but answered {cmd:#x} {data.hex()}"
    else:
        assert cmd == ERROR and data[:1] == bytes([ERR_INVALID_CMD])
