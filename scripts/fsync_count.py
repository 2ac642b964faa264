#!/usr/bin/env python3
"""Counts the fsync/fdatasync calls of `pocketkey serve --udp` per CTAP operation.

Runs the binary under `strace -f -e trace=fsync,fdatasync`, drives it with python-fido2 over
UDP (tests/python/pocketkey_udp.py), and prints, for each kind of request, the syncs per
request averaged over N requests made after a warm-up (the first commit into a new WAL costs
more; see docs/benchmarks.md). A request's syncs are finished before its response is sent
(the engine commits first), so the count read after a response includes them.

    cargo build -p pocketkey
    python3 scripts/fsync_count.py target/debug/pocketkey [N]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))

from fido2.ctap2 import Ctap2  # noqa: E402

from pk_helpers import cred_id, get_assertion, make_cred, user  # noqa: E402
from pocketkey_udp import free_udp_port, open_udp_device, raw_init  # noqa: E402


def syncs(log: Path) -> int:
    text = log.read_text() if log.exists() else ""
    return sum(1 for line in text.splitlines() if "fsync(" in line or "fdatasync(" in line)


def main() -> None:
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with tempfile.TemporaryDirectory() as tmp:
        state, log = Path(tmp) / "state", Path(tmp) / "strace.log"
        state.mkdir(mode=0o700)
        port = free_udp_port()
        proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(log),
             binary, "serve", "--udp", f"127.0.0.1:{port}", "--state-dir", str(state),
             "--auto-approve"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while raw_init(("127.0.0.1", port)) is None:
                if proc.poll() is not None:
                    sys.exit("pocketkey exited before answering CTAPHID_INIT")
            ctap = Ctap2(open_udp_device(("127.0.0.1", port)))
            # Warm-up: the store's first commits (a new WAL) and one credential of each kind.
            make_cred(ctap, "one.example", rk=True, options={"uv": True},
                      user_entity=user("one", b"o" * 16))
            nrk_resp, _, _ = make_cred(ctap, "nrk.example")
            get_assertion(ctap, "nrk.example", allow=[cred_id(nrk_resp)])
            get_assertion(ctap, "one.example", options={"uv": True})

            def per_request(what: str, op) -> None:
                before = syncs(log)
                for i in range(n):
                    op(i)
                print(f"{what}: {(syncs(log) - before) / n:.2f} syncs per request ({n} requests)")

            per_request("makeCredential rk (discoverable)", lambda i: make_cred(
                ctap, "rk.example", rk=True, options={"uv": True},
                user_entity=user(f"u{i}", i.to_bytes(16, "big"))))
            per_request("makeCredential non-discoverable", lambda i: make_cred(ctap, "nrk.example"))
            per_request("getAssertion discoverable", lambda i: get_assertion(
                ctap, "one.example", options={"uv": True}))
            per_request("getAssertion allowList", lambda i: get_assertion(
                ctap, "nrk.example", allow=[cred_id(nrk_resp)]))
        finally:
            # strace and pocketkey share the new session's process group.
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)


if __name__ == "__main__":
    main()
