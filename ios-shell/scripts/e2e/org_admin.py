"""The organisation's administrator in PocketKeyKit's end-to-end tests (EndToEndTests.swift),
with the standard library only (the Swift chroot's python3):

    org_admin.py serve ORG_BIN DIR [ARG…]
                                       init an organisation "Acme" in DIR, make an API key, then
                                       become `pocketkey-org serve` on a free loopback port whose
                                       public URL is itself (prints `listening: http://…`); ARGs
                                       go to `serve` (e.g. --webhook-allow URL)
    org_admin.py restart ORG_BIN DIR [ARG…]
                                       `pocketkey-org serve` again for DIR's organisation, on the
                                       same port, with these ARGs
    org_admin.py invite DIR EMAIL      POST /api/v1/invites; prints `link: <Activate link>`, read
                                       from the outbox mail's text part as a person would
    org_admin.py revoke|suspend|resume DIR EMAIL [REASON]
                                       POST /api/v1/keys/{id}/ACTION for EMAIL's key
    org_admin.py expire DIR            every unused invite's expiry in the past (SQLite)
    org_admin.py register DIR EMAIL RP_ID ACCOUNT
                                       POST /api/v1/keys/{id}/registrations for EMAIL's key
                                       (UV and a discoverable credential required); prints
                                       `registration: <id>`
    org_admin.py registration DIR ID   GET /api/v1/registrations/{id}; prints `status: <status>`
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path


def serve(org_bin: str, root: Path, args: list[str]) -> None:
    state = root / "state"
    subprocess.run([org_bin, "init", "--state-dir", str(state), "--name", "Acme"], check=True,
                   stdout=subprocess.DEVNULL)
    out = subprocess.run([org_bin, "api-key", "create", "--state-dir", str(state), "--name", "e2e"],
                         check=True, capture_output=True, text=True).stdout
    (root / "api-key").write_text(out.split(": ", 1)[1].strip())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    (root / "url").write_text(url)
    restart(org_bin, root, args)


def restart(org_bin: str, root: Path, args: list[str]) -> None:
    url = (root / "url").read_text()
    os.execv(org_bin, [org_bin, "serve", "--state-dir", str(root / "state"), "--listen", url[len("http://"):],
                       "--public-url", url, "--outbox", str(root / "outbox")] + args)


def api(root: Path, method: str, path: str, body: dict | None = None):
    req = urllib.request.Request(
        (root / "url").read_text() + "/api/v1" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + (root / "api-key").read_text(),
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def invite(root: Path, address: str) -> None:
    outbox = root / "outbox"
    before = set(outbox.glob("*.eml")) if outbox.exists() else set()
    api(root, "POST", "/invites", {"email": address, "display_name": "Employee"})
    [new] = set(outbox.glob("*.eml")) - before
    mail = email.message_from_bytes(new.read_bytes(), policy=email.policy.default)
    text = mail.get_body(preferencelist=("plain",)).get_content()
    [link] = [w for w in text.split() if w.startswith((root / "url").read_text() + "/activate/")]
    print("link: " + link, flush=True)


def key_id(root: Path, address: str) -> str:
    [key] = [k for k in api(root, "GET", "/keys?limit=1000")["keys"] if k["email"] == address]
    return key["id"]


def register(root: Path, address: str, rp_id: str, account: str) -> None:
    options = {"publicKey": {
        "challenge": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(), "timeout": 0,
        "rp": {"id": rp_id, "name": rp_id},
        "user": {"id": "dQ", "name": account, "displayName": account},
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "authenticatorSelection": {"residentKey": "required", "userVerification": "required"},
        "attestation": "direct",
    }}
    answer = api(root, "POST", f"/keys/{key_id(root, address)}/registrations",
                 {"creation_options": options, "origin": "https://" + rp_id, "display_name": "Phone"})
    print("registration: " + answer["id"], flush=True)


def lifecycle(root: Path, action: str, address: str, reason: str | None) -> None:
    key = {"id": key_id(root, address)}
    answer = api(root, "POST", f"/keys/{key['id']}/{action}", {"reason": reason} if reason else None)
    print("status: " + answer["status"], flush=True)


def main() -> None:
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "serve":
        serve(rest[0], Path(rest[1]), rest[2:])
    elif command == "restart":
        restart(rest[0], Path(rest[1]), rest[2:])
    elif command == "invite":
        invite(Path(rest[0]), rest[1])
    elif command in ("revoke", "suspend", "resume"):
        lifecycle(Path(rest[0]), command, rest[1], rest[2] if len(rest) > 2 else None)
    elif command == "register":
        register(Path(rest[0]), rest[1], rest[2], rest[3])
    elif command == "registration":
        print("status: " + api(Path(rest[0]), "GET", f"/registrations/{rest[1]}")["status"], flush=True)
    elif command == "expire":
        db = sqlite3.connect(Path(rest[0]) / "state" / "org.db")
        db.execute("UPDATE invites SET expires_at = '2000-01-01T00:00:00Z' WHERE used_at IS NULL")
        db.commit()
        print("expired", flush=True)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
