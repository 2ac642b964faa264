"""CTAPHID framing over UDP (CTAP 2.1 §11.2), driven with raw datagrams."""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from pocketkey_udp import BROADCAST_CID, REPORT_SIZE, send_power_cycle

PING, MSG, INIT, WINK, CBOR, CANCEL, ERROR, KEEPALIVE = 0x01, 0x03, 0x06, 0x08, 0x10, 0x11, 0x3F, 0x3B
ERR_INVALID_CMD, ERR_INVALID_LEN, ERR_INVALID_SEQ, ERR_CHANNEL_BUSY = 0x01, 0x03, 0x04, 0x06
ERR_INVALID_CHANNEL = 0x0B
CAP_WINK, CAP_CBOR, CAP_NMSG = 0x01, 0x04, 0x08
MAX_PAYLOAD = 64 - 7 + 128 * (64 - 5)  # 7609


class RawHid:
    def __init__(self, addr):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(addr)
        self.sock.settimeout(1.0)

    def close(self):
        self.sock.close()

    def send_packet(self, pkt: bytes):
        assert len(pkt) <= REPORT_SIZE
        self.sock.send(pkt.ljust(REPORT_SIZE, b"\0"))

    def init_packet(self, cid: int, cmd: int, bcnt: int, data: bytes) -> bytes:
        return struct.pack(">IBH", cid, 0x80 | cmd, bcnt) + data[: REPORT_SIZE - 7]

    def cont_packet(self, cid: int, seq: int, data: bytes) -> bytes:
        return struct.pack(">IB", cid, seq) + data[: REPORT_SIZE - 5]

    def send(self, cid: int, cmd: int, data: bytes = b""):
        self.send_packet(self.init_packet(cid, cmd, len(data), data))
        rest, seq = data[REPORT_SIZE - 7 :], 0
        while rest:
            self.send_packet(self.cont_packet(cid, seq, rest))
            rest, seq = rest[REPORT_SIZE - 5 :], seq + 1

    def recv_packet(self, timeout: float = 1.0) -> bytes:
        self.sock.settimeout(timeout)
        pkt = self.sock.recv(2048)
        assert len(pkt) == REPORT_SIZE, f"reply datagram of {len(pkt)} bytes, expected 64"
        return pkt

    def recv(self, cid: int, timeout: float = 1.0) -> tuple[int, bytes]:
        """Reassemble one message for `cid` (skipping KEEPALIVE); returns (cmd, payload)."""
        while True:
            pkt = self.recv_packet(timeout)
            r_cid, r_cmd, bcnt = struct.unpack_from(">IBH", pkt)
            assert r_cid == cid, f"reply on channel {r_cid:08x}, expected {cid:08x}"
            assert r_cmd & 0x80, f"expected an initialization packet, got {pkt.hex()}"
            if r_cmd == 0x80 | KEEPALIVE:
                continue
            break
        data = pkt[7:]
        seq = 0
        while len(data) < bcnt:
            pkt = self.recv_packet(timeout)
            r_cid, r_seq = struct.unpack_from(">IB", pkt)
            assert r_cid == cid
            assert r_seq == seq, f"continuation sequence {r_seq}, expected {seq}"
            data += pkt[5:]
            seq += 1
        return r_cmd & 0x7F, data[:bcnt]

    def expect_silence(self, timeout: float = 0.3):
        self.sock.settimeout(timeout)
        try:
            pkt = self.sock.recv(2048)
        except socket.timeout:
            return
        raise AssertionError(f"unexpected reply {pkt.hex()}")

    def allocate(self) -> tuple[int, bytes]:
        nonce = os.urandom(8)
        self.send(BROADCAST_CID, INIT, nonce)
        cmd, resp = self.recv(BROADCAST_CID)
        assert cmd == INIT
        assert resp[:8] == nonce
        return struct.unpack_from(">I", resp, 8)[0], resp


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
