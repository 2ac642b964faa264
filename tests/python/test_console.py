"""pocketkey-org's admin console in a real browser: headless Chromium driven by Selenium,
with Chrome's virtual authenticator (CTAP2, internal, resident keys, user verification) as
the admins' passkeys. WebAuthn works on http://localhost, so the server runs there.

Every check of "nothing changed" reads the database itself (sqlite3), not the page.
"""

import email
import email.policy
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("POCKETKEY_ORG_BIN", str(ROOT / "target" / "debug" / "pocketkey-org"))
# POCKETKEY_CONSOLE_SHOTS=1 refreshes the committed screenshots in docs/console/.
SHOTS = ROOT / "docs" / "console" if os.environ.get("POCKETKEY_CONSOLE_SHOTS") else None
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium")
OWNER = "owner@acme.example"

pytestmark = pytest.mark.skipif(
    not (CHROMEDRIVER and CHROMIUM),
    reason="needs Debian's chromium and chromium-driver (scripts/test.sh installs them)",
)


def free_port():
    # The public URL names the port before the server starts: WebAuthn binds to the origin.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """A real pocketkey-org on http://localhost:PORT and a headless Chromium signed in to it."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.outbox = tmp_path / "outbox"
        port = free_port()
        self.base = f"http://localhost:{port}"
        init = subprocess.run(
            [BIN, "init", "--state-dir", str(self.state), "--name", "Acme", "--public-url", self.base],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout.splitlines()
        assert init[0] == "initialised: Acme"
        assert init[1].startswith(f"admin: {self.base}/console/enrol/"), init
        self.admin_link = init[1].split(": ", 1)[1]
        self.log_path = tmp_path / "serve.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--state-dir", str(self.state), "--listen", f"127.0.0.1:{port}",
             "--public-url", self.base, "--outbox", str(self.outbox)],
            stdout=subprocess.PIPE, stderr=self.log, text=True,
        )
        assert self.proc.stdout.readline().startswith("listening: ")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run", "--window-size=1100,900",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
        self.new_authenticator()

    def new_authenticator(self):
        """A fresh virtual passkey provider (its credentials only), replacing any other."""
        try:
            self.driver.remove_virtual_authenticator()
        except Exception:  # noqa: BLE001 - none yet
            pass
        opts = VirtualAuthenticatorOptions()
        opts.protocol = VirtualAuthenticatorOptions.Protocol.CTAP2
        opts.transport = VirtualAuthenticatorOptions.Transport.INTERNAL
        opts.has_resident_key = True
        opts.has_user_verification = True
        opts.is_user_verified = True
        opts.is_user_consenting = True
        self.driver.add_virtual_authenticator(opts)

    def close(self):
        self.driver.quit()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0
        self.log.close()
        return self.log_path.read_text()

    # --- the browser ---

    def wait(self, condition, timeout=30):
        try:
            return WebDriverWait(self.driver, timeout).until(condition)
        except Exception as e:  # noqa: BLE001 - say what the page showed
            status = self.driver.find_elements(By.ID, "status")
            shown = status[0].text if status else self.driver.page_source[:2000]
            raise AssertionError(f"at {self.driver.current_url}: {shown}") from e

    def open(self, path):
        self.driver.get(self.base + path)

    def text(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def fill(self, css, value):
        field = self.driver.find_element(By.CSS_SELECTOR, css)
        field.clear()
        field.send_keys(value)

    def click(self, css):
        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def enrol(self, link, email=None, name="Olivia Owner"):
        """Opens a one-time admin link and registers a passkey; lands signed in."""
        self.driver.get(link)
        if email is not None:
            self.fill("#email", email)
        self.fill("#display_name", name)
        self.click("#enrol-form button[type=submit]")
        self.wait(EC.url_to_be(self.base + "/console/keys"))

    def sign_in(self, email):
        self.open("/console/login")
        self.fill("#email", email)
        self.click("#sign-in-form button[type=submit]")
        self.wait(EC.url_to_be(self.base + "/console/keys"))

    def sign_out(self):
        self.click("#sign-out")
        self.wait(EC.url_to_be(self.base + "/console/login"))

    def csrf(self):
        return self.driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")

    def fetch(self, method, path, form=None):
        """A request from the page itself (same origin, the session cookie): status and text."""
        return self.driver.execute_async_script(
            """
            const [method, path, form, done] = arguments;
            const init = {method, credentials: "same-origin", redirect: "manual"};
            if (form !== null) {
              init.body = new URLSearchParams(form);
              init.headers = {"Content-Type": "application/x-www-form-urlencoded"};
            }
            // A redirect is not followed; its status is hidden from scripts ("opaqueredirect"),
            // and the console redirects only with 303.
            fetch(path, init)
              .then(async r => done([r.type === "opaqueredirect" ? 303 : r.status, await r.text()]))
              .catch(e => done([0, String(e)]));
            """,
            method, path, form,
        )

    def shot(self, name):
        folder = SHOTS or self.tmp / "shots"
        folder.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(folder / f"{name}.png"))

    # --- the database, read directly ---

    def db(self):
        return sqlite3.connect(self.state / "org.db", timeout=10)

    def count(self, table):
        with self.db() as db:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def audit_actions(self):
        with self.db() as db:
            return [r[0] for r in db.execute("SELECT action FROM audit ORDER BY seq")]

    def snapshot(self):
        """What an action that must be refused could have changed."""
        return {t: self.count(t) for t in
                ("keys", "invites", "audit", "api_keys", "console_admins", "console_admin_invites",
                 "registrations")}

    def mails(self):
        return sorted(self.outbox.glob("*.eml")) if self.outbox.exists() else []


