"""Registering a key on the user's behalf, with real processes on loopback.

A small HTTP server here plays Microsoft Graph: `GET .../fido2Methods/creationOptions`
answers in Graph's shape (with its quirks: `timeout: 0`, padded standard base64 ids, the
`value` wrapper), and `POST .../fido2Methods` verifies the body it is given with py_webauthn
(origin, challenge, RP id, user verification, the attestation chaining to the organisation's
root, the AAGUID in an allow-list), as Entra ID would. The admin posts the options to
`pocketkey-org`, `pocketkey org sync --auto-approve` runs the job through the key's engine,
and `GET /registrations/{id}` hands over `graph_body`, which the test posts to the fake Graph.

Refusals: bad creation options and origins (typed 400, nothing stored), a key that is not
active, a person's "no", an expired registration, and outcomes posted by another device or
with an attestation for another RP (made here by a device the test activates itself with
`cryptography`, so it can sign whatever it likes).
"""

from __future__ import annotations

import base64
import json
import time
import select
import os
import struct
import subprocess
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fido2 import cbor
import pytest
import webauthn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers.structs import AttestationFormat

from org_db import PostgresDb
from pocketkey_udp import default_binary
from test_org import Org
from test_org_activation import ENTERPRISE_RP, SERIAL_OID, LoopbackOrg, activate, csr_der, post_activation

