"""SCIM discovery (RFC 7644 §4, RFC 7643 §5-§7) as a directory reads it before provisioning:
`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`, with the directory's `scim` key, over
real HTTP on SQLite and on PostgreSQL (test_org.py's `db` fixture). The resources' own tests
are in test_org_scim.py.
"""

import pytest

from test_org import db  # noqa: F401 - fixture
from test_org_scim import SCIM, USER_SCHEMA, entra_user, org, scim  # noqa: F401 - org: fixture

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
DISCOVERY = ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas",
             "/ResourceTypes/User", f"/Schemas/{USER_SCHEMA}"]


def test_a_directory_reads_what_the_server_supports_then_provisions_by_it(org):
    status, config, headers = scim(org, "GET", "/ServiceProviderConfig")
    assert status == 200 and headers["Content-Type"] == SCIM
    assert config["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"]
    assert config["patch"]["supported"] is True
    assert config["filter"] == {"supported": True, "maxResults": 100}
    for feature in ("bulk", "changePassword", "sort", "etag"):
        assert config[feature]["supported"] is False, feature
    [scheme] = config["authenticationSchemes"]
    assert scheme["type"] == "oauthbearertoken" and scheme["primary"] is True
    assert config["meta"]["location"].endswith("/scim/v2/ServiceProviderConfig")

    status, types, _ = scim(org, "GET", "/ResourceTypes")
    assert status == 200 and types["schemas"] == [LIST] and types["totalResults"] == 2
    by_id = {t["id"]: t for t in types["Resources"]}
    assert {i: (t["endpoint"], t["schema"]) for i, t in by_id.items()} == {
        "User": ("/Users", USER_SCHEMA), "Group": ("/Groups", GROUP_SCHEMA)}
    assert scim(org, "GET", "/ResourceTypes/User")[1] == by_id["User"]

    status, schemas, _ = scim(org, "GET", "/Schemas")
    assert status == 200 and schemas["schemas"] == [LIST]
    by_id = {s["id"]: s for s in schemas["Resources"]}
    assert set(by_id) == {USER_SCHEMA, GROUP_SCHEMA}
    # Each resource type's schema is served, and by its own URL as well.
    for t in types["Resources"]:
        status, schema, _ = scim(org, "GET", f"/Schemas/{t['schema']}")
        assert status == 200 and schema == by_id[t["schema"]]
    users = {a["name"]: a for a in by_id[USER_SCHEMA]["attributes"]}
    assert users["userName"]["required"] is True and users["userName"]["uniqueness"] == "server"
    assert users["active"]["type"] == "boolean"
    assert {s["name"] for s in users["name"]["subAttributes"]} >= {"givenName", "familyName"}
    groups = {a["name"]: a for a in by_id[GROUP_SCHEMA]["attributes"]}
    assert groups["members"]["multiValued"] is True

    # What Entra ID's default mappings send of the core schema is all in it, and is taken.
    body = entra_user()
    assert {k for k in body if k not in ("schemas", "externalId", "title")} <= set(users)
    status, user, _ = scim(org, "POST", "/Users", body)
    assert status == 201 and user["userName"] == body["userName"]
    assert scim(org, "GET", "/Schemas/urn:example:no-such")[0] == 404
    assert scim(org, "GET", "/ResourceTypes/Device")[0] == 404


@pytest.mark.parametrize("key", [None, "0" * 64, "default"], ids=["none", "wrong", "admin-key"])
def test_discovery_takes_the_directory_key_like_the_rest_of_scim(org, key):
    for path in DISCOVERY:
        status, err, headers = scim(org, "GET", path, key=key)
        expected = 403 if key == "default" else 401
        assert status == expected and headers["Content-Type"] == SCIM, (path, err)
        assert err["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
