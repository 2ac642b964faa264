"""Registering on the user's behalf through the generated Python bindings: the app's
`SecurityKey.sync_organisation()` runs the organisation's registration through the engine,
the app's approval listener gets the prompt (the organisation as requester, the RP, the
account) and answers it; the graph body the server then assembles verifies with py_webauthn
up to the organisation's root."""

from __future__ import annotations

import json
import os

import pytest
import webauthn
from webauthn.helpers.structs import AttestationFormat

from bindings_support import MemoryKeyProvider, Phone, approve_verified, pk
from test_org_activation import LoopbackOrg
from test_org_on_behalf import ACCOUNT, ORIGIN, RP_ID, b64url, register, with_


@pytest.fixture
def org(tmp_path):
    o = LoopbackOrg(tmp_path)
    yield o
    o.stop()


def open_key(tmp_path, policy):
    phone = Phone(policy)
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    return phone, key


@pytest.mark.parametrize("answer", ["approve", "deny"])
def test_sync_organisation_asks_the_app_and_completes_or_denies(org, tmp_path, answer):
    policy = approve_verified if answer == "approve" else (lambda _prompt: pk.ApprovalAnswer.DENY())
    phone, key = open_key(tmp_path, policy)
    try:
        assert key.activate(org.invite_link()) == "Acme"
        [(kid,)] = org.sql("SELECT id FROM keys")
        challenge = os.urandom(32)
        options = with_(lambda pk_: pk_.update(challenge=b64url(challenge)))
        status, created = register(org, kid, options)
        assert status == 202, created

        state = key.sync_organisation()
        [done] = state.registrations
        assert (done.rp_id, done.account) == (RP_ID, ACCOUNT)
        assert done.prompt == f"Acme asks to register this key with {RP_ID} for {ACCOUNT}"
        [prompt] = phone.prompts
        assert (prompt.operation, prompt.requester, prompt.rp_id, prompt.user_name) == (
            pk.ApprovalOperation.REGISTER, "Acme", RP_ID, ACCOUNT)
        # Marked as on the user's behalf, so the app can say who asks, for which account.
        assert prompt.on_behalf == pk.OnBehalf(organisation="Acme", account=ACCOUNT)
        status, reg = org.json("GET", f"/api/v1/registrations/{created['id']}")
        if answer == "deny":
            assert done.outcome == pk.RegistrationOutcome.DENIED()
            assert (reg["status"], reg["graph_body"]) == ("denied", None)
            return
        assert done.outcome == pk.RegistrationOutcome.COMPLETED()
        assert reg["status"] == "completed"
        pkc = reg["graph_body"]["publicKeyCredential"]
        _, _, root_pem = org.request("GET", "/api/v1/attestation/root")
        verified = webauthn.verify_registration_response(
            credential={"id": pkc["id"], "rawId": pkc["id"], "type": "public-key", "response": pkc["response"]},
            expected_challenge=challenge, expected_rp_id=RP_ID, expected_origin=ORIGIN,
            require_user_verification=True,
            pem_root_certs_bytes_by_fmt={AttestationFormat.PACKED: [root_pem]})
        assert verified.fmt == AttestationFormat.PACKED
        assert key.sync_organisation().registrations == [], "done once"
    finally:
        phone.stop()