@pytest.fixture
def console(tmp_path):
    c = Console(tmp_path)
    try:
        yield c
    finally:
        log = c.close()
        # The one-time admin link is a secret: never in the request log.
        assert c.admin_link.rsplit("/", 1)[1] not in log


@pytest.fixture
def owner(console):
    console.enrol(console.admin_link, email=OWNER)
    return console


def api(base, path, key):
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_an_admin_registers_signs_in_invites_audits_and_makes_an_api_key(console):
    c = console
    # init's one-time link: the first owner registers a passkey and is signed in.
    c.driver.get(c.admin_link)
    assert c.text("h1") == "Register your console passkey"
    c.shot("enrol")
    c.enrol(c.admin_link, email=OWNER)
    assert OWNER in c.text(".who")
    with c.db() as db:
        assert db.execute("SELECT email, role FROM console_admins").fetchall() == [(OWNER, "owner")]
        assert db.execute("SELECT COUNT(*) FROM console_passkeys").fetchone()[0] == 1

    # Invite a user, then resend: two mails, the audit log names the admin.
    c.fill("#invite-email", "alice@acme.example")
    c.fill("#invite-name", "Alice Example")
    c.click("#invite-form button[type=submit]")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Invitation sent."))
    assert len(c.mails()) == 1
    assert "alice@acme.example" in c.text("#keys tbody")
    c.click("#keys tbody button")  # the row's "Resend invite"
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "previous link no longer works"))
    assert len(c.mails()) == 2
    c.fill("#invite-email", "bob@acme.example")
    c.fill("#invite-name", "Bob")
    c.click("#invite-form button[type=submit]")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Invitation sent."))
    # Search narrows the list.
    c.fill("#q", "alice")
    c.click("form[role=search] button")
    c.wait(EC.url_contains("q=alice"))
    rows = c.driver.find_elements(By.CSS_SELECTOR, "#keys tbody tr")
    assert len(rows) == 1 and "alice@acme.example" in rows[0].text
    c.open("/console/keys")
    c.shot("keys")
    c.driver.set_window_size(390, 844)  # a phone-sized window
    c.shot("keys-phone")
    width = c.driver.execute_script("return document.documentElement.scrollWidth")
    assert width <= 400, f"the keys page scrolls sideways on a phone ({width}px)"
    c.driver.set_window_size(1100, 900)

    # The audit log: filter by action and user, export both formats, chain verified.
    c.open("/console/audit")
    assert c.text("#chain").startswith("Chain intact:")
    c.fill("#action", "invite.")
    c.fill("#user", "alice@")
    c.click("form[role=search] button")
    c.wait(EC.url_contains("action=invite."))
    shown = [r.text for r in c.driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    assert len(shown) == 2 and all(f"admin:{OWNER}" in r for r in shown), shown
    c.shot("audit")
    href = c.driver.find_element(By.ID, "export-ndjson").get_attribute("href")
    status, text = c.fetch("GET", href, None)
    entries = [json.loads(line) for line in text.splitlines()]
    assert status == 200 and [e["action"] for e in entries] == ["invite.create", "invite.resend"]
    assert all(e["actor"] == f"admin:{OWNER}" for e in entries)
    status, text = c.fetch("GET", c.driver.find_element(By.ID, "export-csv").get_attribute("href"), None)
    assert status == 200 and text.startswith("seq,at,actor,action") and text.count("\r\n") == 3
    verify = subprocess.run([BIN, "audit", "verify", "--state-dir", str(c.state)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "chain intact" in verify.stdout

    # An API key: shown once, works on the REST API, then revoked.
    c.open("/console/api-keys")
    c.fill("#api-key-name", "provisioning")
    c.click("#api-key-form button[type=submit]")
    secret = c.wait(EC.presence_of_element_located((By.ID, "new-secret"))).get_attribute("value")
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    c.shot("api-keys")
    with c.db() as db:
        stored = db.execute("SELECT key_hash FROM api_keys WHERE name = 'provisioning'").fetchone()[0]
    assert stored != secret  # only its hash is kept
    assert api(c.base, "/api/v1/keys", secret)[0] == 200
    c.open("/console/api-keys")
    assert "new-secret" not in c.driver.page_source  # never shown again
    c.click("#api-keys tbody button")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "API key revoked."))
    assert api(c.base, "/api/v1/keys", secret)[0] == 401
    # A directory's key: scope scim, expiring; it provisions over SCIM and does nothing else.
    c.fill("#api-key-name", "entra")
    c.driver.find_element(By.CSS_SELECTOR, "#api-key-scope option[value=scim]").click()
    c.fill("#api-key-expires", "30")
    c.click("#api-key-form button[type=submit]")
    secret = c.wait(EC.presence_of_element_located((By.ID, "new-secret"))).get_attribute("value")
    with c.db() as db:
        scope, created, expires = db.execute(
            "SELECT scope, julianday(created_at), julianday(expires_at) FROM api_keys "
            "WHERE name = 'entra'").fetchone()
    assert scope == "scim" and round(expires - created) == 30
    assert "scim" in c.text("#api-keys tbody")
    assert api(c.base, "/scim/v2/Users", secret)[0] == 200
    assert api(c.base, "/api/v1/keys", secret)[0] == 403

    # Policy and the attestation root.
    c.open("/console/policy")
    assert "Minimum PIN length" in c.text("#policy")
    assert c.text("#stale-policy").startswith("Off: stale keys are not suspended automatically.")
    subprocess.run([BIN, "policy", "stale-keys", "--state-dir", str(c.state), "--suspend-unseen-days", "45"],
                   capture_output=True, text=True, timeout=60, check=True)
    c.open("/console/policy")
    assert c.text("#stale-policy").startswith("Active keys not seen for 45 days are suspended")
    subprocess.run([BIN, "policy", "stale-keys", "--state-dir", str(c.state), "--suspend-unseen-days", "0"],
                   capture_output=True, text=True, timeout=60, check=True)
    c.open("/console/policy")
    c.shot("policy")
    status, pem = c.fetch("GET", "/console/attestation-root.pem", None)
    assert status == 200 and pem.startswith("-----BEGIN CERTIFICATE-----")

    # Admins: an owner makes a one-time link for a key administrator.
    c.open("/console/admins")
    c.fill("#admin-email", "kim@acme.example")
    c.click("#admin-invite-form button[type=submit]")
    link = c.wait(EC.presence_of_element_located((By.ID, "new-link"))).get_attribute("value")
    assert link.startswith(c.base + "/console/enrol/")
    c.shot("admins")

    # Sign out, and back in with the same passkey.
    c.sign_out()
    c.shot("sign-in")
    c.open("/console/keys")
    c.wait(EC.url_to_be(c.base + "/console/login"))
    c.sign_in(OWNER)
    actions = c.audit_actions()
    assert actions[-2:] == ["console.sign_out", "console.sign_in"], actions
    assert "api_key.create" in actions and "api_key.revoke" in actions
    assert "console.admin_link.create" in actions and "console.admin.enrol" in actions


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(owner):
    c = owner
    before = c.snapshot()
    form = {"email": "mallory@acme.example", "display_name": "Mallory"}
    assert c.fetch("POST", "/console/keys/invite", form)[0] == 403
    assert c.fetch("POST", "/console/keys/invite", {**form, "csrf": "0" * 64})[0] == 403
    assert c.fetch("POST", "/console/api-keys/create", {"name": "x"})[0] == 403
    assert c.fetch("POST", "/console/logout", None)[0] == 403
    assert c.snapshot() == before and c.mails() == []
    # The same form with the session's token goes through (the refusal was the token's).
    assert c.fetch("POST", "/console/keys/invite", {**form, "csrf": c.csrf()})[0] == 303
    assert c.count("keys") == before["keys"] + 1


def test_an_auditor_can_read_but_not_invite_or_change_a_key(owner):
    c = owner
    key = invite_and_activate(c, "kim@acme.example", "Kim Phone")
    c.open("/console/admins")
    c.fill("#admin-email", "audrey@acme.example")
    c.driver.find_element(By.CSS_SELECTOR, "#admin-role option[value=auditor]").click()
    c.click("#admin-invite-form button[type=submit]")
    link = c.wait(EC.presence_of_element_located((By.ID, "new-link"))).get_attribute("value")
    c.sign_out()
    c.new_authenticator()  # the auditor's own device
    c.enrol(link, name="Audrey Auditor")
    assert "Auditor" in c.text(".who")
    assert not c.driver.find_elements(By.ID, "invite-form")
    c.open("/console/audit")
    assert c.text("#chain").startswith("Chain intact:")
    before = c.snapshot()
    form = {"email": "eve@acme.example", "display_name": "Eve", "csrf": c.csrf()}
    status, body = c.fetch("POST", "/console/keys/invite", form)
    assert status == 403 and "Your role does not allow this" in body
    assert c.fetch("POST", "/console/api-keys/create", {"name": "x", "csrf": c.csrf()})[0] == 403
    assert c.fetch("GET", "/console/admins", None)[0] == 403
    csv = {"csv": "eve@acme.example,Eve\n", "csrf": c.csrf()}
    assert c.fetch("POST", "/console/import/commit", csv)[0] == 403
    # No key buttons for an auditor, and a forged post is refused the same way.
    c.open("/console/keys")
    assert "kim@acme.example" in c.text("#keys tbody")
    assert not c.driver.find_elements(By.CSS_SELECTOR, "#keys form, #keys a.revoke")
    for action in ("suspend", "revoke"):
        status, body = c.fetch("POST", f"/console/keys/{key}/{action}",
                               {"reason": "forged", "csrf": c.csrf()})
        assert status == 403 and "Your role does not allow this" in body
    assert c.fetch("GET", f"/console/keys/{key}/revoke", None)[0] == 403
    # The user's page is readable, without the register-on-behalf form; a forged one is refused.
    c.open(f"/console/keys/{key}")
    assert "kim@acme.example" in c.text("#user-email")
    assert not c.driver.find_elements(By.CSS_SELECTOR, "form.register")
    status, body = c.fetch("POST", f"/console/keys/{key}/registrations",
                           {"creation_options": "{}", "origin": "https://login.microsoft.com",
                            "display_name": "x", "csrf": c.csrf()})
    assert status == 403 and "Your role does not allow this" in body
    # The policy is shown to an auditor without the editor; a forged save is refused.
    c.open("/console/policy")
    assert "Minimum PIN length" in c.text("#policy")
    assert not c.driver.find_elements(By.ID, "policy-form")
    status, body = c.fetch("POST", "/console/policy", {"min_pin_length": "10", "csrf": c.csrf()})
    assert status == 403 and "Your role does not allow this" in body
    assert c.snapshot() == before and len(c.mails()) == 1
    assert key_state(c, key) == ("active", None, None, None)


def invite_and_activate(c, addr, name):
    """Invites `addr` from the keys page; its activation (the phone's side) is set in the
    database. Returns the key's id."""
    c.open("/console/keys")
    c.fill("#invite-email", addr)
    c.fill("#invite-name", name)
    c.click("#invite-form button[type=submit]")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Invitation sent."))
    with c.db() as db:
        db.execute("UPDATE keys SET status = 'active', activated_at = '2026-01-01T00:00:00Z' "
                   "WHERE email = ?", (addr,))
        return db.execute("SELECT id FROM keys WHERE email = ?", (addr,)).fetchone()[0]


def key_state(c, key_id):
    with c.db() as db:
        return db.execute("SELECT status, status_reason, status_actor, status_cause FROM keys "
                          "WHERE id = ?", (key_id,)).fetchone()


def test_a_key_admin_suspends_resumes_and_revokes_a_key_with_a_reason(owner):
    c = owner
    key = invite_and_activate(c, "kim@acme.example", "Kim Phone")
    c.open("/console/keys")
    c.fill(f"#suspend-reason-{key}", "phone left in a taxi")
    c.shot("keys-actions")
    c.click(f"form[action='/console/keys/{key}/suspend'] button")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Key suspended."))
    assert key_state(c, key) == ("suspended", "phone left in a taxi", f"admin:{OWNER}", "admin")
    c.click(f"form[action='/console/keys/{key}/resume'] button")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Key resumed."))
    assert key_state(c, key)[0] == "active"
    # Revoke asks first, on a page of its own; a post without a reason is refused.
    c.click(f"a[href='/console/keys/{key}/revoke']")
    c.wait(EC.presence_of_element_located((By.ID, "revoke-form")))
    assert "Kim Phone" in c.text("h1")
    c.shot("revoke")
    before = c.snapshot()
    status, body = c.fetch("POST", f"/console/keys/{key}/revoke", {"reason": " ", "csrf": c.csrf()})
    assert status == 400 and "reason must be" in body
    assert c.snapshot() == before and key_state(c, key)[0] == "active"
    c.fill("#revoke-reason", "left the company")
    c.click("#revoke-confirm")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Key revoked."))
    assert key_state(c, key) == ("revoked", "left the company", f"admin:{OWNER}", "admin")
    row = c.text("#keys tbody tr")
    assert "revoked" in row and "left the company" in row
    assert not c.driver.find_elements(By.CSS_SELECTOR, f"a[href='/console/keys/{key}/revoke']")
    with c.db() as db:
        audited = db.execute("SELECT action, actor, detail FROM audit WHERE subject = ? "
                             "AND action LIKE 'key.%' ORDER BY seq", (key,)).fetchall()
    assert [(a, who) for a, who, _ in audited] == [
        ("key.suspend", f"admin:{OWNER}"), ("key.resume", f"admin:{OWNER}"),
        ("key.revoke", f"admin:{OWNER}")]
    assert json.loads(audited[2][2]) == {"from": "active", "reason": "left the company", "cause": "admin"}
    # A revoked key cannot come back: 409, nothing changed.
    before = c.snapshot()
    status, body = c.fetch("POST", f"/console/keys/{key}/resume", {"csrf": c.csrf()})
    assert status == 409 and "cannot become active" in body
    assert c.snapshot() == before


def test_an_expired_session_is_refused_and_changes_nothing(owner):
    c = owner
    token = c.csrf()
    with c.db() as db:
        assert db.execute("SELECT COUNT(*) FROM console_sessions").fetchone()[0] == 1
        # Idle for longer than the idle limit (30 minutes): moved back, not waited for.
        db.execute("UPDATE console_sessions SET last_seen_at = '2000-01-01T00:00:00Z'")
    before = c.snapshot()
    status, body = c.fetch("POST", "/console/keys/invite",
                           {"email": "late@acme.example", "display_name": "Late", "csrf": token})
    assert status == 401 and "session has ended" in body
    assert c.snapshot() == before and c.mails() == []
    assert c.count("console_sessions") == 0  # the expired session is gone
    c.open("/console/keys")
    c.wait(EC.url_to_be(c.base + "/console/login"))
    # Too old since sign-in is refused as well, however recent the last request.
    c.sign_in(OWNER)
    with c.db() as db:
        db.execute("UPDATE console_sessions SET created_at = '2000-01-01T00:00:00Z'")
    c.open("/console/audit")
    c.wait(EC.url_to_be(c.base + "/console/login"))


def test_a_used_admin_link_is_refused_on_replay(owner):
    c = owner
    c.sign_out()
    before = c.snapshot()
    c.driver.get(c.admin_link)
    assert c.text("h1") == "Link not valid"
    token_path = c.admin_link[len(c.base):]
    status, body = c.driver.execute_async_script(
        """
        const [path, done] = arguments;
        fetch(path + "/start", {method: "POST", headers: {"Content-Type": "application/json"},
              body: JSON.stringify({email: "second@acme.example", display_name: "Second"})})
          .then(async r => done([r.status, await r.text()]));
        """,
        token_path,
    )
    assert status == 404 and json.loads(body)["error"] == "not_found"
    assert c.snapshot() == before
    with c.db() as db:
        assert db.execute("SELECT email FROM console_admins").fetchall() == [(OWNER,)]


def test_a_csv_import_previews_each_row_then_invites_the_good_ones(owner):
    c = owner
    c.click("#import-link")
    c.wait(EC.url_to_be(c.base + "/console/import"))
    c.fill("#csv", "email,display_name,groups\n"
                   "ana@acme.example,Ana Lima,eng;ops\n"
                   "not-an-address,Broken Row\n"
                   "\"ben@acme.example\",\"Ben, Jr.\"\n")
    c.click("#import-form button[type=submit]")
    c.wait(EC.presence_of_element_located((By.ID, "import-rows")))
    before = c.snapshot()
    rows = [r.text for r in c.driver.find_elements(By.CSS_SELECTOR, "#import-rows tbody tr")]
    assert len(rows) == 3 and "will be invited" in rows[0] and "eng, ops" in rows[0]
    assert [r.split()[0] for r in rows] == ["2", "3", "4"]  # the lines of the pasted text
    assert "Error:" in rows[1] and "not a valid e-mail address" in rows[1]
    assert "Ben, Jr." in rows[2] and "will be invited" in rows[2]
    assert "2 of 3 row(s)" in c.text("#import-rows caption")
    c.shot("import")
    assert c.snapshot() == before and c.mails() == []  # the preview is a dry run
    c.click("#import-commit-form button[type=submit]")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "2 invitation(s) sent."))
    with c.db() as db:
        emails = sorted(r[0] for r in db.execute("SELECT email FROM keys"))
        invites = db.execute("SELECT actor FROM audit WHERE action = 'invite.create'").fetchall()
    assert emails == ["ana@acme.example", "ben@acme.example"]
    assert invites == [(f"admin:{OWNER}",)] * 2 and len(c.mails()) == 2
    # Importing the same file again invites nobody twice.
    c.open("/console/import")
    c.fill("#csv", "ana@acme.example,Ana Lima\n")
    c.click("#import-form button[type=submit]")
    row = c.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#import-rows tbody tr"))).text
    assert "already has an invitation" in row
    assert not c.driver.find_elements(By.ID, "import-commit-form")


