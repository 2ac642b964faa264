"""The organisation server wakes the phone (docs/org.md, "Wake-ups"), with real processes on
loopback: `pocketkey-org serve --webhook-allow ...` and a CLI phone, `pocketkey listen
--wake-url ...`, that registers its webhook with the organisation (signed by its device key)
and serves it. A revocation through the REST API wakes the phone, which syncs as
`pocketkey org sync` does and reports `status: revoked`, after which the key refuses the
organisation's RP id (checked with python-fido2). A registration job wakes it too, and with
`--auto-approve` it completes the job. A webhook outside the allow-list is refused when the
phone registers it. Every wait is on a line the processes print, never on a sleep."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time

import pytest
from fido2.ctap import CtapError

from org_db import PostgresDb
from pocketkey_udp import default_binary
from test_org import Org
from test_org_activation import ENTERPRISE_RP, LoopbackOrg, activate
from test_org_lifecycle import serves
from test_org_on_behalf import ACCOUNT, RP_ID, FakeGraph, get_json, register

# A wait that fails the test instead of hanging it; no test asserts on how long anything took.
WAIT = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WakingOrg(LoopbackOrg):
    """`LoopbackOrg` (the enterprise RP id in its policy) whose webhook provider admits
    `allow`."""

    def __init__(self, tmp_path, allow, *serve_args, db=None, nodes=None):
        def enterprise_policy(org):
            policy = org.cli("policy", "set", "--enterprise-rp-id", ENTERPRISE_RP).stdout
            assert json.loads(policy)["enterprise_rp_ids"] == [ENTERPRISE_RP]

        Org.__init__(self, tmp_path, "--webhook-allow", allow, *serve_args, db=db, loopback=True,
                     before_serve=enterprise_policy, nodes=nodes)
        self.public_url = self.base

    def key_entry(self, kid):
        status, page = self.json("GET", "/api/v1/keys")
        assert status == 200, page
        [entry] = [k for k in page["keys"] if k["id"] == kid]
        return entry

    def logs(self):
        return [path.read_text() for _, _, path, _ in self.nodes]


def wait_until(what, check):
    """Polls `check` until it returns something true (an event the processes make happen),
    failing the test after WAIT seconds instead of hanging; nothing asserts on the time."""
    deadline = time.monotonic() + WAIT
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {WAIT} s")
        time.sleep(0.05)


class Listener:
    """`pocketkey listen --wake-url URL --auto-approve`; its stdout and stderr lines, read as
    they come."""

    def __init__(self, phone, wake_url):
        self.proc = subprocess.Popen(
            [str(default_binary()), "listen", "--state-dir", str(phone), "--wake-url", wake_url,
             "--auto-approve"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        self.streams: dict[str, list[str]] = {"out": [], "err": []}
        self.cursor = {"out": 0, "err": 0}
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name, stream):
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))
        self.lines.put((name, None))

    def wait_for(self, stream, text):
        """Returns the first line of `stream` ("out" or "err") after the last one this
        returned for it that contains `text`. The two streams are read by two threads, so a
        line of one may be queued before an earlier line of the other: each is kept in its
        own list, and nothing read while waiting for the other stream is lost."""
        closed = set()
        while True:
            lines = self.streams[stream]
            for at in range(self.cursor[stream], len(lines)):
                if text in lines[at]:
                    self.cursor[stream] = at + 1
                    return lines[at]
            self.cursor[stream] = len(lines)
            try:
                name, line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"no {text!r} on std{stream}; saw {self.streams}") from None
            if line is None:
                closed.add(name)
                if closed == {"out", "err"}:
                    raise AssertionError(f"exited ({self.proc.wait()}) before {text!r}; saw {self.streams}")
                continue
            self.streams[name].append(line)

    def drain(self):
        """Takes the lines printed so far, without waiting."""
        while True:
            try:
                name, line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.streams[name].append(line)

    def wakes(self):
        """How many wake-ups the phone has received so far."""
        self.drain()
        return sum("org: woken" in line for line in self.streams["err"])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def wake_url():
    return f"http://127.0.0.1:{free_port()}/wake"


@pytest.fixture
def org(tmp_path, wake_url):
    o = WakingOrg(tmp_path, wake_url)
    yield o
    o.stop()


@pytest.fixture
def phone(org, tmp_path):
    path = tmp_path / "phone"
    proc = activate(org.invite_link(), path)
    assert proc.returncode == 0, proc.stderr
    [(kid,)] = org.sql("SELECT id FROM keys")
    return path, kid


@pytest.fixture
def listening(phone, wake_url):
    path, kid = phone
    listener = Listener(path, wake_url)
    try:
        listener.wait_for("err", f"Acme: wake-ups go to {wake_url}")
        yield path, kid, listener
    finally:
        listener.stop()


def test_a_revocation_wakes_the_phone_which_syncs_and_stops_serving_the_org(org, listening):
    path, kid, listener = listening
    [(provider, target)] = org.sql("SELECT provider, target FROM push_targets WHERE key_id = ?", kid)
    assert (provider, target) == ("webhook", listener.proc.args[5])

    status, body = org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "left the company"})
    assert (status, body) == (200, {"id": kid, "status": "revoked"})
    listener.wait_for("err", "org: woken")
    listener.wait_for("out", "org: Acme status: revoked")
    listener.wait_for("err", "left the company")
    listener.stop()
    assert serves(path, ENTERPRISE_RP) == CtapError.ERR.OPERATION_DENIED


def test_a_registration_job_wakes_the_phone_which_completes_it(org, listening):
    path, kid, listener = listening
    status, _, pem = org.request("GET", "/api/v1/attestation/root")
    assert status == 200
    graph = FakeGraph(pem)
    try:
        options = get_json(f"{graph.base}/users/u-7/authentication/fido2Methods/creationOptions")
        status, created = register(org, kid, options)
        assert status == 202, created
        listener.wait_for("err", "org: woken")
        listener.wait_for("out", f"registration: {RP_ID} for {ACCOUNT}: completed")
        status, reg = org.json("GET", f"/api/v1/registrations/{created['id']}")
        assert (status, reg["status"]) == (200, "completed")
    finally:
        graph.stop()


def test_a_webhook_outside_the_allow_list_is_refused_at_registration(org, phone):
    path, kid = phone
    elsewhere = f"http://127.0.0.1:{free_port()}/wake"
    listener = Listener(path, elsewhere)
    try:
        listener.wait_for("err", "bad_push_target")
        assert listener.proc.wait(timeout=WAIT) != 0
    finally:
        listener.stop()
    assert org.sql("SELECT COUNT(*) FROM push_targets") == [(0,)]


def test_two_nodes_wake_the_phone_once_per_interval_and_show_the_outcome(
        tmp_path, postgres, wake_url, monkeypatch):
    """Two `serve` nodes on one PostgreSQL: a change committed on node A wakes the phone; a
    change on node B within the key's interval (an hour here) is held, not sent a second
    time, because the interval is the key's row, not each node's memory. The held wake goes
    out once the interval has passed (moved in the database, not waited for). The inventory
    shows the last wake's outcome."""
    # The sender says at debug level when it holds a key: the event this test waits on.
    monkeypatch.setenv("POCKETKEY_ORG_LOG", "info,pocketkey_org::wake=debug")
    org = WakingOrg(tmp_path, wake_url, "--key-wake-interval-ms", "3600000",
                    db=PostgresDb(postgres), nodes=2)
    listener = None
    try:
        phone = tmp_path / "phone"
        proc = activate(org.invite_link(), phone)
        assert proc.returncode == 0, proc.stderr
        [(kid,)] = org.db.rows("SELECT id FROM keys")
        assert org.key_entry(kid).get("last_wake") is None
        listener = Listener(phone, wake_url)
        listener.wait_for("err", f"Acme: wake-ups go to {wake_url}")

        status, body = org.json("POST", f"/api/v1/keys/{kid}/suspend", {"reason": "lost"}, node=0)
        assert (status, body) == (200, {"id": kid, "status": "suspended"})
        listener.wait_for("err", "org: woken")
        listener.wait_for("out", "org: Acme status: suspended")

        status, body = org.json("POST", f"/api/v1/keys/{kid}/resume", {"reason": "found"}, node=1)
        assert (status, body) == (200, {"id": kid, "status": "active"})
        # Node B was told of its own commit and looked at once; either node may be the one
        # that finds the key held. A second wake before that is the failure shown.
        held = f"wake-up held by the key's interval key_id={kid}"
        wait_until("held wake (or a second wake-up)",
                   lambda: listener.wakes() > 1 or any(held in log for log in org.logs()))
        assert listener.wakes() == 1, listener.streams
        assert org.db.rows(f"SELECT cause FROM push_wakes WHERE key_id = '{kid}'") == [("key_status",)]
        last = wait_until("recorded outcome", lambda: org.key_entry(kid)["last_wake"])
        assert (last["outcome"], last["refusal"]) == ("sent", None), last

        # The interval ends (the key's row says so): the next look, on either node, sends the
        # held wake, once.
        org.db.rows(f"UPDATE keys SET wake_due_at = 0 WHERE id = '{kid}'")
        listener.wait_for("err", "org: woken")
        listener.wait_for("out", "org: Acme status: active")
        assert org.db.rows(f"SELECT COUNT(*) FROM push_wakes WHERE key_id = '{kid}'") == [("0",)]
        assert listener.wakes() == 2, listener.streams
    finally:
        if listener:
            listener.stop()
        org.stop()


