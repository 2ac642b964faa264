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
import threading
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
from pocketkey_udp import REPO_ROOT, free_udp_port, open_answering_get_info, open_udp_device

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

    def start(self, args, stderr=subprocess.DEVNULL, stdin=None) -> subprocess.Popen:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, stdin=stdin, text=True)
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


class StderrLines:
    """The lines a process writes on its stderr (a pipe), read on a thread of their own, so
    that a test waits for the line that reports an event instead of sleeping."""

    def __init__(self, p: subprocess.Popen):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(p,), daemon=True).start()

    def _read(self, p: subprocess.Popen) -> None:
        for line in p.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, done, timeout: float = 30.0) -> None:
        """Until `done(lines)`; the timeout only bounds a hang."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.lines), timeout):
                raise AssertionError("no such line on stderr:\n" + "".join(self.lines))


# The loopback port of the phones' wake-up webhooks (`pocketkey listen --wake-url`): the
# relay admits webhooks at this address and port only.
WAKE_PORT = free_udp_port()  # a free TCP port too, in practice, on loopback
WAKE_URL = f"http://127.0.0.1:{WAKE_PORT}/wake"


def start_bridge(binaries, procs, relay_addr, bridge_dir, port, ask=False, extra=(),
                 **bridge_options):
    """A bridge "Test laptop" on UDP `port`. It answers its own questions (--auto-confirm)
    unless `ask`: then its user is the test, answering on its stdin (a pipe)."""
    args = [
        binaries["pocketkey-bridge"], "--key-file", "--udp", f"127.0.0.1:{port}",
        "--relay", f"ws://{relay_addr}", "--state-dir", bridge_dir,
        "--name", "Test laptop", "--phone-timeout", str(PHONE_TIMEOUT), "--print-url", *extra,
    ]
    if ask:
        bridge_options["stdin"] = subprocess.PIPE
    else:
        args.append("--auto-confirm")
    return procs.start(args, **bridge_options)


def start_relay_and_bridge(binaries, procs, bridge_dir, ask=False, **bridge_options):
    """A relay (webhooks to WAKE_URL allowed) and a bridge "Test laptop" on a free UDP port,
    waiting to pair: (relay, bridge, port, pairing URL)."""
    relay = procs.start([
        binaries["pocketkey-relay"], "--listen", "127.0.0.1:0",
        "--webhook-allow", WAKE_URL,
    ])
    relay_addr = read_line(relay, "listening on ")
    port = free_udp_port()
    bridge = start_bridge(binaries, procs, relay_addr, bridge_dir, port, ask=ask, **bridge_options)
    relay.addr = relay_addr
    return relay, bridge, port, read_line(bridge, "pair: ")


@pytest.fixture
def setup(binaries):
    procs = Procs()
    with tempfile.TemporaryDirectory() as bridge_dir, tempfile.TemporaryDirectory() as phone_dir:
        relay, bridge, port, url = start_relay_and_bridge(binaries, procs, bridge_dir)
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
    code, paired = out.stdout.splitlines()
    assert code.startswith("code: ") and len(code) == len("code: 123456"), code
    assert paired.startswith("paired: ") and "Test laptop" in paired, paired


def listen(s) -> subprocess.Popen:
    return s["procs"].start([
        s["binaries"]["pocketkey"], "listen", "--auto-approve", "--state-dir", s["phone_dir"],
    ])


def test_register_and_sign_in_through_the_bridge(setup):
    pair(setup)
    out = subprocess.run(
        [setup["binaries"]["pocketkey"], "pairings", "--state-dir", setup["phone_dir"]],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0 and out.stdout.startswith("Test laptop\t"), out

    listen(setup)
    dev = open_answering_get_info(setup["addr"], 10.0)
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
    dev = open_answering_get_info(setup["addr"], 10.0)
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


# ---- the computer's user confirms a first contact (issue 17 item 2) ---------------------------

@pytest.fixture
def asking(binaries):
    """Relay + bridge as `setup`, but the bridge asks its user (no --auto-confirm): the test
    answers on the bridge's stdin."""
    procs = Procs()
    with tempfile.TemporaryDirectory() as bridge_dir, tempfile.TemporaryDirectory() as phone_dir:
        relay, bridge, port, url = start_relay_and_bridge(binaries, procs, bridge_dir, ask=True)
        yield {
            "binaries": binaries, "procs": procs, "url": url, "phone_dir": phone_dir,
            "bridge_dir": bridge_dir, "addr": ("127.0.0.1", port), "bridge": bridge,
            "relay": relay, "port": port,
        }
        procs.close()


