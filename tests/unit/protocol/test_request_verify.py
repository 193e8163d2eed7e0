"""The verifier's checks, each with a real signed and sealed request."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloud.sdk import PortalSigner, rotate_portal_key
from wire import AgentKeys, PortalKeyring, Rejected, RejectReason
from wire import verify as verify_mod
from wire.canonical import b64url_decode, b64url_encode, canonical_json
from wire.signing import Domain, sign

from .conftest import GROUP, NEW_PW, NOW, OLD_PW, TENANT, World


def reject_reason(world: World, raw: bytes, **kw: Any) -> RejectReason:
    with pytest.raises(Rejected) as info:
        world.verifier(**kw).verify_and_open(raw)
    return info.value.reason


def test_valid_request_verifies_and_decrypts(world: World) -> None:
    req = world.request()
    verified, secret = world.verifier().verify_and_open(req.to_bytes())
    assert verified.id == req.id
    assert verified.request_hash == req.request_hash
    assert verified.header.user.value == "alice@acme.example"
    assert secret.new_password is not None
    assert secret.new_password.get_secret_value() == NEW_PW
    assert secret.old_password is None
    assert NEW_PW not in repr(secret) and NEW_PW not in str(secret) and NEW_PW not in repr(verified)


def test_change_carries_both_passwords(world: World) -> None:
    _, secret = world.verifier().verify_and_open(world.request(op="change").to_bytes())
    assert secret.old_password is not None and secret.new_password is not None
    assert secret.old_password.get_secret_value() == OLD_PW
    assert secret.new_password.get_secret_value() == NEW_PW


@pytest.mark.parametrize("op", ["unlock", "preflight"])
def test_ops_without_secret_have_empty_sealed(x_world: World, op: str) -> None:
    req = x_world.request(op=op)
    assert req.envelope.sealed == {}
    verified, secret = x_world.verifier().verify_and_open(req.to_bytes())
    assert verified.header.op == op
    assert secret.new_password is None and secret.old_password is None


def test_wire_bytes_contain_no_password(world: World) -> None:
    raw = world.request(op="change").to_bytes()
    for pw in (NEW_PW, OLD_PW):
        assert pw.encode() not in raw
        assert b64url_encode(pw.encode()).encode()[:8] not in raw


# --- tampering: rejected before decryption -------------------------------------------


@pytest.fixture
def no_decrypt(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fails the test if the verifier tries to decrypt anything."""
    calls: list[int] = []

    def forbidden(*_a: object, **_k: object) -> bytes:
        calls.append(1)
        raise AssertionError("decryption attempted")

    monkeypatch.setattr(verify_mod, "open_sealed", forbidden)
    return calls


def _mutate(raw: bytes, fn: Any) -> bytes:
    doc = json.loads(raw)
    fn(doc)
    return canonical_json(doc)


def _flip_b64(value: str, index: int = 5) -> str:
    data = bytearray(b64url_decode(value))
    data[index] ^= 0x01
    return b64url_encode(bytes(data))


def test_flipped_header_byte_is_rejected(x_world: World, no_decrypt: list[int]) -> None:
    def fn(d: dict[str, Any]) -> None:
        d["header"]["user"]["value"] = "alicf@acme.example"

    raw = _mutate(x_world.request().to_bytes(), fn)
    assert reject_reason(x_world, raw) is RejectReason.BAD_SIGNATURE
    assert not no_decrypt


def test_flipped_sealed_byte_is_rejected(x_world: World, no_decrypt: list[int]) -> None:
    def fn(d: dict[str, Any]) -> None:
        kid = next(iter(d["sealed"]))
        d["sealed"][kid] = _flip_b64(d["sealed"][kid], 40)

    raw = _mutate(x_world.request().to_bytes(), fn)
    assert reject_reason(x_world, raw) is RejectReason.BAD_SIGNATURE
    assert not no_decrypt


def test_flipped_signature_byte_is_rejected(x_world: World, no_decrypt: list[int]) -> None:
    def fn(d: dict[str, Any]) -> None:
        d["sig"]["value"] = _flip_b64(d["sig"]["value"], 10)

    raw = _mutate(x_world.request().to_bytes(), fn)
    assert reject_reason(x_world, raw) is RejectReason.BAD_SIGNATURE
    assert not no_decrypt


def test_every_single_byte_flip_is_rejected_before_decryption(
    x_world: World, no_decrypt: list[int]
) -> None:
    raw = x_world.request().to_bytes()
    verifier = x_world.verifier()
    reasons: set[RejectReason] = set()
    for i in range(len(raw)):
        mutated = bytearray(raw)
        mutated[i] ^= 0x01
        with pytest.raises(Rejected) as info:
            verifier.verify(bytes(mutated))
        reasons.add(info.value.reason)
    assert not no_decrypt
    assert reasons <= {
        RejectReason.MALFORMED,
        RejectReason.BAD_SIGNATURE,
        RejectReason.UNKNOWN_KEY,
        RejectReason.UNSUPPORTED_VERSION,
    }


