"""WebAuthn ceremonies end to end: python-fido2's Fido2Client talks to the key, and two
independent relying-party verifiers check the results: python-fido2's Fido2Server and
py_webauthn (`webauthn.verify_registration_response` / `verify_authentication_response`)."""

from __future__ import annotations

import itertools
import os

import pytest
import webauthn
from fido2.attestation import AttestationType, PackedAttestation
from fido2.client import ClientError
from fido2.server import Fido2Server
from fido2.utils import websafe_encode
from fido2.webauthn import (
    AttestationObject,
    AuthenticationResponse,
    AuthenticatorData,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier

from pk_helpers import EDDSA, ES256, check_auth_data_canonical, client

FLAG = AuthenticatorData.FLAG
_counter = itertools.count()


def unique_rp() -> tuple[str, str]:
    rp_id = f"rp{next(_counter)}-{os.urandom(3).hex()}.example.org"
    return rp_id, f"https://{rp_id}"


def verify_self_attestation(attestation_object: AttestationObject, client_data_hash: bytes):
    """Attestation verifier for Fido2Server: packed self attestation only."""
    assert attestation_object.fmt == "packed", attestation_object.fmt
    result = PackedAttestation().verify(
        attestation_object.att_stmt, attestation_object.auth_data, client_data_hash
    )
    assert result.attestation_type == AttestationType.SELF, result.attestation_type


def make_server(rp_id: str, alg: int) -> Fido2Server:
    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=rp_id, name="PocketKey test RP"),
        attestation="direct",
        verify_attestation=verify_self_attestation,
    )
    server.allowed_algorithms = [
        PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg)
    ]
    return server


def b64(data: bytes) -> str:
    return websafe_encode(bytes(data))


def registration_json(r: RegistrationResponse) -> dict:
    """RegistrationResponseJSON, as a browser would hand it to a relying party."""
    return {
        "id": b64(r.raw_id),
        "rawId": b64(r.raw_id),
        "type": "public-key",
        "response": {
            "clientDataJSON": b64(r.response.client_data),
            "attestationObject": b64(r.response.attestation_object),
            "transports": ["usb"],
        },
        "authenticatorAttachment": "cross-platform",
        "clientExtensionResults": {},
    }


def authentication_json(a: AuthenticationResponse) -> dict:
    resp = {
        "clientDataJSON": b64(a.response.client_data),
        "authenticatorData": b64(a.response.authenticator_data),
        "signature": b64(a.response.signature),
    }
    if a.response.user_handle is not None:
        resp["userHandle"] = b64(a.response.user_handle)
    return {
        "id": b64(a.raw_id),
        "rawId": b64(a.raw_id),
        "type": "public-key",
        "response": resp,
        "authenticatorAttachment": "cross-platform",
        "clientExtensionResults": {},
    }


PYWA_ALG = {ES256: COSEAlgorithmIdentifier.ECDSA_SHA_256, EDDSA: COSEAlgorithmIdentifier.EDDSA}


class Registered:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def register(dev, rp_id, origin, alg, rk, uv, user_id=None):
    server = make_server(rp_id, alg)
    uid = user_id or os.urandom(32)
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=uid, name="alice@example.org", display_name="Alice"),
        resident_key_requirement=rk,
        user_verification=uv,
    )
    c = client(dev, origin)
    result = c.make_credential(options.public_key)
    # Verifier 1: python-fido2's server (includes packed self-attestation via our hook).
    auth_data = server.register_complete(state, result)
    # Verifier 2: py_webauthn, from the JSON a browser would produce.
    verified = webauthn.verify_registration_response(
        credential=registration_json(result),
        expected_challenge=options.public_key.challenge,
        expected_rp_id=rp_id,
        expected_origin=origin,
        require_user_verification=(uv == UserVerificationRequirement.REQUIRED),
        supported_pub_key_algs=[PYWA_ALG[alg]],
    )
    return Registered(
        server=server,
        result=result,
        auth_data=auth_data,
        credential=auth_data.credential_data,
        verified=verified,
        user_id=uid,
        client=c,
    )


def authenticate(dev, reg: Registered, rp_id, origin, uv, discoverable, prev_count):
    server = reg.server
    options, state = server.authenticate_begin(
        None if discoverable else [reg.credential], user_verification=uv
    )
    selection = client(dev, origin).get_assertion(options.public_key)
    assertions = selection.get_assertions()
    index = next(
        (i for i, a in enumerate(assertions)
         if a.credential is None or a.credential["id"] == reg.credential.credential_id),
        None,
    )
    assert index is not None, "our credential is not among the returned assertions"
    response = selection.get_response(index)
    server.authenticate_complete(state, [reg.credential], response)
    verified = webauthn.verify_authentication_response(
        credential=authentication_json(response),
        expected_challenge=options.public_key.challenge,
        expected_rp_id=rp_id,
        expected_origin=origin,
        credential_public_key=reg.verified.credential_public_key,
        credential_current_sign_count=prev_count,
        require_user_verification=(uv == UserVerificationRequirement.REQUIRED),
    )
    return response, verified


@pytest.mark.parametrize("uv", [UserVerificationRequirement.REQUIRED,
                                UserVerificationRequirement.DISCOURAGED], ids=["uv", "no-uv"])
