"""Provisioned attestation: `pocketkey attestation` makes an organisation root, a batch key and
an enterprise key; registrations then carry packed batch attestation (x5c) that relying-party
libraries verify up to that root, and enterprise attestation only where the spec allows."""

from __future__ import annotations

import os
import subprocess

import pytest
import webauthn
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.attestation import AttestationType, PackedAttestation
from fido2.ctap2 import ClientPin, Config
from cryptography.hazmat.primitives.serialization import Encoding
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
)

from pk_helpers import cdh, client, make_cred, uv_token
from pocketkey_udp import Authenticator, default_binary
from test_webauthn import registration_json

AAGUID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
ENTERPRISE_RP = "corp.example"
P = ClientPin.PERMISSION


@pytest.fixture
def provisioned(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    out = subprocess.run(
        [str(default_binary()), "attestation", "--org", "Example Corp", "--country", "DE",
         "--enterprise-rp-id", ENTERPRISE_RP, "--state-dir", str(state)],
        capture_output=True, text=True, check=True,
    )
    root_path = out.stdout.strip()
    assert root_path.endswith("root.der"), out
    root = open(root_path, "rb").read()
    again = subprocess.run(
        [str(default_binary()), "attestation", "--org", "X", "--state-dir", str(state)],
        capture_output=True, text=True,
    )
    assert again.returncode != 0 and "already exists" in again.stderr, "provisioning is once"
    auth = Authenticator(state_dir=state)
    auth.start()
    yield auth, root
    auth.stop()


def check_leaf(cert_der: bytes, root_der: bytes, aaguid: bytes) -> x509.Certificate:
    cert = x509.load_der_x509_certificate(cert_der)
    root = x509.load_der_x509_certificate(root_der)
    cert.verify_directly_issued_by(root)
    assert cert.version == x509.Version.v3
    assert cert.serial_number > 0
    ou = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [a.value for a in ou] == ["Authenticator Attestation"]
    assert cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value == "Example Corp"
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COUNTRY_NAME)[0].value == "DE"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ext = cert.extensions.get_extension_for_oid(AAGUID_OID)
    assert not ext.critical
    assert ext.value.value == b"\x04\x10" + aaguid
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    return cert


def test_batch_attestation_verifies_to_the_root(provisioned):
    auth, root = provisioned
    ctap = auth.ctap2()
    resp, h, _ = make_cred(ctap, "batch.example")
    assert resp.fmt == "packed"
    x5c = resp.att_stmt["x5c"]
    assert len(x5c) == 1
    aaguid = bytes(resp.auth_data.credential_data.aaguid)
    check_leaf(x5c[0], root, aaguid)
    result = PackedAttestation().verify(resp.att_stmt, resp.auth_data, h)
    assert result.attestation_type == AttestationType.BASIC
    assert "epAtt" not in str(resp) and not getattr(resp, "ep_att", None)


def test_py_webauthn_accepts_the_chain_with_our_root_only(provisioned):
    auth, root = provisioned
    rp_id = "rp-attest.example.org"
    origin = f"https://{rp_id}"
    server = Fido2Server(
        PublicKeyCredentialRpEntity(name="Attest", id=rp_id),
        attestation=AttestationConveyancePreference.DIRECT,
    )
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="bob", display_name="Bob"),
    )
    result = client(auth.device(), origin).make_credential(options.public_key)
    server.register_complete(state, result)

    def verify_with(root_der: bytes):
        return webauthn.verify_registration_response(
            credential=registration_json(result),
            expected_challenge=options.public_key.challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            pem_root_certs_bytes_by_fmt={
                webauthn.helpers.structs.AttestationFormat.PACKED: [
                    x509.load_der_x509_certificate(root_der).public_bytes(Encoding.PEM)
                ]
            },
        )

    verified = verify_with(root)
    assert verified.fmt == webauthn.helpers.structs.AttestationFormat.PACKED
    # The chain really is checked: another organisation's root is refused.
    with pytest.raises(webauthn.helpers.exceptions.InvalidRegistrationResponse):
        verify_with(other_root())


def other_root() -> bytes:
    import datetime

    from cryptography.hazmat.primitives import hashes

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Someone Else Root")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_attestation_none_when_the_platform_prefers_it(provisioned):
    auth, _ = provisioned
    ctap = auth.ctap2()
    # CTAP 2.2 attestationFormatsPreference (0x0B): "none" before "packed".
    status_and_body = ctap.send_cbor(0x01, {
        1: cdh(), 2: {"id": "none.example"}, 3: {"id": b"u1", "name": "u"},
        4: [{"type": "public-key", "alg": -7}], 0x0B: ["none", "packed"],
    })
    assert status_and_body[1] == "none"
    assert status_and_body[3] == {}


def test_enterprise_attestation_only_when_enabled_and_listed(provisioned):
    auth, root = provisioned
    ctap = auth.ctap2()
    assert ctap.get_info().options.get("ep") is False
    proto, tok = uv_token(ctap, P.AUTHENTICATOR_CFG)
    Config(ctap, proto, tok).enable_enterprise_attestation()
    assert ctap.get_info().options.get("ep") is True

    def ep_make(rp_id):
        return ctap.send_cbor(0x01, {
            1: cdh(), 2: {"id": rp_id}, 3: {"id": b"u1", "name": "u"},
            4: [{"type": "public-key", "alg": -7}], 0x0A: 1,
        })

    listed = ep_make(ENTERPRISE_RP)
    assert listed.get(4) is True, "epAtt for a listed RP"
    batch_like = ep_make("not-listed.example")
    assert batch_like.get(4) is None, "vendor-facilitated EA only for listed RPs"
    ent = x509.load_der_x509_certificate(listed[3]["x5c"][0])
    batch = x509.load_der_x509_certificate(batch_like[3]["x5c"][0])
    assert ent.serial_number != batch.serial_number
    assert "Enterprise" in ent.subject.rfc4514_string()
    ent.verify_directly_issued_by(x509.load_der_x509_certificate(root))
    with pytest.raises(Exception) as e:
        ctap.send_cbor(0x01, {
            1: cdh(), 2: {"id": ENTERPRISE_RP}, 3: {"id": b"u1", "name": "u"},
            4: [{"type": "public-key", "alg": -7}], 0x0A: 3,
        })
    assert "0x2c" in str(e.value).lower() or "INVALID_OPTION" in str(e.value)
