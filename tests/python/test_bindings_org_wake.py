"""The organisation wakes an app (docs/org.md, "Wake-ups"), through the generated Python
bindings against a real `pocketkey-org serve` on loopback whose webhook provider stands in
for FCM/APNs: the app activates, `register_push` registers its target with the organisation
as well as with its pairings' relays, a revocation through the REST API makes the server POST
the wake to the webhook, `handle_push` on that payload answers `ORGANISATION` (without any
network), and the app's `sync_organisation` then finds the key revoked. A webhook the server
refuses, and a key it revoked, are reported by `register_push` under the organisation's name
as refused for good (`REFUSED`, tell the user); a server that cannot be reached as worth
another try (`TRY_LATER`). Every wait is on an event (the webhook's request), never on a
sleep."""

from __future__ import annotations

import queue
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import threading

import pytest

from bindings_support import MemoryKeyProvider, Phone, pk
from test_org_wake import WAIT, WakingOrg, free_port


class Webhook:
    """A loopback HTTP server that queues the body of every POST it receives."""

    def __init__(self):
        bodies: queue.Queue = queue.Queue()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                bodies.put(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wake"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    w = Webhook()
    yield w
    w.stop()


@pytest.fixture
def org(tmp_path, webhook):
    o = WakingOrg(tmp_path, webhook.url)
    yield o
    o.stop()


@pytest.fixture
def key(tmp_path, org):
    phone = Phone()
    k = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(k)
    assert k.activate(org.invite_link(), "Alice's phone") == "Acme"
    yield k
    phone.stop()


def test_an_org_wake_is_recognised_and_the_sync_finds_the_key_revoked(org, webhook, key):
    assert key.register_push(pk.PushRegistration.WEBHOOK(url=webhook.url)) == []
    [(kid, provider, target)] = org.sql("SELECT key_id, provider, target FROM push_targets")
    assert (provider, target) == ("webhook", webhook.url)

    # A wake id the phone never registered is not the organisation's.
    stray = '{"v":1,"w":"00112233445566778899aabbccddeeff"}'
    assert key.handle_push(stray, "Alice's phone", 1000) == pk.PushOutcome.IGNORED()

    status, body = org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "left the company"})
    assert (status, body) == (200, {"id": kid, "status": "revoked"})
    payload = webhook.bodies.get(timeout=WAIT).decode()

    outcome = key.handle_push(payload, "Alice's phone", 1000)
    assert outcome == pk.PushOutcome.ORGANISATION(organisation="Acme")
    state = key.sync_organisation()
    assert (state.status, state.reason) == (pk.OrganisationStatus.REVOKED, "left the company")
    # Revoked: nothing more can come of a sync, so its wakes are ignored.
    assert key.handle_push(payload, "Alice's phone", 1000) == pk.PushOutcome.IGNORED()


def refused(reason):
    return [pk.PushNotRegistered(name="Acme", problem=pk.PushProblem.REFUSED(reason=reason))]


def test_a_push_target_the_organisation_refuses_is_reported_by_its_name_as_refused(org, webhook, key):
    elsewhere = f"http://127.0.0.1:{free_port()}/wake"
    assert key.register_push(pk.PushRegistration.WEBHOOK(url=elsewhere)) == refused(
        "bad push target: URL not admitted by --webhook-allow")
    assert org.sql("SELECT COUNT(*) FROM push_targets") == [(0,)]

    # Revoked on the server while the phone has not synced yet: 403 key_revoked, for good too.
    assert key.register_push(pk.PushRegistration.WEBHOOK(url=webhook.url)) == []
    [(kid,)] = org.sql("SELECT key_id FROM push_targets")
    assert org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "lost"})[0] == 200
    assert key.register_push(pk.PushRegistration.WEBHOOK(url=webhook.url)) == refused(
        "this key was revoked by the organisation")


def test_an_organisation_that_cannot_be_reached_is_worth_another_try(org, webhook, key):
    org.stop()
    assert key.register_push(pk.PushRegistration.WEBHOOK(url=webhook.url)) == [
        pk.PushNotRegistered(name="Acme", problem=pk.PushProblem.TRY_LATER())]
