"""Key files, key ids, public records and the portal keyring file."""

from __future__ import annotations

import base64
import hashlib
import stat
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from cloud.sdk import PortalSigner, rotate_portal_key
from wire import AgentKeys, AgentPublicKeys, KeyFileError, PortalKeyring
from wire.canonical import b64url_encode
from wire.keys import KEM_FILE, KEM_PREVIOUS_FILE, SIGNING_FILE, key_id

from .conftest import NOW


def test_save_load_roundtrip_with_0600(tmp_path: Path, kem: str) -> None:
    keys = AgentKeys.generate(kem).rotate_kem(now=NOW, overlap=600)  # type: ignore[arg-type]
    d = tmp_path / "keys"
    keys.save(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in (SIGNING_FILE, KEM_FILE, KEM_PREVIOUS_FILE):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    loaded = AgentKeys.load(d)
    assert loaded.public() == keys.public()
    assert loaded.previous_kem is not None and keys.previous_kem is not None
    assert loaded.previous_kem.kid == keys.previous_kem.kid
    assert loaded.previous_kem.not_after == NOW + 600


def test_pruning_removes_expired_previous_key_from_disk(tmp_path: Path) -> None:
    keys = AgentKeys.generate().rotate_kem(now=NOW, overlap=600)
    keys.save(tmp_path)
    assert keys.pruned(NOW + 600) is keys
    keys.pruned(NOW + 601).save(tmp_path)
    assert not (tmp_path / KEM_PREVIOUS_FILE).exists()
    assert AgentKeys.load(tmp_path).previous_kem is None


def test_load_refuses_group_readable_key(tmp_path: Path) -> None:
    AgentKeys.generate().save(tmp_path)
    (tmp_path / SIGNING_FILE).chmod(0o640)
    with pytest.raises(KeyFileError, match="too open"):
        AgentKeys.load(tmp_path)


def test_key_file_errors_name_path_not_key(tmp_path: Path) -> None:
    AgentKeys.generate().save(tmp_path)
    secret_text = (tmp_path / KEM_FILE).read_text()
    (tmp_path / KEM_FILE).write_text(secret_text.replace('"alg"', '"alx"'))
    with pytest.raises(KeyFileError) as info:
        AgentKeys.load(tmp_path)
    assert str(tmp_path / KEM_FILE) in str(info.value)
    assert secret_text.split('"private": "')[1][:20] not in str(info.value)
    with pytest.raises(KeyFileError, match="missing"):
        AgentKeys.load(tmp_path / "nowhere")


def test_repr_never_shows_private_keys(kem: str) -> None:
    keys = AgentKeys.generate(kem)  # type: ignore[arg-type]
    priv = b64url_encode(keys.signing.private_bytes_raw())
    assert priv not in repr(keys) and priv[:10] not in repr(keys)
    assert b64url_encode(keys.kem.private_raw())[:10] not in repr(keys.kem)


def test_key_ids_are_derived_and_checked(kem: str) -> None:
    pub = AgentKeys.generate(kem).public("agent-1")  # type: ignore[arg-type]
    assert pub.sign_kid.startswith("ed25519_") and len(pub.sign_kid) == len("ed25519_") + 22
    assert pub.kem_kid.startswith(kem.replace("-", "") + "_")
    other = AgentKeys.generate(kem).public()  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        AgentPublicKeys.model_validate({**pub.model_dump(), "kem_kid": other.kem_kid})
    with pytest.raises(ValidationError):
        AgentPublicKeys.model_validate({**pub.model_dump(), "sign_key": other.sign_key})
    # The JSON form round-trips (what the relay stores).
    assert AgentPublicKeys.model_validate_json(pub.model_dump_json()) == pub


def test_key_id_scheme() -> None:
    # Recomputed with the standard library only, as another implementation would.
    digest = base64.urlsafe_b64encode(hashlib.sha256(bytes(32)).digest()).decode()
    assert key_id("ed25519", bytes(32)) == "ed25519_" + digest[:22]
    assert key_id("ed25519", bytes(32)) == "ed25519_Zmh6rfhivXdsj8GLjp-OIA"


def test_keyring_file_roundtrip(tmp_path: Path) -> None:
    rotation = rotate_portal_key(PortalSigner.generate(), overlap=60, now=NOW)
    ring = PortalKeyring(rotation.keyring_entries)
    path = tmp_path / "portal-keys.json"
    ring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PortalKeyring.load(path).keys == ring.keys
    with pytest.raises(KeyFileError):
        PortalKeyring.from_json('{"v": 1, "keys": [{"kid": "x"}]}')


def test_portal_signer_file(tmp_path: Path) -> None:
    signer = PortalSigner.generate()
    path = tmp_path / "portal.key"
    signer.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PortalSigner.load(path).kid == signer.kid


def test_two_writers_of_one_key_file_at_once_both_succeed(tmp_path: Path) -> None:
    """The scheduler's key-expiry job and a manual check can save the same keys together
    (a CI run once failed on a shared temp file); each write is whole, no temp is left."""
    keys = AgentKeys.generate()
    errors: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(30):
                keys.save(tmp_path)
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AgentKeys.load(tmp_path).kem.kid == keys.kem.kid
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir())
