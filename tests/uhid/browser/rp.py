#!/usr/bin/env python3
"""The relying party of the browser check: serves page.html on http://localhost:8000 (a
secure context: browsers treat http://localhost as one) and verifies what the browser returns
with python-fido2's Fido2Server. Only the server's verdict counts: the page just shows it.

Each verified ceremony is logged as an `RP-VERIFIED ...` line on standard output; a rejected
one as `RP-REJECTED ...`.
"""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fido2.server import Fido2Server
from fido2.webauthn import (
    AuthenticationResponse,
    AuthenticatorAttachment,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

RP = PublicKeyCredentialRpEntity(name="PocketKey browser check", id="localhost")
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page.html")

server = Fido2Server(RP)
lock = threading.Lock()
credentials = []  # AttestedCredentialData of every registration
users = {}  # user handle -> user name
pending = {}  # "register" / "authenticate" -> fido2 state of the open ceremony


def log(line):
    print(line, flush=True)


def register_begin(body):
    name = body["user"]
    user_id = os.urandom(16)
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(name=name, id=user_id, display_name=name),
        credentials,
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
        authenticator_attachment=AuthenticatorAttachment.CROSS_PLATFORM,
    )
    pending["register"] = (state, user_id, name)
    opts = dict(options)["publicKey"]
    # WebAuthn L3 hints: go straight to the security-key flow, no passkey-provider chooser.
    opts["hints"] = ["security-key"]
    return opts


def register_complete(body):
    state, user_id, name = pending.pop("register")
    auth_data = server.register_complete(state, body)
    cred = auth_data.credential_data
    credentials.append(cred)
    users[bytes(user_id)] = name
    log(
        f"RP-VERIFIED register user={name} uv={auth_data.is_user_verified()} "
        f"aaguid={cred.aaguid} credential={cred.credential_id.hex()[:16]}"
    )
    return {"ok": True, "user": name, "uv": auth_data.is_user_verified(), "aaguid": str(cred.aaguid)}


def authenticate_begin(body):
    # With "allow": allowCredentials lists every registered credential. Without it the list
    # is empty, and the key must find the discoverable credential itself (usernameless).
    allow = credentials if body.get("allow") else None
    options, state = server.authenticate_begin(
        allow, user_verification=UserVerificationRequirement.REQUIRED
    )
    state["allow"] = bool(allow)
    pending["authenticate"] = state
    opts = dict(options)["publicKey"]
    opts["hints"] = ["security-key"]
    return opts


def authenticate_complete(body):
    state = pending.pop("authenticate")
    response = AuthenticationResponse.from_dict(body)
    cred = server.authenticate_complete(state, credentials, response)
    auth_data = response.response.authenticator_data
    handle = response.response.user_handle
    name = users.get(bytes(handle)) if handle else None
    if name is None:
        raise ValueError("the assertion names no registered user (userHandle missing or unknown)")
    log(
        f"RP-VERIFIED authenticate user={name} uv={auth_data.is_user_verified()} "
        f"counter={auth_data.counter} credential={cred.credential_id.hex()[:16]} "
        f"allow-list={'yes' if state.get('allow') else 'no'}"
    )
    return {"ok": True, "user": name, "uv": auth_data.is_user_verified(), "counter": auth_data.counter}


ROUTES = {
    "/register/begin": register_begin,
    "/register/complete": register_complete,
    "/authenticate/begin": authenticate_begin,
    "/authenticate/complete": authenticate_complete,
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path not in ("/", "/index.html"):
            self.send_error(404)
            return
        with open(PAGE, "rb") as f:
            self.reply(200, "text/html; charset=utf-8", f.read())

    def do_POST(self):
        route = ROUTES.get(self.path)
        if route is None:
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        try:
            with lock:
                answer = route(body)
        except Exception as e:  # the verdict goes to the page and the log, never a 500 page
            log(f"RP-REJECTED {self.path}: {type(e).__name__}: {e}")
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        self.reply(200, "application/json", json.dumps(answer).encode())

    def reply(self, status, ctype, data):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write("rp: " + fmt % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    log(f"RP listening on http://localhost:{port}")
    httpd.serve_forever()
