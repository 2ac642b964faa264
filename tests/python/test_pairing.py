"""Pairing end to end with real processes on loopback (docs/pairing-protocol.md):
`pocketkey-relay` + `pocketkey-bridge --udp` (the computer's virtual security key) +
`pocketkey pair` / `pocketkey listen --auto-approve` (the terminal as the phone).
python-fido2 registers and signs in through the bridge's UDP port, checked by its
Fido2Server; with the phone gone the bridge answers with CTAP2_ERR_USER_ACTION_TIMEOUT after
its timeout instead of hanging."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from fido2.ctap import CtapError
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from pk_helpers import client
from pocketkey_udp import REPO_ROOT, free_udp_port, open_udp_device

PHONE_TIMEOUT = 3


def target_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    return (Path(target) if target else REPO_ROOT / "target") / "debug"


@pytest.fixture(scope="module")
def binaries():
    subprocess.run(
        ["cargo", "build", "-q", "-p", "pocketkey", "-p", "pocketkey-bridge", "-p", "pocketkey-relay"],
        cwd=REPO_ROOT,
        check=True,
    )
    d = target_dir()
    return {n: str(d / n) for n in ("pocketkey", "pocketkey-bridge", "pocketkey-relay")}


class Procs:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args, stderr=subprocess.DEVNULL) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen):
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                self.stop(p)


def read_line(p: subprocess.Popen, prefix: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            raise AssertionError(f"process ended before printing {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError(f"no {prefix!r} line")


@pytest.fixture
def setup(binaries):
    procs = Procs()
    with tempfile.TemporaryDirectory() as bridge_dir, tempfile.TemporaryDirectory() as phone_dir:
        relay = procs.start([
            binaries["pocketkey-relay"], "--listen", "127.0.0.1:0",
            "--webhook-allow", "http://127.0.0.1:",
        ])
        relay_addr = read_line(relay, "listening on ")
        port = free_udp_port()
        bridge = procs.start([
            binaries["pocketkey-bridge"], "--udp", f"127.0.0.1:{port}",
            "--relay", f"ws://{relay_addr}", "--state-dir", bridge_dir,
            "--name", "Test laptop", "--phone-timeout", str(PHONE_TIMEOUT),
        ])
        url = read_line(bridge, "pair: ")
        yield {
            "binaries": binaries, "procs": procs, "url": url, "phone_dir": phone_dir,
            "addr": ("127.0.0.1", port), "bridge": bridge,
        }
        procs.close()


def pair(s) -> None:
    out = subprocess.run(
        [s["binaries"]["pocketkey"], "pair", s["url"], "--state-dir", s["phone_dir"]],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("paired: ")
    assert "Test laptop" in out.stdout


def listen(s) -> subprocess.Popen:
    return s["procs"].start([
        s["binaries"]["pocketkey"], "listen", "--auto-approve", "--state-dir", s["phone_dir"],
    ])


def wait_for_get_info(addr, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open_udp_device(addr)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_register_and_sign_in_through_the_bridge(setup):
    pair(setup)
    out = subprocess.run(
        [setup["binaries"]["pocketkey"], "pairings", "--state-dir", setup["phone_dir"]],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0 and out.stdout.startswith("Test laptop\t"), out

    listen(setup)
    dev = wait_for_get_info(setup["addr"])
    rp_id, origin = "pairing.example.org", "https://pairing.example.org"
    server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="Pairing RP"), attestation="none")
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="alice", display_name="Alice"),
        resident_key_requirement=ResidentKeyRequirement.REQUIRED,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    result = client(dev, origin).make_credential(options.public_key)
    auth_data = server.register_complete(state, result)
    assert auth_data.is_user_verified()

    options, state = server.authenticate_begin(
        [auth_data.credential_data], user_verification=UserVerificationRequirement.REQUIRED
    )
    selection = client(dev, origin).get_assertion(options.public_key)
    response = selection.get_response(0)
    server.authenticate_complete(state, [auth_data.credential_data], response)


def test_unreachable_phone_gets_ctap_timeout(setup):
    pair(setup)
    phone = listen(setup)
    dev = wait_for_get_info(setup["addr"])
    setup["procs"].stop(phone)  # the phone goes away: getInfo still from the cache
    rp_id, origin = "pairing.example.org", "https://pairing.example.org"
    server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="Pairing RP"), attestation="none")
    options, _ = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="bob", display_name="Bob"),
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        client(dev, origin).make_credential(options.public_key)
    elapsed = time.monotonic() - started
    cause = info.value
    while cause is not None and not isinstance(cause, CtapError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, CtapError), repr(info.value)
    assert cause.code == CtapError.ERR.USER_ACTION_TIMEOUT
    assert PHONE_TIMEOUT - 0.5 <= elapsed < PHONE_TIMEOUT + 10


def test_app_bindings_pair_listen_and_unpair(setup, tmp_path):
    """The app's API (uniffi, generated Python): SecurityKey.pair from the scanned code, listen,
    the approval prompt names the computer, pairings, unpair (the bridge then shows a new code)."""
    from bindings_support import MemoryKeyProvider, Phone, pk

    phone = Phone()
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    with pytest.raises(pk.PocketKeyError.InvalidPairingCode):
        key.pair("pocketkey://pair?v=2", "App phone", False)
    info = key.pair(setup["url"], "App phone", False)
    assert info.computer_name == "Test laptop"
    assert [p.id for p in key.pairings()] == [info.id]

    listener = key.listen("App phone")
    try:
        dev = wait_for_get_info(setup["addr"])
        rp_id, origin = "app.example.org", "https://app.example.org"
        server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="App RP"), attestation="none")
        options, state = server.register_begin(
            PublicKeyCredentialUserEntity(id=os.urandom(16), name="carol", display_name="Carol"),
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        result = client(dev, origin).make_credential(options.public_key)
        server.register_complete(state, result)
        assert phone.prompts and all(p.requester == "Test laptop" for p in phone.prompts)
    finally:
        listener.stop()
        phone.stop()

    assert key.unpair(info.id) is True
    assert key.pairings() == []
    assert read_line(setup["bridge"], "pair: ").startswith("pocketkey://pair?")


def test_keepalive_upneeded_and_cancel_reach_the_phone(setup, tmp_path):
    """While the phone's prompt is open the bridge says KEEPALIVE UPNEEDED; the browser's
    CTAPHID CANCEL goes to the phone, which closes the prompt and answers KEEPALIVE_CANCEL."""
    import threading

    from fido2.ctap2 import Ctap2

    from bindings_support import MemoryKeyProvider, Phone, pk

    phone = Phone(policy=lambda prompt: None)  # never answers
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    key.pair(setup["url"], "App phone", False)
    listener = key.listen("App phone")
    try:
        dev = wait_for_get_info(setup["addr"])
        ctap = Ctap2(dev)
        statuses: list[int] = []
        cancel = threading.Event()
        outcome: dict = {}

        def on_keepalive(status):
            statuses.append(status)
            if status == 2:
                cancel.set()

        def run():
            try:
                ctap.make_credential(
                    os.urandom(32), {"id": "cancel.example.org", "name": "x"},
                    {"id": os.urandom(8), "name": "d"}, [{"type": "public-key", "alg": -7}],
                    event=cancel, on_keepalive=on_keepalive,
                )
            except CtapError as e:
                outcome["error"] = e

        t = threading.Thread(target=run)
        t.start()
        t.join(30)
        assert not t.is_alive()
        assert 2 in statuses, statuses
        assert outcome["error"].code == CtapError.ERR.KEEPALIVE_CANCEL
        deadline = time.monotonic() + 5
        while not phone.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [reason for _, reason in phone.closed] == [pk.ApprovalClosed.CANCELLED]
    finally:
        listener.stop()
        phone.stop()


def test_phone_woken_through_the_webhook(setup, tmp_path):
    """`pocketkey listen --wake-url`: the phone registers a webhook as its push target, stays
    detached, is woken by the relay when the bridge needs it, serves, and detaches when idle;
    a second sign-in after it left wakes it again."""
    pair(setup)
    port = free_udp_port()  # a free TCP port too, in practice, on loopback
    wake_url = f"http://127.0.0.1:{port}/wake"
    log_path = tmp_path / "listen.log"
    log = open(log_path, "w")
    phone = setup["procs"].start([
        setup["binaries"]["pocketkey"], "listen", "--auto-approve", "--state-dir", setup["phone_dir"],
        "--wake-url", wake_url, "--idle", "1",
    ], stderr=log)
    time.sleep(1.0)  # registration with the relay
    assert phone.poll() is None
    dev = open_udp_device(setup["addr"])  # getInfo from the cache: no wake-up needed
    rp_id, origin = "wake.example.org", "https://wake.example.org"
    server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="Wake RP"), attestation="none")
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="dave", display_name="Dave"),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    result = client(dev, origin).make_credential(options.public_key)
    auth_data = server.register_complete(state, result)
    time.sleep(4.0)  # idle: the phone detaches; the relay allows one push per 3 s
    options, state = server.authenticate_begin(
        [auth_data.credential_data], user_verification=UserVerificationRequirement.REQUIRED
    )
    selection = client(dev, origin).get_assertion(options.public_key)
    server.authenticate_complete(state, [auth_data.credential_data], selection.get_response(0))
    log.flush()
    text = log_path.read_text()
    assert text.count("Test laptop: woken") == 2, text


def test_latency_connected_phone(setup, tmp_path):
    """Loopback latency with a connected phone (the app's runtime, in process): browser request
    at the bridge → approval prompt at the phone, and the phone's answer → response at the
    browser. Prints the medians (a measurement, not asserted: no timing thresholds in tests);
    asserts that every request reached the phone's prompt, in order, and came back."""
    import statistics

    from fido2.ctap2 import Ctap2

    from bindings_support import MemoryKeyProvider, Phone, pk

    marks: dict[str, list[float]] = {"prompt": [], "answer": []}

    def policy(prompt):
        marks["answer"].append(time.monotonic())
        return pk.ApprovalAnswer.APPROVE_VERIFIED(account=None)

    class TimedPhone(Phone):
        def on_approval_requested(self, request):
            marks["prompt"].append(time.monotonic())
            super().on_approval_requested(request)

    phone = TimedPhone(policy=policy)
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    key.pair(setup["url"], "App phone", False)
    listener = key.listen("App phone")
    try:
        ctap = Ctap2(wait_for_get_info(setup["addr"]))
        to_prompt, to_response = [], []
        for i in range(12):
            started = time.monotonic()
            ctap.make_credential(
                os.urandom(32), {"id": "latency.example.org", "name": "x"},
                {"id": os.urandom(8), "name": f"u{i}"}, [{"type": "public-key", "alg": -7}],
                options={"uv": True},
            )
            ended = time.monotonic()
            to_prompt.append(marks["prompt"][-1] - started)
            to_response.append(ended - marks["answer"][-1])
        # The first round includes the KK session set-up; report the steady state too.
        med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
        print(f"\nrequest→prompt median {med(to_prompt):.1f} ms (steady {med(to_prompt[1:]):.1f} ms); "
              f"answer→response median {med(to_response):.1f} ms")
        assert len(marks["prompt"]) == len(marks["answer"]) == 12, "one prompt per request"
        assert all(t > 0 for t in to_prompt + to_response), "prompt after request, response after answer"
    finally:
        listener.stop()
        phone.stop()
