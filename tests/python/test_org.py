"""pocketkey-org, the organisation server, as a real process over real HTTP on loopback.

Only the standard library: urllib for HTTP, email for reading the invite as a mail client
would, sqlite3 or psql for tampering with the database (org_db.py). Every test that takes the
`org` or `db` fixture runs twice: on SQLite, and on PostgreSQL with two `serve` processes.
"""

import concurrent.futures
import csv
import datetime
import email
import email.policy
import hashlib
import http.client
import io
import json
import os
import queue
import socket
import signal
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from org_db import PostgresDb, SqliteDb

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("POCKETKEY_ORG_BIN", str(ROOT / "target" / "debug" / "pocketkey-org"))
PUBLIC_URL = "https://org.example.test"


def run(*args, check=True):
    proc = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}): {proc.stderr}")
    return proc


class Org:
    """An organisation and its `serve` processes: one on SQLite; on PostgreSQL two, sharing
    the database and the state directory (its master key), with requests alternating."""

    def __init__(self, tmp_path, *serve_args, db=None, loopback=False, before_serve=None, nodes=None):
        """`loopback`: one node (or `nodes`) whose public URL is the first node's own address,
        so mailed links reach it; `before_serve(self)` runs after init and the API key, before
        the servers start."""
        self.state = tmp_path / "state"
        self.outbox = tmp_path / "outbox"
        self.db = db or SqliteDb(self.state)
        self.db_args = list(self.db.args)
        init = self.cli("init", "--name", "Acme").stdout.splitlines()
        assert init[0] == "initialised: Acme", init
        assert init[1].startswith("admin: http://localhost:8080/console/enrol/"), init
        out = self.cli("api-key", "create", "--name", "ci").stdout
        assert out.startswith("api-key: ") and out.count("\n") == 1
        self.api_key = out.split(": ", 1)[1].strip()
        if before_serve:
            before_serve(self)
        self.nodes = []
        count = nodes or (2 if self.db.name == "postgres" and not loopback else 1)
        for n in range(count):
            log_path = tmp_path / f"serve{n}.log"
            log = open(log_path, "w")
            outbox = [] if "--smtp" in serve_args else ["--outbox", str(self.outbox)]
            listen, public_url = "127.0.0.1:0", PUBLIC_URL
            if loopback:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    listen = f"127.0.0.1:{s.getsockname()[1]}"
                public_url = self.nodes[0][3] if self.nodes else f"http://{listen}"
            proc = subprocess.Popen(
                [BIN, "serve", "--state-dir", str(self.state), *self.db_args, "--listen", listen,
                 "--public-url", public_url, *outbox, *serve_args],
                stdout=subprocess.PIPE, stderr=log, text=True,
            )
            line = proc.stdout.readline()
            if not line.startswith("listening: http://"):
                # No fixture will stop what this constructor started: stop it here.
                for started in [proc] + [node[0] for node in self.nodes]:
                    started.kill()
                    started.wait()
                raise AssertionError(f"serve did not start: {line!r}\n{log_path.read_text()}")
            self.nodes.append((proc, log, log_path, line.split(": ", 1)[1].strip()))
        self.base = self.nodes[0][3]
        self.turn = 0

    def cli(self, *args, check=True):
        """A `pocketkey-org` command on this organisation's state directory and database."""
        command, rest = (args[:2], args[2:]) if args[0] in ("api-key", "audit", "policy") else (args[:1], args[1:])
        return run(*command, "--state-dir", str(self.state), *self.db_args, *rest, check=check)

    def next_base(self, node=None):
        if node is not None:
            return self.nodes[node][3]
        self.turn += 1
        return self.nodes[self.turn % len(self.nodes)][3]

    def stop(self):
        """SIGTERM; each server shuts down gracefully and exits 0. Returns their logs."""
        logs = []
        for proc, log, log_path, _ in self.nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0
            log.close()
            logs.append(log_path.read_text())
        return "".join(logs)

    def request(self, method, path, body=None, key="default", headers=None, node=None):
        headers = dict(headers or {})
        if key == "default":
            key = self.api_key
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.next_base(node) + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, method, path, body=None, key="default", node=None):
        status, _, raw = self.request(method, path, body, key, node=node)
        return status, json.loads(raw)

    def mails(self):
        if not self.outbox.exists():
            return []
        files = sorted(self.outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]

    def audit_verify(self):
        return self.cli("audit", "verify", check=False)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """Each test that takes it runs once per backend; PostgreSQL starts only when needed."""
    if request.param == "sqlite":
        return SqliteDb(tmp_path / "state")
    return PostgresDb(request.getfixturevalue("postgres"))