def pair_asking(s, url: str, phone_dir: str, name: str, answer: str) -> subprocess.Popen:
    """`pocketkey pair` as phone `name`: its `code:` line must be the code the bridge asks
    about; the test answers the bridge's question with `answer`. Returns the phone's process
    (still running: it ends once the bridge answered it)."""
    phone = subprocess.Popen(
        [s["binaries"]["pocketkey"], "pair", url, "--state-dir", phone_dir, "--phone-name", name],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    code = read_line(phone, "code: ")
    assert len(code) == 6 and code.isdigit(), code
    asked = read_line(s["bridge"], "Phone ")
    assert asked == f'"{name}" wants to pair. Code on the phone: {code}', asked
    answer_bridge(s, answer)
    return phone


def answer_bridge(s, answer: str) -> None:
    s["bridge"].stdin.write(answer + "\n")
    s["bridge"].stdin.flush()


def phone_pairings(s, phone_dir: str) -> list[str]:
    out = subprocess.run(
        [s["binaries"]["pocketkey"], "pairings", "--state-dir", phone_dir],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def bridge_phones(s) -> list[str]:
    """The phones the (stopped) bridge has paired, by name."""
    out = subprocess.run(
        [s["binaries"]["pocketkey-bridge"], "--key-file", "--list", "--state-dir", s["bridge_dir"]],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return [line.split("\t")[0] for line in out.stdout.splitlines()]


def test_yes_on_the_computer_pairs_both_sides(asking):
    phone = pair_asking(asking, asking["url"], asking["phone_dir"], "Pixel", "y")
    out, err = phone.communicate(timeout=60)
    assert phone.returncode == 0, err
    assert out.startswith("paired: ") and "Test laptop" in out, out
    assert [p.split("\t")[0] for p in phone_pairings(asking, asking["phone_dir"])] == ["Test laptop"]
    open_answering_get_info(asking["addr"], 10.0).close()  # the bridge serves the phone's getInfo
    asking["procs"].stop(asking["bridge"])
    assert bridge_phones(asking) == ["Pixel"]


def test_no_on_the_computer_pairs_neither_side(asking):
    phone = pair_asking(asking, asking["url"], asking["phone_dir"], "Pixel", "n")
    out, err = phone.communicate(timeout=60)
    assert phone.returncode != 0, out
    assert "refused the pairing: it was not confirmed there" in err, err
    assert "paired:" not in out
    assert phone_pairings(asking, asking["phone_dir"]) == []
    # The bridge goes on with a new code and has stored nothing.
    read_line(asking["bridge"], "pair: ")
    asking["procs"].stop(asking["bridge"])
    assert bridge_phones(asking) == []


def test_a_second_phone_is_served_only_when_the_user_says_so(asking, tmp_path):
    """`--pair-another`: phone B pairs (confirmed), but the user answers no to serving it:
    the bridge keeps serving phone A — a request reaches A (listening) while B is silent."""
    s = asking
    phone_a, phone_b = s["phone_dir"], str(tmp_path / "phone-b")
    first = pair_asking(s, s["url"], phone_a, "Phone A", "y")
    assert first.wait(60) == 0
    s["procs"].stop(s["bridge"])
    bridge = start_bridge(s["binaries"], s["procs"], s["relay"].addr, s["bridge_dir"], s["port"],
                          ask=True, extra=("--pair-another",))
    s["bridge"] = bridge
    url = read_line(bridge, "pair: ")
    second = pair_asking(s, url, phone_b, "Phone B", "y")
    assert second.wait(60) == 0, second.stderr.read()
    asked = read_line(bridge, "Paired with ")
    assert asked == '"Phone B". This computer serves "Phone A".', asked
    answer_bridge(s, "n")

    s["procs"].start([
        s["binaries"]["pocketkey"], "listen", "--auto-approve", "--state-dir", phone_a,
    ])
    dev = open_answering_get_info(s["addr"], 10.0)
    rp_id, origin = "pairing.example.org", "https://pairing.example.org"
    server = Fido2Server(PublicKeyCredentialRpEntity(id=rp_id, name="Pairing RP"), attestation="none")
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="dora", display_name="Dora"),
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    result = client(dev, origin).make_credential(options.public_key)
    server.register_complete(state, result)
    dev.close()
    s["procs"].stop(bridge)
    phones = bridge_phones(s)
    assert phones == ["Phone A", "Phone B"], phones  # the served one first

    # A restart does not switch either: the bridge serves the phone it served last (A), not
    # the newest pairing.
    bridge = start_bridge(s["binaries"], s["procs"], s["relay"].addr, s["bridge_dir"], s["port"],
                          ask=True)
    s["bridge"] = bridge
    dev = open_answering_get_info(s["addr"], 10.0)
    options, state = server.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name="erin", display_name="Erin"),
        user_verification=UserVerificationRequirement.DISCOURAGED,
    )
    result = client(dev, origin).make_credential(options.public_key)
    server.register_complete(state, result)


