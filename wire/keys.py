"""Agent keys: generation, key ids, 0600 key files, public export, KEM rotation.

Why every agent has its own keys: the portal seals each request once per enrolled
agent, so no two agents share a private key and removing one agent (dropping its
public record at the relay) cuts it off from every later request.

Key files (docs/protocol.md section 7.2): one JSON object per file,
``{"v": 1, "alg": ..., "private": "<base64url raw private key>"}`` (+ ``"not_after"``
for a previous KEM key), mode 0600 in a 0700 directory, written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ed25519, mlkem, x25519
from pydantic import BaseModel, ConfigDict, Field, model_validator

from wire.canonical import b64url_decode, b64url_encode, sha256
from wire.errors import KeyFileError
from wire.files import write_private
from wire.messages import (
    KEM_KID_PATTERN,
    NAME_PATTERN,
    SIGN_KID_PATTERN,
    KemAlg,
)

SIGNING_FILE = "signing.key"
KEM_FILE = "kem.key"
KEM_PREVIOUS_FILE = "kem.previous.key"

_KID_KIND = {"ed25519": "ed25519", "x25519": "x25519", "mlkem768-x25519": "mlkem768x25519"}


def key_id(alg: str, raw_public: bytes) -> str:
    """``<kind>_`` + first 22 chars of base64url(sha256(raw public key)) (132 bits).

    Why derived, not assigned: anyone holding the public key can recompute and check
    it, so a relay cannot swap a key under a known id.
    """
    return f"{_KID_KIND[alg]}_{b64url_encode(sha256(raw_public))[:22]}"


_ED25519_P = 2**255 - 19
_ED25519_D = -121665 * pow(121666, _ED25519_P - 2, _ED25519_P) % _ED25519_P
# The y coordinates of the eight points of small order (1, 2, 4, 8) on edwards25519:
# every encoding whose y is one of these is a small-order point (whatever its sign bit).
_ED25519_SMALL_ORDER_Y = frozenset(
    {
        0,
        1,
        _ED25519_P - 1,
        0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826,
        0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
    }
)


@functools.lru_cache(maxsize=1024)
def ed25519_public_key(raw: bytes) -> ed25519.Ed25519PublicKey:
    """An Ed25519 public key that is a canonical encoding of a point not of small order.

    Cached (the key object is immutable): every request and signed call checks the
    same few keys, and the two modular exponentiations cost ~0.4 ms each time.

    Why here and not left to OpenSSL: OpenSSL verifies the RFC 8032 cofactorless
    equation and refuses S >= L, but it accepts a non-canonical key encoding (y >= p)
    and a small-order key, under which one fixed signature verifies for every message.
    Refusing such keys where they enter a keyring or an agent record closes both.
    Raises ValueError.
    """
    if len(raw) != 32:
        raise ValueError("ed25519 public key must be 32 bytes")
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y >= _ED25519_P:
        raise ValueError("ed25519 public key is not canonically encoded")
    if y in _ED25519_SMALL_ORDER_Y:
        raise ValueError("ed25519 public key is a point of small order")
    # RFC 8032 5.1.3 decoding: x^2 = (y^2 - 1) / (d y^2 + 1) must have a root.
    p = _ED25519_P
    xx = (y * y - 1) * pow(_ED25519_D * y * y + 1, p - 2, p) % p
    if xx and pow(xx, (p - 1) // 2, p) != 1:
        raise ValueError("ed25519 public key is not a point on the curve")
    if xx == 0 and raw[31] & 0x80:
        raise ValueError("ed25519 public key is not canonically encoded")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


XWING_SEED_BYTES = 32
XWING_EXPANDED_BYTES = 96


def xwing_expand_seed(seed: bytes) -> bytes:
    """X-Wing's expandDecapsulationKey input: SHAKE-256(seed, 96 bytes) = d || z || sk_X.

    d || z is the 64-byte ML-KEM-768 seed (FIPS 203 KeyGen_internal(d, z)), sk_X the
    X25519 private key. One-way: the 32-byte seed cannot be recovered from the result.
    """
    if len(seed) != XWING_SEED_BYTES:
        raise ValueError("X-Wing seed must be 32 bytes")
    return hashlib.shake_256(seed).digest(XWING_EXPANDED_BYTES)


@dataclass(frozen=True, repr=False)
class KemPrivateKey:
    """One HPKE private key. The hybrid's raw public form is ML-KEM pk || X25519 pk."""

    alg: KemAlg
    _x25519: x25519.X25519PrivateKey
    _mlkem: mlkem.MLKEM768PrivateKey | None = None
    not_after: int | None = None  # set on a previous key: unusable after this time
    # The hybrid's 32-byte X-Wing seed, when the key was made from one (the form other
    # X-Wing implementations import); None for keys loaded in the 96-byte form.
    _xwing_seed: bytes | None = field(default=None, compare=False)

    @classmethod
    def generate(cls, alg: KemAlg = "x25519") -> KemPrivateKey:
        if alg == "mlkem768-x25519":
            return cls.from_private_raw(alg, os.urandom(XWING_SEED_BYTES))
        return cls(alg, x25519.X25519PrivateKey.generate())

    @classmethod
    def from_private_raw(cls, alg: KemAlg, raw: bytes) -> KemPrivateKey:
        """x25519: 32 bytes. mlkem768-x25519 (X-Wing): the 32-byte seed, or the 96-byte
        expanded form d || z || sk_X (64-byte ML-KEM-768 seed, 32-byte X25519 key)."""
        if alg == "x25519":
            return cls(alg, x25519.X25519PrivateKey.from_private_bytes(raw))
        seed: bytes | None = None
        if len(raw) == XWING_SEED_BYTES:
            seed, raw = raw, xwing_expand_seed(raw)
        if len(raw) != XWING_EXPANDED_BYTES:
            raise ValueError("mlkem768-x25519 private key must be 32 or 96 bytes")
        return cls(
            alg,
            x25519.X25519PrivateKey.from_private_bytes(raw[64:]),
            mlkem.MLKEM768PrivateKey.from_seed_bytes(raw[:64]),
            _xwing_seed=seed,
        )

    def private_raw(self) -> bytes:
        """The form written to key files: x25519 32 bytes; the hybrid its 32-byte X-Wing
        seed when known, else the 96-byte expanded form."""
        if self._xwing_seed is not None:
            return self._xwing_seed
        return self.expanded_private_raw()

    def expanded_private_raw(self) -> bytes:
        """x25519: 32 bytes; the hybrid: d || z || sk_X (96 bytes)."""
        xr = self._x25519.private_bytes_raw()
        return xr if self._mlkem is None else self._mlkem.private_bytes_raw() + xr

    def public_raw(self) -> bytes:
        return self._public_raw

    # Computed once per key (the agent checks every request's kids against its keys).
    @functools.cached_property
    def _public_raw(self) -> bytes:
        xr = self._x25519.public_key().public_bytes_raw()
        if self._mlkem is None:
            return xr
        return self._mlkem.public_key().public_bytes_raw() + xr

    @functools.cached_property
    def kid(self) -> str:
        return key_id(self.alg, self.public_raw())

    def hpke_private(self) -> x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey:
        if self._mlkem is None:
            return self._x25519
        return hpke.MLKEM768X25519PrivateKey(self._mlkem, self._x25519)

    def __repr__(self) -> str:
        return f"KemPrivateKey(alg={self.alg!r}, kid={self.kid!r})"