@pytest.fixture
def org(tmp_path, db):
    o = Org(tmp_path, db=db)
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


def test_init_twice_refuses_and_keeps_the_first_ca(tmp_path, db):
    state = tmp_path / "state"
    run("init", "--state-dir", str(state), *db.args, "--name", "Acme")
    select = f"SELECT name, root_cert_pem, {db.hex('root_key_sealed')} FROM org"
    before = db.rows(select)
    again = run("init", "--state-dir", str(state), *db.args, "--name", "Other", check=False)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert db.rows(select) == before
    [(name, _, sealed)] = before
    assert name == "Acme"
    # The CA key is sealed: no PKCS#8 header and no PEM in the stored bytes.
    sealed = bytes.fromhex(sealed)
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
    assert (status, body) == (200, {"keys": [], "next_after": None})
    # Unknown routes and methods are typed too.
    assert org.json("GET", "/api/v1/nothing")[1]["error"] == "not_found"
    assert org.json("GET", "/api/v1/invites") == (405, {
        "error": "method_not_allowed", "message": "this route does not take that method"})


def test_failed_api_keys_are_rate_limited_per_ip(org):
    # The limiters are per node (docs/org.md): all these go to the first.
    statuses = [org.json("GET", "/api/v1/keys", key="1" * 64, node=0)[0] for _ in range(12)]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    # Once the IP is limited, even the right key waits: guessing cannot go on.
    status, body = org.json("GET", "/api/v1/keys", node=0)
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
    dump = org.db.dump()
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
    statuses = [org.request("GET", "/activate/" + "cd" * 32, key=None, node=0)[0] for _ in range(60)]
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
    assert org.json("GET", "/api/v1/keys") == (200, {"keys": [], "next_after": None})
    assert org.mails() == []


def test_expired_and_used_links_get_the_neutral_page(org):
    invite(org)
    link = local(activate_link(org.mails()[0]))
    _, _, neutral = org.request("GET", "/activate/" + "ab" * 32, key=None)
    assert org.request("GET", link, key=None)[0] == 200
    org.db.rows("UPDATE invites SET expires_at = '2020-01-01T00:00:00Z'")
    assert org.request("GET", link, key=None)[::2] == (404, neutral)
    org.db.rows("UPDATE invites SET expires_at = '2999-01-01T00:00:00Z', used_at = '2026-01-01T00:00:00Z'")
    assert org.request("GET", link, key=None)[::2] == (404, neutral)
    org.db.rows("UPDATE invites SET used_at = NULL")
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
    for option in ("--state-dir", "--listen", "--public-url", "--outbox", "--database"):
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
    org.db.rows("UPDATE audit SET detail = replace(detail, 'alice', 'mallory') WHERE seq = 3")
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
        assert org.json("GET", "/api/v1/keys") == (200, {"keys": [], "next_after": None})
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
    [(batch_pem, root_sealed, batch_sealed)] = org.db.rows(
        f"SELECT batch_cert_pem, {org.db.hex('root_key_sealed')}, {org.db.hex('batch_key_sealed')} FROM org")
    root_sealed, batch_sealed = bytes.fromhex(root_sealed), bytes.fromhex(batch_sealed)
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


def audit_hash(seq, at, actor, action, subject, detail, prev_hash):
    """An entry's hash as docs/org.md defines it (the server's own, recomputed here)."""
    h = hashlib.sha256(b"pocketkey-org audit v1")
    for field in (str(seq), at, actor, action, subject, detail, prev_hash):
        raw = field.encode()
        h.update(len(raw).to_bytes(8, "big") + raw)
    return h.hexdigest()


