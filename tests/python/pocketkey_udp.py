"""CTAPHID over UDP for python-fido2, plus a manager for a `pocketkey serve --udp` process.

Wire convention (docs/architecture.md §4): each datagram is one 64-byte CTAPHID report without a
report-ID byte; the authenticator replies to the sender's address; a special 64-byte
datagram means "power cycle". Clients wait at most 1 s for each reply packet.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fido2 import cbor
from fido2.ctap import CtapDevice
from fido2.hid import CTAPHID, CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

REPORT_SIZE = 64
PACKET_TIMEOUT = 1.0
BROADCAST_CID = 0xFFFFFFFF

POWER_CYCLE_DATAGRAM = bytes.fromhex(
    "ac1052ca95e569de69e02ebff333485f13f9b2da34c5a8a340526697a9ab2e0b"
    "394d8d04973c134005be1a0140bff6045bb26eb77a73eaa47813f6b49a7250dc"
)
assert len(POWER_CYCLE_DATAGRAM) == REPORT_SIZE

REPO_ROOT = Path(__file__).resolve().parents[2]


class UdpTimeout(TimeoutError):
    """No reply packet within the per-packet timeout."""


class UdpCtapHidConnection(CtapHidConnection):
    """A CtapHidConnection whose reports travel as UDP datagrams."""

    def __init__(self, addr: tuple[str, int], timeout: float = PACKET_TIMEOUT):
        self.addr = addr
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(addr)
        self.sock.settimeout(timeout)

    def write_packet(self, data: bytes) -> None:
        if len(data) != REPORT_SIZE:
            raise ValueError(f"CTAPHID report must be {REPORT_SIZE} bytes, got {len(data)}")
        self.sock.send(data)

    def read_packet(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UdpTimeout(f"no CTAPHID report from {self.addr} within {self.timeout} s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(2048)
            except socket.timeout:
                continue
            if len(data) != REPORT_SIZE:
                raise ValueError(
                    f"authenticator sent a {len(data)}-byte datagram, expected {REPORT_SIZE}"
                )
            return data

    def drain(self) -> list[bytes]:
        """Discard (and return) anything already queued on the socket."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(2048))
        except BlockingIOError:
            pass
        finally:
            self.sock.settimeout(self.timeout)
        return out

    def close(self) -> None:
        self.sock.close()


def udp_descriptor(addr: tuple[str, int]) -> HidDescriptor:
    return HidDescriptor(
        path=f"udp:{addr[0]}:{addr[1]}",
        vid=0,
        pid=0,
        report_size_in=REPORT_SIZE,
        report_size_out=REPORT_SIZE,
        product_name="PocketKey (UDP)",
        serial_number=None,
    )


def open_udp_device(addr: tuple[str, int], timeout: float = PACKET_TIMEOUT) -> CtapHidDevice:
    """Open a CtapHidDevice over UDP; the constructor performs CTAPHID_INIT."""
    conn = UdpCtapHidConnection(addr, timeout)
    try:
        return CtapHidDevice(udp_descriptor(addr), conn)
    except BaseException:
        conn.close()
        raise


