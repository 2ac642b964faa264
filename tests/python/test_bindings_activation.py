"""`SecurityKey.activate(link)` through the generated Python bindings, against a real
`pocketkey-org serve` on loopback: the same protocol code as `pocketkey activate`. The key
then attests as the organisation's at once (no reopen), python-fido2 registers through the
bindings and py_webauthn verifies the chain up to the organisation's root."""

from __future__ import annotations

import os

import pytest
import webauthn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
)

from bindings_support import BindingsDevice, MemoryKeyProvider, Phone, pk
from fido2.ctap import CtapError

from test_org_activation import ENTERPRISE_RP, LoopbackOrg
from test_webauthn import registration_json

RP_ID = "login.example.org"
ORIGIN = f"https://{RP_ID}"


@pytest.fixture
def org(tmp_path):
    o = LoopbackOrg(tmp_path)
    yield o
    o.stop()


@pytest.fixture
def key(tmp_path):
    phone = Phone()
    k = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(k)
    yield k
    phone.stop()


def register_direct(key):
    server = Fido2Server(PublicKeyCredentialRpEntity(id=RP_ID, name="RP"),
                         attestation=AttestationConveyancePreference.DIRECT)
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="Alice"))
    client = Fido2Client(BindingsDevice(key),
                         client_data_collector=DefaultClientDataCollector(ORIGIN),
                         user_interaction=UserInteraction())
    result = client.make_credential(options.public_key)
    server.register_complete(state, result)
    return options, result


def test_activate_then_direct_attestation_chains_to_the_org_root(org, key):
    assert key.info().attestation == pk.AttestationKind.SELF_ATTESTATION
    link = org.invite_link()
    # The app learns it is an invitation from classify_scan; the loopback test server is
    # http://, which classify_scan (https only) leaves alone, so check the same path form
    # on the https URL a real server has.
    https_form = "https://org.example" + link[len(org.public_url):]
    scanned = pk.classify_scan(https_form, pk.ScanSource.LINK)
    assert isinstance(scanned, pk.ScannedCode.ACTIVATION) and scanned.token == link.rsplit("/", 1)[1]
    assert key.activate(link, "Alice's phone") == "Acme"
    assert key.info().attestation == pk.AttestationKind.BATCH
    options, result = register_direct(key)
    verified = webauthn.verify_registration_response(
        credential=registration_json(result),
        expected_challenge=options.public_key.challenge,
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        pem_root_certs_bytes_by_fmt={webauthn.helpers.structs.AttestationFormat.PACKED: [
            x509.load_der_x509_certificate(org.root_der()).public_bytes(serialization.Encoding.PEM)]},
    )
    assert verified.fmt == webauthn.helpers.structs.AttestationFormat.PACKED
    status, body = org.json("GET", "/api/v1/keys")
    [entry] = body["keys"]
    assert (entry["status"], entry["device_name"]) == ("active", "Alice's phone")
    # Once active, the key refuses to join again.
    with pytest.raises(pk.PocketKeyError.AlreadyActivated):
        key.activate(org.invite_link("bob@acme.example"))


def test_activation_errors_are_typed(org, key, tmp_path):
    link = org.invite_link()
    with pytest.raises(pk.PocketKeyError.InvalidActivationLink):
        key.activate("https://org.example.test/not-an-invite")
    with pytest.raises(pk.PocketKeyError.ActivationLinkNotValid):
        key.activate(link[:-4] + ("0000" if not link.endswith("0000") else "1111"))
    org.sql("UPDATE invites SET expires_at = '2000-01-01T00:00:00Z'")
    with pytest.raises(pk.PocketKeyError.ActivationExpired):
        key.activate(link)
    used = org.invite_link("carol@acme.example")
    other = pk.SecurityKey.open(str(tmp_path / "other"), MemoryKeyProvider(), Phone())
    assert other.activate(used) == "Acme"
    with pytest.raises(pk.PocketKeyError.ActivationUsed):
        key.activate(used)
    revoked = org.invite_link("dave@acme.example")
    org.sql("UPDATE keys SET status = 'revoked' WHERE email = 'dave@acme.example'")
    with pytest.raises(pk.PocketKeyError.ActivationRevoked):
        key.activate(revoked)
    # A server that is not there: the network error, typed.
    with pytest.raises(pk.PocketKeyError.OrganisationUnreachable):
        key.activate("http://127.0.0.1:9/activate/" + "ab" * 32)
    assert key.info().attestation == pk.AttestationKind.SELF_ATTESTATION


def test_sync_organisation_applies_suspend_resume_and_revoke_at_once(org, key):
    with pytest.raises(pk.PocketKeyError.NoOrganisation):
        key.sync_organisation()
    assert key.activate(org.invite_link()) == "Acme"
    state = key.sync_organisation()
    assert (state.name, state.status, state.reason) == ("Acme", pk.OrganisationStatus.ACTIVE, None)
    [(kid,)] = org.sql("SELECT id FROM keys")
    device = BindingsDevice(key)

    def make(rp_id):
        from fido2.ctap2 import Ctap2
        return Ctap2(device).make_credential(
            os.urandom(32), {"id": rp_id, "name": rp_id}, {"id": b"u1", "name": "u"},
            [{"type": "public-key", "alg": -7}])

    make(ENTERPRISE_RP)
    assert org.json("POST", f"/api/v1/keys/{kid}/suspend", {"reason": "audit"})[0] == 200
    state = key.sync_organisation()
    assert (state.status, state.reason) == (pk.OrganisationStatus.SUSPENDED, "audit")
    assert key.info().attestation == pk.AttestationKind.SELF_ATTESTATION
    with pytest.raises(CtapError) as e:
        make(ENTERPRISE_RP)
    assert e.value.code == CtapError.ERR.OPERATION_DENIED
    make("other.example")
    assert org.json("POST", f"/api/v1/keys/{kid}/resume", {})[0] == 200
    assert key.sync_organisation().status == pk.OrganisationStatus.ACTIVE
    assert key.info().attestation == pk.AttestationKind.BATCH
    make(ENTERPRISE_RP)
    assert org.json("POST", f"/api/v1/keys/{kid}/revoke", {"reason": "stolen"})[0] == 200
    assert key.sync_organisation().status == pk.OrganisationStatus.REVOKED
    with pytest.raises(CtapError) as e:
        make(ENTERPRISE_RP)
    assert e.value.code == CtapError.ERR.OPERATION_DENIED
    assert key.info().attestation == pk.AttestationKind.SELF_ATTESTATION
    # A stopped server: the network error, typed.
    org.stop()
    with pytest.raises(pk.PocketKeyError.OrganisationUnreachable):
        key.sync_organisation()
