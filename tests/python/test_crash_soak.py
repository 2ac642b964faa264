"""Crash soak: SIGKILL `pocketkey serve --udp --auto-approve` at random points of a run of mixed
operations from python-fido2 (register, sign in, PIN change, credential deletion, a wrong PIN
now and then), restart it on the same state directory after every kill, and check:

* no acknowledged credential is lost (and no acknowledged deletion comes back);
* signature counters never go back, across kills included;
* PIN retries never go up without a correct PIN (and an operation in flight spends at most one);
* `PRAGMA integrity_check` of the store, opened read-only by Python's sqlite3 after each kill,
  says ok.

PK_SOAK_OPS sets the number of operations (default 150, well under a minute; the full form is
2,000, see tests/README.md); PK_SOAK_SEED replays a run (the seed is printed, and named in
every failure). The operations and kill delays come from the seeded RNG; where a kill lands
in the key's work still depends on timing, so a replay takes the same path, not the same
instants.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, CredentialManagement
from fido2.ctap2.pin import PinProtocolV2

from pk_helpers import ERR, cred_id, cred_key, get_assertion, make_cred, pin_token, sha256, user, verify_assertion
from pocketkey_udp import Authenticator

P = ClientPin.PERMISSION
R = CredentialManagement.RESULT
RP_ID = "soak.example"
MAX_RETRIES = 8
# Most operations run to the end; this share has a kill timer racing them.
KILL_SHARE = 0.12
# Kill delays are drawn from [0, this) seconds after the operation starts: most land inside
# the operation (a debug build takes a few tens of ms for one), some after its answer.
KILL_WINDOW = 0.03
MAX_CREDENTIALS = 12


@dataclass
class InFlight:
    """The operation a kill may have cut short."""

    kind: str
    correct_pin: bool = True
    credential: bytes | None = None
    deleting: bytes | None = None
    new_pin: str | None = None
    user: dict | None = None


@dataclass
class Model:
    """What the key has acknowledged."""

    seed: int
    pin: str = "soak-0000"
    pin_candidates: list[str] = field(default_factory=list)
    retries: int = MAX_RETRIES
    strikes: int = 0
    creds: dict[bytes, object] = field(default_factory=dict)
    deleted: set[bytes] = field(default_factory=set)
    max_count: int = 0

    def check(self, ok: bool, what: str) -> None:
        assert ok, f"{what} (PK_SOAK_SEED={self.seed})"

    def counted(self, sign_count: int, what: str) -> None:
        self.check(sign_count > self.max_count, f"{what}: counter {sign_count} after {self.max_count}")
        self.max_count = sign_count


def store_is_sound(path, model: Model) -> None:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()
    model.check(result == [("ok",)], f"integrity_check after a kill: {result}")


def get_retries(ctap) -> int:
    return ClientPin(ctap, PinProtocolV2()).get_pin_retries()[0]


def listed(ctap, model: Model) -> dict[bytes, object]:
    """The discoverable credentials of RP_ID, by id, with their public keys."""
    proto, tok = pin_token(ctap, model.pin, P.CREDENTIAL_MGMT)
    try:
        entries = CredentialManagement(ctap, proto, tok).enumerate_creds(sha256(RP_ID.encode()))
    except CtapError as e:
        if e.code == ERR.NO_CREDENTIALS:
            return {}
        raise
    return {e[R.CREDENTIAL_ID]["id"]: e[R.PUBLIC_KEY] for e in entries}


def choose_op(model: Model, rng: random.Random) -> InFlight:
    """The next operation and its arguments, all drawn before it runs."""
    kinds = ["register", "sign", "sign", "change_pin", "delete", "wrong_pin"]
    if not model.creds:
        kinds = ["register"]
    elif len(model.creds) >= MAX_CREDENTIALS:
        kinds = ["sign", "delete", "change_pin"]
    kind = rng.choice(kinds)
    if kind == "wrong_pin" and (model.strikes >= 2 or model.retries <= 4):
        kind = "sign"
    op = InFlight(kind, correct_pin=kind != "wrong_pin")
    if kind in ("sign", "delete"):
        op.credential = rng.choice(sorted(model.creds))
        if kind == "delete":
            op.deleting = op.credential
    elif kind == "change_pin":
        op.new_pin = f"soak-{rng.randrange(10**6):06d}"
    elif kind == "register":
        op.user = user(f"u{rng.randrange(10**6)}")
    return op


def run_op(ctap, model: Model, op: InFlight) -> None:
    """Runs one operation; the model changes only once the key acknowledged it."""
    if op.kind == "register":
        tok = pin_token(ctap, model.pin, P.MAKE_CREDENTIAL, RP_ID)
        model.retries = MAX_RETRIES
        resp, _, _ = make_cred(ctap, RP_ID, rk=True, user_entity=op.user, token=tok)
        model.counted(resp.auth_data.counter, "makeCredential")
        model.creds[cred_id(resp)] = cred_key(resp)
    elif op.kind == "sign":
        tok = pin_token(ctap, model.pin, P.GET_ASSERTION, RP_ID)
        model.retries = MAX_RETRIES
        resp, h = get_assertion(ctap, RP_ID, allow=[op.credential], token=tok)
        verify_assertion(resp, h, model.creds[op.credential])
        model.counted(resp.auth_data.counter, "getAssertion")
    elif op.kind == "change_pin":
        ClientPin(ctap, PinProtocolV2()).change_pin(model.pin, op.new_pin)
        model.pin, model.retries = op.new_pin, MAX_RETRIES
    elif op.kind == "delete":
        proto, tok = pin_token(ctap, model.pin, P.CREDENTIAL_MGMT)
        model.retries = MAX_RETRIES
        CredentialManagement(ctap, proto, tok).delete_cred({"type": "public-key", "id": op.deleting})
        del model.creds[op.deleting]
        model.deleted.add(op.deleting)
    else:
        try:
            pin_token(ctap, model.pin + "-wrong", P.GET_ASSERTION, RP_ID)
        except CtapError as e:
            model.check(e.code == ERR.PIN_INVALID, f"wrong PIN answered {e.code!r}")
        else:
            model.check(False, "a wrong PIN was accepted")
        model.retries -= 1
        model.strikes += 1
        model.check(get_retries(ctap) == model.retries, "retries after a wrong PIN")


def check_after_restart(ctap, model: Model, op: InFlight | None) -> None:
    """The key after a kill, against the model and the operation the kill may have cut."""
    model.strikes = 0  # a restart is a power cycle
    r = get_retries(ctap)
    # Retries may drop by the one the operation in flight spent; they may rise only if that
    # operation carried the correct PIN.
    low = model.retries - (1 if op else 0)
    high = MAX_RETRIES if (op and op.correct_pin) else model.retries
    model.check(low <= r <= high, f"retries {r} after a kill during {op}, expected {low}..{high}")
    model.retries = r

    # A PIN change may or may not have happened: find out, spending at most one retry.
    if op and op.kind == "change_pin":
        for candidate in (model.pin, op.new_pin):
            try:
                pin_token(ctap, candidate, P.CREDENTIAL_MGMT)
            except CtapError as e:
                model.check(e.code == ERR.PIN_INVALID, f"PIN probe answered {e.code!r}")
                continue
            model.pin = candidate
            break
        else:
            model.check(False, "neither the old nor the new PIN works after a kill")

    present = listed(ctap, model)
    model.retries = MAX_RETRIES
    model.check(get_retries(ctap) == MAX_RETRIES, "retries after a correct PIN")
    for cid in model.creds:
        if op and op.deleting == cid:
            continue
        model.check(cid in present, f"acknowledged credential {cid.hex()} lost after a kill during {op}")
    for cid in model.deleted:
        model.check(cid not in present, f"deleted credential {cid.hex()} came back")
    new = [cid for cid in present if cid not in model.creds]
    # Only a registration in flight may add one credential the model has not seen.
    model.check(len(new) <= (1 if op and op.kind == "register" else 0), f"unexpected credentials {new}")
    for cid in new:
        model.creds[cid] = CoseKey.parse(present[cid])
    if op and op.deleting is not None and op.deleting not in present:
        del model.creds[op.deleting]
        model.deleted.add(op.deleting)

    if model.creds:
        cid = sorted(model.creds)[0]
        tok = pin_token(ctap, model.pin, P.GET_ASSERTION, RP_ID)
        resp, h = get_assertion(ctap, RP_ID, allow=[cid], token=tok)
        verify_assertion(resp, h, model.creds[cid])
        model.counted(resp.auth_data.counter, "first assertion after a kill")


def test_crash_soak(tmp_path):
    ops = int(os.environ.get("PK_SOAK_OPS", "150"))
    seed = int(os.environ.get("PK_SOAK_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash soak: PK_SOAK_SEED={seed} PK_SOAK_OPS={ops}")
    rng = random.Random(seed)
    model = Model(seed=seed)
    auth = Authenticator(state_dir=tmp_path / "state")
    db = auth.state_dir / "pocketkey.sqlite"
    started = time.monotonic()
    kills = cut_short = 0
    auth.start()
    try:
        ctap = auth.ctap2()
        ClientPin(ctap, PinProtocolV2()).set_pin(model.pin)
        for _ in range(ops):
            timer = None
            if rng.random() < KILL_SHARE:
                timer = threading.Timer(rng.uniform(0, KILL_WINDOW), auth.proc.kill)
                timer.start()
            op = choose_op(model, rng)
            try:
                run_op(ctap, model, op)
                acknowledged = True
            except (CtapError, OSError, TimeoutError) as e:
                # Only the kill may cut an operation short.
                if timer is None:
                    raise
                timer.join()
                model.check(auth.proc.poll() is not None, f"{op} failed with the key alive: {e!r}")
                acknowledged = False
                cut_short += 1
            if timer is None:
                continue
            timer.join()
            auth.proc.wait()
            auth.stop()
            kills += 1
            store_is_sound(db, model)
            auth.start()
            ctap = auth.ctap2()
            check_after_restart(ctap, model, None if acknowledged else op)
    finally:
        auth.stop()
    took = time.monotonic() - started
    print(
        f"crash soak: {ops} operations, {kills} kills ({cut_short} cut an operation short), "
        f"{len(model.creds)} credentials at the end, counter {model.max_count}, {took:.1f} s"
    )
    assert kills > 0 or ops < 20, f"no kill in {ops} operations (PK_SOAK_SEED={seed})"
