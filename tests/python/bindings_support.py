"""Helpers for test_bindings.py: load the generated Python bindings of pocketkey-ffi, and the
app side written against them (a KeyProvider, an approval listener whose answers come from a
worker thread, and a python-fido2 CtapDevice that hands CTAP messages to the library)."""

from __future__ import annotations

import importlib
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Callable

from fido2.ctap import CtapDevice, CtapError
from fido2.hid import CAPABILITY, CTAPHID

ROOT = Path(__file__).resolve().parents[2]


def bindings_dir() -> Path:
    """Where scripts/build-bindings.sh put the Python module (next to the cdylib)."""
    if os.environ.get("POCKETKEY_BINDINGS_DIR"):
        return Path(os.environ["POCKETKEY_BINDINGS_DIR"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "bindings" / "python"


def load_bindings():
    where = bindings_dir()
    if not (where / "pocketkey_ffi.py").is_file():
        raise RuntimeError(
            f"no generated bindings in {where}: run scripts/build-bindings.sh "
            "(scripts/test.sh does it before pytest)"
        )
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module("pocketkey_ffi")
    finally:
        sys.path.remove(str(where))


pk = load_bindings()


class MemoryKeyProvider(pk.KeyProvider):
    """The app's keychain, in memory: 32 random bytes, or whatever a test wants returned."""

    def __init__(self, key: bytes | None = None, fail: Exception | None = None):
        self.key = os.urandom(32) if key is None else key
        self.fail = fail
        self.calls = 0

    def master_key(self) -> bytes:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.key


# What the answering thread does with a prompt: an answer, or None to leave it unanswered.
Policy = Callable[["pk.ApprovalPrompt"], "pk.ApprovalAnswer | None"]


class Verify:
    """A policy's "approve with biometrics": the Phone turns it into APPROVE_VERIFIED with its
    UV key's signature over the prompt's challenge, as the OS's biometric callback would."""

    def __init__(self, account: int | None = None):
        self.account = account


def approve_verified(_prompt) -> Verify:
    return Verify()


class SoftwareUvKey:
    """The phone's UV key, here a software P-256 key (on a phone: an Android Keystore key with
    per-use biometric authentication, or a Secure Enclave key)."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec

        self._ec = ec
        self._key = ec.generate_private_key(ec.SECP256R1())

    def public_key(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes

        return self._key.sign(message, self._ec.ECDSA(hashes.SHA256()))


class Phone(pk.ApprovalListener):
    """The app's approval UI. The listener only queues the prompt (as a notification would);
    a separate worker thread answers it through `SecurityKey.answer`, like a notification
    action or a biometric sheet would, later and on another thread."""

    def __init__(self, policy: Policy = approve_verified, fail: Exception | None = None):
        self.policy = policy
        self.fail = fail
        self.key = None  # set by attach(); the worker needs it to answer
        self.uv_key = SoftwareUvKey()
        self.prompts: list = []
        self.closed: list[tuple[int, object]] = []
        self.listener_threads: set[int] = set()
        self.answer_threads: set[int] = set()
        self.answer_errors: list[Exception] = []
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._answer_loop, name="phone-ui", daemon=True)
        self._worker.start()

    def attach(self, key) -> None:
        """Keeps the key to answer through and registers the UV key with it (the app's setup)."""
        self.key = key
        key.register_uv_key(self.uv_key.public_key())

    def verified(self, prompt, account: int | None = None) -> "pk.ApprovalAnswer":
        signature = self.uv_key.sign(bytes(prompt.uv_challenge))
        return pk.ApprovalAnswer.APPROVE_VERIFIED(account=account, signature=signature)

    # -- ApprovalListener (called by the library on the thread running the request)

    def on_approval_requested(self, request) -> None:
        self.listener_threads.add(threading.get_ident())
        self.prompts.append(request)
        if self.fail is not None:
            raise self.fail
        self._queue.put(request)

    def on_approval_closed(self, id: int, reason) -> None:
        self.closed.append((id, reason))

    # -- the worker

    def _answer_loop(self) -> None:
        while True:
            prompt = self._queue.get()
            if prompt is None:
                return
            answer = self.policy(prompt)
            if answer is None:
                continue
            if isinstance(answer, Verify):
                answer = self.verified(prompt, answer.account)
            self.answer_threads.add(threading.get_ident())
            try:
                self.key.answer(prompt.id, answer)
            except Exception as e:  # recorded for the test to look at
                self.answer_errors.append(e)

    def stop(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)


class ShownCode(pk.PairingCodeListener):
    """The app's screen for a pairing's confirmation code: keeps every code it was shown."""

    def __init__(self):
        self.codes: list[str] = []

    def show_code(self, code: str) -> None:
        self.codes.append(code)


class BindingsDevice(CtapDevice):
    """A CtapDevice whose CTAPHID CBOR and MSG payloads go straight to the library, in
    process: what a platform transport (NFC, BLE, the bridge) does with the bytes it carries."""

    def __init__(self, key, requester: str = "Work laptop"):
        self.key = key
        self.requester = requester

    @property
    def capabilities(self) -> int:
        return CAPABILITY.CBOR | CAPABILITY.WINK

    def call(self, cmd, data=b"", event=None, on_keepalive=None) -> bytes:
        done = threading.Event()
        if event is not None:
            threading.Thread(target=self._cancel_on, args=(event, done), daemon=True).start()
        try:
            if cmd == CTAPHID.CBOR:
                return self.key.process_ctap(bytes(data), self.requester)
            if cmd == CTAPHID.MSG:
                return self.key.process_u2f(bytes(data), self.requester)
            if cmd == CTAPHID.PING:
                return bytes(data)
            if cmd == CTAPHID.WINK:
                return b""
            raise CtapError(CtapError.ERR.INVALID_COMMAND)
        finally:
            done.set()

    def _cancel_on(self, event: threading.Event, done: threading.Event) -> None:
        while not done.is_set():
            if event.wait(0.05) and not done.is_set():
                self.key.cancel_pending()
                return

    @classmethod
    def list_devices(cls):
        return iter(())