def test_an_expired_admin_link_is_refused_and_the_cli_makes_a_new_one(console):
    c = console
    with c.db() as db:
        db.execute("UPDATE console_admin_invites SET expires_at = '2000-01-01T00:00:00Z'")
    c.driver.get(c.admin_link)
    assert c.text("h1") == "Link not valid"
    assert c.count("console_admins") == 0
    out = subprocess.run(
        [BIN, "admin-link", "--state-dir", str(c.state), "--role", "auditor",
         "--email", "audrey@acme.example", "--public-url", c.base],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert out.startswith(f"admin: {c.base}/console/enrol/") and out.count("\n") == 1
    link = out.split(": ", 1)[1].strip()
    c.driver.get(link)
    assert c.text("#invited-email") == "audrey@acme.example"  # fixed by the link, not asked
    c.enrol(link, name="Audrey Auditor")
    with c.db() as db:
        assert db.execute("SELECT email, role FROM console_admins").fetchall() == [
            ("audrey@acme.example", "auditor")]
    assert "console.admin_link.create" in c.audit_actions()


def test_the_stale_keys_report_lists_active_keys_not_seen_for_n_days(owner):
    c = owner
    for addr, name in (("old@acme.example", "Old Phone"), ("new@acme.example", "New Phone"),
                       ("inv@acme.example", "Invited Only")):
        c.fill("#invite-email", addr)
        c.fill("#invite-name", name)
        c.click("#invite-form button[type=submit]")
        c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Invitation sent."))
    # Activation and sign-ins are the phone's side (issue 11): their times are set here.
    with c.db() as db:
        db.execute("UPDATE keys SET status = 'active', activated_at = '2026-01-01T00:00:00Z', "
                   "last_seen_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-40 days') "
                   "WHERE email = 'old@acme.example'")
        db.execute("UPDATE keys SET status = 'active', activated_at = '2026-01-01T00:00:00Z', "
                   "last_seen_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 days') "
                   "WHERE email = 'new@acme.example'")
    c.fill("#stale_days", "30")
    c.click("form[role=search] button")
    c.wait(EC.presence_of_element_located((By.ID, "stale-heading")))
    rows = [r.text for r in c.driver.find_elements(By.CSS_SELECTOR, "#keys tbody tr")]
    assert len(rows) == 1 and "old@acme.example" in rows[0], rows
    status, body = c.fetch("GET", "/console/no-such-page", None)
    assert status == 404 and "There is no such page." in body
    c.open("/console/keys?stale_days=0x1")
    assert c.text("h1") == "Error" and "whole number" in c.text("#error")


def test_every_page_labels_its_fields_and_works_from_the_keyboard(owner):
    from selenium.webdriver.common.keys import Keys

    c = owner
    unlabelled_js = """
        return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
          .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.outerHTML);
    """
    for path in ("/console/keys", "/console/audit", "/console/api-keys", "/console/policy",
                 "/console/admins", "/console/import"):
        c.open(path)
        assert c.driver.execute_script(unlabelled_js) == [], path
        assert len(c.driver.find_elements(By.TAG_NAME, "h1")) == 1, path
        assert c.driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        current = c.driver.find_elements(By.CSS_SELECTOR, "nav a[aria-current=page]")
        assert path == "/console/import" or [a.get_attribute("pathname") for a in current] == [path]
    # The keyboard alone: the skip link comes first, a form is filled and sent with Enter.
    c.open("/console/keys")
    body = c.driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert c.driver.switch_to.active_element.text == "Skip to content"
    c.driver.find_element(By.ID, "invite-email").send_keys("kb@acme.example", Keys.TAB, "Key Board", Keys.ENTER)
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Invitation sent."))
    assert [r[0] for r in c.db().execute("SELECT email FROM keys")] == ["kb@acme.example"]


def activated_phone(c, addr, phone):
    """Invites `addr` from the keys page and activates a CLI phone from the mailed link, as
    a user would. Returns the key's id."""
    from test_org_activation import activate

    c.open("/console/keys")
    c.fill("#invite-email", addr)
    c.fill("#invite-name", "Alice Example")
    c.click("#invite-form button[type=submit]")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Invitation sent."))
    [mail] = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in c.mails()]
    text = mail.get_body(preferencelist=("plain",)).get_content()
    [link] = [w for w in text.split() if w.startswith(c.base + "/activate/")]
    proc = activate(link, phone)
    assert proc.returncode == 0, proc.stderr
    with c.db() as db:
        return db.execute("SELECT id FROM keys WHERE email = ?", (addr,)).fetchone()[0]


