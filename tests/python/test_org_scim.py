"""SCIM 2.0 provisioning of pocketkey-org (`/scim/v2/Users`) as a directory would drive it:
real server processes over real HTTP, with the request shapes Entra ID sends. Every test runs
on SQLite and on PostgreSQL (two `serve` nodes, requests alternating; test_org.py's `db`
fixture). Database checks read the database itself (org_db.py).
"""

import json
import pytest

from test_org import Org, activate_link, db, local  # noqa: F401 - fixtures

SCIM = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def org(tmp_path, db):
    o = Org(tmp_path, db=db)
    # The directory's own key: SCIM takes only the scim scope.
    out = o.cli("api-key", "create", "--name", "entra", "--scope", "scim").stdout
    o.scim_key = out.split(": ", 1)[1].strip()
    yield o
    o.stop()


def scim(org, method, path, body=None, key="scim"):
    if key == "scim":
        key = org.scim_key
    data = None if body is None else json.dumps(body).encode()
    status, headers, raw = org.request(method, "/scim/v2" + path, data, key=key,
                                       headers={"Content-Type": SCIM})
    return status, (json.loads(raw) if raw else None), headers


def entra_user(upn="alice@acme.example", external_id="0a1b2c"):
    """What Entra ID posts to create a user (its default attribute mappings)."""
    return {
        "schemas": [USER_SCHEMA, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": external_id,
        "userName": upn,
        "active": True,
        "displayName": "Alice Example",
        "emails": [{"primary": True, "type": "work", "value": upn}],
        "name": {"formatted": "Alice Example", "familyName": "Example", "givenName": "Alice"},
        "title": "Engineer",
    }


def rows(org, sql):
    """Rows of the organisation's database (SQLite or PostgreSQL), every value as text."""
    return org.db.rows(sql)


def counts(org):
    return {t: rows(org, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("scim_users", "keys", "invites", "audit")}


def test_a_directory_creates_finds_and_reads_a_user_who_is_invited(org):
    # Entra first looks the user up, then creates it.
    status, body, headers = scim(org, "GET", '/Users?filter=userName+eq+%22alice%40acme.example%22')
    assert status == 200 and body["totalResults"] == 0 and headers["Content-Type"] == SCIM
    status, user, _ = scim(org, "POST", "/Users", entra_user())
    assert status == 201, user
    assert (user["userName"], user["active"], user["externalId"]) == ("alice@acme.example", True, "0a1b2c")
    assert user["meta"]["location"].endswith(f"/scim/v2/Users/{user['id']}")
    # The same invitation as the REST API's: a key in the inventory and a mail with a live link.
    assert rows(org, "SELECT email, display_name, status FROM keys") == [
        ("alice@acme.example", "Alice Example", "invited")]
    (mail,) = org.mails()
    assert org.request("GET", local(activate_link(mail)), key=None)[0] == 200
    status, body, _ = scim(org, "GET", '/Users?filter=userName+eq+%22ALICE%40acme.example%22')
    assert body["totalResults"] == 1 and body["Resources"][0]["id"] == user["id"]
    status, body, _ = scim(org, "GET", '/Users?filter=externalId+eq+%220a1b2c%22')
    assert body["totalResults"] == 1
    assert scim(org, "GET", f"/Users/{user['id']}")[1]["displayName"] == "Alice Example"
    # Creating it again is a uniqueness conflict; nothing new is stored or sent.
    status, body, _ = scim(org, "POST", "/Users", entra_user())
    assert (status, body["scimType"]) == (409, "uniqueness")
    assert len(org.mails()) == 1
    actions = [r[0] for r in rows(org, "SELECT action FROM audit ORDER BY seq")]
    assert actions[-2:] == ["scim.user.create", "invite.create"]


@pytest.mark.parametrize("operations", [
    # Entra without ?aadOptscim062020: a path, and "False" as a string.
    [{"op": "Replace", "path": "active", "value": "False"}],
    # Entra with the flag: no path, an object, a boolean.
    [{"op": "replace", "value": {"active": False}}],
], ids=["string-with-path", "boolean-without-path"])
def test_deactivating_a_user_suspends_its_keys_and_keeps_the_record(org, operations):
    _, user, _ = scim(org, "POST", "/Users", entra_user())
    # The user activated their key on a phone (activation is another part of the server).
    rows(org, "UPDATE keys SET status = 'active'")
    status, body, _ = scim(org, "PATCH", f"/Users/{user['id']}",
                           {"schemas": [PATCH_SCHEMA], "Operations": operations})
    assert status == 200 and body["active"] is False, body
    assert rows(org, "SELECT status FROM keys") == [("suspended",)]
    assert rows(org, "SELECT user_name, active, deleted_at FROM scim_users") == [
        ("alice@acme.example", "0", None)]
    detail = json.loads(rows(org, "SELECT detail FROM audit ORDER BY seq DESC LIMIT 1")[0][0])
    assert detail["keys_suspended"] == 1 and detail["active"] is False
    assert scim(org, "GET", f"/Users/{user['id']}")[1]["active"] is False
    # Reactivated with the other shape: the record says active again.
    status, body, _ = scim(org, "PATCH", f"/Users/{user['id']}", {
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "Replace", "path": "active", "value": "True"},
                       {"op": "Add", "path": "displayName", "value": "Alice E."}]})
    assert status == 200 and body["active"] is True and body["displayName"] == "Alice E."
    assert org.audit_verify().returncode == 0