def open_answering_get_info(addr: tuple[str, int], timeout: float) -> CtapHidDevice:
    """The device at `addr` once it answers getInfo. A bridge answers CTAP1_ERR_OTHER until it
    has stored its phone's getInfo, a moment after the phone's pairing call has returned."""
    from fido2.ctap2 import Ctap2

    deadline = time.monotonic() + timeout
    while True:
        dev = None
        try:
            dev = open_udp_device(addr)
            Ctap2(dev)
            return dev
        except Exception:
            if dev is not None:
                dev.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def send_power_cycle(addr: tuple[str, int]) -> None:
    """Send the "power cycle" datagram (no reply is expected)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(POWER_CYCLE_DATAGRAM, addr)


def raw_init(addr: tuple[str, int], timeout: float = 0.3) -> bytes | None:
    """Send a CTAPHID_INIT on the broadcast channel; return the reply payload or None."""
    nonce = os.urandom(8)
    pkt = struct.pack(">IBH", BROADCAST_CID, 0x80 | CTAPHID.INIT, 8) + nonce
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(pkt.ljust(REPORT_SIZE, b"\0"), addr)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = s.recv(2048)
                cid, cmd, ln = struct.unpack_from(">IBH", data)
                if cid == BROADCAST_CID and cmd == 0x80 | CTAPHID.INIT and data[7:15] == nonce:
                    return data[7 : 7 + ln]
        except (socket.timeout, ConnectionRefusedError, OSError):
            return None
    return None


# --------------------------------------------------------------------------------------
# Raw CTAPHID, for framing tests and for watching KEEPALIVE/CANCEL.


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

    def recv(self, cid: int, timeout: float = 1.0, skip_keepalive: bool = True) -> tuple[int, bytes]:
        """Reassemble one message for `cid` (skipping KEEPALIVE); returns (cmd, payload)."""
        while True:
            pkt = self.recv_packet(timeout)
            r_cid, r_cmd, bcnt = struct.unpack_from(">IBH", pkt)
            assert r_cid == cid, f"reply on channel {r_cid:08x}, expected {cid:08x}"
            assert r_cmd & 0x80, f"expected an initialization packet, got {pkt.hex()}"
            if r_cmd == 0x80 | CTAPHID.KEEPALIVE and skip_keepalive:
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
        self.send(BROADCAST_CID, CTAPHID.INIT, nonce)
        cmd, resp = self.recv(BROADCAST_CID)
        assert cmd == CTAPHID.INIT
        assert resp[:8] == nonce
        return struct.unpack_from(">I", resp, 8)[0], resp


# --------------------------------------------------------------------------------------
# Recording device: sees the raw bytes of every exchange, checks canonical CBOR.


@dataclass
class Exchange:
    cmd: int
    request: bytes
    response: bytes | None = None
    error: BaseException | None = None


class NonCanonicalCbor(AssertionError):
    pass


def check_canonical(enc: bytes, what: str = "response") -> Any:
    """Decode with fido2.cbor, re-encode, and demand identical bytes."""
    try:
        decoded = cbor.decode(enc)
    except Exception as e:  # noqa: BLE001
        raise NonCanonicalCbor(f"{what}: undecodable CBOR ({e!r}): {enc.hex()}") from e
    again = cbor.encode(decoded)
    if again != enc:
        raise NonCanonicalCbor(
            f"{what}: non-canonical CBOR\n  got:      {enc.hex()}\n  expected: {again.hex()}"
        )
    return decoded


class RecordingDevice(CtapDevice):
    """Wraps a CtapHidDevice; records every call and checks each CTAP2 response.

    Every successful CTAPHID_CBOR response (status 0x00 followed by CBOR) must be
    canonical CTAP2 CBOR: decoding it with fido2.cbor and re-encoding gives the same
    bytes. Violations are collected in `violations` (and raised if `strict`).
    """

    def __init__(self, inner: CtapHidDevice, strict: bool = True):
        self.inner = inner
        self.strict = strict
        self.log: list[Exchange] = []
        self.violations: list[str] = []

    @property
    def capabilities(self) -> int:
        return self.inner.capabilities

    @property
    def version(self) -> int:
        return self.inner.version

    @property
    def device_version(self):
        return self.inner.device_version

    def call(self, cmd, data=b"", event=None, on_keepalive=None):
        ex = Exchange(cmd, bytes(data))
        self.log.append(ex)
        try:
            ex.response = self.inner.call(cmd, data, event, on_keepalive)
        except BaseException as e:
            ex.error = e
            raise
        if cmd == CTAPHID.CBOR and ex.response and ex.response[0] == 0 and len(ex.response) > 1:
            try:
                check_canonical(ex.response[1:], f"CTAP2 command 0x{data[0]:02x} response")
            except NonCanonicalCbor as e:
                self.violations.append(str(e))
                if self.strict:
                    raise
        return ex.response

    def ping(self, msg: bytes = b"Hello FIDO") -> bytes:
        return self.call(CTAPHID.PING, msg)

    def wink(self) -> None:
        self.call(CTAPHID.WINK)

    def close(self) -> None:
        self.inner.close()

    @classmethod
    def list_devices(cls):
        return iter(())

    def cbor_responses(self) -> list[tuple[int, bytes]]:
        return [
            (ex.request[0], ex.response)
            for ex in self.log
            if ex.cmd == CTAPHID.CBOR and ex.response is not None and ex.request
        ]


def raw_cbor(dev: CtapDevice, command: int, payload: bytes = b"") -> tuple[int, Any]:
    """Send bytes `command ‖ payload` as CTAPHID_CBOR; return (status, decoded body or None)."""
    resp = dev.call(CTAPHID.CBOR, bytes([command]) + payload)
    status = resp[0]
    body = resp[1:]
    return status, (cbor.decode(body) if body else None)


# --------------------------------------------------------------------------------------
# The authenticator process.


def default_binary() -> Path:
    env = os.environ.get("POCKETKEY_BIN")
    if env:
        return Path(env)
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO_ROOT / "target"
    return base / "debug" / "pocketkey"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AuthenticatorError(RuntimeError):
    pass


# What `serve --udp` says when its address is taken (desktop/src/udp.rs, UdpTransport::bind).
PORT_IN_USE = "the address is in use"


@dataclass
class Authenticator:
    """A running `pocketkey serve --udp` process with its own state directory."""

    state_dir: Path
    binary: Path = field(default_factory=default_binary)
    extra_args: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    _log_file: Any = None
    _log_mark: int = 0
    devices: list[RecordingDevice] = field(default_factory=list)
    started_at: float = 0.0
    # False: no --auto-approve; the terminal approver reads answers ("y", "p", "n", account
    # number) from our pipe, since the process runs in its own session without a tty.
    auto_approve: bool = True
    # --allow-power-cycle: the key honours the "power cycle" datagram (tests that need
    # power_cycle(); see the power_cycle marker in pocketkey_fixtures.py).
    allow_power_cycle: bool = False

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def udp_path(self) -> str:
        return f"udp:{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "serve",
            "--udp",
            f"{self.host}:{self.port}",
            "--state-dir",
            str(self.state_dir),
            *(["--auto-approve"] if self.auto_approve else []),
            *(["--allow-power-cycle"] if self.allow_power_cycle else []),
            *self.extra_args,
        ]

    def start(self, ready_timeout: float = 20.0) -> "Authenticator":
        if not self.binary.exists():
            raise AuthenticatorError(
                f"authenticator binary {self.binary} not found; build it with "
                "`cargo build -p pocketkey` or set POCKETKEY_BIN"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        if self.log_path is None:
            self.log_path = self.state_dir.parent / f"{self.state_dir.name}.stderr.log"
        last_err = None
        for _attempt in range(3):
            # free_udp_port() releases the port before `serve` binds it, so another process
            # can take it in between: only that failure is worth another port. Any other
            # failure to start is the binary's, and retrying would hide a key that crashes
            # at start some of the time.
            self.port = free_udp_port()
            attempt_log = self.log_size()
            self._log_file = open(self.log_path, "ab")
            env = dict(os.environ)
            env.setdefault("RUST_BACKTRACE", "1")
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL if self.auto_approve else subprocess.PIPE,
                stdout=self._log_file,
                stderr=self._log_file,
                env=env,
                start_new_session=True,  # no controlling terminal, never the developer's tty
            )
            try:
                self._wait_ready(ready_timeout)
                self.started_at = time.monotonic()
                return self
            except AuthenticatorError as e:
                exited = self.proc is not None and self.proc.poll() is not None
                self.stop()
                if not (exited and PORT_IN_USE in self.read_log(attempt_log)):
                    raise
                last_err = e
        raise last_err  # type: ignore[misc]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AuthenticatorError(
                    f"`{' '.join(self.command())}` exited with {self.proc.returncode} "
                    f"before answering CTAPHID_INIT:\n{self.read_log()}"
                )
            if raw_init(self.addr) is not None:
                return
            time.sleep(0.05)
        raise AuthenticatorError(
            f"`{' '.join(self.command())}` did not answer CTAPHID_INIT within {timeout} s:\n"
            f"{self.read_log()}"
        )

    def stop(self) -> int | None:
        for d in self.devices:
            try:
                d.close()
            except Exception:  # noqa: BLE001
                pass
        self.devices.clear()
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            rc = self.proc.returncode
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return rc

    def answer(self, line: str) -> None:
        """Answer the terminal approver (only without auto-approve)."""
        assert not self.auto_approve and self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def restart(self, kill: bool = False) -> "Authenticator":
        """Stop the process and start a new one on the same state directory. `kill`: SIGKILL
        instead of SIGTERM, so no shutdown path runs (a crash): what the key promised before
        its last reply must already be on disk."""
        if kill and self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.stop()
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_log(self, since: int = 0) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0

    # -- clients ----------------------------------------------------------------------

    def device(self, strict: bool = True) -> RecordingDevice:
        """A new CTAPHID connection (own UDP socket, own channel) wrapped for recording."""
        dev = RecordingDevice(open_udp_device(self.addr), strict=strict)
        self.devices.append(dev)
        return dev

    def ctap2(self, strict: bool = True):
        from fido2.ctap2 import Ctap2

        return Ctap2(self.device(strict=strict))

    def power_cycle(self) -> None:
        """Simulate unplug/replug: volatile state goes, persistent state stays."""
        if not self.allow_power_cycle:
            raise AuthenticatorError(
                "this key ignores power-cycle datagrams: start it with allow_power_cycle=True "
                "(mark the test or module with pytest.mark.power_cycle)"
            )
        for d in self.devices:
            try:
                d.close()
            except Exception:  # noqa: BLE001
                pass
        self.devices.clear()
        send_power_cycle(self.addr)
        # Datagrams are handled in order: once INIT answers, the power cycle is done.
        deadline = time.monotonic() + 5
        while raw_init(self.addr) is None:
            if time.monotonic() > deadline or not self.alive():
                raise AuthenticatorError("authenticator did not answer after power cycle")
        self.started_at = time.monotonic()

    def violations(self) -> list[str]:
        return [v for d in self.devices for v in d.violations]


def new_state_dir(base: Path | None = None, prefix: str = "pocketkey-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))

