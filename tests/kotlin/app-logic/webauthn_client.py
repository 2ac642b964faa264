"""The browser side of the app-logic end-to-end tests: python-fido2 registers a passkey through
the bridge's UDP security key, then signs in with it, each checked by fido2.server.Fido2Server.

    python3 webauthn_client.py PORT RP_ID

Prints `registered <credential id hex>` and `signed-in` as each step verifies; any failure
raises (non-zero exit, traceback on stderr).
"""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

from fido2.ctap2 import Ctap2  # noqa: E402
from fido2.server import Fido2Server  # noqa: E402
from fido2.webauthn import (  # noqa: E402
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    UserVerificationRequirement,
)

from pk_helpers import client  # noqa: E402
from pocketkey_udp import open_udp_device  # noqa: E402


def wait_for_get_info(addr, timeout: float = 30.0):
    """The bridge's device once it answers getInfo: right after pairing the bridge may not
    have stored the phone's getInfo yet (it answers CTAP1_ERR_OTHER until then)."""
    deadline = time.monotonic() + timeout
    while True:
        dev = None
        try:
            dev = open_udp_device(addr)
            Ctap2(dev)
            return dev
        except Exception:
            if dev is not None:
                dev.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    port, rp_id = int(sys.argv[1]), sys.argv[2]
    origin = f"https://{rp_id}"
    dev = wait_for_get_info(("127.0.0.1", port))
    server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="App RP"), attestation="none")
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="carol", display_name="Carol"),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    result = client(dev, origin).make_credential(options.public_key)
    auth_data = server.register_complete(state, result)
    assert auth_data.is_user_verified(), "registration without UV"
    print("registered", auth_data.credential_data.credential_id.hex(), flush=True)

    options, state = server.authenticate_begin(
        [auth_data.credential_data], user_verification=UserVerificationRequirement.REQUIRED
    )
    selection = client(dev, origin).get_assertion(options.public_key)
    server.authenticate_complete(state, [auth_data.credential_data], selection.get_response(0))
    print("signed-in", flush=True)


if __name__ == "__main__":
    main()