def test_a_registration_on_behalf_started_on_the_page_is_completed_by_the_phone_while_it_watches(owner, tmp_path):
    from test_org_on_behalf import ACCOUNT, RP_ID, FakeGraph, get_json, post_json, sync

    c = owner
    phone = tmp_path / "phone"
    key = activated_phone(c, "alice@acme.example", phone)
    status, root_pem = c.fetch("GET", "/console/attestation-root.pem", None)
    assert status == 200
    graph = FakeGraph(root_pem.encode())
    try:
        options = get_json(f"{graph.base}/users/u-9/authentication/fido2Methods/creationOptions"
                           "?quirks=value,padded")
        # The user's page, from the keys list: their key, and the action.
        c.open("/console/keys")
        c.click(f"#keys a[href='/console/keys/{key}']")
        c.wait(EC.presence_of_element_located((By.ID, f"register-form-{key}")))
        assert c.text("h1") == "Alice Example" and "active" in c.text("#user-keys tbody")
        c.fill(f"#creation-options-{key}", json.dumps(options))
        c.shot("user")
        c.click(f"#register-form-{key} button[type=submit]")
        c.wait(EC.url_contains("/console/registrations/"))
        reg_id = c.driver.current_url.rsplit("/", 1)[1]
        assert c.text("#registration-status") == "pending"
        assert not c.driver.find_element(By.ID, "graph-body").is_displayed()
        with c.db() as db:
            assert db.execute("SELECT key_id, status, rp_id, created_by FROM registrations").fetchall() == [
                (key, "pending", RP_ID, f"admin:{OWNER}")]
        # A mark on this very document: if the page were reloaded, it would be gone.
        c.driver.execute_script("window.stillThisPage = true;")

        proc = sync(phone, "--auto-approve")
        assert proc.returncode == 0, proc.stderr
        assert f"registration: {RP_ID} for {ACCOUNT}: completed" in proc.stdout

        c.wait(EC.text_to_be_present_in_element((By.ID, "registration-status"), "completed"))
        assert c.driver.execute_script("return window.stillThisPage === true;"), "the page was reloaded"
        body_field = c.wait(EC.visibility_of_element_located((By.ID, "graph-body")))
        body = json.loads(body_field.get_attribute("value"))
        assert c.driver.find_element(By.ID, "copy-graph-body").is_displayed()
        c.shot("registration")
        # The body the page shows is what Graph takes: py_webauthn verifies it there.
        status, answer = post_json(f"{graph.base}/users/u-9/authentication/fido2Methods", body)
        assert status == 201, answer
        [(_, name, verified)] = graph.registered
        assert name == "Alice Example's PocketKey" and verified.user_verified
    finally:
        graph.stop()
    # The copy button puts the body on the clipboard (or selects it where that is not allowed).
    c.click("#copy-graph-body")
    c.wait(lambda d: d.find_element(By.ID, "copy-status").text != "")
    # Once finished, the page shows the outcome as it is rendered, and so does the user's page.
    c.open(f"/console/registrations/{reg_id}")
    assert c.text("#registration-status") == "completed"
    assert json.loads(c.driver.find_element(By.ID, "graph-body").get_attribute("value")) == body
    c.open(f"/console/keys/{key}")
    assert "completed" in c.text("#user-registrations tbody") and RP_ID in c.text("#user-registrations tbody")
    assert c.audit_actions()[-2:] == ["registration.create", "registration.complete"]
    with c.db() as db:
        [(actor,)] = db.execute("SELECT actor FROM audit WHERE action = 'registration.create'").fetchall()
    assert actor == f"admin:{OWNER}"