class AgentPublicKeys(BaseModel):
    """What the relay stores at enrollment and the portal seals to.

    The validator recomputes both key ids from the keys, so a record whose id does not
    belong to its key cannot exist.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    agent_id: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    sign_kid: Annotated[str, Field(pattern=SIGN_KID_PATTERN)]
    sign_key: Annotated[str, Field(min_length=43, max_length=43)]
    kem: KemAlg
    kem_kid: Annotated[str, Field(pattern=KEM_KID_PATTERN)]
    kem_key: Annotated[str, Field(max_length=1700)]

    @model_validator(mode="after")
    def _kids_match_keys(self) -> AgentPublicKeys:
        sign_raw = b64url_decode(self.sign_key)
        ed25519_public_key(sign_raw)  # canonical, not of small order
        if key_id("ed25519", sign_raw) != self.sign_kid:
            raise ValueError("sign_kid does not match sign_key")
        kem_raw = b64url_decode(self.kem_key)
        _hpke_public(self.kem, kem_raw)
        if key_id(self.kem, kem_raw) != self.kem_kid:
            raise ValueError("kem_kid does not match kem_key")
        return self

    def signing_public_key(self) -> ed25519.Ed25519PublicKey:
        return ed25519_public_key(b64url_decode(self.sign_key))

    def hpke_public_key(self) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
        return _hpke_public(self.kem, b64url_decode(self.kem_key))


def _hpke_public(alg: KemAlg, raw: bytes) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
    if alg == "x25519":
        return x25519.X25519PublicKey.from_public_bytes(raw)
    if len(raw) != 1184 + 32:
        raise ValueError("mlkem768-x25519 public key must be 1216 bytes")
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184]),
        x25519.X25519PublicKey.from_public_bytes(raw[1184:]),
    )


@dataclass(frozen=True, repr=False)
class AgentKeys:
    """An agent's private keys: one Ed25519 signing key, a current HPKE key and, during
    a rotation's overlap window, the previous HPKE key."""

    signing: ed25519.Ed25519PrivateKey
    kem: KemPrivateKey
    previous_kem: KemPrivateKey | None = field(default=None)

    @classmethod
    def generate(cls, kem: KemAlg = "x25519") -> AgentKeys:
        return cls(ed25519.Ed25519PrivateKey.generate(), KemPrivateKey.generate(kem))

    @property
    def sign_kid(self) -> str:
        return key_id("ed25519", self.signing.public_key().public_bytes_raw())

    def public(self, agent_id: str | None = None) -> AgentPublicKeys:
        return AgentPublicKeys(
            agent_id=agent_id,
            sign_kid=self.sign_kid,
            sign_key=b64url_encode(self.signing.public_key().public_bytes_raw()),
            kem=self.kem.alg,
            kem_kid=self.kem.kid,
            kem_key=b64url_encode(self.kem.public_raw()),
        )

    def kem_keys(self, now: int) -> dict[str, KemPrivateKey]:
        """Usable HPKE keys by kid at ``now``: current, plus previous within its window."""
        keys = {self.kem.kid: self.kem}
        prev = self.previous_kem
        if prev is not None and (prev.not_after is None or now <= prev.not_after):
            keys[prev.kid] = prev
        return keys

    def rotate_kem(self, *, now: int, overlap: int, alg: KemAlg | None = None) -> AgentKeys:
        """New current HPKE key; the old one keeps opening requests for ``overlap`` s.

        Why an overlap: requests sealed to the old public key may already sit in the
        queue when the relay learns the new one. Register the new public record right
        after rotating.
        """
        old = replace(self.kem, not_after=now + overlap)
        return AgentKeys(self.signing, KemPrivateKey.generate(alg or self.kem.alg), old)

    def pruned(self, now: int) -> AgentKeys:
        """Drop the previous HPKE key once its window has passed (for the scheduler's
        key-expiry job: prune, then save, so the old private key leaves the disk)."""
        prev = self.previous_kem
        if prev is not None and prev.not_after is not None and now > prev.not_after:
            return AgentKeys(self.signing, self.kem, None)
        return self

    def save(self, directory: Path) -> None:
        """Write the key files (0600) into ``directory`` (created 0700)."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_key(directory / SIGNING_FILE, "ed25519", self.signing.private_bytes_raw())
        # The previous key first: a running agent that reloads between the two writes
        # (live rotation) then still holds the key queued requests are sealed to.
        prev_path = directory / KEM_PREVIOUS_FILE
        if self.previous_kem is not None:
            _write_key(
                prev_path,
                self.previous_kem.alg,
                self.previous_kem.private_raw(),
                not_after=self.previous_kem.not_after,
            )
        _write_key(directory / KEM_FILE, self.kem.alg, self.kem.private_raw())
        if self.previous_kem is None:
            prev_path.unlink(missing_ok=True)

    @classmethod
    def load(cls, directory: Path) -> AgentKeys:
        """Read keys written by save(); refuses files that group or others can read."""
        alg, raw, _ = _read_key(directory / SIGNING_FILE)
        if alg != "ed25519":
            raise KeyFileError(f"{directory / SIGNING_FILE}: expected an ed25519 key")
        signing = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
        kem = _load_kem(directory / KEM_FILE)
        prev_path = directory / KEM_PREVIOUS_FILE
        previous = _load_kem(prev_path) if prev_path.exists() else None
        return cls(signing, kem, previous)

    def __repr__(self) -> str:
        prev = self.previous_kem.kid if self.previous_kem else None
        return f"AgentKeys(sign_kid={self.sign_kid!r}, kem_kid={self.kem.kid!r}, previous={prev!r})"


def _load_kem(path: Path) -> KemPrivateKey:
    alg, raw, not_after = _read_key(path)
    if alg not in ("x25519", "mlkem768-x25519"):
        raise KeyFileError(f"{path}: not an HPKE key")
    try:
        key = KemPrivateKey.from_private_raw(alg, raw)  # type: ignore[arg-type]
    except ValueError as exc:
        raise KeyFileError(f"{path}: invalid {alg} key") from exc
    return replace(key, not_after=not_after)


def _write_key(path: Path, alg: str, raw: bytes, *, not_after: int | None = None) -> None:
    doc: dict[str, Any] = {"v": 1, "alg": alg, "private": b64url_encode(raw)}
    if not_after is not None:
        doc["not_after"] = not_after
    write_private(path, json.dumps(doc) + "\n")


def _read_key(path: Path) -> tuple[str, bytes, int | None]:
    try:
        st = path.stat()
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):o} is too open (want 0600)")
        doc = json.loads(path.read_text(encoding="utf-8"))
        alg, private = doc["alg"], doc["private"]
        not_after = doc.get("not_after")
        if doc.get("v") != 1 or not isinstance(alg, str) or not isinstance(private, str):
            raise ValueError("bad fields")
        if not_after is not None and not isinstance(not_after, int):
            raise ValueError("bad not_after")
        return alg, b64url_decode(private), not_after
    except KeyFileError:
        raise
    except FileNotFoundError as exc:
        raise KeyFileError(f"{path}: missing") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # The message names the path only: the exception text could quote key bytes.
        raise KeyFileError(f"{path}: unreadable key file ({type(exc).__name__})") from None
