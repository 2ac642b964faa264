"""The admin console's server side on both databases: SQLite, and PostgreSQL with two `serve`
nodes (test_org.py's `db` fixture; requests alternate between the nodes). No browser: the
admin's session is made in the database the way a passkey sign-in makes it (a random id in
the cookie, its SHA-256 in `console_sessions`), then the pages and forms are used over real
HTTP with the CSRF token read from the page, as a browser would post them. The browser suite
(test_console.py) covers the sign-in itself, on SQLite.
"""

import hashlib
import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request

import pytest

from test_org import Org, db  # noqa: F401 - fixtures (both backends)

# The public URL is https://, so the cookie has the __Host- prefix.
COOKIE = "__Host-pkc_session"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


class Admin:
    """A signed-in console admin of `org` with `role`."""

    def __init__(self, org, email, role):
        self.org = org
        self.email = email
        self.session = secrets.token_hex(32)
        admin_id = secrets.token_hex(16)
        now = org.db.rows("SELECT at FROM audit ORDER BY seq DESC LIMIT 1")[0][0]
        org.db.rows("INSERT INTO console_admins (id, email, display_name, role, user_handle, created_at) "
                    f"VALUES ('{admin_id}', '{email}', '{email}', '{role}', '{secrets.token_hex(16)}', '{now}')")
        # Sessions live 30 minutes idle: "now" is the server's last audit time, seconds ago.
        org.db.rows("INSERT INTO console_sessions (id_hash, admin_id, created_at, last_seen_at) VALUES "
                    f"('{hashlib.sha256(self.session.encode()).hexdigest()}', '{admin_id}', '{now}', '{now}')")

    def request(self, method, path, form=None):
        data = None if form is None else urllib.parse.urlencode(form).encode()
        req = urllib.request.Request(self.org.next_base() + path, data=data, method=method,
                                     headers={"Cookie": f"{COOKIE}={self.session}"})
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with OPENER.open(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def page(self, path):
        status, html = self.request("GET", path)
        assert status == 200, html
        return html

    def csrf(self):
        return re.search(r'name="csrf" value="([0-9a-f]{64})"', self.page("/console/keys")).group(1)

    def post(self, path, **form):
        return self.request("POST", path, {**form, "csrf": self.csrf()})


@pytest.fixture
def org(tmp_path, db):
    o = Org(tmp_path, db=db)
    yield o
    o.stop()


def active_key(org, email):
    status, body = org.json("POST", "/api/v1/invites", {"email": email, "display_name": "Kim"})
    assert status == 201, body
    (key,) = org.db.rows(f"SELECT key_id FROM invites WHERE id = '{body['id']}'")[0]
    org.db.rows(f"UPDATE keys SET status = 'active', activated_at = created_at WHERE id = '{key}'")
    return key


def key_state(org, key):
    return org.db.rows(f"SELECT status, status_reason, status_actor, status_cause FROM keys WHERE id = '{key}'")[0]


def snapshot(org):
    return {t: org.db.rows(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("keys", "invites", "audit", "api_keys")}


def test_a_key_admin_suspends_resumes_and_revokes_from_the_console(org):
    key = active_key(org, "kim@acme.example")
    admin = Admin(org, "ka@acme.example", "key_admin")
    html = admin.page("/console/keys")
    assert f'action="/console/keys/{key}/suspend"' in html and f'href="/console/keys/{key}/revoke"' in html
    status, _ = admin.post(f"/console/keys/{key}/suspend", reason="lost phone")
    assert status == 303
    assert key_state(org, key) == ("suspended", "lost phone", "admin:ka@acme.example", "admin")
    assert admin.post(f"/console/keys/{key}/resume", reason="")[0] == 303
    assert key_state(org, key)[0] == "active"
    assert "Revoke the key of Kim" in admin.page(f"/console/keys/{key}/revoke")
    before = snapshot(org)
    status, html = admin.post(f"/console/keys/{key}/revoke", reason="")
    assert status == 400 and "reason must be" in html
    assert snapshot(org) == before
    assert admin.post(f"/console/keys/{key}/revoke", reason="left")[0] == 303
    assert key_state(org, key) == ("revoked", "left", "admin:ka@acme.example", "admin")
    assert org.db.rows(f"SELECT action, actor FROM audit WHERE subject = '{key}' AND action LIKE 'key.%' ORDER BY seq") == [
        ("key.suspend", "admin:ka@acme.example"), ("key.resume", "admin:ka@acme.example"),
        ("key.revoke", "admin:ka@acme.example")]
    status, html = admin.post(f"/console/keys/{key}/resume")
    assert status == 409 and "cannot become active" in html
    assert admin.post("/console/keys/no-such-key/suspend")[0] == 404
    assert org.audit_verify().returncode == 0


def test_an_auditor_gets_no_buttons_and_a_forged_post_changes_nothing(org):
    key = active_key(org, "kim@acme.example")
    auditor = Admin(org, "au@acme.example", "auditor")
    html = auditor.page("/console/keys")
    assert "kim@acme.example" in html and "/suspend" not in html and "/revoke" not in html
    before = snapshot(org)
    for action in ("suspend", "revoke", "resume"):
        status, html = auditor.post(f"/console/keys/{key}/{action}", reason="forged")
        assert status == 403 and "Your role does not allow this" in html
    assert auditor.request("GET", f"/console/keys/{key}/revoke")[0] == 403
    # Without the CSRF token even a key admin is refused.
    admin = Admin(org, "ka@acme.example", "key_admin")
    assert admin.request("POST", f"/console/keys/{key}/suspend", {"reason": "x"})[0] == 403
    assert snapshot(org) == before and key_state(org, key) == ("active", None, None, None)


def test_the_other_pages_work_on_this_database(org):
    owner = Admin(org, "ow@acme.example", "owner")
    active_key(org, "kim@acme.example")
    org.db.rows("UPDATE keys SET last_seen_at = '2000-01-01T00:00:00Z'")
    assert "kim@acme.example" in owner.page("/console/keys?stale_days=30")
    assert "Chain intact" in owner.page("/console/audit?action=invite.")
    assert "Off: stale keys" in owner.page("/console/policy")
    status, html = owner.post("/console/api-keys/create", name="entra", scope="scim", expires_in_days="30")
    assert status == 200 and 'id="new-secret"' in html
    assert org.db.rows("SELECT scope, expires_at IS NOT NULL FROM api_keys WHERE name = 'entra'")[0][0] == "scim"
    before = snapshot(org)
    status, html = owner.post("/console/api-keys/create", name="x", scope="root")
    assert status == 400 and "unknown scope" in html
    assert owner.post("/console/api-keys/create", name="x", scope="read", expires_in_days="9999")[0] == 400
    assert snapshot(org) == before
    status, html = owner.post("/console/import/commit", csv="ana@acme.example,Ana\nbad,Bad\n")
    assert status == 200 and "1 invitation(s) sent." in html
    assert org.db.rows("SELECT COUNT(*) FROM keys WHERE email = 'ana@acme.example'") == [("1",)]


def test_the_key_page_shows_the_last_wake_up(org):
    """The outcome the wake sender keeps in the key's row (docs/org.md, "Wake-ups"), as the
    console's key page shows it; the REST inventory's `last_wake` is test_org_wake.py's."""
    auditor = Admin(org, "au@acme.example", "auditor")
    key = active_key(org, "kim@acme.example")
    assert '<td class="last-wake">none</td>' in auditor.page(f"/console/keys/{key}")
    org.db.rows("UPDATE keys SET last_wake_at = '2026-01-02T03:04:05Z', last_wake_outcome = 'failed', "
                f"last_wake_refusal = 'unregistered' WHERE id = '{key}'")
    html = auditor.page(f"/console/keys/{key}")
    assert '<td class="last-wake">2026-01-02T03:04:05Z: failed (unregistered)</td>' in html


def test_the_registration_page_shows_the_servers_post_to_graph(tmp_path, db):
    """A registration made with `graph_user` on a server with `--graph-url`: its console
    page says where the server's post is (docs/org.md, "The server posts it itself")."""
    from test_org_on_behalf import ORIGIN, with_

    token_file = tmp_path / "graph-token"
    token_file.write_text("t")
    org = Org(tmp_path, "--graph-url", "http://127.0.0.1:9/v1.0", "--graph-token-file", str(token_file), db=db)
    try:
        auditor = Admin(org, "au@acme.example", "auditor")
        key = active_key(org, "kim@acme.example")
        status, created = org.json("POST", f"/api/v1/keys/{key}/registrations", {
            "creation_options": with_(lambda pk: None), "origin": ORIGIN, "display_name": "k",
            "graph_user": "kim@acme.example"})
        assert status == 202, created
        page = f"/console/registrations/{created['id']}"
        assert '<dd id="graph-post">for kim@acme.example: waiting</dd>' in auditor.page(page)
        org.db.rows("UPDATE registrations SET graph_post = 'failed', "
                    f"graph_post_detail = 'HTTP 401 InvalidAuthenticationToken' WHERE id = '{created['id']}'")
        html = auditor.page(page)
        assert '<dd id="graph-post">for kim@acme.example: failed (HTTP 401 InvalidAuthenticationToken)</dd>' in html

        # The console's form asks for the Graph user on such a server, and passes it on.
        owner = Admin(org, "ow@acme.example", "owner")
        assert 'name="graph_user"' in owner.page(f"/console/keys/{key}")
        status, _ = owner.post(f"/console/keys/{key}/registrations", origin=ORIGIN, display_name="k",
                               creation_options=json.dumps(with_(lambda pk: None)), graph_user="kim.x@acme.example")
        assert status == 303
        [(reg_id,)] = org.db.rows("SELECT id FROM registrations WHERE graph_user = 'kim.x@acme.example'")
        assert '<dd id="graph-post">for kim.x@acme.example: waiting</dd>' in auditor.page(f"/console/registrations/{reg_id}")
    finally:
        org.stop()


def test_the_console_form_has_no_graph_user_where_the_server_does_not_post(org):
    owner = Admin(org, "ow@acme.example", "owner")
    key = active_key(org, "kim@acme.example")
    assert 'name="graph_user"' not in owner.page(f"/console/keys/{key}")