def test_a_failed_wake_is_in_the_inventory_with_its_refusal_class(org, listening):
    path, kid, listener = listening
    # The phone goes away: its webhook refuses connections.
    listener.stop()
    status, _ = org.json("POST", f"/api/v1/keys/{kid}/suspend", {"reason": "lost"})
    assert status == 200
    last = wait_until("recorded outcome", lambda: org.key_entry(kid)["last_wake"])
    assert (last["outcome"], last["refusal"]) == ("failed", "failed"), last
    assert "127.0.0.1" not in json.dumps(last)
    assert "wake-up failed" in org.logs()[0]


def test_keys_held_for_long_do_not_keep_a_due_key_from_its_wake(org, listening):
    """A batch's worth of keys (100) owe wakes but are held for an hour (as after a
    provider's 429); their ids sort before the phone's. The phone's key, due, is still
    woken: the sender looks at due keys first."""
    path, kid, listener = listening
    far = 4_000_000_000_000  # ms since the epoch: the year 2096
    for n in range(100):
        held = f"{n:032x}"
        org.sql("INSERT INTO keys (id, email, display_name, status, created_at, wake_due_at) "
                "VALUES (?, ?, 'Held', 'active', '2026-01-01T00:00:00Z', ?)", held, f"h{n}@acme.example", far)
        org.sql("INSERT INTO push_wakes (id, key_id, cause, created_at) "
                "VALUES (?, ?, 'job', '2026-01-01T00:00:00Z')", f"w{n}", held)
    status, _ = org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "lost"})
    assert status == 200
    listener.wait_for("err", "org: woken")
    listener.wait_for("out", "org: Acme status: revoked")
    assert org.sql("SELECT COUNT(*) FROM push_wakes") == [(100,)]