RP_ID = "login.microsoft.com"
ORIGIN = "https://login.microsoft.com"
ACCOUNT = "alice@acme.example"
# PocketKey's AAGUID (core/src/authenticator/mod.rs), the one model the tenant allows.
ALLOWED_AAGUIDS = {"9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FakeGraph:
    """Graph's two fido2Methods calls for one tenant whose RP is login.microsoft.com."""

    def __init__(self, root_pem: bytes | None, token: str | None = None):
        """`token`: the bearer token `POST .../fido2Methods` requires (else 401, as Graph)."""
        self.root_pem = root_pem
        self.token = token
        self.challenges = {}  # user id -> the challenge last issued
        self.registered = []
        graph = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body):
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                # /v1.0/users/{id}/authentication/fido2Methods/creationOptions?quirks=...
                url = urllib.parse.urlsplit(self.path)
                user = url.path.split("/")[3]
                quirks = urllib.parse.parse_qs(url.query).get("quirks", [""])[0].split(",")
                self.answer(200, graph.creation_options(user, set(quirks)))

            def do_POST(self):
                user = self.path.split("/")[3]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if graph.token and self.headers.get("Authorization") != f"Bearer {graph.token}":
                    self.answer(401, {"error": {"code": "InvalidAuthenticationToken",
                                                "message": "Access token validation failure."}})
                    return
                try:
                    self.answer(201, graph.create(user, body))
                except Exception as e:  # what Graph would answer as a 400
                    self.answer(400, {"error": {"code": "badRequest", "message": repr(e)}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1.0"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def creation_options(self, user, quirks):
        challenge = os.urandom(32)
        self.challenges[user] = challenge
        user_handle = user.encode()
        padded = "padded" in quirks
        enc = (lambda b: base64.b64encode(b).decode()) if padded else b64url
        public_key = {
            "challenge": enc(challenge),
            "timeout": 0,
            "rp": {"id": RP_ID, "name": "Microsoft"},
            "user": {"id": enc(user_handle), "name": ACCOUNT, "displayName": "Alice"},
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": -257}],
            "excludeCredentials": [{"type": "public-key", "id": enc(b"\xfb\xff" + os.urandom(30)),
                                    "transports": ["usb"]}],
            "authenticatorSelection": {"authenticatorAttachment": "cross-platform",
                                       "requireResidentKey": True, "residentKey": "required",
                                       "userVerification": "required"},
            "attestation": "direct",
            "extensions": {"credentialProtectionPolicy": "userVerificationOptional",
                           "enforceCredentialProtectionPolicy": False},
        }
        answer = {
            "@odata.type": "#microsoft.graph.webauthnCredentialCreationOptions",
            "challengeTimeoutDateTime": "2026-12-07T18:30:00Z",
            "publicKey": public_key,
        }
        if "value" in quirks:
            return {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph."
                                      "webauthnCredentialCreationOptions", "value": answer}
        return answer

    def create(self, user, body):
        assert set(body) == {"displayName", "publicKeyCredential"}, body
        pkc = body["publicKeyCredential"]
        assert set(pkc) == {"id", "response", "clientExtensionResults"}, pkc
        assert set(pkc["response"]) == {"clientDataJSON", "attestationObject"}
        for value in (pkc["id"], *pkc["response"].values()):
            assert "=" not in value and "+" not in value and "/" not in value, "base64url, no padding"
        verified = webauthn.verify_registration_response(
            credential={"id": pkc["id"], "rawId": pkc["id"], "type": "public-key",
                        "response": pkc["response"], "clientExtensionResults": pkc["clientExtensionResults"]},
            expected_challenge=self.challenges[user],
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            require_user_verification=True,
            pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [self.root_pem]},
        )
        assert verified.fmt == AttestationFormat.PACKED
        assert verified.aaguid in ALLOWED_AAGUIDS, verified.aaguid
        self.registered.append((user, body["displayName"], verified))
        return {"id": b64url(verified.credential_id), "displayName": body["displayName"]}


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def sync(phone, *extra, stdin=""):
    return subprocess.run(
        [str(default_binary()), "org", "sync", "--state-dir", str(phone), *extra],
        capture_output=True, text=True, timeout=120, input=stdin,
    )


@pytest.fixture
def org(tmp_path):
    o = LoopbackOrg(tmp_path)
    yield o
    o.stop()


@pytest.fixture
def graph(org):
    status, _, pem = org.request("GET", "/api/v1/attestation/root")
    assert status == 200
    g = FakeGraph(pem)
    yield g
    g.stop()


@pytest.fixture
def phone(org, tmp_path):
    path = tmp_path / "phone"
    proc = activate(org.invite_link(), path)
    assert proc.returncode == 0, proc.stderr
    [(kid,)] = org.sql("SELECT id FROM keys")
    return path, kid


def register(org, kid, options, origin=ORIGIN, name="Alice's PocketKey"):
    return org.json("POST", f"/api/v1/keys/{kid}/registrations",
                    {"creation_options": options, "origin": origin, "display_name": name})


def audit_actions(org):
    _, _, raw = org.request("GET", "/api/v1/audit")
    return [json.loads(line)["action"] for line in raw.decode().splitlines()]


@pytest.mark.parametrize("quirks", ["", "padded", "value,padded"])
def test_graph_options_register_through_the_phone_and_graph_accepts_the_body(org, graph, phone, quirks):
    path, kid = phone
    options = get_json(f"{graph.base}/users/u-123/authentication/fido2Methods/creationOptions?quirks={quirks}")
    assert options.get("value", options)["publicKey"]["timeout"] == 0
    assert ("value" in options) == ("value" in quirks)
    assert options.get("value", options)["publicKey"]["user"]["id"].endswith("=") == ("padded" in quirks)
    status, created = register(org, kid, options)
    assert status == 202, created
    status, reg = org.json("GET", f"/api/v1/registrations/{created['id']}")
    assert (status, reg["status"], reg["graph_body"]) == (200, "pending", None)

    proc = sync(path, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("org: Acme status: active\n"
                           f"registration: {RP_ID} for {ACCOUNT}: completed\n")
    assert f"Acme asks to register this key with {RP_ID} for {ACCOUNT}" in proc.stderr

    status, reg = org.json("GET", f"/api/v1/registrations/{created['id']}")
    assert (status, reg["status"], reg["rp_id"], reg["origin"]) == (200, "completed", RP_ID, ORIGIN)
    body = reg["graph_body"]
    client_data = json.loads(unb64url(body["publicKeyCredential"]["response"]["clientDataJSON"]))
    assert client_data == {"type": "webauthn.create", "challenge": b64url(graph.challenges["u-123"]),
                           "origin": ORIGIN, "crossOrigin": False}
    status, answer = post_json(f"{graph.base}/users/u-123/authentication/fido2Methods", body)
    assert status == 201, answer
    assert answer["displayName"] == "Alice's PocketKey"
    [(_, _, verified)] = graph.registered
    # The credential is the key's: a discoverable one (residentKey required), user verified.
    assert verified.user_verified and b64url(verified.credential_id) == body["publicKeyCredential"]["id"]

    # A wrong challenge or origin would not pass: the verifier is not a rubber stamp.
    graph.challenges["u-123"] = os.urandom(32)
    assert post_json(f"{graph.base}/users/u-123/authentication/fido2Methods", body)[0] == 400

    assert audit_actions(org)[-2:] == ["registration.create", "registration.complete"]
    again = sync(path, "--auto-approve")
    assert again.stdout == "org: Acme status: active\n", "done once, never again"


def test_the_attestation_does_not_chain_to_another_root(org, graph, phone, tmp_path):
    path, kid = phone
    options = get_json(f"{graph.base}/users/u-1/authentication/fido2Methods/creationOptions")
    _, created = register(org, kid, options)
    assert sync(path, "--auto-approve").returncode == 0
    body = org.json("GET", f"/api/v1/registrations/{created['id']}")[1]["graph_body"]
    other = LoopbackOrg(tmp_path / "other")
    try:
        graph.root_pem = other.request("GET", "/api/v1/attestation/root")[2]
    finally:
        other.stop()
    assert post_json(f"{graph.base}/users/u-1/authentication/fido2Methods", body)[0] == 400


def test_a_person_who_says_no_denies_it(org, graph, phone):
    path, kid = phone
    options = get_json(f"{graph.base}/users/u-2/authentication/fido2Methods/creationOptions")
    _, created = register(org, kid, options)
    proc = sync(path, stdin="n\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"registration: {RP_ID} for {ACCOUNT}: denied\n")
    assert f"Acme asks to register this key with {RP_ID} for {ACCOUNT}" in proc.stderr
    status, reg = org.json("GET", f"/api/v1/registrations/{created['id']}")
    assert (status, reg["status"], reg["graph_body"]) == (200, "denied", None)
    assert audit_actions(org)[-1] == "registration.deny"


def test_two_jobs_in_one_sync_each_get_their_own_answer_from_the_terminal(org, graph, phone):
    """One terminal prompt serves the whole sync: each job's answer is typed after its prompt
    (the prompt forgets what was typed before it was shown) and reaches that job. With a
    reader per job, the first job's reader took the line typed for the second."""
    path, kid = phone
    created = []
    for _ in range(2):
        options = get_json(f"{graph.base}/users/u-2/authentication/fido2Methods/creationOptions")
        created.append(register(org, kid, options)[1])
    # A new session has no controlling terminal, so the prompt reads standard input.
    proc = subprocess.Popen(
        [str(default_binary()), "org", "sync", "--state-dir", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    seen = b""
    try:
        for n, answer in enumerate((b"n\n", b"y\n"), start=1):
            deadline = time.monotonic() + 60
            while seen.count(b"answer: y = approve") < n:
                assert time.monotonic() < deadline, seen.decode(errors="replace")
                ready, _, _ = select.select([proc.stderr], [], [], 1.0)
                if ready:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    assert chunk, seen.decode(errors="replace")
                    seen += chunk
            proc.stdin.write(answer)
            proc.stdin.flush()
        proc.stdin.close()
        out = proc.stdout.read().decode()
        assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    outcomes = [line.rsplit(": ", 1)[1] for line in out.splitlines() if line.startswith("registration: ")]
    assert outcomes == ["denied", "completed"], out
    # Jobs reach the phone in the order they were made: the first was asked first.
    statuses = [org.json("GET", f"/api/v1/registrations/{r['id']}")[1]["status"] for r in created]
    assert statuses == ["denied", "completed"]


def test_an_expired_registration_is_not_sent_to_the_phone(org, graph, phone):
    path, kid = phone
    options = get_json(f"{graph.base}/users/u-3/authentication/fido2Methods/creationOptions")
    _, created = register(org, kid, options)
    org.sql("UPDATE registrations SET expires_at = '2000-01-01T00:00:00Z'")
    proc = sync(path, "--auto-approve")
    assert (proc.returncode, proc.stdout) == (0, "org: Acme status: active\n"), proc.stderr
    # The row itself says so (not only the API's reading of it), with its end time.
    assert org.sql("SELECT status, finished_at FROM registrations") == [
        ("expired", "2000-01-01T00:00:00Z")]
    assert org.json("GET", f"/api/v1/registrations/{created['id']}")[1]["status"] == "expired"


def good_options():
    return {"publicKey": {
        "challenge": b64url(os.urandom(32)), "timeout": 0,
        "rp": {"id": RP_ID, "name": "Microsoft"},
        "user": {"id": b64url(b"u"), "name": ACCOUNT, "displayName": "Alice"},
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "authenticatorSelection": {"residentKey": "required", "userVerification": "required"},
        "attestation": "direct",
    }}


def with_(change):
    options = good_options()
    change(options["publicKey"])
    return options


@pytest.mark.parametrize("options,origin,code", [
    ({"nothing": 1}, ORIGIN, "invalid_creation_options"),
    ({"value": {"publicKey": "x"}}, ORIGIN, "invalid_creation_options"),
    (with_(lambda pk: pk.update(challenge="AAEC")), ORIGIN, "invalid_creation_options"),
    (with_(lambda pk: pk.update(challenge="a*b")), ORIGIN, "invalid_creation_options"),
    (with_(lambda pk: pk["user"].update(id=b64url(b"x" * 65))), ORIGIN, "invalid_creation_options"),
    (with_(lambda pk: pk.pop("user")), ORIGIN, "invalid_creation_options"),
    (with_(lambda pk: pk.update(timeout=-5)), ORIGIN, "invalid_creation_options"),
    (with_(lambda pk: pk.update(excludeCredentials=[{"type": "public-key", "id": "AQ"}] * 65)), ORIGIN,
     "invalid_creation_options"),
    (good_options(), "http://login.microsoft.com", "invalid_origin"),
    (good_options(), "https://login.microsoft.com/path", "invalid_origin"),
    (good_options(), "https://evil.example", "rp_id_mismatch"),
    (good_options(), "https://notlogin.microsoft.com.evil.example", "rp_id_mismatch"),
    (with_(lambda pk: pk["rp"].update(id="com")), "https://login.microsoft.com", "rp_id_mismatch"),
])
def test_bad_options_and_origins_are_typed_and_store_nothing(org, phone, options, origin, code):
    _, kid = phone
    before = audit_actions(org)
    status, body = register(org, kid, options, origin=origin)
    assert (status, body["error"]) == (400, code), body
    assert org.sql("SELECT COUNT(*) FROM registrations") == [(0,)]
    assert audit_actions(org) == before


def test_only_an_active_key_registers_and_only_an_admin_asks(org, phone):
    _, kid = phone
    assert register(org, "00" * 16, good_options())[0] == 404
    read_key = org.cli("api-key", "create", "--name", "r", "--scope", "read").stdout.split(": ", 1)[1].strip()
    status, body = org.json("POST", f"/api/v1/keys/{kid}/registrations",
                            {"creation_options": good_options(), "origin": ORIGIN, "display_name": "k"},
                            key=read_key)
    assert (status, body["error"]) == (403, "forbidden")
    assert org.json("POST", f"/api/v1/keys/{kid}/suspend", {"reason": "lost"})[0] == 200
    status, body = register(org, kid, good_options())
    assert (status, body["error"]) == (409, "key_not_active")
    assert org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "gone"})[0] == 200
    assert register(org, kid, good_options())[1]["error"] == "key_not_active"
    assert org.sql("SELECT COUNT(*) FROM registrations") == [(0,)]


# ---- a device the test holds itself, to post outcomes the phone would never send ----------

def point(key):
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


class RawDevice:
    def __init__(self, org, email_addr):
        self.org = org
        self.key = ec.generate_private_key(ec.SECP256R1())
        token = org.invite_link(email_addr).rsplit("/", 1)[1]
        status, body = post_activation(org, token, csr_der(ec.generate_private_key(ec.SECP256R1())),
                                       device=self.key)
        assert status == 200, body
        self.key_id = body["key_id"]

    def post(self, registration_id, outcome, credential_id=b"", attestation_object=b""):
        status, challenge = self.org.json("POST", "/api/v1/device/challenge", {"key_id": self.key_id}, key=None)
        assert status == 200, challenge
        signed = b"pocketkey-org registration v1\0"
        for part in (self.key_id.encode(), challenge["nonce"].encode(), registration_id.encode(),
                     outcome.encode(), credential_id, attestation_object):
            signed += struct.pack(">Q", len(part)) + part
        body = {"key_id": self.key_id, "nonce": challenge["nonce"], "outcome": outcome,
                "signature": base64.b64encode(self.key.sign(signed, ec.ECDSA(hashes.SHA256()))).decode()}
        if outcome == "completed":
            body["credential_id"] = b64url(credential_id)
            body["attestation_object"] = b64url(attestation_object)
        return self.org.json("POST", f"/api/v1/device/registrations/{registration_id}", body, key=None)


def fake_attestation(rp_id, credential_id, flags=0x45):
    import hashlib
    auth_data = (hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + b"\0\0\0\1" + bytes(16)
                 + struct.pack(">H", len(credential_id)) + credential_id + cbor.encode({1: 2}))
    return cbor.encode({"fmt": "none", "attStmt": {}, "authData": auth_data})


def test_outcomes_from_another_device_or_for_another_rp_are_refused(org, phone):
    path, kid = phone
    other = RawDevice(org, "bob@acme.example")
    _, for_phone = register(org, kid, good_options())
    # Another device cannot answer for the phone's registration, in either way.
    cred = os.urandom(16)
    status, body = other.post(for_phone["id"], "completed", cred, fake_attestation(RP_ID, cred))
    assert (status, body["error"]) == (404, "not_found")
    assert org.json("GET", f"/api/v1/registrations/{for_phone['id']}")[1]["status"] == "pending"

    _, own = register(org, other.key_id, good_options())
    # Its own registration, but an attestation for another RP, without UV, or for another credential.
    for att in (fake_attestation("evil.example", cred), fake_attestation(RP_ID, cred, flags=0x41),
                fake_attestation(RP_ID, os.urandom(16))):
        status, body = other.post(own["id"], "completed", cred, att)
        assert (status, body["error"]) == (400, "invalid_attestation"), body
    # A signature over other bytes than those sent.
    status, challenge = org.json("POST", "/api/v1/device/challenge", {"key_id": other.key_id}, key=None)
    forged = {"key_id": other.key_id, "nonce": challenge["nonce"], "outcome": "denied",
              "signature": base64.b64encode(other.key.sign(b"x", ec.ECDSA(hashes.SHA256()))).decode()}
    status, body = org.json("POST", f"/api/v1/device/registrations/{own['id']}", forged, key=None)
    assert (status, body["error"]) == (401, "bad_signature")
    assert org.json("GET", f"/api/v1/registrations/{own['id']}")[1]["status"] == "pending"


def test_late_repeated_and_suspended_outcomes_are_refused(org):
    # Device requests share a rate budget (20 a burst), hence a test of their own.
    other = RawDevice(org, "bob@acme.example")
    cred = os.urandom(16)
    _, own = register(org, other.key_id, good_options())
    org.sql("UPDATE registrations SET expires_at = '2000-01-01T00:00:00Z' WHERE id = ?", own["id"])
    status, body = other.post(own["id"], "completed", cred, fake_attestation(RP_ID, cred))
    assert (status, body["error"]) == (410, "registration_expired")

    _, second = register(org, other.key_id, good_options())
    assert other.post(second["id"], "completed", cred, fake_attestation(RP_ID, cred)) == (
        200, {"id": second["id"], "status": "completed"})
    status, body = other.post(second["id"], "denied")
    assert (status, body["error"]) == (409, "registration_closed")
    assert "registration.complete" in audit_actions(org)

    # A suspended device gets no jobs and cannot post outcomes.
    _, third = register(org, other.key_id, good_options())
    assert org.json("POST", f"/api/v1/keys/{other.key_id}/suspend", {})[0] == 200
    status, body = other.post(third["id"], "denied")
    assert (status, body["error"]) == (409, "key_not_active")


@pytest.mark.parametrize("rp_id,conveyance,expect", [
    (ENTERPRISE_RP, "enterprise", "enterprise"),  # asked for, and in the policy's list
    (RP_ID, "enterprise", "batch"),  # asked for, not allowed: the batch statement
    (RP_ID, "none", "none"),
])
def test_the_engine_attests_as_for_any_registration(org, phone, rp_id, conveyance, expect):
    path, kid = phone
    challenge = os.urandom(32)
    options = with_(lambda pk: pk.update(challenge=b64url(challenge), attestation=conveyance,
                                         rp={"id": rp_id, "name": "RP"}))
    status, created = register(org, kid, options, origin=f"https://{rp_id}")
    assert status == 202, created
    proc = sync(path, "--auto-approve")
    assert proc.returncode == 0, proc.stderr
    pkc = org.json("GET", f"/api/v1/registrations/{created['id']}")[1]["graph_body"]["publicKeyCredential"]
    att = cbor.decode(unb64url(pkc["response"]["attestationObject"]))
    if expect == "none":
        assert (att["fmt"], att["attStmt"]) == ("none", {})
        return
    status, _, root_pem = org.request("GET", "/api/v1/attestation/root")
    verified = webauthn.verify_registration_response(
        credential={"id": pkc["id"], "rawId": pkc["id"], "type": "public-key", "response": pkc["response"]},
        expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=f"https://{rp_id}",
        require_user_verification=True,
        pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [root_pem]})
    assert verified.fmt == AttestationFormat.PACKED
    leaf = x509.load_der_x509_certificate(att["attStmt"]["x5c"][0])
    serials = [e for e in leaf.extensions if e.oid == SERIAL_OID]
    assert bool(serials) == (expect == "enterprise"), "the per-device serial only for enterprise"


def test_two_nodes_on_postgresql_share_registrations(tmp_path, postgres):
    """Asked at one node, fetched and answered by the phone at the other, read at the first:
    nothing a registration needs is in a node's memory."""
    org = Org(tmp_path, db=PostgresDb(postgres))
    try:
        assert len(org.nodes) == 2
        status, _ = org.json("POST", "/api/v1/invites", {"email": ACCOUNT, "display_name": "Alice"}, node=0)
        assert status == 201
        text = org.mails()[0].get_body(preferencelist=("plain",)).get_content()
        [link] = [w for w in text.split() if "/activate/" in w]
        phone = tmp_path / "phone"
        proc = activate(org.nodes[1][3] + "/activate/" + link.rsplit("/", 1)[1], phone)
        assert proc.returncode == 0, proc.stderr
        kid = org.json("GET", "/api/v1/keys", node=0)[1]["keys"][0]["id"]
        challenge = os.urandom(32)
        status, created = org.json("POST", f"/api/v1/keys/{kid}/registrations", {
            "creation_options": with_(lambda pk: pk.update(challenge=b64url(challenge))),
            "origin": ORIGIN, "display_name": "k"}, node=0)
        assert status == 202, created
        proc = sync(phone, "--auto-approve")
        assert proc.stdout.endswith(f"registration: {RP_ID} for {ACCOUNT}: completed\n"), proc.stderr
        status, reg = org.json("GET", f"/api/v1/registrations/{created['id']}", node=0)
        assert (status, reg["status"]) == (200, "completed")
        pkc = reg["graph_body"]["publicKeyCredential"]
        _, _, root_pem = org.request("GET", "/api/v1/attestation/root", node=0)
        webauthn.verify_registration_response(
            credential={"id": pkc["id"], "rawId": pkc["id"], "type": "public-key", "response": pkc["response"]},
            expected_challenge=challenge, expected_rp_id=RP_ID, expected_origin=ORIGIN,
            require_user_verification=True,
            pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [root_pem]})
    finally:
        org.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_jobs_reach_the_phone_in_the_order_they_were_made(tmp_path, request, backend):
    """Eight jobs, made as fast as the API takes them (most in one second; on PostgreSQL
    alternately through two nodes), reach the phone in the order they were made: its
    `registration:` lines follow the accounts. Ordered by time and then id, jobs of one
    second came in the random order of their ids."""
    db = PostgresDb(request.getfixturevalue("postgres")) if backend == "postgres" else None
    org = Org(tmp_path, db=db, loopback=True, nodes=2 if db else None)
    try:
        status, _ = org.json("POST", "/api/v1/invites", {"email": ACCOUNT, "display_name": "Alice"})
        assert status == 201
        text = org.mails()[0].get_body(preferencelist=("plain",)).get_content()
        [link] = [w for w in text.split() if "/activate/" in w]
        phone = tmp_path / "phone"
        proc = activate(link, phone)
        assert proc.returncode == 0, proc.stderr
        kid = org.json("GET", "/api/v1/keys")[1]["keys"][0]["id"]
        accounts = [f"user{n}@acme.example" for n in range(8)]
        for account in accounts:
            status, created = org.json("POST", f"/api/v1/keys/{kid}/registrations", {
                "creation_options": with_(lambda pk: pk["user"].update(name=account)),
                "origin": ORIGIN, "display_name": "k"})
            assert status == 202, created
        proc = sync(phone, "--auto-approve")
        assert proc.returncode == 0, proc.stderr
        done = [line for line in proc.stdout.splitlines() if line.startswith("registration: ")]
        assert done == [f"registration: {RP_ID} for {a}: completed" for a in accounts], proc.stdout
    finally:
        org.stop()


class GraphOrg(LoopbackOrg):
    """`LoopbackOrg` started with `serve_args` (and on PostgreSQL with two nodes)."""

    def __init__(self, tmp_path, *serve_args, db=None):
        Org.__init__(self, tmp_path, *serve_args, db=db, loopback=True, nodes=2 if db else None)
        self.public_url = self.base


def wait_for_post(org, reg_id):
    """The registration once the server's post to Graph has an outcome (polled: the post is
    the server's own, after the phone's answer); fails the test after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        status, reg = org.json("GET", f"/api/v1/registrations/{reg_id}")
        assert status == 200, reg
        if reg["graph_post"]["status"] in ("posted", "failed"):
            return reg
        assert time.monotonic() < deadline, reg
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_server_posts_the_graph_body_itself_with_the_configured_token(tmp_path, request, backend):
    """`serve --graph-url --graph-token-file`: a registration made with `graph_user` is posted
    by the server once the phone completes it; the test Graph verifies it with py_webauthn
    and takes it once (on PostgreSQL either of two nodes may post it). The token file is read
    at each post: a wrong token makes the next post `failed` with Graph's 401 code. The
    token is in no log and no answer."""
    db = PostgresDb(request.getfixturevalue("postgres")) if backend == "postgres" else None
    token = "tok-" + os.urandom(16).hex()
    token_file = tmp_path / "graph-token"
    token_file.write_text(token + "\n")
    graph = FakeGraph(None, token=token)
    org = GraphOrg(tmp_path, "--graph-url", graph.base, "--graph-token-file", str(token_file), db=db)
    try:
        graph.root_pem = org.request("GET", "/api/v1/attestation/root")[2]
        phone = tmp_path / "phone"
        proc = activate(org.invite_link(), phone)
        assert proc.returncode == 0, proc.stderr
        kid = org.json("GET", "/api/v1/keys")[1]["keys"][0]["id"]

        options = get_json(f"{graph.base}/users/u-5/authentication/fido2Methods/creationOptions")
        status, created = org.json("POST", f"/api/v1/keys/{kid}/registrations", {
            "creation_options": options, "origin": ORIGIN, "display_name": "Alice's PocketKey",
            "graph_user": "u-5"})
        assert status == 202, created
        reg = org.json("GET", f"/api/v1/registrations/{created['id']}")[1]
        assert reg["graph_post"] == {"user": "u-5", "status": "waiting", "at": None, "detail": None}
        proc = sync(phone, "--auto-approve")
        assert proc.stdout.endswith(f"registration: {RP_ID} for {ACCOUNT}: completed\n"), proc.stderr
        reg = wait_for_post(org, created["id"])
        assert (reg["graph_post"]["status"], reg["graph_post"]["detail"]) == ("posted", "HTTP 201"), reg
        assert [(user, name) for user, name, _ in graph.registered] == [("u-5", "Alice's PocketKey")]

        # The token is renewed wrongly: the file is read again for the next post.
        token_file.write_text("tok-expired\n")
        options = get_json(f"{graph.base}/users/u-6/authentication/fido2Methods/creationOptions")
        status, created = org.json("POST", f"/api/v1/keys/{kid}/registrations", {
            "creation_options": options, "origin": ORIGIN, "display_name": "k", "graph_user": "u-6"})
        assert status == 202, created
        assert sync(phone, "--auto-approve").returncode == 0
        reg = wait_for_post(org, created["id"])
        assert reg["graph_post"]["status"] == "failed", reg
        assert reg["graph_post"]["detail"] == "HTTP 401 InvalidAuthenticationToken", reg
        assert len(graph.registered) == 1
        posts = [a for a in audit_actions(org) if a == "registration.graph_post"]
        assert posts == ["registration.graph_post"] * 2
        _, _, audit = org.request("GET", "/api/v1/audit")
        assert token.encode() not in audit and b"tok-expired" not in audit
    finally:
        logs = org.stop()
        graph.stop()
    assert token not in logs and "tok-expired" not in logs
    assert "graph post: posted" in logs and "graph post: failed" in logs


def test_graph_user_needs_a_server_that_posts_to_graph_and_a_plain_user_id(org, graph, phone):
    path, kid = phone
    options = get_json(f"{graph.base}/users/u-7/authentication/fido2Methods/creationOptions")
    for user, code in (("u-7", "graph_not_configured"), ("../me", "graph_not_configured")):
        status, body = org.json("POST", f"/api/v1/keys/{kid}/registrations", {
            "creation_options": options, "origin": ORIGIN, "display_name": "k", "graph_user": user})
        assert (status, body["error"]) == (400, code), body
    assert org.sql("SELECT COUNT(*) FROM registrations") == [(0,)]


def test_a_graph_user_that_is_not_a_plain_id_is_refused(tmp_path):
    token_file = tmp_path / "graph-token"
    token_file.write_text("t")
    org = GraphOrg(tmp_path, "--graph-url", "http://127.0.0.1:9/v1.0", "--graph-token-file", str(token_file))
    try:
        phone = tmp_path / "phone"
        assert activate(org.invite_link(), phone).returncode == 0
        kid = org.json("GET", "/api/v1/keys")[1]["keys"][0]["id"]
        for user in ("../me", "a/b", "", "..", "x" * 257, "me?x=1"):
            status, body = org.json("POST", f"/api/v1/keys/{kid}/registrations", {
                "creation_options": with_(lambda pk: None), "origin": ORIGIN, "display_name": "k",
                "graph_user": user})
            assert (status, body["error"]) == (400, "invalid_graph_user"), (user, body)
        assert org.sql("SELECT COUNT(*) FROM registrations") == [(0,)]
    finally:
        org.stop()