def test_app_bindings_pair_listen_and_unpair(setup, tmp_path):
    """The app's API (uniffi, generated Python): SecurityKey.pair from the scanned code, listen,
    the approval prompt names the computer, pairings, unpair (the bridge then shows a new code)."""
    from bindings_support import MemoryKeyProvider, Phone, ShownCode, pk

    phone = Phone()
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    shown = ShownCode()
    with pytest.raises(pk.PocketKeyError.InvalidPairingCode):
        key.pair("pocketkey://pair?v=2", "App phone", False, shown)
    assert shown.codes == []
    info = key.pair(setup["url"], "App phone", False, shown)
    assert info.computer_name == "Test laptop"
    assert len(shown.codes) == 1 and len(shown.codes[0]) == 6 and shown.codes[0].isdigit()
    assert [p.id for p in key.pairings()] == [info.id]

    listener = key.listen("App phone")
    try:
        dev = open_answering_get_info(setup["addr"], 10.0)
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

    from bindings_support import MemoryKeyProvider, Phone, ShownCode, pk

    phone = Phone(policy=lambda prompt: None)  # never answers
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    key.pair(setup["url"], "App phone", False, ShownCode())
    listener = key.listen("App phone")
    try:
        dev = open_answering_get_info(setup["addr"], 10.0)
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


def test_phone_woken_through_the_webhook(setup):
    """`pocketkey listen --wake-url`: the phone registers a webhook as its push target, stays
    detached, is woken by the relay when the bridge needs it, serves, and detaches when idle;
    a second sign-in after it left wakes it again."""
    pair(setup)
    wake_url = WAKE_URL
    phone = setup["procs"].start([
        setup["binaries"]["pocketkey"], "listen", "--auto-approve", "--state-dir", setup["phone_dir"],
        "--wake-url", wake_url, "--idle", "1",
    ], stderr=subprocess.PIPE)
    log = StderrLines(phone)
    # `listen` says so once the relay has acknowledged the webhook as the push target (and
    # the webhook's port is bound): only then can the bridge's WAKE reach it.
    log.wait_for(lambda lines: f"Test laptop: wake-ups go to {wake_url}\n" in lines)
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
    # "woken" comes before the request it serves, so both are written by now; wait only for
    # the reader thread to have them.
    log.wait_for(lambda lines: lines.count("Test laptop: woken\n") >= 2)
    assert log.lines.count("Test laptop: woken\n") == 2, "".join(log.lines)


def test_a_burst_of_requests_is_paced_not_dropped(setup):
    """70 requests back to back (a browser enumerating many credentials does this): the phone
    sends two frames per request (Pending, response), more than the relay lets through at once
    (50 frames/s after a burst of 100; a dropped frame ends the session). The phone and the
    bridge keep under it, so every request is answered."""
    from fido2.ctap2 import Ctap2

    pair(setup)
    listen(setup)
    ctap = Ctap2(open_answering_get_info(setup["addr"], 10.0))
    for i in range(70):
        ctap.make_credential(
            os.urandom(32), {"id": "burst.example.org", "name": "x"},
            {"id": os.urandom(8), "name": f"u{i}"}, [{"type": "public-key", "alg": -7}],
        )


