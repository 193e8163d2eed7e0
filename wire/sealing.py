"""HPKE (RFC 9180) sealing of the secret part to each agent of a group.

Suites (base mode, single-shot; wire value = enc || ciphertext, base64url):

- ``x25519``: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305
- ``mlkem768-x25519``: the hybrid ML-KEM-768 + X25519 KEM as implemented by
  cryptography (``KEM.MLKEM768_X25519``), HKDF-SHA256, ChaCha20-Poly1305

Why ``info`` binds the request: info = SEAL_DOMAIN + request id + NUL +
sha256(canonical header). A sealed entry copied into another request (other id,
user, op or expiry) then fails to open, even if whoever copied it could sign.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke

from wire.canonical import b64url_decode, b64url_encode, sha256
from wire.keys import AgentPublicKeys, KemPrivateKey
from wire.messages import KemAlg, RequestHeader

SEAL_DOMAIN = b"writeback-agent/seal/v1\x00"

_KEMS: dict[str, hpke.KEM] = {
    "x25519": hpke.KEM.X25519,
    "mlkem768-x25519": hpke.KEM.MLKEM768_X25519,
}


def hybrid_available() -> bool:
    """Whether the installed cryptography offers the post-quantum hybrid KEM."""
    return hasattr(hpke, "MLKEM768X25519PrivateKey") and hasattr(hpke.KEM, "MLKEM768_X25519")


def suite(kem: KemAlg) -> hpke.Suite:
    return hpke.Suite(_KEMS[kem], hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)


def seal_info(header: RequestHeader) -> bytes:
    return SEAL_DOMAIN + header.id.encode("ascii") + b"\x00" + sha256(header.canonical())


def seal(
    header: RequestHeader, plaintext: bytes, recipients: list[AgentPublicKeys]
) -> dict[str, str]:
    """One sealed entry per recipient, keyed by the recipient's kem kid."""
    info = seal_info(header)
    sealed: dict[str, str] = {}
    for agent in recipients:
        if agent.kem != header.kem:
            raise ValueError(f"agent key {agent.kem_kid} is {agent.kem}, request uses {header.kem}")
        ct = suite(header.kem).encrypt(plaintext, agent.hpke_public_key(), info=info)
        sealed[agent.kem_kid] = b64url_encode(ct)
    return sealed


def open_sealed(header: RequestHeader, entry: str, key: KemPrivateKey) -> bytes:
    """Decrypt one sealed entry. Raises ValueError on any failure (never says why more
    precisely: the difference between "bad tag" and "bad length" helps only attackers)."""
    try:
        return suite(key.alg).decrypt(
            b64url_decode(entry), key.hpke_private(), info=seal_info(header)
        )
    except (InvalidTag, ValueError, TypeError) as exc:
        raise ValueError("sealed entry does not open") from exc
