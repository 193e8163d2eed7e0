"""Live key rotation with the throttled file check (agent/keywatch.py): the key files
are looked at only every CHECK_INTERVAL while every request finds its keys, yet the
first request that needs a key the agent does not hold yet (sealed to a rotated agent
key, or signed by a newly pinned portal key) makes it look at once and is accepted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.enrollment import keyring_path
from agent.keywatch import KeyWatcher, ReloadingVerifier
from cloud.sdk import PortalSigner, build_request
from wire.errors import Rejected
from wire.keyring import PortalKeyring
from wire.keys import AgentKeys
from wire.status import RejectReason

TENANT, GROUP = "t1", "g1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _setup(tmp_path: Path, clock: Clock) -> tuple[ReloadingVerifier, AgentKeys, PortalSigner, Path]:
    data_dir = tmp_path / "data"
    keys_dir = data_dir / "keys"
    keys_dir.mkdir(parents=True, mode=0o700)
    data_dir.chmod(0o700)
    keys = AgentKeys.generate()
    keys.save(keys_dir)
    signer = PortalSigner.generate()
    ring = PortalKeyring([signer.trusted_key()])
    ring.save(keyring_path(data_dir))
    verifier = ReloadingVerifier(ring, keys, tenant=TENANT, agent_group=GROUP)
    # An hour-long interval: only a request that needs a new key makes it look.
    verifier.watcher = KeyWatcher(verifier, keys_dir, data_dir, interval=3600.0, clock=clock)
    return verifier, keys, signer, keys_dir


def _reset(signer: PortalSigner, keys: AgentKeys, login: str) -> bytes:
    return build_request(
        signer, tenant=TENANT, agent_group=GROUP, agents=[keys.public("agent-1")],
        op="reset", user_kind="login", user_value=login, new_password="New-Pass-123x",
    ).to_bytes()


def test_first_request_sealed_to_a_rotated_key_finds_it(tmp_path: Path) -> None:
    clock = Clock()
    verifier, keys, signer, keys_dir = _setup(tmp_path, clock)
    verifier.verify_and_open(_reset(signer, keys, "before"))  # the old key works
    rotated = keys.rotate_kem(now=int(time.time()), overlap=3600)
    rotated.save(keys_dir)  # what `keys rotate` does before it tells the relay
    _, secret = verifier.verify_and_open(_reset(signer, rotated, "first-after"))
    assert secret.new_password is not None
    assert secret.new_password.get_secret_value() == "New-Pass-123x"
    assert verifier.agent_keys.kem.kid == rotated.kem.kid
    # And a request still sealed to the previous key opens during the overlap.
    verifier.verify_and_open(_reset(signer, keys, "queued-before"))


def test_first_request_signed_by_a_newly_pinned_portal_key_is_accepted(tmp_path: Path) -> None:
    clock = Clock()
    verifier, keys, _, _ = _setup(tmp_path, clock)
    new_signer = PortalSigner.generate()
    ring = verifier.keyring.with_key(new_signer.trusted_key())
    ring.save(keyring_path(tmp_path / "data"))
    verified = verifier.verify(_reset(new_signer, keys, "new-portal-key"))
    assert verified.envelope.sig.kid == new_signer.kid


def test_an_unknown_key_still_rejected_when_the_files_do_not_have_it(tmp_path: Path) -> None:
    clock = Clock()
    verifier, keys, _, _ = _setup(tmp_path, clock)
    with pytest.raises(Rejected) as refused:
        verifier.verify(_reset(PortalSigner.generate(), keys, "stranger"))
    assert refused.value.reason is RejectReason.UNKNOWN_KEY
    signer = PortalSigner.generate()
    refused_open = verifier.verify(_reset(_trusted(verifier, signer), AgentKeys.generate(), "x"))
    with pytest.raises(Rejected) as not_ours:
        refused_open.open()
    assert not_ours.value.reason is RejectReason.NOT_FOR_THIS_AGENT


def _trusted(verifier: ReloadingVerifier, signer: PortalSigner) -> PortalSigner:
    verifier.replace_keyring(verifier.keyring.with_key(signer.trusted_key()))
    return signer


def test_files_are_looked_at_once_per_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    clock = Clock()
    verifier, keys, signer, _ = _setup(tmp_path, clock)
    watcher = verifier.watcher
    assert watcher is not None
    looks: list[int] = []
    original = watcher._current_stamp  # counting the stats is the point

    def counting() -> tuple[tuple[int, int, int], ...]:
        looks.append(1)
        return original()

    monkeypatch.setattr(watcher, "_current_stamp", counting)
    for n in range(20):
        verifier.verify(_reset(signer, keys, f"u{n}"))
    assert looks == []  # within the interval, every key known: no stat at all
    clock.now += 3600.0
    verifier.verify(_reset(signer, keys, "later"))
    assert len(looks) == 1


def test_a_key_removed_from_the_files_is_dropped_after_the_interval(tmp_path: Path) -> None:
    clock = Clock()
    verifier, keys, signer, _ = _setup(tmp_path, clock)
    other = PortalSigner.generate()
    PortalKeyring([other.trusted_key()]).save(keyring_path(tmp_path / "data"))
    clock.now += 3600.0
    with pytest.raises(Rejected) as refused:
        verifier.verify(_reset(signer, keys, "revoked"))
    assert refused.value.reason is RejectReason.UNKNOWN_KEY
