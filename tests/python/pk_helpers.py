"""Small helpers shared by the test modules (no test logic of their own)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, Ctap2
from fido2.ctap2.pin import PinProtocol, PinProtocolV1, PinProtocolV2

ES256 = -7
EDDSA = -8
RS256 = -257

ERR = CtapError.ERR

PUBKEY_ES256 = {"type": "public-key", "alg": ES256}
PUBKEY_EDDSA = {"type": "public-key", "alg": EDDSA}

PROTOCOLS = {1: PinProtocolV1, 2: PinProtocolV2}


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def cdh() -> bytes:
    """A fresh random clientDataHash."""
    return os.urandom(32)


def rp(rp_id: str = "example.com") -> dict:
    return {"id": rp_id, "name": rp_id}


def user(name: str = "alice", uid: bytes | None = None) -> dict:
    return {"id": uid or os.urandom(16), "name": name, "displayName": name.title()}


@contextlib.contextmanager
def ctap_error(expected: int, what: str = ""):
    """Expect a CtapError with exactly this status code."""
    try:
        yield
    except CtapError as e:
        if e.code != expected:
            raise AssertionError(
                f"{what or 'request'}: expected CTAP status 0x{expected:02X} "
                f"({_name(expected)}), got 0x{int(e.code):02X} ({_name(e.code)})"
            ) from e
    else:
        raise AssertionError(
            f"{what or 'request'}: expected CTAP status 0x{expected:02X} "
            f"({_name(expected)}), but it succeeded"
        )


def _name(code: int) -> str:
    try:
        return CtapError.ERR(code).name
    except ValueError:
        return "UNKNOWN"


def split_auth_data(auth_data) -> tuple[bytes | None, bytes | None]:
    """Parse raw authenticatorData bytes: (COSE_Key bytes or None, extensions bytes or None).

    python-fido2 re-encodes the key while parsing, so this works on the raw bytes.
    """
    raw = bytes(auth_data)
    flags = raw[32]
    pos = 37
    key = ext = None
    if flags & 0x40:
        n = int.from_bytes(raw[pos + 16 : pos + 18], "big")
        pos += 18 + n
        _, rest = cbor.decode_from(raw[pos:])
        end = len(raw) - len(rest)
        key, pos = raw[pos:end], end
    if flags & 0x80:
        _, rest = cbor.decode_from(raw[pos:])
        end = len(raw) - len(rest)
        ext, pos = raw[pos:end], end
    assert pos == len(raw), f"{len(raw) - pos} trailing bytes in authenticatorData"
    return key, ext


def attested_key_bytes(auth_data) -> bytes:
    key, _ = split_auth_data(auth_data)
    assert key is not None, "authenticatorData carries no attested credential data"
    return key


def check_auth_data_canonical(auth_data) -> None:
    """The embedded COSE key and extension map must themselves be canonical CBOR."""
    key, ext = split_auth_data(auth_data)
    if key is not None:
        assert cbor.encode(cbor.decode(key)) == key, f"non-canonical COSE key {key.hex()}"
    if ext is not None:
        assert cbor.encode(cbor.decode(ext)) == ext, f"non-canonical extensions map {ext.hex()}"


def make_cred(
    ctap: Ctap2,
    rp_id: str = "example.com",
    *,
    alg: int = ES256,
    rk: bool = False,
    user_entity: dict | None = None,
    client_data_hash: bytes | None = None,
    extensions: dict | None = None,
    token: tuple[PinProtocol, bytes] | None = None,
    exclude_list: list | None = None,
    options: dict | None = None,
):
    """Raw authenticatorMakeCredential with sensible defaults; returns (response, cdh, user)."""
    h = client_data_hash or cdh()
    u = user_entity or user()
    opts = dict(options or {})
    if rk:
        opts["rk"] = True
    pin_uv_param = pin_uv_protocol = None
    if token is not None:
        proto, tok = token
        pin_uv_param = proto.authenticate(tok, h)
        pin_uv_protocol = proto.VERSION
    resp = ctap.make_credential(
        h,
        rp(rp_id),
        u,
        [{"type": "public-key", "alg": alg}],
        exclude_list=exclude_list,
        extensions=extensions,
        options=opts or None,
        pin_uv_param=pin_uv_param,
        pin_uv_protocol=pin_uv_protocol,
    )
    check_auth_data_canonical(resp.auth_data)
    return resp, h, u


def get_assertion(
    ctap: Ctap2,
    rp_id: str = "example.com",
    *,
    allow: list[bytes] | None = None,
    client_data_hash: bytes | None = None,
    extensions: dict | None = None,
    token: tuple[PinProtocol, bytes] | None = None,
    options: dict | None = None,
):
    h = client_data_hash or cdh()
    pin_uv_param = pin_uv_protocol = None
    if token is not None:
        proto, tok = token
        pin_uv_param = proto.authenticate(tok, h)
        pin_uv_protocol = proto.VERSION
    allow_list = [{"type": "public-key", "id": c} for c in allow] if allow else None
    resp = ctap.get_assertion(
        rp_id,
        h,
        allow_list,
        extensions,
        options,
        pin_uv_param,
        pin_uv_protocol,
    )
    check_auth_data_canonical(resp.auth_data)
    return resp, h


def cred_id(resp) -> bytes:
    return resp.auth_data.credential_data.credential_id


def cred_key(resp) -> CoseKey:
    return resp.auth_data.credential_data.public_key


def verify_assertion(resp, client_data_hash: bytes, key: CoseKey) -> None:
    key.verify(bytes(resp.auth_data) + client_data_hash, resp.signature)


def uv_token(
    ctap: Ctap2, permissions: int, rp_id: str | None = None, protocol: int = 2
) -> tuple[PinProtocol, bytes]:
    """pinUvAuthToken through built-in UV (clientPIN 0x06)."""
    proto = PROTOCOLS[protocol]()
    tok = ClientPin(ctap, proto).get_uv_token(ClientPin.PERMISSION(permissions), rp_id)
    return proto, tok


def pin_token(
    ctap: Ctap2, pin: str, permissions: int, rp_id: str | None = None, protocol: int = 2
) -> tuple[PinProtocol, bytes]:
    """pinUvAuthToken through the PIN (clientPIN 0x09)."""
    proto = PROTOCOLS[protocol]()
    tok = ClientPin(ctap, proto).get_pin_token(pin, ClientPin.PERMISSION(permissions), rp_id)
    return proto, tok


class AutoUser(UserInteraction):
    """User interaction for Fido2Client: always consents; knows the PIN if there is one."""

    def __init__(self, pin: str | None = None):
        self.pin = pin
        self.uv_requests = 0
        self.pin_requests = 0
        self.up_prompts = 0

    def prompt_up(self):
        self.up_prompts += 1

    def request_pin(self, permissions, rp_id):
        self.pin_requests += 1
        return self.pin

    def request_uv(self, permissions, rp_id):
        self.uv_requests += 1
        return True


def client(dev, origin: str = "https://example.com", pin: str | None = None, extensions=None):
    kwargs = {}
    if extensions is not None:
        kwargs["extensions"] = extensions
    ui = AutoUser(pin)
    c = Fido2Client(
        dev,
        client_data_collector=DefaultClientDataCollector(origin),
        user_interaction=ui,
        **kwargs,
    )
    c.ui = ui  # type: ignore[attr-defined]
    return c
