"""HPKE open written from docs/protocol.md section 5 and RFC 9180 alone, with nothing
but primitives (SHA-256/HMAC, SHA3-256, SHAKE-256, X25519, ML-KEM-768 decapsulation,
ChaCha20-Poly1305): what an implementer in another language has to write. The tests
use it to check that the spec's description of both suites is complete and right,
independently of cryptography's HPKE module.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEM_ID = {"x25519": 0x0020, "mlkem768-x25519": 0x647A}
KDF_HKDF_SHA256 = 0x0001
AEAD_CHACHA20POLY1305 = 0x0003
XWING_LABEL = bytes.fromhex("5c2e2f2f5e5c")  # "\./" "/^\"


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return _extract(salt, b"HPKE-v1" + suite_id + label + ikm)


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, n: int) -> bytes:
    return _expand(prk, n.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info, n)


def xwing_expand(seed: bytes) -> bytes:
    """X-Wing seed (32 bytes) -> d || z || sk_X (96 bytes)."""
    return hashlib.shake_256(seed).digest(96)


def shared_secret(kem: str, private: bytes, enc: bytes) -> bytes:
    """The KEM shared secret for one ``enc``; ``private`` in the form of keys.json."""
    if kem == "x25519":
        sk = x25519.X25519PrivateKey.from_private_bytes(private)
        pk_r = sk.public_key().public_bytes_raw()
        dh = sk.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
        kem_suite = b"KEM" + KEM_ID[kem].to_bytes(2, "big")
        eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
        return _labeled_expand(kem_suite, eae_prk, b"shared_secret", enc + pk_r, 32)
    expanded = xwing_expand(private) if len(private) == 32 else private
    sk_m = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    sk_x = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    ct_m, ct_x = enc[:1088], enc[1088:]
    ss_m = sk_m.decapsulate(ct_m)
    ss_x = sk_x.exchange(x25519.X25519PublicKey.from_public_bytes(ct_x))
    pk_x = sk_x.public_key().public_bytes_raw()
    return hashlib.sha3_256(ss_m + ss_x + ct_x + pk_x + XWING_LABEL).digest()


def key_schedule(kem: str, ss: bytes, info: bytes) -> tuple[bytes, bytes]:
    """RFC 9180 base mode: (key, base_nonce) for ChaCha20-Poly1305."""
    suite_id = (
        b"HPKE"
        + KEM_ID[kem].to_bytes(2, "big")
        + KDF_HKDF_SHA256.to_bytes(2, "big")
        + AEAD_CHACHA20POLY1305.to_bytes(2, "big")
    )
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, ss, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, 32)
    nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return key, nonce


ENC_LENGTH = {"x25519": 32, "mlkem768-x25519": 1120}


def open_entry(kem: str, private: bytes, sealed: bytes, info: bytes) -> bytes:
    """Single-shot open of enc || ciphertext (sequence number 0, empty AAD)."""
    n = ENC_LENGTH[kem]
    enc, ct = sealed[:n], sealed[n:]
    key, nonce = key_schedule(kem, shared_secret(kem, private, enc), info)
    return ChaCha20Poly1305(key).decrypt(nonce, ct, b"")
