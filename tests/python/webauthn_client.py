"""The browser in the app models' end-to-end tests (iOS: EndToEndTests.swift; Android:
tests/kotlin/app-logic): python-fido2 registers, and optionally signs in, through a
pocketkey-bridge's virtual security key (its `--udp` CTAPHID transport, pocketkey_udp.py), with
user verification required, and checks every result with fido2.server.Fido2Server.

Prints `registered: <user> uv=<bool>` and `signed in: <user>` once each step verified. A
registration the authenticator refuses prints `refused: <user> <CTAP error name>` and exits 2
(the tests of a bad user-verification proof wait for it); anything else exits non-zero with
the reason on stderr."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fido2.client import ClientError  # noqa: E402
from fido2.ctap import CtapError  # noqa: E402
from fido2.ctap2 import Ctap2  # noqa: E402
from fido2.server import Fido2Server  # noqa: E402
from fido2.webauthn import (  # noqa: E402
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from pk_helpers import client  # noqa: E402
from pocketkey_udp import open_answering_get_info  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--udp", required=True, help="the bridge's HOST:PORT")
    parser.add_argument("--rp", required=True, help="the RP id (origin https://RP)")
    parser.add_argument("--user", required=True)
    parser.add_argument("--sign-in", action="store_true", help="sign in after registering")
    args = parser.parse_args()
    host, port = args.udp.rsplit(":", 1)
    dev = open_answering_get_info((host, int(port)), timeout=30)
    origin = f"https://{args.rp}"
    server = Fido2Server(PublicKeyCredentialRpEntity(id=args.rp, name="App test RP"), attestation="none")

    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name=args.user, display_name=args.user.title()),
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    try:
        result = client(dev, origin).make_credential(options.public_key)
    except ClientError as e:
        if not isinstance(e.cause, CtapError):
            raise
        print(f"refused: {args.user} {e.cause.code.name}", flush=True)
        return 2
    auth_data = server.register_complete(state, result)
    print(f"registered: {args.user} uv={auth_data.is_user_verified()}", flush=True)

    if args.sign_in:
        options, state = server.authenticate_begin(
            [auth_data.credential_data], user_verification=UserVerificationRequirement.REQUIRED
        )
        selection = client(dev, origin).get_assertion(options.public_key)
        server.authenticate_complete(state, [auth_data.credential_data], selection.get_response(0))
        print(f"signed in: {args.user}", flush=True)
    dev.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