def test_bad_creation_options_are_refused_on_the_page_and_nothing_is_stored(owner):
    c = owner
    key = invite_and_activate(c, "kim@acme.example", "Kim Phone")
    before = c.snapshot()
    form = {"creation_options": "{not json", "origin": "https://login.microsoft.com",
            "display_name": "Kim's key", "csrf": c.csrf()}
    status, body = c.fetch("POST", f"/console/keys/{key}/registrations", form)
    assert status == 400 and "not JSON" in body
    status, body = c.fetch("POST", f"/console/keys/{key}/registrations",
                           {**form, "creation_options": json.dumps({"publicKey": {}})})
    assert status == 400
    # Without the CSRF token: refused before the form is read.
    no_token = {k: v for k, v in form.items() if k != "csrf"}
    assert c.fetch("POST", f"/console/keys/{key}/registrations", no_token)[0] == 403
    assert c.snapshot() == before and c.count("registrations") == 0


def stored_policy(c):
    with c.db() as db:
        return json.loads(db.execute("SELECT policy_json FROM org").fetchone()[0])


def test_an_owner_edits_the_policy_a_bad_field_is_shown_next_to_it_and_nothing_is_stored(owner):
    c = owner
    c.open("/console/policy")
    assert c.driver.find_element(By.ID, "user_verification_required").is_selected()
    assert c.driver.find_element(By.ID, "min_pin_length").get_attribute("value") == "6"
    # A bad RP id: the page comes back with the error next to that field and what was typed.
    before, policy_before = c.snapshot(), stored_policy(c)
    c.fill("#min_pin_length", "8")
    c.fill("#allowed_rp_ids", "corp.example, Not_A.Domain")
    c.click("#policy-form button[type=submit]")
    error = c.wait(EC.presence_of_element_located((By.ID, "allowed_rp_ids-error")))
    assert "Not_A.Domain" in error.text and "not an RP id" in error.text
    field = c.driver.find_element(By.ID, "allowed_rp_ids")
    assert field.get_attribute("aria-invalid") == "true"
    assert field.get_attribute("aria-describedby") == "allowed_rp_ids-error"
    assert field.get_attribute("value") == "corp.example, Not_A.Domain"
    assert not c.driver.find_elements(By.ID, "min_pin_length-error")
    c.shot("policy-error")
    # A PIN length out of range, on its own field.
    c.fill("#allowed_rp_ids", "")
    c.fill("#min_pin_length", "3")
    c.click("#policy-form button[type=submit]")
    error = c.wait(EC.presence_of_element_located((By.ID, "min_pin_length-error")))
    assert "4 to 63" in error.text
    assert c.snapshot() == before and stored_policy(c) == policy_before
    # Without the CSRF token: refused, nothing stored.
    form = {"min_pin_length": "10", "enterprise_rp_ids": "", "allowed_rp_ids": ""}
    assert c.fetch("POST", "/console/policy", form)[0] == 403
    assert stored_policy(c) == policy_before
    # Good values: saved, audited with the admin as actor, shown.
    c.fill("#min_pin_length", "8")
    c.fill("#enterprise_rp_ids", "corp.example login.example.org")
    c.click("#user_verification_required")
    c.click("#policy-form button[type=submit]")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Policy saved"))
    assert stored_policy(c) == {"enterprise_rp_ids": ["corp.example", "login.example.org"],
                                "user_verification_required": False, "min_pin_length": 8,
                                "allowed_rp_ids": []}
    assert "corp.example, login.example.org" in c.text("#policy")
    assert c.driver.find_element(By.ID, "enterprise_rp_ids").get_attribute("value") == \
        "corp.example, login.example.org"
    with c.db() as db:
        [(actor, detail)] = db.execute(
            "SELECT actor, detail FROM audit WHERE action = 'policy.change'").fetchall()
    assert actor == f"admin:{OWNER}" and json.loads(detail)["policy"] == stored_policy(c)
    c.shot("policy-saved")


