"""pocketkey-org, the organisation server, as a real process over real HTTP on loopback.

Only the standard library: urllib for HTTP, email for reading the invite as a mail client
would, sqlite3 for tampering with the audit log on disk.
"""

import csv
import datetime
import email
import email.policy
import http.client
import io
import json
import os
import signal
import sqlite3
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("POCKETKEY_ORG_BIN", str(ROOT / "target" / "debug" / "pocketkey-org"))
PUBLIC_URL = "https://org.example.test"


def run(*args, check=True):
    proc = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stderr}")
    return proc


class Org:
    def __init__(self, tmp_path, *serve_args):
        self.state = tmp_path / "state"
        self.outbox = tmp_path / "outbox"
        self.log_path = tmp_path / "serve.log"
        init = run("init", "--state-dir", str(self.state), "--name", "Acme").stdout.splitlines()
        assert init[0] == "initialised: Acme" and init[1].startswith("admin: http://localhost:8080/console/enrol/")
        out = run("api-key", "create", "--state-dir", str(self.state), "--name", "ci").stdout
        assert out.startswith("api-key: ") and out.count("\n") == 1
        self.api_key = out.split(": ", 1)[1].strip()
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--state-dir", str(self.state), "--listen", "127.0.0.1:0",
             "--public-url", PUBLIC_URL, "--outbox", str(self.outbox), *serve_args],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        line = self.proc.stdout.readline()
        assert line.startswith("listening: http://"), line
        self.base = line.split(": ", 1)[1].strip()

    def stop(self):
        """SIGTERM; the server shuts down gracefully and exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0
        self.log.close()
        return self.log_path.read_text()

    def request(self, method, path, body=None, key="default", headers=None):
        headers = dict(headers or {})
        if key == "default":
            key = self.api_key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, method, path, body=None, key="default"):
        status, _, raw = self.request(method, path, body, key)
        return status, json.loads(raw)

    def mails(self):
        if not self.outbox.exists():
            return []
        files = sorted(self.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]

    def audit_verify(self):
        return run("audit", "verify", "--state-dir", str(self.state), check=False)


@pytest.fixture
def org(tmp_path):
    o = Org(tmp_path)
    yield o
    o.stop()


def activate_link(mail):
    """The Activate link, read from the mail's text part as a person would see it."""
    text = mail.get_body(preferencelist=("plain",)).get_content()
    links = [w for w in text.split() if w.startswith(PUBLIC_URL + "/activate/")]
    assert len(links) == 1, text
    return links[0]


def local(link):
    assert link.startswith(PUBLIC_URL)
    return link[len(PUBLIC_URL):]


def invite(org, email_addr="alice@acme.example", name="Alice Example"):
    status, body = org.json("POST", "/api/v1/invites", {"email": email_addr, "display_name": name})
    assert status == 201, body
    return body


def test_init_twice_refuses_and_keeps_the_first_ca(tmp_path):
    state = tmp_path / "state"
    run("init", "--state-dir", str(state), "--name", "Acme")
    db = sqlite3.connect(state / "org.db")
    before = db.execute("SELECT root_cert_pem, root_key_sealed FROM org").fetchall()
    db.close()
    again = run("init", "--state-dir", str(state), "--name", "Other", check=False)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    db = sqlite3.connect(state / "org.db")
    assert db.execute("SELECT root_cert_pem, root_key_sealed FROM org").fetchall() == before
    name, sealed = db.execute("SELECT name, root_key_sealed FROM org").fetchone()
    db.close()
    assert name == "Acme"
    # The CA key is sealed: no PKCS#8 header and no PEM in the stored bytes.
    assert b"PRIVATE KEY" not in sealed and not sealed.startswith(b"\x30\x81")
    assert (state / "master.key").stat().st_mode & 0o777 == 0o600


