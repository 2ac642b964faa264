"""A computer's relay and the app's push registration (docs/pairing-protocol.md §3.2), through
the generated Python bindings against a real `pocketkey-relay` and `pocketkey-bridge` on
loopback: the app pairs with the bridge, then `register_push` reports a webhook outside the
relay's `--webhook-allow` list under the computer's name as refused for good (`REFUSED`, with
the relay's sentence: tell the user), and the relay's own passing trouble (its store full:
ERROR `unavailable`) or a relay that cannot be reached as worth another try (`TRY_LATER`)."""

from __future__ import annotations

import tempfile

import pytest

from bindings_support import MemoryKeyProvider, Phone, ShownCode, pk
from test_org_wake import free_port
from test_pairing import (  # noqa: F401  (binaries: a pytest fixture)
    WAKE_URL,
    Procs,
    binaries,
    read_line,
    start_bridge,
)
from pocketkey_udp import free_udp_port


def relay_and_paired_key(binaries, procs, tmp_path, bridge_dir, *relay_args):
    """A relay (webhooks to WAKE_URL allowed, then `relay_args`), a bridge "Test laptop" on it,
    and an app key paired with the bridge: (relay, key, phone)."""
    relay = procs.start([
        binaries["pocketkey-relay"], "--listen", "127.0.0.1:0", "--webhook-allow", WAKE_URL,
        *relay_args,
    ])
    relay_addr = read_line(relay, "listening on ")
    bridge = start_bridge(binaries, procs, relay_addr, bridge_dir, free_udp_port())
    url = read_line(bridge, "pair: ")
    phone = Phone()
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    assert key.pair(url, "App phone", False, ShownCode()).computer_name == "Test laptop"
    return relay, key, phone


@pytest.fixture
def procs():
    p = Procs()
    with tempfile.TemporaryDirectory() as bridge_dir:
        p.bridge_dir = bridge_dir
        yield p
        p.close()


def test_a_webhook_the_relay_does_not_allow_is_refused_by_the_computers_name(binaries, procs, tmp_path):
    _, key, phone = relay_and_paired_key(binaries, procs, tmp_path, procs.bridge_dir)
    try:
        elsewhere = f"http://127.0.0.1:{free_port()}/wake"
        assert key.register_push(pk.PushRegistration.WEBHOOK(url=elsewhere)) == [
            pk.PushNotRegistered(
                name="Test laptop",
                problem=pk.PushProblem.REFUSED(reason="bad push target: URL not admitted by --webhook-allow"),
            )
        ]
        assert key.register_push(pk.PushRegistration.WEBHOOK(url=WAKE_URL)) == []
    finally:
        phone.stop()


def test_a_relay_whose_store_is_full_or_that_is_gone_is_worth_another_try(binaries, procs, tmp_path):
    relay, key, phone = relay_and_paired_key(
        binaries, procs, tmp_path, procs.bridge_dir, "--max-push-targets", "0")
    try:
        try_later = [pk.PushNotRegistered(name="Test laptop", problem=pk.PushProblem.TRY_LATER())]
        assert key.register_push(pk.PushRegistration.WEBHOOK(url=WAKE_URL)) == try_later
        procs.stop(relay)
        assert key.register_push(pk.PushRegistration.WEBHOOK(url=WAKE_URL)) == try_later
    finally:
        phone.stop()