def audit_rows(c):
    return [int(r.find_element(By.TAG_NAME, "td").text)
            for r in c.driver.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]


def test_the_audit_log_is_read_a_page_at_a_time_and_a_tampered_new_entry_breaks_the_chain(owner):
    c = owner
    for n in range(3):
        form = {"email": f"u{n}@acme.example", "display_name": f"U{n}", "csrf": c.csrf()}
        assert c.fetch("POST", "/console/keys/invite", form)[0] == 303
    total = c.count("audit")
    # Two entries a page, newest first, following the "Older entries" link to the end.
    c.open("/console/audit?limit=2")
    first = audit_rows(c)
    assert first == [total, total - 1]
    seen = list(first)
    while c.driver.find_elements(By.ID, "older"):
        c.driver.get(c.driver.find_element(By.ID, "older").get_attribute("href"))
        page = audit_rows(c)
        assert 1 <= len(page) <= 2
        seen += page
    assert seen == list(range(total, 0, -1))
    # The filters hold across pages.
    c.open("/console/audit?action=invite.&limit=2")
    assert len(audit_rows(c)) == 2
    href = c.driver.find_element(By.ID, "older").get_attribute("href")
    assert "action=invite." in href
    c.driver.get(href)
    assert len(audit_rows(c)) == 1 and not c.driver.find_elements(By.ID, "older")
    c.open("/console/audit?limit=0")
    assert c.text("h1") == "Error" and "limit" in c.text("#error")
    # The chain: verified up to the newest entry; an entry appended and then altered in the
    # database is found on the next view, and the page keeps saying so.
    c.open("/console/audit")
    assert c.text("#chain") == f"Chain intact: {c.count('audit')} entries verified."
    assert c.fetch("POST", "/console/keys/invite",
                   {"email": "x@acme.example", "display_name": "X", "csrf": c.csrf()})[0] == 303
    with c.db() as db:
        [(seq,)] = db.execute("SELECT MAX(seq) FROM audit").fetchall()
        db.execute("UPDATE audit SET detail = '{}' WHERE seq = ?", (seq,))
    c.open("/console/audit")
    assert c.text("#chain") == f"Chain broken at entry {seq}: hash does not match the entry's content."
    c.open("/console/audit?action=invite.")
    assert c.text("#chain").startswith(f"Chain broken at entry {seq}")