def test_the_default_state_dir_is_under_xdg_state_home(tmp_path):
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "xdg"), HOME=str(tmp_path / "home"))
    proc = subprocess.run([BIN, "init", "--name", "Acme"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "xdg" / "pocketkey-org"
    assert (state / "org.db").is_file() and (state / "master.key").is_file()
    assert state.stat().st_mode & 0o777 == 0o700
    del env["XDG_STATE_HOME"]
    proc = subprocess.run([BIN, "api-key", "create", "--name", "x"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "no organisation in" in proc.stderr
    # ~/.local/state/pocketkey-org is where it looked; it made no database there.
    assert "/home/.local/state/pocketkey-org" in proc.stderr
    assert not (tmp_path / "home" / ".local" / "state" / "pocketkey-org" / "org.db").exists()


def test_api_key_is_required_and_a_wrong_one_gets_a_typed_401(org):
    for key in (None, "0" * 64, "not-a-key"):
        status, body = org.json("GET", "/api/v1/keys", key=key)
        assert (status, body["error"]) == (401, "unauthorized"), key
        assert body["message"]
    status, body = org.json("GET", "/api/v1/keys")
    assert (status, body) == (200, {"keys": []})
    # Unknown routes and methods are typed too.
    assert org.json("GET", "/api/v1/nothing")[1]["error"] == "not_found"
    assert org.json("GET", "/api/v1/invites") == (405, {
        "error": "method_not_allowed", "message": "this route does not take that method"})


def test_failed_api_keys_are_rate_limited_per_ip(org):
    statuses = [org.json("GET", "/api/v1/keys", key="1" * 64)[0] for _ in range(12)]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    # Once the IP is limited, even the right key waits: guessing cannot go on.
    status, body = org.json("GET", "/api/v1/keys")
    assert (status, body["error"]) == (429, "rate_limited")


def test_invite_writes_a_mail_with_both_parts_and_a_working_link(org):
    created = invite(org)
    assert set(created) == {"id", "expires_at"}
    expires = datetime.datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    days = (expires - datetime.datetime.now(datetime.timezone.utc)).total_seconds() / 86400
    assert 6.9 < days <= 7.0, created
    [mail] = org.mails()
    assert mail["To"].addresses[0].addr_spec == "alice@acme.example"
    assert mail.get_content_type() == "multipart/alternative"
    html = mail.get_body(preferencelist=("html",)).get_content()
    link = activate_link(mail)
    assert f'href="{link}"' in html and "Activate" in html
    token = link.rsplit("/", 1)[1]
    assert len(token) == 64 and int(token, 16) >= 0
    status, headers, page = org.request("GET", local(link), key=None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = page.decode()
    assert link in page and "<svg" in page
    status, body = org.json("GET", "/api/v1/keys")
    assert status == 200
    [entry] = body["keys"]
    assert (entry["email"], entry["display_name"], entry["status"]) == ("alice@acme.example", "Alice Example", "invited")
    # The token is stored only as its hash.
    db = sqlite3.connect(org.state / "org.db")
    dump = "\n".join(db.iterdump())
    db.close()
    assert token not in dump and org.api_key not in dump
    # Neither the token nor the API key reaches the log.
    log = org.stop()
    # Plain structured lines when stderr is not a terminal (no colour escapes in log files).
    assert "\x1b[" not in log
    assert 'path="/activate/<token>" status=200' in log
    assert token not in log and org.api_key not in log


def test_resending_invalidates_the_previous_link(org):
    created = invite(org)
    [first] = org.mails()
    old = activate_link(first)
    status, body = org.json("POST", f"/api/v1/invites/{created['id']}/resend")
    assert status == 200 and body["id"] == created["id"]
    mails = org.mails()
    assert len(mails) == 2
    new = activate_link(mails[1])
    assert new != old
    status, _, old_page = org.request("GET", local(old), key=None)
    assert status == 404 and b"This link is not valid" in old_page
    assert org.request("GET", local(new), key=None)[0] == 200
    # Unknown and malformed tokens get the very same answer.
    assert org.request("GET", "/activate/" + "ab" * 32, key=None)[::2] == (404, old_page)
    assert org.request("GET", "/activate/x", key=None)[::2] == (404, old_page)
    status, body = org.json("POST", "/api/v1/invites/" + "00" * 16 + "/resend")
    assert (status, body["error"]) == (404, "not_found")


def test_activation_lookups_are_rate_limited(org):
    statuses = [org.request("GET", "/activate/" + "cd" * 32, key=None)[0] for _ in range(60)]
    assert statuses[:20] == [404] * 20
    assert 429 in statuses[20:]


def test_oversize_bodies_get_a_typed_413_and_store_nothing(org):
    big = {"email": "bob@acme.example", "display_name": "B" * (17 * 1024)}
    status, body = org.json("POST", "/api/v1/invites", big)
    assert (status, body["error"]) == (413, "payload_too_large")
    # Without a Content-Length (chunked), the body is cut off while read: the same answer.
    host, port = org.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = (b'{"email": "bob@acme.example", "display_name": "' + b"B" * 1024 for _ in range(17))
    conn.request("POST", "/api/v1/invites", body=chunks, encode_chunked=True,
                 headers={"Authorization": f"Bearer {org.api_key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"] == "payload_too_large"
    conn.close()
    # A route that reads no body still refuses a declared oversize one.
    status, _, raw = org.request("GET", "/api/v1/keys", body=b"x" * (17 * 1024))
    assert (status, json.loads(raw)["error"]) == (413, "payload_too_large")
    assert org.json("GET", "/api/v1/keys") == (200, {"keys": []})
    assert org.mails() == []


def test_expired_and_used_links_get_the_neutral_page(org):
    invite(org)
    link = local(activate_link(org.mails()[0]))
    _, _, neutral = org.request("GET", "/activate/" + "ab" * 32, key=None)
    assert org.request("GET", link, key=None)[0] == 200
    db = sqlite3.connect(org.state / "org.db")
    db.execute("UPDATE invites SET expires_at = '2020-01-01T00:00:00Z'")
    db.commit()
    assert org.request("GET", link, key=None)[::2] == (404, neutral)
    db.execute("UPDATE invites SET expires_at = '2999-01-01T00:00:00Z', used_at = '2026-01-01T00:00:00Z'")
    db.commit()
    assert org.request("GET", link, key=None)[::2] == (404, neutral)
    db.execute("UPDATE invites SET used_at = NULL")
    db.commit()
    db.close()
    assert org.request("GET", link, key=None)[0] == 200


def test_names_cannot_inject_headers_or_markup(org):
    for name in ("Eve\r\nBcc: eve@evil.example", "Eve\nX", "", " ", "E" * 129):
        status, body = org.json("POST", "/api/v1/invites", {"email": "eve@acme.example", "display_name": name})
        assert (status, body["error"]) == (400, "invalid_display_name"), name
    assert org.mails() == []
    invite(org, "eve@acme.example", "<b>Eve</b> & co")
    [mail] = org.mails()
    assert mail["Bcc"] is None
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; co" in html and "<b>Eve" not in html


def test_help_names_the_commands_and_serve_options():
    out = run("--help").stdout
    for command in ("init", "serve", "api-key", "audit"):
        assert command in out
    out = run("serve", "--help").stdout
    for option in ("--state-dir", "--listen", "--public-url", "--outbox"):
        assert option in out


@pytest.mark.parametrize("addr", ["not-an-address", "a@", "x" * 250 + "@acme.example", "a b@acme.example"])
def test_invalid_email_addresses_are_refused(org, addr):
    status, body = org.json("POST", "/api/v1/invites", {"email": addr, "display_name": "X"})
    assert (status, body["error"]) == (400, "invalid_email")
    assert org.mails() == []


def test_audit_exports_as_ndjson_and_csv_with_a_hash_chain(org):
    created = invite(org)
    assert org.json("POST", f"/api/v1/invites/{created['id']}/resend")[0] == 200
    status, headers, raw = org.request("GET", "/api/v1/audit?format=ndjson")
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    entries = [json.loads(line) for line in raw.decode().splitlines()]
    assert [e["action"] for e in entries] == ["org.init", "api_key.create", "invite.create", "invite.resend"]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev_hash"] == "0" * 64
    for before, after in zip(entries, entries[1:]):
        assert after["prev_hash"] == before["hash"]
    assert entries[2]["actor"] == "api-key:ci" and entries[2]["subject"] == created["id"]
    status, headers, raw = org.request("GET", "/api/v1/audit?format=csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(raw.decode())))
    assert [r["hash"] for r in rows] == [e["hash"] for e in entries]
    assert [json.loads(r["detail"]) for r in rows] == [json.loads(e["detail"]) for e in entries]
    status, body = org.json("GET", "/api/v1/audit?format=xml")
    assert (status, body["error"]) == (400, "invalid_format")
    assert org.request("GET", "/api/v1/audit", key=None)[0] == 401


def test_a_tampered_audit_row_is_named_by_audit_verify(org):
    invite(org)
    invite(org, "bob@acme.example", "Bob")
    ok = org.audit_verify()
    assert (ok.returncode, ok.stdout) == (0, "audit: 4 entries, chain intact\n")
    db = sqlite3.connect(org.state / "org.db")
    db.execute("UPDATE audit SET detail = replace(detail, 'alice', 'mallory') WHERE seq = 3")
    db.commit()
    db.close()
    broken = org.audit_verify()
    assert broken.returncode == 1
    assert broken.stdout.startswith("audit: entry 3 is broken"), broken.stdout


def test_a_stalled_request_body_gets_408_at_the_deadline(tmp_path):
    org = Org(tmp_path, "--request-timeout", "1")
    try:
        host, port = org.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        # Headers promise 100 bytes; only 10 come. The server answers at its deadline.
        conn.putrequest("POST", "/api/v1/invites")
        conn.putheader("Authorization", f"Bearer {org.api_key}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "100")
        conn.endheaders(b'{"email": ')
        resp = conn.getresponse()
        assert resp.status == 408
        conn.close()
        assert org.json("GET", "/api/v1/keys") == (200, {"keys": []})
    finally:
        org.stop()


def test_sigterm_right_after_listening_is_a_clean_shutdown(tmp_path):
    """The signal handlers exist before `listening:` is printed: exit 0, never death by signal."""
    org = Org(tmp_path)
    org.stop()
    for _ in range(20):
        proc = subprocess.Popen(
            [BIN, "serve", "--state-dir", str(org.state), "--listen", "127.0.0.1:0",
             "--public-url", PUBLIC_URL], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().startswith("listening: ")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc.stdout.close()


def test_a_client_that_never_finishes_its_headers_is_cut_off(tmp_path):
    """Reading request headers has the request deadline too (slowloris)."""
    import socket

    org = Org(tmp_path, "--request-timeout", "1")
    host, port = org.base.removeprefix("http://").split(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=20)
        sock.sendall(b"GET /api/v1/keys HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        # The server ends the connection at its deadline (408 or a plain close), long before
        # this socket's own 20 s timeout would fire (hyper's default would be 30 s).
        answer = sock.recv(1024)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        sock.close()
        # Another one held open cannot hold up the shutdown either.
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(b"GET /api/v1/keys HTTP/1.1\r\n")
        assert org.json("GET", "/api/v1/keys")[0] == 200
        org.stop()
        sock.close()
    finally:
        org.stop()


def test_attestation_root_is_a_pem_ca_certificate(org):
    status, headers, pem = org.request("GET", "/api/v1/attestation/root")
    assert status == 200
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----") and pem.rstrip().endswith(b"-----END CERTIFICATE-----")
    assert org.request("GET", "/api/v1/attestation/root", key=None)[0] == 401
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.x509.oid import NameOID

    root = x509.load_pem_x509_certificate(pem)
    root.verify_directly_issued_by(root)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (bc.ca, bc.path_length) == (True, 0)
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme"
    db = sqlite3.connect(org.state / "org.db")
    batch_pem, root_sealed, batch_sealed = db.execute(
        "SELECT batch_cert_pem, root_key_sealed, batch_key_sealed FROM org").fetchone()
    db.close()
    # The batch certificate: WebAuthn §8.2.1, chained to the root, AAGUID extension.
    batch = x509.load_pem_x509_certificate(batch_pem.encode())
    batch.verify_directly_issued_by(root)
    assert batch.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ou = batch.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
    assert ou == "Authenticator Attestation"
    aaguid = batch.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4"))
    assert not aaguid.critical and aaguid.value.value[:2] == b"\x04\x10" and len(aaguid.value.value) == 18
    # The private keys open with the master key file (core's Sealer: HKDF-SHA256 subkey,
    # ChaCha20-Poly1305, version byte bound into the AAD) and match the certificates.
    master = (org.state / "master.key").read_bytes()
    subkey = HKDF(algorithm=SHA256(), length=32, salt=b"pocketkey-org",
                  info=b"pocketkey seal v1: store").derive(master)
    for sealed, aad, cert in ((root_sealed, b"pocketkey-org:root-key", root),
                              (batch_sealed, b"pocketkey-org:batch-key", batch)):
        assert sealed[0] == 1
        der = ChaCha20Poly1305(subkey).decrypt(sealed[1:13], sealed[13:], b"\x01" + aad)
        key = serialization.load_der_private_key(der, password=None)
        raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        assert key.public_key().public_bytes(*raw) == cert.public_key().public_bytes(*raw)