# --- keys and rotation ---------------------------------------------------------------


def test_unknown_portal_key_is_rejected(x_world: World, no_decrypt: list[int]) -> None:
    req = x_world.request(signer=PortalSigner.generate())
    assert reject_reason(x_world, req.to_bytes()) is RejectReason.UNKNOWN_KEY


def test_retired_portal_key_is_rejected_and_overlapping_key_accepted(x_world: World) -> None:
    old = x_world.signer
    rotation = rotate_portal_key(old, overlap=3600, now=NOW)
    keyring = PortalKeyring(rotation.keyring_entries)
    x_world.keyring = keyring

    # Inside the overlap both keys are accepted.
    x_world.clock.now = NOW + 60
    for signer in (old, rotation.signer):
        req = x_world.request(signer=signer)
        x_world.verifier().verify_and_open(req.to_bytes())

    # After the old key's not_after it is retired; the new one still works.
    x_world.clock.now = NOW + 3601
    retired = x_world.request(signer=old)
    assert reject_reason(x_world, retired.to_bytes()) is RejectReason.RETIRED_KEY
    x_world.verifier().verify_and_open(x_world.request(signer=rotation.signer).to_bytes())


def test_key_before_not_before_is_unknown(x_world: World) -> None:
    new = PortalSigner.generate()
    x_world.keyring = x_world.keyring.with_key(new.trusted_key(not_before=NOW + 100))
    req = x_world.request(signer=new)
    assert reject_reason(x_world, req.to_bytes()) is RejectReason.UNKNOWN_KEY


def test_agent_kem_rotation_opens_both_during_overlap(world: World) -> None:
    agent = world.agents[0]
    old_public = agent.public()
    rotated = agent.rotate_kem(now=NOW, overlap=600)
    # A request sealed to the old public key (already queued) and one to the new key.
    queued = world.request(agents=[old_public])
    fresh = world.request(agents=[rotated.public()])
    for req in (queued, fresh):
        _, secret = world.verifier(rotated).verify_and_open(req.to_bytes())
        assert secret.new_password is not None
    world.clock.now = NOW + 601
    late = world.request(agents=[old_public])
    assert reject_reason(world, late.to_bytes(), agent=rotated) is RejectReason.NOT_FOR_THIS_AGENT


# --- time window ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shift", "reason"),
    [
        (121 + 61, RejectReason.EXPIRED),  # clock after exp + skew
        (-(60 + 1), RejectReason.NOT_YET_VALID),  # iat more than skew in the future
    ],
)
def test_time_window(x_world: World, shift: int, reason: RejectReason) -> None:
    req = x_world.request(ttl=120)
    x_world.clock.now = NOW + shift
    assert reject_reason(x_world, req.to_bytes()) is reason


def test_far_future_request_is_rejected(x_world: World) -> None:
    req = x_world.request(now=NOW + 86_400)
    assert reject_reason(x_world, req.to_bytes()) is RejectReason.NOT_YET_VALID


def test_skew_is_tolerated(x_world: World) -> None:
    req = x_world.request(ttl=120)
    for now in (NOW - 60, NOW + 120 + 60):
        x_world.clock.now = now
        x_world.verifier().verify_and_open(req.to_bytes())


@pytest.mark.parametrize("ttl", [0, -5, 901, 86_400])
def test_bad_lifetime_is_rejected(x_world: World, ttl: int) -> None:
    req = x_world.request(ttl=ttl)
    assert reject_reason(x_world, req.to_bytes()) is RejectReason.BAD_LIFETIME


# --- binding -------------------------------------------------------------------------


def test_sealed_secret_moved_into_another_request_fails_to_open(x_world: World) -> None:
    victim = x_world.request(new_password="victim-Passw0rd!")
    # Even the portal's own key cannot make the moved entry open: info binds the header.
    other = x_world.request(user_value="mallory@acme.example")
    doc = json.loads(other.to_bytes())
    doc["sealed"] = json.loads(victim.to_bytes())["sealed"]
    signed = {"header": doc["header"], "sealed": doc["sealed"]}
    doc["sig"] = sign(x_world.signer._key, Domain.REQUEST, signed).model_dump()
    raw = canonical_json(doc)
    verified = x_world.verifier().verify(raw)  # signature is valid...
    with pytest.raises(Rejected) as info:
        verified.open()  # ...but the entry is bound to the other request
    assert info.value.reason is RejectReason.DECRYPT_FAILED
    assert "victim" not in str(info.value) and "victim" not in repr(info.value)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"tenant": "other"}, RejectReason.WRONG_TENANT),
        ({"agent_group": "branch"}, RejectReason.WRONG_AGENT_GROUP),
    ],
)
def test_request_for_another_tenant_or_group(
    x_world: World, no_decrypt: list[int], kw: dict[str, str], reason: RejectReason
) -> None:
    req = x_world.request(**kw)
    assert reject_reason(x_world, req.to_bytes()) is reason
    assert reject_reason(x_world, x_world.request().to_bytes(), **kw) is reason
    assert TENANT and GROUP