def test_the_keys_page_is_read_a_page_at_a_time_with_its_filters(owner):
    c = owner
    for n in range(3):
        form = {"email": f"u{n}@acme.example", "display_name": f"U{n}", "csrf": c.csrf()}
        assert c.fetch("POST", "/console/keys/invite", form)[0] == 303
    with c.db() as db:
        db.execute("UPDATE keys SET status = 'active' WHERE email = 'u1@acme.example'")

    def emails():
        return [r.text.split("\n")[1] for r in c.driver.find_elements(By.CSS_SELECTOR, "#keys tbody tr td:first-child")]

    # Keys made in the same second come in id order: compare what the pages hold together.
    c.open("/console/keys?limit=2")
    first = emails()
    assert len(first) == 2
    c.driver.get(c.driver.find_element(By.ID, "next-page").get_attribute("href"))
    second = emails()
    assert len(second) == 1 and not c.driver.find_elements(By.ID, "next-page")
    assert sorted(first + second) == ["u0@acme.example", "u1@acme.example", "u2@acme.example"]
    # Search and status hold across pages; "_" is a literal character, not LIKE's wildcard.
    c.open("/console/keys?q=U&status=invited&limit=1")
    first = emails()
    href = c.driver.find_element(By.ID, "next-page").get_attribute("href")
    assert "q=U" in href and "status=invited" in href
    c.driver.get(href)
    second = emails()
    assert sorted(first + second) == ["u0@acme.example", "u2@acme.example"]
    assert not c.driver.find_elements(By.ID, "next-page")
    c.open("/console/keys?q=u_")
    assert emails() == []
    c.open("/console/keys?limit=501")
    assert c.text("h1") == "Error" and "limit" in c.text("#error")


