"""The stale-key policy of pocketkey-org: `serve` suspends active keys not seen for N days.

Real server processes on SQLite and on PostgreSQL (two nodes sharing the database, each
applying the policy when it starts). Last-seen times are set back in the database before
the servers start, not waited for; each node applies the policy before it prints its
`listening:` line, so the test reads the outcome without waiting.
"""

import datetime

import pytest

from test_org import Org, db  # noqa: F401 - fixtures (both backends)


def ago(days):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# email, status, activated_at, last_seen_at
KEYS = [
    ("old@acme.example", "active", ago(100), ago(40)),
    ("fresh@acme.example", "active", ago(100), ago(1)),
    ("unused@acme.example", "active", ago(45), None),  # activated, never signed in since
    ("new@acme.example", "active", ago(2), None),
    ("parked@acme.example", "suspended", ago(100), ago(90)),
    ("invited@acme.example", "invited", None, None),
]


def seed(org):
    for n, (addr, status, activated, seen) in enumerate(KEYS):
        values = ", ".join("NULL" if v is None else f"'{v}'" for v in
                           (f"k{n}", addr, addr.split("@")[0], status, ago(200), activated, seen))
        org.db.rows("INSERT INTO keys (id, email, display_name, status, created_at, activated_at, "
                    f"last_seen_at) VALUES ({values})")


def statuses(org):
    return dict(org.db.rows("SELECT email, status FROM keys"))


def test_stale_keys_are_suspended_once_each_by_the_policy(tmp_path, db):
    def before_serve(org):
        seed(org)
        out = org.cli("policy", "stale-keys", "--suspend-unseen-days", "30").stdout
        assert out == "stale-keys: suspend active keys not seen for 30 days\n"

    org = Org(tmp_path, db=db, before_serve=before_serve)
    try:
        assert statuses(org) == {
            "old@acme.example": "suspended", "fresh@acme.example": "active",
            "unused@acme.example": "suspended", "new@acme.example": "active",
            "parked@acme.example": "suspended", "invited@acme.example": "invited"}
        assert sorted(org.db.rows(
            "SELECT email, status_actor, status_cause, status_reason FROM keys "
            "WHERE status_cause IS NOT NULL")) == [
            ("old@acme.example", "policy:stale", "policy", "not seen for 30 days (stale-key policy)"),
            ("unused@acme.example", "policy:stale", "policy", "not seen for 30 days (stale-key policy)")]
        # One audit entry per key, though every node (two on PostgreSQL) applied the policy.
        assert sorted(org.db.rows("SELECT subject, actor FROM audit WHERE action = 'key.suspend'")) == [
            ("k0", "policy:stale"), ("k2", "policy:stale")]
        assert ("cli", "policy.stale_keys") in org.db.rows("SELECT actor, action FROM audit")
        assert org.audit_verify().returncode == 0
        # The REST API sees the policy's suspension like an admin's; an admin may resume it.
        status, body = org.json("POST", "/api/v1/keys/k0/resume", {})
        assert (status, body["status"]) == (200, "active")
    finally:
        org.stop()


def test_the_policy_is_off_by_default_and_bad_periods_are_refused(tmp_path):
    org = Org(tmp_path, before_serve=seed)
    try:
        assert statuses(org)["old@acme.example"] == "active"
        assert org.db.rows("SELECT COUNT(*) FROM audit WHERE action = 'key.suspend'") == [("0",)]
        bad = org.cli("policy", "stale-keys", "--suspend-unseen-days", "3651", check=False)
        assert bad.returncode == 2 and "3651" in bad.stderr
        assert org.db.rows("SELECT stale_suspend_days FROM org") == [(None,)]
        assert org.cli("policy", "stale-keys", "--suspend-unseen-days", "0").stdout == "stale-keys: off\n"
    finally:
        org.stop()