# ---- Latency (docs/latency.md) ------------------------------------------------------------
#
# With POCKETKEY_TRACE=1 the bridge and the phone runtime write `pk-trace <unix µs> <hop>` on
# stderr at each hop (hop names only). The tests line those up with their own marks (request
# sent, prompt shown, answer given, response received; all on the same wall clock), print the
# medians of each segment and the CPU time the relay, the bridge and the phone used per round,
# and assert only that every round passed every hop in order: no timing thresholds.

TRACE_PREFIX = "pk-trace "

# A path is a list of hops: Python marks ("start", "prompt", "answer", "end") or trace hops.
# Each trace hop is the first one at or after the hop before it, except those marked "last":
# the last one before the hop after it (the frame that carried the request or response, not a
# Pending or handshake frame that came before it).
CONNECTED_REQUEST = ["start", "bridge.request", "bridge.send", ("phone.rx", "last"),
                     "phone.request", "phone.engine.start", "prompt"]
# The bridge sends the request right behind HS2 and its Hello, before the phone's Hello.
WOKEN_REQUEST = ["start", "bridge.request", "bridge.wake", "phone.woken", "phone.attached",
                 "phone.peer", "bridge.rx", "bridge.send", ("phone.rx", "last"),
                 "phone.request", "phone.engine.start", "prompt"]
RESPONSE = ["answer", "phone.engine.end", "phone.send", ("bridge.rx", "last"),
            "bridge.response", "bridge.reply", "end"]

SEGMENTS = {
    ("start", "bridge.request"): "client → bridge: python-fido2, CTAPHID over UDP, bridge transport",
    ("bridge.request", "bridge.send"): "bridge: to the link thread, session, Noise encrypt",
    ("bridge.send", "phone.rx"): "websocket write, relay routing (loopback TCP in and out), phone reader",
    ("phone.rx", "phone.request"): "phone: Noise decrypt, message CBOR",
    ("phone.request", "phone.engine.start"): "phone: hand the request to an engine thread",
    ("phone.engine.start", "prompt"): "phone: engine up to the approval prompt (+ UI callback)",
    ("bridge.request", "bridge.wake"): "bridge: to the link thread, WAKE",
    ("bridge.wake", "phone.woken"): "push: WAKE to the relay, webhook POST, listen's accept loop",
    ("phone.woken", "phone.attached"): "attach: TCP connect, websocket upgrade, attach check",
    ("phone.attached", "phone.peer"): "relay: PEER present to the phone",
    ("phone.peer", "bridge.rx"): "phone: KK HS1 out (P-256), relay → bridge",
    ("bridge.rx", "bridge.send"): "bridge: HS1 in (P-256), HS2 + Hello + request encrypted",
    ("answer", "phone.engine.end"): "phone: engine after the approval (signature, store)",
    ("phone.engine.end", "phone.send"): "phone: loop woken, Noise encrypt",
    ("phone.send", "bridge.rx"): "websocket write, relay routing (loopback TCP in and out), bridge reader",
    ("bridge.rx", "bridge.response"): "bridge: Noise decrypt, message CBOR",
    ("bridge.response", "bridge.reply"): "bridge: response to the transport thread",
    ("bridge.reply", "end"): "bridge → client: CTAPHID over UDP, python-fido2",
}


def trace_events(text: str) -> list[tuple[float, str]]:
    events = []
    for line in text.splitlines():
        if line.startswith(TRACE_PREFIX):
            fields = line.split()
            if len(fields) == 3 and fields[1].isdigit():
                events.append((int(fields[1]) / 1e6, fields[2]))
    return sorted(events)


def follow(events, marks: dict, path) -> list[float]:
    """The time of each hop of `path` in one round (see CONNECTED_REQUEST); AssertionError if a
    hop is missing or out of order, with the round's hops in the message."""
    try:
        return follow_hops(events, marks, path)
    except AssertionError as e:
        seen = sorted([(t, h) for t, h in events if marks["start"] <= t <= marks["end"]]
                      + [(t, h) for h, t in marks.items()])
        base = marks["start"]
        raise AssertionError(f"{e}; this round: " + ", ".join(
            f"{h} +{(t - base) * 1000:.3f} ms" for t, h in seen)) from None


