"""Activation end to end, with real processes on loopback: `pocketkey-org` invites, the test
reads the invite mail from the outbox as a person would, `pocketkey activate` follows its
link, then `pocketkey serve --udp` registers through python-fido2 and py_webauthn checks that
the attestation chains to the organisation's `GET /api/v1/attestation/root`.

Bad activation requests (wrong or expired tokens, a CSR for another key than the one signed,
a CSR asking for an extension, a request not signed by its device key) are built here with
`cryptography` and posted raw: each gets its typed error and nothing is stored.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import sqlite3
import subprocess
import time

import pytest
import webauthn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
)

from pk_helpers import cdh, client
from pocketkey_udp import Authenticator, default_binary
from test_attestation import other_root
from test_org import BIN as ORG_BIN, Org, run as org_run
from test_webauthn import registration_json

AAGUID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
SERIAL_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.2")
ENTERPRISE_RP = "corp.example"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackOrg(Org):
    """`pocketkey-org serve` whose public URL is itself, so the mailed link reaches it."""

    def __init__(self, tmp_path):
        def enterprise_policy(org):
            policy = org.cli("policy", "set", "--enterprise-rp-id", ENTERPRISE_RP).stdout
            assert json.loads(policy)["enterprise_rp_ids"] == [ENTERPRISE_RP]

        super().__init__(tmp_path, loopback=True, before_serve=enterprise_policy)
        self.public_url = self.base

    def invite_link(self, email_addr="alice@acme.example"):
        before = len(self.mails())
        status, body = self.json("POST", "/api/v1/invites",
                                 {"email": email_addr, "display_name": "Alice"})
        assert status == 201, body
        mail = self.mails()[before]
        text = mail.get_body(preferencelist=("plain",)).get_content()
        [link] = [w for w in text.split() if w.startswith(self.public_url + "/activate/")]
        return link

    def sql(self, sql, *args):
        db = sqlite3.connect(self.state / "org.db")
        try:
            rows = db.execute(sql, args).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def root_der(self):
        status, _, pem = self.request("GET", "/api/v1/attestation/root")
        assert status == 200
        return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def activate(link, state_dir, *extra):
    state_dir.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        [str(default_binary()), "activate", link, "--state-dir", str(state_dir),
         "--device-name", "Alice's phone", *extra],
        capture_output=True, text=True, timeout=60,
    )


@pytest.fixture
def org(tmp_path):
    o = LoopbackOrg(tmp_path)
    yield o
    o.stop()


@pytest.fixture
def activated(org, tmp_path):
    link = org.invite_link()
    phone = tmp_path / "phone"
    start = time.monotonic()
    proc = activate(link, phone)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "activated: Acme\n"
    print(f"activation on loopback (link -> activated): {elapsed * 1000:.0f} ms")
    auth = Authenticator(state_dir=phone)
    auth.start()
    yield org, auth, link
    auth.stop()


def test_direct_attestation_chains_to_the_org_root(activated):
    org, auth, _ = activated
    rp_id = "login.example.org"
    origin = f"https://{rp_id}"
    server = Fido2Server(PublicKeyCredentialRpEntity(name="RP", id=rp_id),
                         attestation=AttestationConveyancePreference.DIRECT)
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="Alice"))
    result = client(auth.device(), origin).make_credential(options.public_key)
    server.register_complete(state, result)

    def verify_with(root_der):
        return webauthn.verify_registration_response(
            credential=registration_json(result),
            expected_challenge=options.public_key.challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            pem_root_certs_bytes_by_fmt={webauthn.helpers.structs.AttestationFormat.PACKED: [
                x509.load_der_x509_certificate(root_der).public_bytes(serialization.Encoding.PEM)]},
        )

    verified = verify_with(org.root_der())
    assert verified.fmt == webauthn.helpers.structs.AttestationFormat.PACKED
    with pytest.raises(webauthn.helpers.exceptions.InvalidRegistrationResponse):
        verify_with(other_root())
    att = result.response.attestation_object
    [leaf_der] = att.att_stmt["x5c"]
    leaf = x509.load_der_x509_certificate(leaf_der)
    assert leaf.extensions.get_extension_for_oid(AAGUID_OID).value.value[2:] == bytes(
        att.auth_data.credential_data.aaguid)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_oid(SERIAL_OID)


def test_enterprise_attestation_only_for_the_policy_rp_ids(activated):
    org, auth, _ = activated
    ctap = auth.ctap2()
    assert ctap.get_info().options.get("ep") is True

    def ep_make(rp_id):
        return ctap.send_cbor(0x01, {
            1: cdh(), 2: {"id": rp_id}, 3: {"id": b"u1", "name": "u"},
            4: [{"type": "public-key", "alg": -7}], 0x0A: 1,
        })

    listed = ep_make(ENTERPRISE_RP)
    assert listed.get(4) is True, "epAtt for the policy's enterprise RP"
    ent = x509.load_der_x509_certificate(listed[3]["x5c"][0])
    root = x509.load_der_x509_certificate(org.root_der())
    ent.verify_directly_issued_by(root)
    serial = ent.extensions.get_extension_for_oid(SERIAL_OID).value.value
    assert serial[:2] == b"\x04\x10"
    [(stored,)] = org.sql("SELECT enterprise_serial FROM devices")
    assert serial[2:].hex() == stored
    assert ent.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    other = ep_make("not-listed.example")
    assert other.get(4) is None
    # A platform-managed request (2) does not reach the per-device certificate either.
    managed = ctap.send_cbor(0x01, {
        1: cdh(), 2: {"id": "not-listed.example"}, 3: {"id": b"u1", "name": "u"},
        4: [{"type": "public-key", "alg": -7}], 0x0A: 2,
    })
    assert managed.get(4) is None
    batch = x509.load_der_x509_certificate(other[3]["x5c"][0])
    with pytest.raises(x509.ExtensionNotFound):
        batch.extensions.get_extension_for_oid(SERIAL_OID)


def test_inventory_and_audit_record_the_activation(activated):
    org, _, _ = activated
    status, body = org.json("GET", "/api/v1/keys")
    [key] = body["keys"]
    assert (key["status"], key["device_name"], key["platform"]) == ("active", "Alice's phone", "linux")
    assert key["activated_at"] and key["last_seen_at"]
    _, _, raw = org.request("GET", "/api/v1/audit")
    actions = [json.loads(line)["action"] for line in raw.decode().splitlines()]
    assert actions[-1] == "key.activate"
    assert org.audit_verify().returncode == 0


def test_the_same_link_twice_is_used_and_stores_nothing(activated, tmp_path):
    org, _, link = activated
    before = org.sql("SELECT * FROM devices")
    proc = activate(link, tmp_path / "second-phone")
    assert proc.returncode == 1
    assert "activation failed: used:" in proc.stderr, proc.stderr
    assert org.sql("SELECT * FROM devices") == before


def count_devices(org):
    return org.sql("SELECT COUNT(*) FROM devices")[0][0]


def test_unknown_and_expired_tokens_are_typed_and_store_nothing(org, tmp_path):
    link = org.invite_link()
    unknown = link[:-4] + ("0000" if not link.endswith("0000") else "1111")
    proc = activate(unknown, tmp_path / "p1")
    assert proc.returncode == 1 and "activation failed: this link is not valid" in proc.stderr, proc.stderr
    org.sql("UPDATE invites SET expires_at = '2000-01-01T00:00:00Z'")
    proc = activate(link, tmp_path / "p2")
    assert proc.returncode == 1 and "activation failed: expired:" in proc.stderr, proc.stderr
    assert count_devices(org) == 0
    assert org.sql("SELECT status FROM keys") == [("invited",)]
    assert org.sql("SELECT used_at FROM invites") == [(None,)]


def test_a_revoked_key_cannot_activate(org, tmp_path):
    link = org.invite_link()
    org.sql("UPDATE keys SET status = 'revoked'")
    proc = activate(link, tmp_path / "p")
    assert proc.returncode == 1 and "activation failed: revoked:" in proc.stderr, proc.stderr
    assert count_devices(org) == 0


def test_an_unreachable_server_is_a_network_error(tmp_path):
    # Port 9 (discard) on loopback: nothing listens there in the test environment.
    proc = activate("http://127.0.0.1:9/activate/" + "ab" * 32, tmp_path / "p")
    assert proc.returncode == 1 and "activation failed: network:" in proc.stderr, proc.stderr


def test_a_non_loopback_http_link_is_refused_before_any_request(tmp_path):
    proc = activate("http://org.example.test/activate/" + "ab" * 32, tmp_path / "p")
    assert proc.returncode == 1 and "https" in proc.stderr, proc.stderr


# ---- raw activation requests ------------------------------------------------------------

def point(key):
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


def csr_der(key, extension=None):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")]))
    if extension is not None:
        builder = builder.add_extension(extension, critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def post_activation(org, token, csr, sign_with=None, device=None):
    device = device or ec.generate_private_key(ec.SECP256R1())
    box = ec.generate_private_key(ec.SECP256R1())
    request = json.dumps({
        "token": token, "device_public_key": base64.b64encode(point(device)).decode(),
        "box_public_key": base64.b64encode(point(box)).decode(),
        "csr": base64.b64encode(csr).decode(), "device_name": "d", "platform": "p",
    }).encode()
    signature = (sign_with or device).sign(b"pocketkey-org activate v1\0" + request,
                                           ec.ECDSA(hashes.SHA256()))
    return org.json("POST", "/api/v1/device/activate", {
        "request": base64.b64encode(request).decode(),
        "signature": base64.b64encode(signature).decode(),
    }, key=None)


def test_bad_csrs_and_signatures_are_refused_and_the_link_still_works(org, tmp_path):
    link = org.invite_link()
    token = link.rsplit("/", 1)[1]
    att_key = ec.generate_private_key(ec.SECP256R1())
    # A CSR for another key than the one that signed it: swap the public point.
    good = csr_der(att_key)
    swapped = good.replace(point(att_key), point(ec.generate_private_key(ec.SECP256R1())))
    assert swapped != good
    status, body = post_activation(org, token, swapped)
    assert (status, body["error"]) == (400, "invalid_csr"), body
    assert "signature" in body["message"]
    # A CSR that asks for an extension (CA true).
    status, body = post_activation(org, token, csr_der(
        att_key, x509.BasicConstraints(ca=True, path_length=None)))
    assert (status, body["error"]) == (400, "invalid_csr"), body
    # A CSR for a P-384 key.
    status, body = post_activation(org, token, csr_der(ec.generate_private_key(ec.SECP384R1())))
    assert (status, body["error"]) == (400, "invalid_csr"), body
    # A request not signed by the device key it names.
    status, body = post_activation(org, token, good,
                                   sign_with=ec.generate_private_key(ec.SECP256R1()))
    assert (status, body["error"]) == (401, "bad_signature"), body
    # The attestation key must not be the device key.
    device = ec.generate_private_key(ec.SECP256R1())
    status, body = post_activation(org, token, csr_der(device), device=device)
    assert (status, body["error"]) == (400, "invalid_csr"), body
    # Not JSON inside.
    status, body = org.json("POST", "/api/v1/device/activate",
                            {"request": "!!", "signature": ""}, key=None)
    assert (status, body["error"]) == (400, "invalid_request"), body
    assert count_devices(org) == 0
    assert org.sql("SELECT used_at FROM invites") == [(None,)]
    assert org.sql("SELECT status FROM keys") == [("invited",)]
    # None of that spent the token.
    proc = activate(link, tmp_path / "phone")
    assert proc.returncode == 0, proc.stderr
    assert count_devices(org) == 1
