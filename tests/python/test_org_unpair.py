"""Revocation unpairs the organisation's computers: a phone activated with the organisation
and paired with a bridge (real relay, real bridge, real websockets) is revoked by the admin;
`pocketkey org sync` then revokes the pairing, has the relay delete its mailbox and says so.
The pairing list is empty, `pocketkey listen` has nothing to serve, and the bridge, told by
the relay that the phone removed the pairing, stops: its next request reaches no phone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fido2.ctap2 import Ctap2

from pocketkey_udp import open_answering_get_info
from test_org_activation import LoopbackOrg, activate
from test_org_lifecycle import sync
from test_pairing import (  # noqa: F401 (binaries: a fixture)
    Procs,
    StderrLines,
    binaries,
    listen,
    pair,
    phone_pairings,
    start_relay_and_bridge,
)


@pytest.fixture
def paired(binaries, tmp_path):  # noqa: F811 (binaries: test_pairing's fixture)
    """A relay and a bridge whose standard error the test reads, and a phone directory."""
    procs = Procs()
    bridge_dir = tmp_path / "bridge"
    bridge_dir.mkdir(mode=0o700)
    relay, bridge, port, url = start_relay_and_bridge(
        binaries, procs, str(bridge_dir), stderr=subprocess.PIPE)
    yield {
        "binaries": binaries, "procs": procs, "url": url, "phone_dir": str(tmp_path / "phone"),
        "addr": ("127.0.0.1", port), "bridge": bridge, "bridge_err": StderrLines(bridge),
    }
    procs.close()


def test_revocation_unpairs_the_computers_and_the_bridge_gets_no_answer(paired, tmp_path):
    setup = paired
    org = LoopbackOrg(tmp_path)
    try:
        phone = Path(setup["phone_dir"])
        proc = activate(org.invite_link(), phone)
        assert proc.returncode == 0, proc.stderr
        pair(setup)
        assert len(phone_pairings(setup, str(phone))) == 1
        # The bridge has served this phone once, so it would answer getInfo from its cache.
        served = listen(setup)
        dev = open_answering_get_info(setup["addr"], 10.0)
        setup["procs"].stop(served)

        [(kid,)] = org.sql("SELECT id FROM keys")
        assert org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "lost"})[0] == 200
        out = sync(phone)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "org: Acme status: revoked\nunpaired: Test laptop\n"
        assert phone_pairings(setup, str(phone)) == []
        # A second sync has nothing more to unpair.
        assert sync(phone).stdout == "org: Acme status: revoked\n"

        listening = subprocess.run(
            [setup["binaries"]["pocketkey"], "listen", "--auto-approve",
             "--state-dir", str(phone)],
            capture_output=True, text=True, timeout=60,
        )
        assert listening.returncode != 0
        assert "no computer is paired" in listening.stderr

        # The relay deleted the mailbox: the bridge is told the phone removed the pairing, has
        # no phone left and stops with an error, so the browser's next request reaches no one.
        bridge = setup["bridge"]
        assert bridge.wait(timeout=60) == 1
        setup["bridge_err"].wait_for(lambda lines: any(
            'the pairing with the phone "PocketKey CLI" is suspended: the relay says the phone '
            "removed it" in line for line in lines))
        with pytest.raises(ConnectionRefusedError):
            Ctap2(dev).get_info()
    finally:
        org.stop()