def test_an_owner_changes_an_admins_role_and_removes_them_but_never_the_last_owner(owner):
    c = owner
    with c.db() as db:
        [(me,)] = db.execute("SELECT id FROM console_admins").fetchall()
    # Alone, the owner can neither step down nor leave.
    c.open("/console/admins")
    before = c.snapshot()
    status, body = c.fetch("POST", f"/console/admins/{me}/role", {"role": "auditor", "csrf": c.csrf()})
    assert status == 409 and "needs an owner" in body
    status, body = c.fetch("POST", f"/console/admins/{me}/remove", {"csrf": c.csrf()})
    assert status == 409 and "needs an owner" in body
    assert c.snapshot() == before
    # A second admin (a key administrator with a passkey and a live session), set in the
    # database: their enrolment is another test's.
    with c.db() as db:
        db.execute("INSERT INTO console_admins (id, email, display_name, role, user_handle, created_at) "
                   "VALUES ('kim', 'kim@acme.example', 'Kim', 'key_admin', 'h-kim', '2026-01-01T00:00:00Z')")
        db.execute("INSERT INTO console_passkeys (cred_id, admin_id, passkey_json, created_at) "
                   "VALUES ('c-kim', 'kim', '{}', '2026-01-01T00:00:00Z')")
        db.execute("INSERT INTO console_sessions (id_hash, admin_id, created_at, last_seen_at) "
                   "VALUES ('s-kim', 'kim', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
    c.open("/console/admins")
    c.driver.find_element(By.CSS_SELECTOR, "#role-kim option[value=owner]").click()
    c.click("form[action='/console/admins/kim/role'] button")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Role changed."))
    c.shot("admins-roles")
    # Two owners: this one may step down to key administrator, and comes back up.
    c.driver.find_element(By.CSS_SELECTOR, f"#role-{me} option[value=key_admin]").click()
    c.click(f"form[action='/console/admins/{me}/role'] button")
    # The session's role is read on every request: the admins page is an owner's no longer.
    c.wait(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Not allowed"))
    with c.db() as db:
        assert sorted(db.execute("SELECT id, role FROM console_admins").fetchall()) == sorted(
            [("kim", "owner"), (me, "key_admin")])
        db.execute("UPDATE console_admins SET role = 'owner' WHERE id = ?", (me,))
    c.open("/console/admins")
    c.click("form[action='/console/admins/kim/remove'] button")
    c.wait(EC.text_to_be_present_in_element((By.ID, "notice"), "Admin removed"))
    with c.db() as db:
        assert db.execute("SELECT id FROM console_admins").fetchall() == [(me,)]
        for table in ("console_passkeys", "console_sessions"):
            assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE admin_id = 'kim'").fetchone()[0] == 0
        audited = db.execute("SELECT actor, action, detail FROM audit WHERE action IN "
                             "('console.admin.role', 'console.admin.remove') ORDER BY seq").fetchall()
    assert [(a, act) for a, act, _ in audited] == [
        (f"admin:{OWNER}", "console.admin.role"), (f"admin:{OWNER}", "console.admin.role"),
        (f"admin:{OWNER}", "console.admin.remove")]
    assert json.loads(audited[0][2]) == {"email": "kim@acme.example", "from": "key_admin", "to": "owner"}
    assert json.loads(audited[2][2]) == {"email": "kim@acme.example", "role": "owner"}