def test_two_agents_of_a_group_open_and_a_removed_agent_cannot(world: World) -> None:
    a, b = world.agents
    req = world.request()
    for agent in (a, b):
        _, secret = world.verifier(agent).verify_and_open(req.to_bytes())
        assert secret.new_password is not None
        assert secret.new_password.get_secret_value() == NEW_PW
    # b is removed from the group: the portal seals only to a from now on.
    later = world.request(agents=[a.public()])
    assert len(later.envelope.sealed) == 1
    world.verifier(a).verify_and_open(later.to_bytes())
    with pytest.raises(Rejected) as info:
        world.verifier(b).verify_and_open(later.to_bytes())
    assert info.value.reason is RejectReason.NOT_FOR_THIS_AGENT


def test_entry_under_the_wrong_kid_fails_to_decrypt(world: World) -> None:
    """An agent's kid pointing at bytes sealed to another agent: DECRYPT_FAILED."""
    a, b = world.agents
    req = world.request(agents=[a.public(), b.public()])
    doc = json.loads(req.to_bytes())
    sealed = doc["sealed"]
    sealed[a.kem.kid], sealed[b.kem.kid] = sealed[b.kem.kid], sealed[a.kem.kid]
    doc["sig"] = sign(
        world.signer._key, Domain.REQUEST, {"header": doc["header"], "sealed": sealed}
    ).model_dump()
    assert reject_reason(world, canonical_json(doc)) is RejectReason.DECRYPT_FAILED


# --- size and parsing ----------------------------------------------------------------


def test_ten_megabyte_envelope_is_rejected_without_parsing(
    x_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_parse(_raw: bytes) -> object:
        raise AssertionError("parsed")

    monkeypatch.setattr(verify_mod, "parse_json", no_parse)
    raw = b"{" + b" " * (10 * 1024 * 1024) + b"}"
    with pytest.raises(Rejected) as info:
        x_world.verifier().verify(raw)
    assert info.value.reason is RejectReason.TOO_LARGE


def test_unsupported_version(x_world: World) -> None:
    raw = _mutate(x_world.request().to_bytes(), lambda d: d["header"].update(v=2))
    with pytest.raises(Rejected) as info:
        x_world.verifier().verify(raw)
    assert info.value.reason is RejectReason.UNSUPPORTED_VERSION
    assert info.value.request_id is not None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b"\xef\xbb\xbf{}",
        b"\xff\xfe",
        b'{"header": NaN}',
        b'{"a": 1, "a": 2}',
        b"[" * 10_000 + b"]" * 10_000,
        b"1" * 5000,
    ],
)
def test_malformed_bytes(x_world: World, raw: bytes) -> None:
    with pytest.raises(Rejected) as info:
        x_world.verifier().verify(raw)
    assert info.value.reason is RejectReason.MALFORMED


def test_duplicate_key_in_header_is_malformed(x_world: World) -> None:
    raw = (
        x_world.request().to_bytes().replace(b'"tenant":"acme"', b'"tenant":"acme","tenant":"acme"')
    )
    with pytest.raises(Rejected) as info:
        x_world.verifier().verify(raw)
    assert info.value.reason is RejectReason.MALFORMED


def test_secret_on_unlock_is_malformed(x_world: World) -> None:
    req = x_world.request()
    raw = _mutate(req.to_bytes(), lambda d: d["header"].update(op="unlock"))
    with pytest.raises(Rejected) as info:
        x_world.verifier().verify(raw)
    assert info.value.reason is RejectReason.MALFORMED
    assert info.value.request_id == req.id


def test_rejection_carries_id_and_hash_for_signed_answer(x_world: World) -> None:
    req = x_world.request(tenant="other")
    with pytest.raises(Rejected) as info:
        x_world.verifier().verify(req.to_bytes())
    assert info.value.request_id == req.id
    assert info.value.request_hash == req.request_hash


def test_agent_keys_not_in_group(x_world: World) -> None:
    outsider = AgentKeys.generate()
    req = x_world.request()
    assert reject_reason(x_world, req.to_bytes(), agent=outsider) is RejectReason.NOT_FOR_THIS_AGENT