def test_deleting_a_user_ends_its_invitation_and_keeps_the_record(org):
    _, user, _ = scim(org, "POST", "/Users", entra_user())
    (mail,) = org.mails()
    link = local(activate_link(mail))
    assert org.request("GET", link, key=None)[0] == 200
    status, body, _ = scim(org, "DELETE", f"/Users/{user['id']}")
    assert status == 204 and body is None
    assert org.request("GET", link, key=None)[0] == 404  # the invitation no longer works
    assert scim(org, "GET", f"/Users/{user['id']}")[0] == 404
    assert scim(org, "GET", "/Users")[1]["totalResults"] == 0
    (kept,) = rows(org, "SELECT user_name, active, CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END "
                        "FROM scim_users")
    assert kept == ("alice@acme.example", "0", "1")
    assert rows(org, "SELECT status FROM keys") == [("invited",)]


@pytest.mark.parametrize("key", [None, "0" * 64, "not-a-key"], ids=["none", "wrong", "malformed"])
def test_a_request_with_a_wrong_token_is_refused_and_changes_nothing(org, key):
    _, user, _ = scim(org, "POST", "/Users", entra_user())
    before = counts(org)
    for method, path, body in [
        ("POST", "/Users", entra_user("bob@acme.example", "b0b")),
        ("PATCH", f"/Users/{user['id']}", {"schemas": [PATCH_SCHEMA],
                                           "Operations": [{"op": "replace", "path": "active", "value": False}]}),
        ("DELETE", f"/Users/{user['id']}", None),
        ("GET", "/Users", None),
    ]:
        status, err, _ = scim(org, method, path, body, key=key)
        assert status == 401 and err["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert err["status"] == "401"
    assert counts(org) == before and len(org.mails()) == 1
    assert rows(org, "SELECT active FROM scim_users") == [("1",)]


@pytest.mark.parametrize("method,path,body,scim_type", [
    ("POST", "/Users", b"{not json", "invalidSyntax"),
    ("POST", "/Users", {"schemas": [USER_SCHEMA]}, "invalidValue"),
    ("POST", "/Users", {"userName": "not an address"}, "invalidValue"),
    ("POST", "/Users", {"userName": "c@acme.example", "active": "maybe"}, "invalidValue"),
    ("GET", "/Users?filter=displayName+co+%22a%22", None, "invalidFilter"),
    ("PATCH", "/Users/{id}", {"Operations": []}, "invalidSyntax"),
    ("PATCH", "/Users/{id}", {"Operations": [{"op": "move", "path": "active", "value": False}]}, "invalidSyntax"),
    ("PATCH", "/Users/{id}", {"Operations": [{"op": "replace", "path": "active", "value": "Nope"}]}, "invalidValue"),
])
def test_bad_requests_get_a_typed_scim_error_and_change_nothing(org, method, path, body, scim_type):
    _, user, _ = scim(org, "POST", "/Users", entra_user())
    before = counts(org)
    path = path.replace("{id}", user["id"])
    if isinstance(body, bytes):
        status, _, raw = org.request(method, "/scim/v2" + path, body, key=org.scim_key,
                                     headers={"Content-Type": SCIM})
        err = json.loads(raw)
    else:
        status, err, _ = scim(org, method, path, body)
    assert (status, err["scimType"]) == (400, scim_type), err
    assert counts(org) == before
    assert rows(org, "SELECT active FROM scim_users") == [("1",)]


def test_other_resources_are_a_scim_not_found(org):
    status, err, headers = scim(org, "GET", "/Bulk")
    assert status == 404 and err["status"] == "404" and headers["Content-Type"] == SCIM


def test_a_directory_manages_groups_and_their_members_in_both_styles(org):
    _, alice, _ = scim(org, "POST", "/Users", entra_user())
    _, bob, _ = scim(org, "POST", "/Users", entra_user("bob@acme.example", "b0b"))
    status, body, _ = scim(org, "GET", '/Groups?filter=displayName+eq+%22Engineering%22')
    assert status == 200 and body["totalResults"] == 0
    status, group, _ = scim(org, "POST", "/Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Engineering", "externalId": "g-1", "members": [{"value": alice["id"]}]})
    assert status == 201, group
    assert [m["value"] for m in group["members"]] == [alice["id"]]
    path = f"/Groups/{group['id']}"
    # Entra: add and remove with a value list.
    status, body, _ = scim(org, "PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": bob["id"]}]}]})
    assert status == 200 and {m["display"] for m in body["members"]} == {"alice@acme.example", "bob@acme.example"}
    status, body, _ = scim(org, "PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "Remove", "path": "members", "value": [{"value": alice["id"]}]}]})
    assert [m["value"] for m in body["members"]] == [bob["id"]]
    # The filter-path style, and a rename without a path.
    status, body, _ = scim(org, "PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": [
        {"op": "remove", "path": f'members[value eq "{bob["id"]}"]'},
        {"op": "replace", "value": {"displayName": "Platform"}}]})
    assert status == 200 and body["members"] == [] and body["displayName"] == "Platform"
    assert rows(org, "SELECT COUNT(*) FROM scim_group_members") == [("0",)]
    status, body, _ = scim(org, "GET", '/Groups?filter=displayName+eq+%22Platform%22')
    assert body["totalResults"] == 1 and body["Resources"][0]["externalId"] == "g-1"
    # An unknown member is refused and nothing changes.
    before = counts(org)
    status, err, _ = scim(org, "PATCH", path, {"Operations": [
        {"op": "add", "path": "members", "value": [{"value": bob["id"]}, {"value": "nobody"}]}]})
    assert (status, err["scimType"]) == (400, "invalidValue")
    assert counts(org) == before and rows(org, "SELECT COUNT(*) FROM scim_group_members") == [("0",)]
    assert scim(org, "POST", "/Groups", {"displayName": "Platform"})[0] == 409
    assert scim(org, "DELETE", path, key="0" * 64)[0] == 401
    assert scim(org, "DELETE", path)[0] == 204
    assert scim(org, "GET", path)[0] == 404
    actions = [r[0] for r in rows(org, "SELECT action FROM audit ORDER BY seq")]
    assert actions.count("scim.group.update") == 3 and actions[-1] == "scim.group.delete"
    assert org.audit_verify().returncode == 0