def test_an_append_that_loses_the_race_for_its_seq_retries_on_the_new_end(tmp_path, postgres):
    """Another node holds the next `seq` in an open transaction: the server's insert waits on
    it, collides when it commits, and appends after it instead of failing or forking."""
    org = Org(tmp_path, db=PostgresDb(postgres))
    try:
        [(last_seq, last_hash)] = org.db.rows("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        seq = int(last_seq) + 1
        fields = (seq, "2026-01-01T00:00:00Z", "other-node", "invite.create", "x" * 32, "{}", last_hash)
        other_hash = audit_hash(*fields)
        values = ", ".join(f"'{v}'" for v in (*fields[1:], other_hash))
        other = subprocess.Popen(
            [str(postgres.bindir / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(postgres.port),
             "-U", "pk", "-d", org.db.db],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        other.stdin.write(f"BEGIN;\nINSERT INTO audit VALUES ({seq}, {values});\n")
        other.stdin.flush()
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND {} AND query LIKE 'INSERT INTO audit%'")
        while org.db.rows(waiting.format("state = 'idle in transaction'")) != [("1",)]:
            assert other.poll() is None, other.stderr.read()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            created = pool.submit(invite, org)
            # The server's own insert of the same seq now waits for the other transaction.
            while org.db.rows(waiting.format("wait_event_type = 'Lock'")) != [("1",)]:
                assert not created.done(), created.result()
            other.stdin.write("COMMIT;\n")
            other.stdin.close()
            assert other.wait(timeout=30) == 0
            invite_id = created.result(timeout=30)["id"]
        status, _, raw = org.request("GET", "/api/v1/audit")
        entries = [json.loads(line) for line in raw.decode().splitlines()]
        assert [(e["seq"], e["actor"]) for e in entries[-2:]] == [(seq, "other-node"), (seq + 1, "api-key:ci")]
        assert entries[-1]["subject"] == invite_id and entries[-1]["prev_hash"] == other_hash
        ok = org.audit_verify()
        assert (ok.returncode, ok.stdout) == (0, f"audit: {seq + 1} entries, chain intact\n")
    finally:
        log = org.stop()
    assert "appending again" in log


def test_two_nodes_inviting_at_once_keep_one_intact_chain(tmp_path, postgres):
    org = Org(tmp_path, db=PostgresDb(postgres))
    try:
        n = 40
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            created = list(pool.map(lambda i: invite(org, f"user{i}@acme.example", f"User {i}"), range(n)))
        assert len({c["id"] for c in created}) == n
        ok = org.audit_verify()
        assert (ok.returncode, ok.stdout) == (0, f"audit: {n + 2} entries, chain intact\n")
        assert len(org.mails()) == n
    finally:
        org.stop()


class SmtpServer:
    """A real SMTP server (aiosmtpd) on loopback. It refuses recipients at refused.example
    (550, as a server refuses an unknown mailbox), every recipient while `refuse_all` is set,
    and queues every mail it accepts."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        received = self.received = queue.Queue()
        self.refuse_all = False
        smtp = self

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                if address.endswith("@refused.example") or smtp.refuse_all:
                    return "550 5.1.1 no such mailbox"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                received.put((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
                return "250 Message accepted for delivery"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.port}"

    def mail(self):
        """The next mail the server accepted, as a mail client reads it."""
        mail_from, rcpt_tos, raw = self.received.get(timeout=30)
        return mail_from, rcpt_tos, email.message_from_bytes(raw, policy=email.policy.default)

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = SmtpServer()
    yield server
    server.stop()


def test_an_invite_arrives_by_smtp_with_both_parts_and_the_activate_link(tmp_path, db, smtp):
    org = Org(tmp_path, "--smtp", smtp.url, "--mail-from", "Acme IT <it@acme.example>", db=db)
    try:
        created = invite(org)
        mail_from, rcpt_tos, mail = smtp.mail()
        assert (mail_from, rcpt_tos) == ("it@acme.example", ["alice@acme.example"])
        assert mail["To"].addresses[0].addr_spec == "alice@acme.example"
        assert mail["From"].addresses[0].display_name == "Acme IT"
        assert mail["Subject"] == "Activate your Acme security key"
        assert mail.get_content_type() == "multipart/alternative"
        link = activate_link(mail)
        html = mail.get_body(preferencelist=("html",)).get_content()
        assert f'href="{link}"' in html and ">Activate</a>" in html
        assert org.request("GET", local(link), key=None)[0] == 200
        # A resend goes the same way, with a new link; the old one stops working.
        assert org.json("POST", f"/api/v1/invites/{created['id']}/resend")[0] == 200
        new = activate_link(smtp.mail()[2])
        assert new != link and org.request("GET", local(link), key=None)[0] == 404
        assert not org.outbox.exists()
    finally:
        org.stop()


def test_a_mail_server_that_refuses_or_is_down_gets_a_typed_502_and_nothing_is_stored(tmp_path, db, smtp):
    org = Org(tmp_path, "--smtp", smtp.url, db=db)
    try:
        status, body = org.json("POST", "/api/v1/invites", {"email": "bob@refused.example", "display_name": "Bob"})
        assert (status, body["error"]) == (502, "mail_failed"), body
        # A resend the server refuses changes nothing: the previous link keeps working.
        created = invite(org)
        link = local(activate_link(smtp.mail()[2]))
        smtp.refuse_all = True
        status, body = org.json("POST", f"/api/v1/invites/{created['id']}/resend")
        assert (status, body["error"]) == (502, "mail_failed"), body
        assert org.request("GET", link, key=None)[0] == 200
        smtp.stop()
        status, body = org.json("POST", "/api/v1/invites", {"email": "carol@acme.example", "display_name": "Carol"})
        assert (status, body["error"]) == (502, "mail_failed"), body
        assert [k["email"] for k in org.json("GET", "/api/v1/keys")[1]["keys"]] == ["alice@acme.example"]
        assert org.db.rows("SELECT count(*) FROM invites") == [("1",)]
        status, _, raw = org.request("GET", "/api/v1/audit")
        assert [json.loads(line)["action"] for line in raw.decode().splitlines()] == [
            "org.init", "api_key.create", "invite.create"]
    finally:
        log = org.stop()
    assert "invite mail not sent" in log


def test_smtp_and_outbox_are_exclusive_and_a_bad_smtp_url_stops_serve(tmp_path):
    org = Org(tmp_path)
    org.stop()
    for extra, message in ((["--smtp", "smtp://127.0.0.1:1", "--outbox", str(tmp_path)], "cannot be used with"),
                           (["--smtp", "http://user:hunter2@mail.example"], "--smtp must be an smtp://")):
        proc = run("serve", "--state-dir", str(org.state), "--listen", "127.0.0.1:0",
                   "--public-url", PUBLIC_URL, *extra, check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert "hunter2" not in proc.stderr


def test_the_openapi_document_parses_and_lists_every_route_the_server_serves(org):
    status, headers, raw = org.request("GET", "/api/v1/openapi.json", key=None)
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(raw)
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] == "pocketkey-org"
    ops = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert ops == {
        ("POST", "/api/v1/invites"), ("POST", "/api/v1/invites/{id}/resend"), ("GET", "/api/v1/keys"),
        ("GET", "/api/v1/attestation/root"), ("GET", "/api/v1/audit"), ("GET", "/api/v1/openapi.json"),
        ("GET", "/activate/{token}"), ("POST", "/api/v1/device/activate"), ("POST", "/api/v1/device/challenge"),
        ("POST", "/api/v1/device/sync"), ("POST", "/api/v1/device/push"), ("POST", "/api/v1/keys/{id}/revoke"), ("POST", "/api/v1/keys/{id}/suspend"),
        ("POST", "/api/v1/keys/{id}/resume"), ("POST", "/api/v1/keys/{id}/registrations"),
        ("GET", "/api/v1/registrations/{id}"), ("POST", "/api/v1/device/registrations/{id}"),
        ("GET", "/.well-known/assetlinks.json"), ("GET", "/.well-known/apple-app-site-association"),
    }
    no_route = {"error": "not_found", "message": "no such route"}
    for method, path in sorted(ops):
        # Each documented operation is served: no "no such route" and no 405 from the server.
        status, _, raw = org.request(method, path.replace("{id}", "00" * 16).replace("{token}", "ab" * 32),
                                     body={} if method == "POST" else None)
        assert status != 405, (method, path)
        if status == 404 and raw.startswith(b"{"):
            assert json.loads(raw) != no_route, (method, path)
    schemas = doc["components"]["schemas"]
    assert set(schemas["ErrorBody"]["required"]) == {"error", "message"}
    assert set(schemas["NewInvite"]["required"]) == {"email", "display_name"}
    keys = doc["paths"]["/api/v1/keys"]["get"]
    assert {p["name"] for p in keys["parameters"]} == {"limit", "after"}
    assert doc["components"]["securitySchemes"]["api_key"] == {"type": "http", "scheme": "bearer"}


def test_a_read_scoped_key_reads_but_cannot_post(org):
    out = org.cli("api-key", "create", "--name", "auditor", "--scope", "read").stdout
    read_key = out.split(": ", 1)[1].strip()
    assert org.json("GET", "/api/v1/keys", key=read_key)[0] == 200
    assert org.request("GET", "/api/v1/audit", key=read_key)[0] == 200
    status, body = org.json("POST", "/api/v1/invites", {"email": "a@acme.example", "display_name": "A"}, key=read_key)
    assert (status, body["error"]) == (403, "forbidden")
    assert org.json("POST", "/api/v1/invites/" + "00" * 16 + "/resend", key=read_key)[1]["error"] == "forbidden"
    assert org.json("GET", "/api/v1/keys")[1]["keys"] == [] and org.mails() == []
    # The audit log says which scope each key got.
    _, _, raw = org.request("GET", "/api/v1/audit")
    created = [json.loads(json.loads(line)["detail"]) for line in raw.decode().splitlines()
               if json.loads(line)["action"] == "api_key.create"]
    assert [(c["name"], c["scope"]) for c in created] == [("ci", "admin"), ("auditor", "read")]
    bad = org.cli("api-key", "create", "--name", "x", "--scope", "root", check=False)
    assert bad.returncode != 0 and "root" in bad.stderr


def test_an_expired_key_is_refused_like_a_wrong_one(org):
    out = org.cli("api-key", "create", "--name", "temp", "--expires-in-days", "1").stdout
    temp = out.split(": ", 1)[1].strip()
    assert org.json("GET", "/api/v1/keys", key=temp)[0] == 200
    org.db.rows("UPDATE api_keys SET expires_at = '2020-01-01T00:00:00Z' WHERE name = 'temp'")
    assert org.json("GET", "/api/v1/keys", key=temp) == org.json("GET", "/api/v1/keys", key="2" * 64)
    assert org.json("GET", "/api/v1/keys", key=temp)[1]["error"] == "unauthorized"
    [(expires,)] = org.db.rows("SELECT expires_at FROM api_keys WHERE name = 'ci'")
    assert expires is None
    for days in ("0", "3651", "-1"):
        assert org.cli("api-key", "create", "--name", "x", "--expires-in-days", days, check=False).returncode != 0


def test_the_inventory_comes_in_pages(org):
    # Rows seeded directly (an invite each would be slower and is not what is tested).
    values = ", ".join(f"('k{i:04d}', 'u{i}@acme.example', 'U{i}', 'invited', '2026-01-01T00:00:{i % 3:02d}Z')"
                       for i in range(250))
    org.db.rows(f"INSERT INTO keys (id, email, display_name, status, created_at) VALUES {values}")
    status, page = org.json("GET", "/api/v1/keys")
    assert status == 200 and len(page["keys"]) == 100  # the default page
    seen, after, pages = [], None, 0
    while True:
        query = "?limit=64" + (f"&after={after}" if after else "")
        status, page = org.json("GET", "/api/v1/keys" + query)
        assert status == 200, page
        seen += [k["id"] for k in page["keys"]]
        pages += 1
        after = page["next_after"]
        if after is None:
            break
    assert pages == 4 and len(seen) == 250 and len(set(seen)) == 250
    expected = sorted((f"2026-01-01T00:00:{i % 3:02d}Z", f"k{i:04d}") for i in range(250))
    assert seen == [k for _, k in expected]  # oldest first, ties by id
    for query, code in (("?limit=0", "invalid_limit"), ("?limit=1001", "invalid_limit"),
                        ("?limit=x", "invalid_query"), ("?after=nope", "invalid_cursor"),
                        ("?colour=red", "invalid_query")):
        status, body = org.json("GET", "/api/v1/keys" + query)
        assert (status, body["error"]) == (400, code), query
    assert len(org.json("GET", "/api/v1/keys?limit=1000")[1]["keys"]) == 250


def test_figures_short_form(tmp_path, db):
    """org_figures.py's code with small counts (the long form is run by hand): what it counts
    must add up. Times are printed, never asserted."""
    import org_figures

    org = Org(tmp_path, db=db)
    try:
        lines = []
        result = org_figures.figures(org, invites=10, keys=1500, threads=2, out=lines.append)
        print("\n".join(lines))
        assert (result["invites"], result["listed"], result["pages"]) == (10, 1510, 2)
        assert all(kib > 0 for kib in result["rss_idle_start_kib"] + result["rss_idle_after_kib"])
        assert len(org.mails()) == 10
    finally:
        org.stop()


def test_an_unreachable_or_unknown_database_says_why_without_the_password(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for url, message in ((f"postgres://pk:hunter2@127.0.0.1:{closed}/org", "Connection refused"),
                         ("mysql://pk:hunter2@127.0.0.1/org", "--database must be a postgres://")):
        for command in (["init", "--name", "Acme"], ["api-key", "create", "--name", "x"], ["audit", "verify"]):
            head, rest = (command[:2], command[2:]) if command[0] in ("api-key", "audit") else (command[:1], command[1:])
            proc = run(*head, "--state-dir", str(tmp_path / "state"), "--database", url, *rest, check=False)
            assert proc.returncode == 1 and message in proc.stderr, proc.stderr
            assert "hunter2" not in proc.stderr + proc.stdout