def follow_hops(events, marks: dict, path) -> list[float]:
    slack = 2e-6  # trace stamps are whole microseconds
    hops = [(h, "first") if isinstance(h, str) else h for h in path]
    times: list[float | None] = [None] * len(hops)
    prev = None
    i = 0
    while i < len(hops):
        name, rule = hops[i]
        if rule == "last":
            # Resolve the next hop first, then take the last occurrence in between.
            nxt_name, _ = hops[i + 1]
            nxt = marks[nxt_name] if nxt_name in marks else next(
                (t for t, h in events if h == nxt_name and t >= prev - slack), None)
            assert nxt is not None, f"no {nxt_name} after {hops[i - 1][0]}"
            here = [t for t, h in events if h == name and prev - slack <= t <= nxt + slack]
            assert here, f"no {name} between {hops[i - 1][0]} and {nxt_name}"
            times[i], times[i + 1] = here[-1], nxt
            prev = nxt
            i += 2
            continue
        if name in marks:
            t = marks[name]
        else:
            t = next((t for t, h in events if h == name and (prev is None or t >= prev - slack)), None)
        assert t is not None, f"no {name} after {hops[i - 1][0] if i else 'the start'}"
        assert prev is None or t >= prev - slack, f"{name} before {hops[i - 1][0]}"
        times[i] = t
        prev = t
        i += 1
    assert times[-1] <= marks.get("end", times[-1]) + slack
    return times


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by process `pid`, all its threads, exited ones included: Linux's
    per-process CPU clock (what glibc's clock_getcpuclockid returns), nanosecond resolution."""
    return time.clock_gettime((~pid << 3) | 2)


def median_ms(xs) -> float:
    import statistics

    return statistics.median(xs) * 1000


class CpuMeter:
    """CPU time of some processes: per round (from just before the request to just after the
    response) and over the whole run of rounds (what happens between rounds included)."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.rounds: list[dict[str, float]] = []
        self.first = self.sample()
        self.before: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        return {n: process_cpu(p) for n, p in self.pids.items()}

    def start(self) -> None:
        self.before = self.sample()

    def stop(self) -> None:
        after = self.sample()
        self.rounds.append({n: after[n] - self.before[n] for n in after})
        self.last = after

    def lines(self, wall_ms: float) -> list[str]:
        per = {n: median_ms([r[n] for r in self.rounds]) for n in self.pids}
        run = {n: (self.last[n] - self.first[n]) * 1000 / len(self.rounds) for n in self.pids}
        fmt = lambda d: ", ".join(f"{n} {v:.2f} ms" for n, v in d.items())  # noqa: E731
        return [
            f"  CPU per request, medians: {fmt(per)}; sum {sum(per.values()):.2f} ms"
            f" = {100 * sum(per.values()) / wall_ms:.0f} % of the {wall_ms:.2f} ms request → response",
            f"  CPU per round over the whole run (between rounds too): {fmt(run)}",
        ]


def report(title: str, rounds: list[dict], events, paths: tuple, cpu: CpuMeter) -> str:
    """The figures of one measurement, as printed (and copied into docs/latency.md)."""
    out = [f"\n{title}: {len(rounds)} rounds"]
    totals = {}
    for label, path, first, last, ours in (
            ("request → prompt", paths[0], "start", "prompt", "from the request at the bridge"),
            ("answer → response", paths[1], "answer", "end", "until it leaves the bridge")):
        per_round = [follow(events, r, path) for r in rounds]
        totals[label] = median_ms([r[last] - r[first] for r in rounds])
        names = [h if isinstance(h, str) else h[0] for h in path]
        # Without python-fido2 and the UDP hop: bridge.request is the second hop of a request
        # path, bridge.reply the last but one of a response path.
        inner = median_ms([t[-1] - t[1] if first == "start" else t[-2] - t[0] for t in per_round])
        out.append(f"  {label}: median {totals[label]:.2f} ms ({ours}: {inner:.2f} ms)")
        for k in range(len(names) - 1):
            seg = median_ms([t[k + 1] - t[k] for t in per_round])
            what = SEGMENTS.get((names[k], names[k + 1]), f"{names[k]} → {names[k + 1]}")
            out.append(f"    {seg:8.3f} ms  {what}")
    if "bridge.wake" in paths[0]:
        # Beside the path: the relay answers WAKE once the phone's webhook answered the POST.
        wake = [follow(events, r, ["start", "bridge.wake", "bridge.wake_result"]) for r in rounds]
        out.append(f"  (beside it: WAKE → WAKE_RESULT, the relay's webhook call, median "
                   f"{median_ms([w[2] - w[1] for w in wake]):.2f} ms)")
    out += cpu.lines(median_ms([r["end"] - r["start"] for r in rounds]))
    return "\n".join(out)


@pytest.fixture
def traced(binaries, tmp_path, monkeypatch):
    """Relay + bridge as `setup`, with the latency trace on (for the phone started by the test
    too, in process or not) and the bridge's stderr kept."""
    monkeypatch.setenv("POCKETKEY_TRACE", "1")
    procs = Procs()
    bridge_log = tmp_path / "bridge.log"
    with open(bridge_log, "w") as log, tempfile.TemporaryDirectory() as bridge_dir, \
            tempfile.TemporaryDirectory() as phone_dir:
        relay, bridge, port, url = start_relay_and_bridge(binaries, procs, bridge_dir, stderr=log)
        yield {
            "binaries": binaries, "procs": procs, "url": url, "phone_dir": phone_dir,
            "addr": ("127.0.0.1", port), "bridge": bridge, "relay": relay,
            "bridge_log": bridge_log,
        }
        procs.close()


def make_credential(ctap, i: int) -> None:
    ctap.make_credential(
        os.urandom(32), {"id": "latency.example.org", "name": "x"},
        {"id": os.urandom(8), "name": f"u{i}"}, [{"type": "public-key", "alg": -7}],
        options={"uv": True},
    )


def test_latency_connected_phone(traced, tmp_path, capfd):
    """Loopback latency with a connected phone (the app's runtime, in process): browser request
    at the bridge → approval prompt at the phone, and the phone's answer → response at the
    browser, broken down by hop. Prints the figures (a measurement, not asserted: no timing
    thresholds in tests); asserts that every request reached the phone's prompt through every
    hop, in order, and came back."""
    from fido2.ctap2 import Ctap2

    from bindings_support import MemoryKeyProvider, Phone, ShownCode, Verify, pk

    marks: dict[str, list[float]] = {"prompt": [], "answer": []}

    def policy(prompt):
        marks["answer"].append(time.time())
        return Verify()

    class TimedPhone(Phone):
        def on_approval_requested(self, request):
            marks["prompt"].append(time.time())
            super().on_approval_requested(request)

    phone = TimedPhone(policy=policy)
    key = pk.SecurityKey.open(str(tmp_path / "app"), MemoryKeyProvider(), phone)
    phone.attach(key)
    key.pair(traced["url"], "App phone", False, ShownCode())
    listener = key.listen("App phone")
    try:
        ctap = Ctap2(open_answering_get_info(traced["addr"], 10.0))
        make_credential(ctap, -1)  # warm-up (first use of the engine and its store): not measured
        cpu = CpuMeter({"relay": traced["relay"].pid, "bridge": traced["bridge"].pid,
                        "pytest (python-fido2 + the app's phone)": os.getpid()})
        rounds = []
        for i in range(12):
            cpu.start()
            started = time.time()
            make_credential(ctap, i)
            rounds.append({"start": started, "end": time.time()})
            cpu.stop()
    finally:
        listener.stop()
        phone.stop()
    assert len(marks["prompt"]) == len(marks["answer"]) == 13, "one prompt per request"
    for r, prompt, answer in zip(rounds, marks["prompt"][1:], marks["answer"][1:]):
        r.update(prompt=prompt, answer=answer)
    phone_trace = capfd.readouterr().err
    events = trace_events(phone_trace + traced["bridge_log"].read_text())
    text = report("connected phone (app runtime in process, Python approval UI)", rounds, events,
                  (CONNECTED_REQUEST, RESPONSE), cpu)
    with capfd.disabled():
        print(text)


def start_terminal_phone(s, woken: bool, log: list) -> subprocess.Popen:
    """`pocketkey listen` with its terminal approver: the approval prompt is a line on its
    stderr, answered with "y" on its stdin by the reader thread (a user who answers at once).
    Every stderr line is kept in `log` as (arrival time, line)."""
    import threading

    args = [s["binaries"]["pocketkey"], "listen", "--state-dir", s["phone_dir"]]
    if woken:
        args += ["--wake-url", WAKE_URL, "--idle", "1"]
    # A new session: no controlling terminal, so the approver reads stdin, not /dev/tty.
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    s["procs"].procs.append(p)

    def read():
        for line in p.stderr:
            log.append((time.time(), line))
            if "approval requested" in line:
                log.append((time.time(), "answer"))
                try:
                    p.stdin.write("y\n")
                    p.stdin.flush()
                except (BrokenPipeError, ValueError):
                    return

    threading.Thread(target=read, daemon=True).start()
    return p


def wait_for(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("woken", [False, True], ids=["connected", "woken"])
def test_latency_phone_process(traced, woken):
    """The same measurement with the phone in its own process (`pocketkey listen`, terminal
    approver), so that its CPU time is its own: connected (attached, KK session open) and
    woken (detached; the bridge's WAKE makes the relay call the phone's webhook, the phone
    attaches, runs the KK handshake, gets the request). The woken rounds are 3.2 s apart (the
    relay sends one push per mailbox per 3 s) and each starts after the phone detached."""
    from fido2.ctap2 import Ctap2

    pair(traced)
    log: list[tuple[float, str]] = []
    phone = start_terminal_phone(traced, woken, log)
    count = lambda text: sum(text in line for _, line in log)  # noqa: E731
    if woken:
        wait_for(lambda: count("wake-ups go to") == 1, "the webhook registration")
    else:
        wait_for(lambda: count(" phone.established") == 1, "the phone's session")
    ctap = Ctap2(open_answering_get_info(traced["addr"], 10.0))  # getInfo from the bridge's cache
    if not woken:
        make_credential(ctap, -1)  # as in the in-process test: warm-up, not measured
    cpu = CpuMeter({"relay": traced["relay"].pid, "bridge": traced["bridge"].pid,
                    "phone": phone.pid})
    rounds = []
    n_rounds = 10 if woken else 12
    for i in range(n_rounds):
        if woken:
            wait_for(lambda: count(" phone.detached") == i, "the phone to detach")
            if rounds:
                time.sleep(max(0.0, rounds[-1]["start"] + 3.2 - time.time()))
        cpu.start()
        started = time.time()
        make_credential(ctap, i)
        rounds.append({"start": started, "end": time.time()})
        cpu.stop()
    # The response can reach us before our reader has the phone's last lines.
    requests = n_rounds + (0 if woken else 1)
    wait_for(lambda: count(" phone.engine.end") == requests, "the phone's trace")

    def sent_after_last_answer() -> bool:
        lines = [line for _, line in log]
        ends = [i for i, line in enumerate(lines) if " phone.engine.end" in line]
        return any(" phone.send" in line for line in lines[ends[-1]:])

    wait_for(sent_after_last_answer, "the phone's trace of its last response")
    prompts = [t for t, line in log if "approval requested" in line]
    answers = [t for t, line in log if line == "answer"]
    assert len(prompts) == len(answers) == requests, "one prompt per request"
    for r, prompt, answer in zip(rounds, prompts[-n_rounds:], answers[-n_rounds:]):
        r.update(prompt=prompt, answer=answer)
    if woken:
        assert count("Test laptop: woken") == n_rounds, "one wake-up per request"
    events = trace_events("".join(line for _, line in log) + traced["bridge_log"].read_text())
    if woken:
        # The request left with the bridge's handshake answer, before the phone's Hello came.
        for r in rounds:
            mine = [h for t, h in events if r["start"] <= t <= r["end"]]
            assert "bridge.established" in mine and "bridge.send" in mine, mine
            assert mine.index("bridge.send") < mine.index("bridge.established"), mine
    kind = "woken phone (push through the webhook)" if woken else "connected phone"
    print(report(f"{kind}, pocketkey listen in its own process, terminal approval", rounds,
                 events, (WOKEN_REQUEST if woken else CONNECTED_REQUEST, RESPONSE), cpu))