def test_reactivating_a_user_resumes_only_the_keys_the_directory_suspended(org):
    _, alice, _ = scim(org, "POST", "/Users", entra_user())
    _, bob, _ = scim(org, "POST", "/Users", entra_user("bob@acme.example", "b0b"))
    rows(org, "UPDATE keys SET status = 'active'")
    (alice_key,) = rows(org, "SELECT id FROM keys WHERE email = 'alice@acme.example'")[0]
    (bob_key,) = rows(org, "SELECT id FROM keys WHERE email = 'bob@acme.example'")[0]
    # An admin suspends Alice's key for a reason of their own, before the directory acts.
    status, body = org.json("POST", f"/api/v1/keys/{alice_key}/suspend", {"reason": "lost phone"})
    assert status == 200, body
    off = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    on = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": True}]}
    for user in (alice, bob):
        assert scim(org, "PATCH", f"/Users/{user['id']}", off)[0] == 200
    # Each suspension is the lifecycle's own change: the key's cause and actor, one audit entry.
    assert rows(org, f"SELECT status, status_cause, status_actor FROM keys WHERE id = '{bob_key}'") == [
        ("suspended", "directory", "api-key:entra")]
    (detail,) = rows(org, f"SELECT detail FROM audit WHERE action = 'key.suspend' AND subject = '{bob_key}'")[0:1][0]
    assert json.loads(detail)["cause"] == "directory"
    for user in (alice, bob):
        assert scim(org, "PATCH", f"/Users/{user['id']}", on)[0] == 200
    # Bob's key comes back; Alice's stays suspended: the admin suspended it, not the directory.
    assert rows(org, "SELECT email, status, status_reason FROM keys ORDER BY email") == [
        ("alice@acme.example", "suspended", "lost phone"),
        ("bob@acme.example", "active", "the directory reactivated the user")]
    resumed = rows(org, "SELECT subject, actor FROM audit WHERE action = 'key.resume'")
    assert resumed == [(bob_key, "api-key:entra")]
    assert org.audit_verify().returncode == 0


def test_scim_takes_only_a_scim_key_and_a_scim_key_nothing_else(org):
    _, user, _ = scim(org, "POST", "/Users", entra_user())
    read_key = org.cli("api-key", "create", "--name", "viewer", "--scope", "read").stdout.split(": ", 1)[1].strip()
    before = counts(org)
    off = {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    for key in ("default", read_key):  # the admin key "ci", and a read key
        for method, path, body in [("GET", "/Users", None), ("PATCH", f"/Users/{user['id']}", off),
                                   ("POST", "/Groups", {"displayName": "Eng"})]:
            status, err, headers = scim(org, method, path, body, key=key)
            assert status == 403 and headers["Content-Type"] == SCIM, err
            assert err["status"] == "403" and "scope scim" in err["detail"]
    assert counts(org) == before
    assert rows(org, "SELECT active FROM scim_users") == [("1",)]
    # The directory's key is refused on the REST API, reading or writing.
    assert org.request("GET", "/api/v1/keys", key=org.scim_key)[0] == 403
    status, body = org.json("POST", "/api/v1/invites", {"email": "x@acme.example", "display_name": "X"},
                            key=org.scim_key)
    assert (status, body["error"]) == (403, "forbidden")
    assert counts(org) == before
    # Refusing a valid key for its scope is no failed authentication: SCIM still answers.
    assert scim(org, "GET", "/Users")[0] == 200
