"""The test harness itself: `Authenticator.start()` (pocketkey_udp.py) tries another port only
when `serve` could not bind its port, and never hides a key that fails to start.

Each test starts the real `pocketkey serve --udp` through a wrapper that fails its first run in
a chosen way and then runs the real binary.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pocketkey_udp import Authenticator, AuthenticatorError, default_binary

FIRST_RUN_FAILS = """#!/bin/sh
runs="{runs}"
echo run >> "$runs"
if [ "$(wc -l < "$runs")" -eq 1 ]; then
    echo "{message}" >&2
    exit 1
fi
exec "{real}" "$@"
"""


def wrapper(tmp_path: Path, message: str) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    script = tmp_path / "pocketkey-wrapper"
    script.write_text(
        FIRST_RUN_FAILS.format(runs=runs, message=message, real=default_binary())
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, runs


def test_a_port_taken_in_between_is_retried_on_another_port(tmp_path: Path) -> None:
    # The message `serve` prints for a taken port (desktop/src/udp.rs, UdpTransport::bind).
    binary, runs = wrapper(
        tmp_path,
        "pocketkey: cannot listen on UDP 127.0.0.1:1: the address is in use "
        "(is another key running?)",
    )
    key = Authenticator(state_dir=tmp_path / "state", binary=binary)
    try:
        key.start()
        assert key.proc is not None and key.proc.poll() is None
    finally:
        key.stop()
    assert runs.read_text().count("run") == 2


def test_a_key_that_fails_to_start_is_not_retried(tmp_path: Path) -> None:
    binary, runs = wrapper(tmp_path, "pocketkey: cannot open the store: simulated crash")
    key = Authenticator(state_dir=tmp_path / "state", binary=binary)
    with pytest.raises(AuthenticatorError, match="simulated crash"):
        key.start()
    key.stop()
    assert runs.read_text().count("run") == 1
