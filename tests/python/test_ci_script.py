"""scripts/test.sh must not let CI pass with a step missing (issue 15).

The real script runs against a copy of itself in a scratch tree whose every step is a stub
(cargo, the C compiler, the libfido2 tools, the foreign-language and VM scripts, Python), so
these tests check the script's own bookkeeping — SKIPPED rows, the exit status, failing
before any build when CI is set — in well under a second, without building anything.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Each stub logs its name and arguments, one line per call, then succeeds.
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_LOG"
{extra}
exit 0
"""

# cargo: `fmt --version` fails when the test removes rustfmt; `metadata` prints no JSON, so
# the script falls back to <tree>/target.
CARGO_EXTRA = """case "$1 $2" in
    "fmt --version") [ -n "$NO_RUSTFMT" ] && exit 1 ;;
esac"""

STEP_SCRIPTS = [
    "scripts/build-bindings.sh",
    "tests/kotlin/run.sh",
    "tests/kotlin/run-app-logic.sh",
    "ios-shell/scripts/test-linux.sh",
    "tests/uhid/run.sh",
    "tests/uhid/browser/run.sh",
]

ALL_SKIPS = {
    "PK_SKIP_KOTLIN": "kotlin bindings test",
    "PK_SKIP_SWIFT": "swift test ios-shell/PocketKeyKit",
    "PK_SKIP_CARGO_TEST": "cargo test --workspace",
    "PK_SKIP_UHID_VM": "uhid in a VM (real kernel, libfido2 tools)",
    "PK_SKIP_BROWSER_VM": "a browser in a VM (headless Chromium, uhid key)",
    "PK_SKIP_PYTEST": "pytest tests/",
}


def _write_stub(path: Path, extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STUB.replace("{extra}", extra))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A scratch repository: the real scripts/test.sh and stubs for everything it calls."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "tests" / "python").mkdir(parents=True)
    (tmp_path / "tests" / "python" / "requirements.txt").write_text("")
    for script in STEP_SCRIPTS:
        _write_stub(tmp_path / script)
    bin_dir = tmp_path / "stub-bin"
    _write_stub(bin_dir / "cargo", CARGO_EXTRA)
    for tool in [
        "cc",
        "pkg-config",
        "fido2-token",
        "fido2-cred",
        "fido2-assert",
        "dbus-run-session",
        "gnome-keyring-daemon",
        "initdb",
        "qemu-system-x86_64",
        "mmdebstrap",
        "mke2fs",
        "redis-server",
        "python-stub",
    ]:
        _write_stub(bin_dir / tool)
    return tmp_path


