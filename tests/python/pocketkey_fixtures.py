"""pytest fixtures that run a real `pocketkey serve --udp` process.

Nothing is built here: scripts/test.sh builds first. The binary is
`$POCKETKEY_BIN`, else `$CARGO_TARGET_DIR/debug/pocketkey`, else `target/debug/pocketkey`.
"""

from __future__ import annotations

import pytest

from pocketkey_udp import Authenticator

_STASH_KEY = pytest.StashKey[list]()


def _start(tmp_path_factory, request, name: str, **kw) -> Authenticator:
    base = tmp_path_factory.mktemp(name)
    # Tests (or modules) marked power_cycle get a key that honours the power-cycle datagram.
    if request.node.get_closest_marker("power_cycle") is not None:
        kw.setdefault("allow_power_cycle", True)
    auth = Authenticator(state_dir=base / "state", **kw)
    auth.start()
    return auth


def _finish(auth: Authenticator, request, failed: bool) -> None:
    """Stop the process. A failing test already carries the stderr written during it (see
    pytest_runtest_makereport); a process that died on its own is an error of its own."""
    rc_before = auth.proc.poll() if auth.proc is not None else None
    auth.stop()
    if failed or rc_before is not None:
        # Shown by pytest in the "Captured stdout teardown" section.
        print(f"---- pocketkey stderr ({auth.log_path}) ----")
        if rc_before is not None:
            print(f"(process had exited on its own with status {rc_before})")
        print(auth.read_log())
    if rc_before is not None:
        raise AssertionError(f"pocketkey exited on its own with status {rc_before} (log above)")


def _track(request, auth: Authenticator) -> None:
    """Remember which authenticators a test touched, and where their logs stood."""
    lst = request.node.stash.setdefault(_STASH_KEY, [])
    lst.append((auth, auth.log_size()))


@pytest.fixture(scope="module")
def authenticator(tmp_path_factory, request):
    """One authenticator (fresh state dir) shared by all tests of a module."""
    auth = _start(tmp_path_factory, request, "module-key")
    yield auth
    _finish(auth, request, False)


@pytest.fixture
def fresh_authenticator(tmp_path_factory, request):
    """A brand-new authenticator for this test alone (for Reset, PIN lockout, …)."""
    auth = _start(tmp_path_factory, request, "fresh-key")
    _track(request, auth)
    yield auth
    # The failing test's report already has this key's whole stderr (it started with it).
    _finish(auth, request, False)


@pytest.fixture
def manual_authenticator(tmp_path_factory, request):
    """A new authenticator without --auto-approve: the test answers its prompts."""
    auth = _start(tmp_path_factory, request, "manual-key", auto_approve=False)
    _track(request, auth)
    yield auth
    _finish(auth, request, False)


@pytest.fixture
def pk(authenticator, request):
    """The module's authenticator, checked to still be alive at the start of each test."""
    assert authenticator.alive(), (
        "pocketkey process died during an earlier test:\n" + authenticator.read_log()
    )
    _track(request, authenticator)
    yield authenticator
    for d in list(authenticator.devices):
        d.close()
    authenticator.devices.clear()


@pytest.fixture
def device(pk):
    return pk.device()


@pytest.fixture
def ctap2(pk):
    return pk.ctap2()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed and rep.when in ("setup", "call"):
        for auth, mark in item.stash.get(_STASH_KEY, []):
            text = auth.read_log(mark)
            status = "running" if auth.alive() else "NOT RUNNING"
            rep.sections.append(
                (f"pocketkey stderr during this test [{auth.udp_path}, {status}]", text or "(empty)")
            )