@pytest.mark.parametrize("rk", [ResidentKeyRequirement.REQUIRED,
                                ResidentKeyRequirement.DISCOURAGED], ids=["rk", "non-rk"])
@pytest.mark.parametrize("alg", [ES256, EDDSA], ids=["ES256", "EdDSA"])
def test_register_and_authenticate(pk, alg, rk, uv):
    dev = pk.device()
    rp_id, origin = unique_rp()
    reg = register(dev, rp_id, origin, alg, rk, uv)
    ad = reg.auth_data
    check_auth_data_canonical(ad)

    # Credential key of the requested algorithm.
    assert reg.credential.public_key[3] == alg
    assert reg.verified.fmt == "packed"
    assert ad.is_user_present()
    if uv == UserVerificationRequirement.REQUIRED:
        assert ad.is_user_verified()
        assert reg.verified.user_verified
    # BS without BE is forbidden.
    assert not (ad.flags & FLAG.BS and not ad.flags & FLAG.BE)

    # Packed self attestation, checked by hand.
    att = reg.result.response.attestation_object
    stmt = att.att_stmt
    assert att.fmt == "packed"
    assert "x5c" not in stmt, "self attestation must not carry x5c"
    assert "ecdaaKeyId" not in stmt
    assert stmt["alg"] == alg
    reg.credential.public_key.verify(
        bytes(att.auth_data) + reg.result.response.client_data.hash, stmt["sig"]
    )

    discoverable = rk == ResidentKeyRequirement.REQUIRED
    count = ad.counter
    for _ in range(2):
        response, verified = authenticate(dev, reg, rp_id, origin, uv, discoverable, count)
        a_ad = response.response.authenticator_data
        check_auth_data_canonical(a_ad)
        assert a_ad.counter > count, f"sign count did not increase: {count} -> {a_ad.counter}"
        assert verified.new_sign_count == a_ad.counter
        assert a_ad.flags & (FLAG.BE | FLAG.BS) == ad.flags & (FLAG.BE | FLAG.BS), (
            f"backup flags changed: registration {ad.flags!r}, assertion {a_ad.flags!r}"
        )
        assert a_ad.is_user_present()
        if uv == UserVerificationRequirement.REQUIRED:
            assert a_ad.is_user_verified()
        if discoverable:
            assert response.response.user_handle == reg.user_id
        count = a_ad.counter


def test_exclude_credentials(pk):
    dev = pk.device()
    rp_id, origin = unique_rp()
    reg = register(dev, rp_id, origin, ES256, ResidentKeyRequirement.DISCOURAGED,
                   UserVerificationRequirement.DISCOURAGED)
    options, _ = reg.server.register_begin(
        PublicKeyCredentialUserEntity(id=reg.user_id, name="alice", display_name="Alice"),
        credentials=[reg.credential],
    )
    with pytest.raises(ClientError) as e:
        client(dev, origin).make_credential(options.public_key)
    assert e.value.code == ClientError.ERR.DEVICE_INELIGIBLE, repr(e.value)


def test_wrong_rp_cannot_use_credential(pk):
    dev = pk.device()
    rp_id, origin = unique_rp()
    reg = register(dev, rp_id, origin, ES256, ResidentKeyRequirement.DISCOURAGED,
                   UserVerificationRequirement.DISCOURAGED)
    other_id, other_origin = unique_rp()
    other = make_server(other_id, ES256)
    options, _ = other.authenticate_begin([reg.credential])
    with pytest.raises(ClientError) as e:
        client(dev, other_origin).get_assertion(options.public_key)
    assert e.value.code == ClientError.ERR.DEVICE_INELIGIBLE, repr(e.value)


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_discoverable_survives_restart_and_counter_never_goes_back(fresh_authenticator, kill):
    pk = fresh_authenticator
    rp_id, origin = unique_rp()
    reg = register(pk.device(), rp_id, origin, ES256, ResidentKeyRequirement.REQUIRED,
                   UserVerificationRequirement.REQUIRED)
    count = reg.auth_data.counter
    resp, _ = authenticate(pk.device(), reg, rp_id, origin,
                           UserVerificationRequirement.REQUIRED, True, count)
    count = resp.response.authenticator_data.counter

    # Right after the getAssertion reply: the counter in it was durable before it was sent.
    pk.restart(kill=kill)  # same state directory, new process

    for discoverable in (True, False):
        resp, _ = authenticate(pk.device(), reg, rp_id, origin,
                               UserVerificationRequirement.DISCOURAGED, discoverable, count)
        new = resp.response.authenticator_data.counter
        # Above, not equal to, the last value: one WebAuthn ceremony may cost the key more
        # than one getAssertion (python-fido2's client here moved it by 2), and each counts.
        assert new > count, f"counter went from {count} to {new} across a restart"
        count = new


def test_non_discoverable_survives_restart(fresh_authenticator):
    pk = fresh_authenticator
    rp_id, origin = unique_rp()
    reg = register(pk.device(), rp_id, origin, EDDSA, ResidentKeyRequirement.DISCOURAGED,
                   UserVerificationRequirement.DISCOURAGED)
    pk.restart()
    resp, _ = authenticate(pk.device(), reg, rp_id, origin,
                           UserVerificationRequirement.DISCOURAGED, False, reg.auth_data.counter)
    assert resp.response.authenticator_data.counter > reg.auth_data.counter
