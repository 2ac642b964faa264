"""The generated Python bindings of pocketkey-ffi, driven as an app would drive them.

Each test opens a key in a temporary directory with a KeyProvider and an approval listener
written here (bindings_support.py); approvals are answered from another thread through
`SecurityKey.answer`. python-fido2's real client talks to the key in process through a
CtapDevice that calls `process_ctap` / `process_u2f`, and its Fido2Server checks the results.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap1 import Ctap1
from fido2.ctap2 import ClientPin, Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import (
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from bindings_support import BindingsDevice, MemoryKeyProvider, Phone, approve_verified, pk

RP_ID = "example.com"
ORIGIN = "https://example.com"
ERR = CtapError.ERR
Op = pk.ApprovalOperation


class KeyUnderTest:
    def __init__(self, tmp_path, policy=approve_verified, fail=None, timeout_ms=None, provider=None):
        self.dir = str(tmp_path / "pocketkey")
        self.provider = provider or MemoryKeyProvider()
        self.phone = Phone(policy, fail)
        if timeout_ms is None:
            self.key = pk.SecurityKey.open(self.dir, self.provider, self.phone)
        else:
            self.key = pk.SecurityKey.open(self.dir, self.provider, self.phone, timeout_ms)
        self.phone.attach(self.key)
        self.device = BindingsDevice(self.key)

    def client(self) -> Fido2Client:
        return Fido2Client(
            self.device,
            client_data_collector=DefaultClientDataCollector(ORIGIN),
            user_interaction=UserInteraction(),
        )


@pytest.fixture
def make_key(tmp_path):
    made = []

    def make(**kw):
        k = KeyUnderTest(tmp_path / str(len(made)), **kw)
        made.append(k)
        return k

    yield make
    for k in made:
        k.phone.stop()


def server() -> Fido2Server:
    return Fido2Server(PublicKeyCredentialRpEntity(id=RP_ID, name="Example"))


def register(k: KeyUnderTest, name="alice@example.com", rk=ResidentKeyRequirement.REQUIRED,
             uv=UserVerificationRequirement.REQUIRED):
    s = server()
    options, state = s.register_begin(
        PublicKeyCredentialUserEntity(id=os.urandom(16), name=name, display_name=name.title()),
        resident_key_requirement=rk,
        user_verification=uv,
    )
    result = k.client().make_credential(options.public_key)
    auth_data = s.register_complete(state, result)
    return s, auth_data.credential_data


def authenticate(k: KeyUnderTest, s: Fido2Server, credential, uv=UserVerificationRequirement.REQUIRED):
    options, state = s.authenticate_begin([credential], user_verification=uv)
    result = k.client().get_assertion(options.public_key).get_response(0)
    return s.authenticate_complete(state, [credential], result)


def ctap_cause(excinfo) -> int:
    cause = excinfo.value.cause
    assert isinstance(cause, CtapError), repr(excinfo.value)
    return cause.code


# ---- WebAuthn through python-fido2 ---------------------------------------------------------


def test_registration_and_authentication_with_answers_from_another_thread(make_key):
    k = make_key()
    s, credential = register(k)
    authenticate(k, s, credential)

    assert k.phone.prompts, "the listener was never asked"
    assert not k.phone.answer_errors
    # Every prompt was answered, on the worker thread, not on the thread that was asked.
    assert k.phone.answer_threads and k.phone.listener_threads
    assert k.phone.answer_threads.isdisjoint(k.phone.listener_threads)
    assert [reason for _, reason in k.phone.closed] == [pk.ApprovalClosed.ANSWERED] * len(k.phone.prompts)
    assert {p.operation for p in k.phone.prompts} <= {Op.VERIFY_USER, Op.REGISTER, Op.SIGN_IN}
    for p in k.phone.prompts:
        assert p.rp_id == RP_ID
        assert p.requester == "Work laptop"
        assert p.verification_required
        assert p.deadline_unix_ms > time.time() * 1000
    # Prompt ids are unique and over: answering again is refused.
    ids = [p.id for p in k.phone.prompts]
    assert len(set(ids)) == len(ids)
    with pytest.raises(pk.PocketKeyError.UnknownApproval):
        k.key.answer(ids[0], pk.ApprovalAnswer.DENY())


def test_prompt_shows_site_user_and_requester(make_key):
    k = make_key()
    k.device.requester = "Alice's laptop"
    register(k, name="bob@example.com", rk=ResidentKeyRequirement.DISCOURAGED,
             uv=UserVerificationRequirement.DISCOURAGED)
    (prompt,) = k.phone.prompts
    assert prompt.operation == Op.REGISTER
    assert prompt.rp_id == RP_ID
    assert prompt.rp_name == "Example"
    assert prompt.user_name == "bob@example.com"
    assert prompt.user_display_name == "Bob@Example.Com"
    assert prompt.requester == "Alice's laptop"
    assert prompt.on_behalf is None, "a computer's request, not an organisation's"
    assert prompt.accounts == []
    assert not prompt.verification_required


def test_deny_reaches_the_client_as_operation_denied(make_key):
    k = make_key(policy=lambda p: pk.ApprovalAnswer.DENY())
    with pytest.raises(ClientError) as excinfo:
        register(k)
    assert ctap_cause(excinfo) == ERR.OPERATION_DENIED
    assert k.phone.closed == [(k.phone.prompts[0].id, pk.ApprovalClosed.ANSWERED)]


def test_uv_required_registration_carries_the_uv_keys_proof(make_key):
    """userVerification "required" through python-fido2: the phone answers with its UV key's
    signature over the prompt's challenge, the engine checks it, and the registration
    verifies with UV set."""
    k = make_key()
    assert k.key.info().uv_key_registered
    _, credential = register(k)
    assert k.phone.prompts and all(len(bytes(p.uv_challenge)) == 81 for p in k.phone.prompts)
    assert len({bytes(p.uv_challenge) for p in k.phone.prompts}) == len(k.phone.prompts)
    assert not k.phone.answer_errors


def test_a_forged_or_replayed_uv_proof_is_refused_without_spending_retries(make_key):
    from bindings_support import SoftwareUvKey

    forger = SoftwareUvKey()
    k = make_key(policy=lambda p: pk.ApprovalAnswer.APPROVE_VERIFIED(
        account=None, signature=forger.sign(bytes(p.uv_challenge))))
    with pytest.raises(ClientError) as excinfo:
        register(k)
    assert ctap_cause(excinfo) == ERR.OPERATION_DENIED
    assert not k.phone.answer_errors

    # The registered key's signature over an earlier prompt's challenge.
    seen = []

    def replay(prompt):
        if not seen:
            seen.append(prompt)
            return k.phone.verified(prompt)
        return k.phone.verified(seen[0])

    k.phone.policy = replay
    register(k, uv=UserVerificationRequirement.REQUIRED)  # the first prompt verifies
    with pytest.raises(ClientError) as excinfo:
        register(k, name="bob@example.com")
    assert ctap_cause(excinfo) == ERR.OPERATION_DENIED
    info = Ctap2(k.device).get_info()
    assert info.options.get("uv") is True
    assert ClientPin(Ctap2(k.device)).get_uv_retries() == 8


def test_unanswered_prompt_times_out(make_key):
    k = make_key(policy=lambda p: None, timeout_ms=400)
    started = time.monotonic()
    with pytest.raises(CtapError) as excinfo:
        Ctap2(k.device).selection()
    assert excinfo.value.code == ERR.USER_ACTION_TIMEOUT
    assert time.monotonic() - started >= 0.4
    (prompt,) = k.phone.prompts
    assert prompt.operation == Op.SELECT
    assert k.phone.closed == [(prompt.id, pk.ApprovalClosed.TIMED_OUT)]
    with pytest.raises(pk.PocketKeyError.UnknownApproval) as err:
        k.key.answer(prompt.id, pk.ApprovalAnswer.APPROVE_PRESENT(account=None))
    assert err.value.id == prompt.id
    assert err.value.user_message() == "That approval has already ended"


def test_cancel_pending_ends_the_wait(make_key):
    k = make_key(policy=lambda p: None)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", k.key.process_ctap(b"\x0b", "x")))
    t.start()
    deadline = time.monotonic() + 10
    while not k.phone.prompts and time.monotonic() < deadline:
        time.sleep(0.01)
    k.key.cancel_pending()
    t.join(timeout=10)
    assert result["r"] == bytes([ERR.KEEPALIVE_CANCEL])
    assert k.phone.closed == [(k.phone.prompts[0].id, pk.ApprovalClosed.CANCELLED)]


def test_answer_for_unknown_id(make_key):
    k = make_key()
    with pytest.raises(pk.PocketKeyError.UnknownApproval) as err:
        k.key.answer(123456789, pk.ApprovalAnswer.APPROVE_VERIFIED(account=None, signature=b"\x30" * 8))
    assert err.value.id == 123456789


def test_listener_that_raises_denies_the_request(make_key):
    k = make_key(fail=RuntimeError("notification permission missing"))
    with pytest.raises(CtapError) as excinfo:
        Ctap2(k.device).selection()
    assert excinfo.value.code == ERR.OPERATION_DENIED
    (prompt,) = k.phone.prompts
    assert k.phone.closed == [(prompt.id, pk.ApprovalClosed.LISTENER_FAILED)]
    # The key keeps working after the failed callback.
    k.phone.fail = None
    Ctap2(k.device).selection()


def test_listener_raising_its_declared_error_denies_too(make_key):
    k = make_key(fail=pk.ApprovalListenerError.Failed("no UI"))
    with pytest.raises(CtapError) as excinfo:
        Ctap2(k.device).selection()
    assert excinfo.value.code == ERR.OPERATION_DENIED
    assert k.phone.closed[0][1] == pk.ApprovalClosed.LISTENER_FAILED


def test_u2f_register_and_authenticate(make_key):
    k = make_key()
    ctap1 = Ctap1(k.device)
    app = os.urandom(32)
    client_param = os.urandom(32)
    reg = ctap1.register(client_param, app)
    reg.verify(app, client_param)
    challenge = os.urandom(32)
    sig = ctap1.authenticate(challenge, app, reg.key_handle)
    sig.verify(app, challenge, reg.public_key)
    assert [p.operation for p in k.phone.prompts] == [Op.U2F_REGISTER, Op.U2F_SIGN_IN]


# ---- opening -------------------------------------------------------------------------------


def test_key_provider_that_raises_fails_open_with_a_typed_error(tmp_path):
    phone = Phone()
    try:
        with pytest.raises(pk.PocketKeyError.KeyProviderFailed) as err:
            pk.SecurityKey.open(str(tmp_path / "a"), MemoryKeyProvider(fail=RuntimeError("keychain locked")), phone)
        assert "keychain locked" in err.value.reason
        with pytest.raises(pk.PocketKeyError.KeyProviderFailed) as err:
            pk.SecurityKey.open(
                str(tmp_path / "b"), MemoryKeyProvider(fail=pk.KeyProviderError.Unavailable("user not authenticated")), phone
            )
        assert "user not authenticated" in err.value.reason
        assert err.value.user_message() == "The device keychain did not hand out the security key's master key"
        with pytest.raises(pk.PocketKeyError.MasterKeyWrongLength) as err:
            pk.SecurityKey.open(str(tmp_path / "c"), MemoryKeyProvider(key=b"\x01" * 16), phone)
        assert err.value.length == 16
    finally:
        phone.stop()


def test_reopening_keeps_passkeys_and_another_master_key_is_refused(make_key, tmp_path):
    k = make_key()
    register(k)
    k.key.set_pin("1234")
    reopened = pk.SecurityKey.open(k.dir, MemoryKeyProvider(key=k.provider.key), k.phone)
    assert reopened.info().credential_count == 1
    with pytest.raises(pk.PocketKeyError.MasterKeyMismatch):
        pk.SecurityKey.open(k.dir, MemoryKeyProvider(), k.phone)


# ---- the app's own calls -------------------------------------------------------------------


def test_info_passkeys_delete_and_label(make_key):
    k = make_key()
    info = k.key.info()
    assert info.aaguid == "9b1f5c0e-7d3a-4c62-a8e1-3f6b2d4c5a71"
    assert info.label == "PocketKey"
    assert not info.pin_set
    assert info.uv_available
    assert info.credential_count == 0
    assert info.attestation == pk.AttestationKind.SELF_ATTESTATION
    assert os.path.isfile(os.path.join(k.dir, "pocketkey.sqlite"))

    register(k, name="alice@example.com")
    register(k, name="bob@example.com")
    (site,) = k.key.passkeys()
    assert site.rp_id == RP_ID and site.rp_name == "Example"
    assert [p.user_name for p in site.passkeys] == ["bob@example.com", "alice@example.com"]
    assert all(abs(p.created_at_unix - time.time()) < 120 for p in site.passkeys)
    assert k.key.info().credential_count == 2

    bob = site.passkeys[0].credential_id
    assert k.key.delete_passkey(bob) is True
    assert k.key.delete_passkey(bob) is False
    assert [p.user_name for p in k.key.passkeys()[0].passkeys] == ["alice@example.com"]

    k.key.set_label("Alice's phone")
    assert k.key.info().label == "Alice's phone"
    with pytest.raises(pk.PocketKeyError.InvalidLabel):
        k.key.set_label("")


def test_set_pin_is_seen_by_python_fido2(make_key):
    k = make_key()
    ctap2 = Ctap2(k.device)
    assert ctap2.info.options.get("clientPin") is False
    with pytest.raises(pk.PocketKeyError.PinTooShort) as err:
        k.key.set_pin("123")
    assert err.value.min_length == 4
    assert err.value.user_message() == "The PIN must be at least 4 characters"
    k.key.set_pin("1234")
    assert k.key.info().pin_set
    assert Ctap2(k.device).info.options["clientPin"] is True
    # The PIN the app set is the PIN a computer uses.
    client_pin = ClientPin(Ctap2(k.device))
    assert client_pin.get_pin_token("1234", ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
    with pytest.raises(pk.PocketKeyError.PinAlreadySet):
        k.key.set_pin("5678")
    with pytest.raises(pk.PocketKeyError.PinWrong) as err:
        k.key.change_pin("0000", "5678")
    assert err.value.retries_left == 7
    assert err.value.user_message() == "The PIN is wrong (7 tries left)"
    k.key.change_pin("1234", "5678")
    assert client_pin.get_pin_retries()[0] == 8
    with pytest.raises(CtapError) as excinfo:
        client_pin.get_pin_token("1234", ClientPin.PERMISSION.GET_ASSERTION, RP_ID)
    assert excinfo.value.code == ERR.PIN_INVALID


def test_factory_reset(make_key):
    k = make_key()
    s, credential = register(k)
    k.key.set_pin("1234")
    k.key.set_label("Old phone")
    k.key.factory_reset()
    info = k.key.info()
    assert (info.pin_set, info.credential_count, info.label) == (False, 0, "PocketKey")
    assert k.key.passkeys() == []
    with pytest.raises(ClientError) as excinfo:
        authenticate(k, s, credential, uv=UserVerificationRequirement.DISCOURAGED)
    assert ctap_cause(excinfo) == ERR.NO_CREDENTIALS


# ---- scanning --------------------------------------------------------------------------------

QR = "FIDO:/" + "1" * 17 * 4 + "123"


@pytest.mark.parametrize(
    "text, expected",
    [
        (QR, pk.ScannedCode.HYBRID(url=QR)),
        (QR.lower(), pk.ScannedCode.HYBRID(url=QR.lower())),
        ("pocketkey://pair?k=abc&n=Work", pk.ScannedCode.PAIRING(url="pocketkey://pair?k=abc&n=Work")),
        ("https://keys.example.com/activate?token=a%2Fb",
         pk.ScannedCode.ACTIVATION(url="https://keys.example.com/activate?token=a%2Fb", token="a/b")),
        ("pocketkey://activate?token=xyz", pk.ScannedCode.ACTIVATION(url="pocketkey://activate?token=xyz", token="xyz")),
    ],
)
def test_classify_scan_recognises_our_codes(text, expected):
    assert pk.classify_scan(text, pk.ScanSource.CAMERA) == expected
    if not isinstance(expected, pk.ScannedCode.PAIRING):
        assert pk.classify_scan(text, pk.ScanSource.LINK) == expected


def test_classify_scan_refuses_a_pairing_code_from_a_link():
    with pytest.raises(pk.ScanError.PairingNeedsCamera) as err:
        pk.classify_scan("pocketkey://pair?k=abc&n=Work", pk.ScanSource.LINK)
    assert err.value.user_message() == (
        "Scan the code shown by PocketKey on your computer with the app's camera"
    )


@pytest.mark.parametrize(
    "text, error",
    [
        ("https://example.com/", pk.ScanError.NotOurs),
        ("WIFI:S:home;T:WPA;P:secret;;", pk.ScanError.NotOurs),
        ("", pk.ScanError.NotOurs),
        ("FIDO:/12ab", pk.ScanError.Malformed),
        ("pocketkey://pair", pk.ScanError.Malformed),
        ("pocketkey://activate?token=", pk.ScanError.Malformed),
        (QR + "\n", pk.ScanError.Malformed),
        ("https://example.com/activate?token=" + "a" * 5000, pk.ScanError.Malformed),
    ],
)
def test_classify_scan_rejects_with_a_typed_error(text, error):
    with pytest.raises(error) as err:
        pk.classify_scan(text, pk.ScanSource.CAMERA)
    assert err.value.user_message()