def run(tree: Path, **env: str) -> tuple[int, str, list[str]]:
    log = tree / "calls.log"
    log.write_text("")
    full_env = {
        "PATH": f"{tree / 'stub-bin'}:{os.environ['PATH']}",
        "HOME": str(tree),
        "STUB_LOG": str(log),
        "PYTHON": "python-stub",
        "PK_NO_INSTALL": "1",
        "NO_RUSTFMT": "",
        **env,
    }
    if "CI" not in env:
        full_env.pop("CI", None)
    proc = subprocess.run(
        ["bash", str(tree / "scripts" / "test.sh")],
        cwd=tree,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, log.read_text().splitlines()


# Rows besides ALL_SKIPS' that a skip can print (PK_SKIP_KOTLIN skips two steps).
EXTRA_ROWS = ["cargo fmt --check", "swift test: fresh bindings", "kotlin android app-logic test"]


def summary_rows(output: str) -> dict[str, str]:
    """Step name → result, from the summary's rows."""
    summary = output.split("==> Summary", 1)[1]
    rows = {}
    for line in summary.splitlines():
        line = line.strip()
        for name in [*ALL_SKIPS.values(), *EXTRA_ROWS]:
            if line.startswith(name + " "):
                rows[name] = line[len(name) :].strip()
    return rows


def test_a_full_stub_run_passes_with_no_skipped_row(tree: Path) -> None:
    rc, out, calls = run(tree)
    assert rc == 0, out
    assert "ALL PASSED" in out
    assert "SKIPPED" not in out
    assert "cargo test --workspace --no-fail-fast" in calls


def test_each_skip_prints_a_skipped_row_and_the_run_says_it_is_partial(tree: Path) -> None:
    rc, out, calls = run(tree, **{var: "1" for var in ALL_SKIPS})
    rows = summary_rows(out)
    for var, step in ALL_SKIPS.items():
        assert rows.get(step, "").startswith(f"SKIPPED ({var}=1)"), (step, out)
    assert rc == 0, out
    assert "ALL PASSED" not in out
    assert rows.get("kotlin android app-logic test", "").startswith("SKIPPED (PK_SKIP_KOTLIN=1)")
    assert "7 step(s) SKIPPED" in out
    assert not any(c.startswith("cargo test") for c in calls)
    assert not any(c.startswith("run.sh") or c.startswith("test-linux.sh") for c in calls)


def test_missing_rustfmt_is_a_skipped_row(tree: Path) -> None:
    rc, out, _ = run(tree, NO_RUSTFMT="1")
    assert summary_rows(out)["cargo fmt --check"].startswith("SKIPPED (rustfmt not installed)")
    assert "ALL PASSED" not in out
    assert rc == 0, out


@pytest.mark.parametrize("var", [*ALL_SKIPS, "PK_IOS_SKIP_BINDINGS", "NO_RUSTFMT"])
def test_ci_with_any_skip_fails_before_building(tree: Path, var: str) -> None:
    rc, out, calls = run(tree, CI="true", **{var: "1"})
    assert rc == 1, out
    assert "SKIPPED" in out
    assert "a CI run must run every step" in out
    # Nothing was built or tested: only the look-ups before the first step ran.
    assert [c for c in calls if not c.startswith(("cargo metadata", "cargo fmt --version"))] == []


def test_ci_without_skips_runs_every_step(tree: Path) -> None:
    rc, out, calls = run(tree, CI="true")
    assert rc == 0, out
    assert "ALL PASSED" in out
    assert "cargo test --workspace --no-fail-fast" in calls


def test_kotlin_test_stops_when_its_toolchain_script_fails(tmp_path: Path) -> None:
    """tests/kotlin/run.sh with kotlin.sh failing (nothing installed, installing forbidden)
    and a stale KOTLINC in the environment: it must stop there, not build and compile on."""
    bin_dir = tmp_path / "stub-bin"
    _write_stub(bin_dir / "cargo")
    _write_stub(bin_dir / "stale-kotlinc")
    log = tmp_path / "calls.log"
    log.write_text("")
    proc = subprocess.run(
        ["bash", str(ROOT / "tests" / "kotlin" / "run.sh")],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "STUB_LOG": str(log),
            "PK_NO_INSTALL": "1",
            "PK_KOTLIN_DIR": str(tmp_path / "no-kotlin-here"),
            "KOTLINC": str(bin_dir / "stale-kotlinc"),
            "KOTLIN_STDLIB_JAR": "/nonexistent/stdlib.jar",
            "KOTLIN_COROUTINES_JAR": "/nonexistent/coroutines.jar",
            "JNA_JAR": "/nonexistent/jna.jar",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert log.read_text() == "", "run.sh went on past the failed toolchain script"
    assert proc.returncode == 1, proc.stdout
    assert "scripts/toolchains/kotlin.sh failed" in proc.stdout


def _ios_tree(tmp_path: Path, xctest_line: str) -> Path:
    """ios-shell/scripts/test-linux.sh in a scratch tree whose chroot, bindings and
    `swift test` are stubs; the stubbed `swift test` prints `xctest_line` and succeeds."""
    shutil.copytree(
        ROOT / "ios-shell" / "scripts",
        tmp_path / "ios-shell" / "scripts",
        ignore=shutil.ignore_patterns("prepare-linux.sh"),
    )
    lib = tmp_path / "target" / "ios-shell" / "lib"
    lib.mkdir(parents=True)
    chroot = tmp_path / "chroot"
    (chroot / "usr" / "include" / "openssl").mkdir(parents=True)
    (chroot / "usr" / "include" / "openssl" / "evp.h").write_text("")
    # The end-to-end tests' needs, present: python3 + cryptography in the chroot, the relay
    # and bridge (a stubbed cargo), python-fido2 as pinned (this interpreter's).
    _write_stub(chroot / "usr" / "bin" / "python3")
    (chroot / "usr" / "lib" / "python3" / "dist-packages" / "cryptography").mkdir(parents=True)
    _write_stub(tmp_path / "stub-bin" / "cargo")
    (tmp_path / "tests" / "python").mkdir(parents=True)
    shutil.copy2(ROOT / "tests" / "python" / "requirements.txt", tmp_path / "tests" / "python")
    pkg = tmp_path / "ios-shell" / "PocketKeyKit" / "Sources"
    for f in ["PocketKeyCore/PocketKeyCore.swift", "PocketKeyCoreFFI/PocketKeyCoreFFI.h"]:
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_text("")
    _write_stub(
        tmp_path / "ios-shell" / "scripts" / "prepare-linux.sh",
        f"echo \"export POCKETKEY_FFI_LIB_DIR='{lib}'\"",
    )
    _write_stub(
        tmp_path / "scripts" / "toolchains" / "swift.sh",
        f"echo \"export SWIFT_CHROOT='{chroot}'\"",
    )
    _write_stub(tmp_path / "scripts" / "toolchains" / "swift-run.sh", f"echo '{xctest_line}'")
    return tmp_path


@pytest.mark.parametrize(
    ("xctest_line", "expected_rc"),
    [
        ("Test Suite 'All tests' passed. Executed 42 tests, with 0 failures (0 unexpected)", 0),
        ("Test Suite 'All tests' passed. Executed 0 tests, with 0 failures (0 unexpected)", 1),
        ("Build complete!", 1),
    ],
)
def test_swift_step_fails_when_xctest_ran_no_test(
    tmp_path: Path, xctest_line: str, expected_rc: int
) -> None:
    tree = _ios_tree(tmp_path, xctest_line)
    log = tmp_path / "calls.log"
    log.write_text("")
    proc = subprocess.run(
        ["bash", str(tree / "ios-shell" / "scripts" / "test-linux.sh")],
        env={
            "PATH": f"{tree / 'stub-bin'}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "STUB_LOG": str(log),
            "PYTHON": sys.executable,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert "swift-run.sh" in log.read_text(), proc.stdout  # the stubbed `swift test` ran
    assert proc.returncode == expected_rc, proc.stdout


def apt_mirror(apt_dir: Path, codename: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "toolchains" / "apt-mirror.sh"), str(apt_dir), codename],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=30,
    )


def test_swift_chroot_mirror_comes_from_the_hosts_deb822_sources(tmp_path: Path) -> None:
    d = tmp_path / "sources.list.d"
    d.mkdir(parents=True)
    (d / "a-nodesource.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.example/node_20.x\nSuites: nodistro\n"
        "Components: main\n"
    )
    (d / "debian.sources").write_text(
        "# a comment\n"
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n"
        "\n"
        "Types: deb-src deb\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
        "\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    out = apt_mirror(tmp_path, "bookworm")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "MIRROR=http://mirror.example/debian",
        "SECURITY_MIRROR=http://mirror.example/debian-security",
    ]


def test_swift_chroot_mirror_comes_from_the_hosts_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://local.example/debian bookworm main\n"
    )
    out = apt_mirror(tmp_path, "bookworm")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["MIRROR=http://local.example/debian", "SECURITY_MIRROR="]
    # No entry for the release: an error that says so, not a guessed host.
    out = apt_mirror(tmp_path, "trixie")
    assert out.returncode == 1
    assert "no enabled deb entry for suite trixie" in out.stderr
