"""A relay of two nodes sharing one Redis (docs/relay.md §7), end to end with real processes
on loopback: `redis-server` (Debian's, on a port of its own, no persistence), two
`pocketkey-relay --redis` nodes, `pocketkey-bridge --udp` attached to node A, and
`pocketkey listen --relay B --relay A` (the terminal as the phone) attached to node B.
python-fido2 registers through them and its Fido2Server verifies; then node B is SIGKILLed
while a sign-in is on its way: the browser gets its answer or a clean CTAP error, never a
hang, and the phone comes back through node A."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading

import pytest
from fido2.client import ClientError
from fido2.ctap import CtapError
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from pk_helpers import client
from pocketkey_udp import free_udp_port, open_answering_get_info
from test_pairing import PHONE_TIMEOUT, Procs, StderrLines, binaries, read_line, start_bridge  # noqa: F401

RP_ID, ORIGIN = "nodes.example.org", "https://nodes.example.org"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(procs: Procs) -> str:
    """redis-server on a free loopback port, once it says it is ready: its URL."""
    port = free_tcp_port()
    p = procs.start([
        "redis-server", "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no",
    ])
    ready = threading.Event()

    def drain():  # read its log to the end: a full pipe would block it
        for line in p.stdout:
            if "Ready to accept connections" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    assert ready.wait(30), "redis-server did not become ready"
    return f"redis://127.0.0.1:{port}"


def start_node(binaries, procs: Procs, redis_url: str):
    p = procs.start(
        [binaries["pocketkey-relay"], "--listen", "127.0.0.1:0", "--redis", redis_url],
        stderr=subprocess.PIPE,
    )
    p.addr = read_line(p, "listening on ")
    p.log = StderrLines(p)
    return p


def phone_attaches(lines) -> int:
    return sum('event="attached"' in line and 'role="phone"' in line for line in lines)


def phone_attached(lines) -> bool:
    return phone_attaches(lines) > 0


@pytest.fixture
def nodes(binaries):
    procs = Procs()
    with tempfile.TemporaryDirectory() as bridge_dir, tempfile.TemporaryDirectory() as phone_dir:
        redis_url = start_redis(procs)
        a = start_node(binaries, procs, redis_url)
        b = start_node(binaries, procs, redis_url)
        port = free_udp_port()
        bridge = start_bridge(binaries, procs, a.addr, bridge_dir, port)
        url = read_line(bridge, "pair: ")
        out = subprocess.run(
            [binaries["pocketkey"], "pair", url, "--state-dir", phone_dir],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        phone = procs.start([
            binaries["pocketkey"], "listen", "--auto-approve", "--state-dir", phone_dir,
            "--relay", f"ws://{b.addr}", "--relay", f"ws://{a.addr}",
        ], stderr=subprocess.PIPE)
        phone.log = StderrLines(phone)
        b.log.wait_for(phone_attached)
        # `pocketkey pair` met the bridge through node A, the pairing URL's relay.
        a.log.wait_for(phone_attached)
        yield {"a": a, "b": b, "addr": ("127.0.0.1", port), "phone": phone}
        procs.close()


def register(dev):
    server = Fido2Server(PublicKeyCredentialRpEntity(id=RP_ID, name="Nodes RP"), attestation="none")
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="Alice"),
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    result = client(dev, ORIGIN).make_credential(options.public_key)
    auth_data = server.register_complete(state, result)
    assert auth_data.is_user_verified()
    return server, auth_data.credential_data


def sign_in(dev, server, credential) -> None:
    options, state = server.authenticate_begin(
        [credential], user_verification=UserVerificationRequirement.REQUIRED
    )
    selection = client(dev, ORIGIN).get_assertion(options.public_key)
    server.authenticate_complete(state, [credential], selection.get_response(0))


def test_registration_through_a_bridge_and_a_phone_on_two_nodes(nodes):
    dev = open_answering_get_info(nodes["addr"], 10.0)
    server, credential = register(dev)
    sign_in(dev, server, credential)
    # Since pairing, the phone has been on node B only: every frame crossed through Redis.
    assert phone_attaches(nodes["a"].log.lines) == 1


def test_the_phone_moves_to_the_other_node_when_its_node_dies(nodes):
    dev = open_answering_get_info(nodes["addr"], 10.0)
    server, credential = register(dev)

    outcome: dict = {}

    def request():
        try:
            sign_in(dev, server, credential)
            outcome["answer"] = True
        except CtapError as e:
            outcome["ctap_error"] = e.code
        except ClientError as e:  # the client's wrapping of a CTAP error, e.g. its timeout
            if isinstance(e.cause, CtapError):
                outcome["ctap_error"] = e.cause.code
            else:
                outcome["other"] = repr(e)
        except Exception as e:  # noqa: BLE001 — reported below, whatever it is
            outcome["other"] = repr(e)

    worker = threading.Thread(target=request, daemon=True)
    worker.start()
    nodes["b"].kill()  # SIGKILL: no close frames, no detach
    nodes["b"].wait()
    # The bridge answers within its phone timeout at the latest; the bound is only a hang's.
    worker.join(PHONE_TIMEOUT + 30)
    assert not worker.is_alive(), "the browser's request hung"
    assert "answer" in outcome or "ctap_error" in outcome, outcome

    # The phone's next attach goes to node A, and sign-in works through it.
    nodes["a"].log.wait_for(lambda lines: phone_attaches(lines) == 2)
    sign_in(dev, server, credential)
