"""Build docs/test-vectors/relay.json (docs/protocol.md section 12): user keys, write
markers, one signed agent call and the permit bodies. Everything is deterministic.

Regenerate: .venv/bin/python -m tests.unit.protocol.make_relay_vectors
(make_vectors.py writes it too, with the other files).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.permits import user_key, write_marker
from wire.canonical import b64url_encode
from wire.signed_call import auth_message, authorization_value

TENANT = "acme"
AGENT_SIGN_SEED = bytes(range(96, 128))  # the agent signing key of result.json
GUID = bytes.fromhex("00112233445566778899aabbccddeeff")
# A real-looking objectGUID whose byte order matters in every group.
GUID2 = bytes.fromhex("6f9619ff8b86d011b42d00c04fc964ff")


def _user_keys() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for raw in (GUID, GUID2):
        ident = str(uuid.UUID(bytes_le=raw))
        cases.append(
            {
                "name": f"ad_object_guid_{raw.hex()[:8]}",
                "tenant": TENANT,
                "object_guid_hex": raw.hex(),
                "id": ident,
                "user_key": user_key(TENANT, ident),
            }
        )
    for name, read in (
        ("openldap_entry_uuid", "e4a6c1f2-3b5d-4c7e-9f10-2a3b4c5d6e7f"),
        ("openldap_entry_uuid_upper_and_spaces", "  E4A6C1F2-3B5D-4C7E-9F10-2A3B4C5D6E7F \n"),
    ):
        cases.append(
            {
                "name": name,
                "tenant": TENANT,
                "entry_uuid": read,
                "id": read.strip().lower(),
                "user_key": user_key(TENANT, read),
            }
        )
    cases.append(
        {
            "name": "other_tenant_other_key",
            "tenant": "globex",
            "entry_uuid": "e4a6c1f2-3b5d-4c7e-9f10-2a3b4c5d6e7f",
            "id": "e4a6c1f2-3b5d-4c7e-9f10-2a3b4c5d6e7f",
            "user_key": user_key("globex", "e4a6c1f2-3b5d-4c7e-9f10-2a3b4c5d6e7f"),
        }
    )
    return cases


def _markers(key: str) -> list[dict[str, Any]]:
    cases = [
        ("active_directory", "ldaps://dc1.acme.example:636|10.0.0.11", "12345"),
        (
            "openldap",
            "ldaps://ldap1.acme.example:636|10.0.0.21",
            "20261130174500.123456Z#000000#001#000000",
        ),
        ("same_stamp_other_server", "ldaps://dc2.acme.example:636|10.0.0.12", "12345"),
    ]
    out: list[dict[str, Any]] = [
        {
            "name": name,
            "user_key": key,
            "server": server,
            "change_stamp": stamp,
            "marker": write_marker(key, server, stamp),
        }
        for name, server, stamp in cases
    ]
    out.append(
        {
            "name": "no_stamp_no_marker",
            "user_key": key,
            "server": cases[0][1],
            "change_stamp": "",
            "marker": write_marker(key, cases[0][1], ""),
        }
    )
    return out


def _signed_call(marker: str, key: str) -> dict[str, Any]:
    sk = ed25519.Ed25519PrivateKey.from_private_bytes(AGENT_SIGN_SEED)
    body = json.dumps(
        {"user_key": key, "ordered": True, "marker": marker}, separators=(",", ":")
    ).encode("utf-8")
    method, path = "POST", "/v1/agent/leases/lse_Q2xhc3NpYy1sZWFzZS0x/permit"
    ts, nonce = "1800000005", "Zm9yLXRoZS12ZWN0b3JzLTE"
    message = auth_message(method, path.encode("ascii"), ts, nonce, body)
    sig = sk.sign(message)
    return {
        "agent_id": "agt_0123456789abcdef01234567",
        "agent_signing_public_key": b64url_encode(sk.public_key().public_bytes_raw()),
        "method": method,
        "path_with_query": path,
        "ts": ts,
        "nonce": nonce,
        "body": body.decode("utf-8"),
        "body_sha256_hex": hashlib.sha256(body).hexdigest(),
        "signed_bytes_hex": message.hex(),
        "signature": b64url_encode(sig),
        "authorization": authorization_value("agt_0123456789abcdef01234567", ts, nonce, sig),
        "empty_body_call": _empty_body_call(sk),
    }


def _empty_body_call(sk: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    method, path = "POST", "/v1/agent/lease?wait=25"
    ts, nonce = "1800000005", "Zm9yLXRoZS12ZWN0b3JzLTI"
    message = auth_message(method, path.encode("ascii"), ts, nonce, b"")
    return {
        "method": method,
        "path_with_query": path,
        "ts": ts,
        "nonce": nonce,
        "body": "",
        "signed_bytes_hex": message.hex(),
        "signature": b64url_encode(sk.sign(message)),
    }


def relay_vectors() -> dict[str, Any]:
    keys = _user_keys()
    key = keys[0]["user_key"]
    markers = _markers(key)
    return {
        "description": "docs/protocol.md section 12. user_keys: the directory id as read "
        "(objectGUID as its 16 bytes in hex, entryUUID as its string) -> id -> user_key. "
        "markers: user_key, server, change_stamp -> marker (null: no stamp, no marker). "
        "signed_call: one agent call, signed with the agent signing key of result.json "
        "(agent_signing_private_key there). permit_asks: the permit body each op sends "
        "(null: the op asks no permit).",
        "user_keys": keys,
        "markers": markers,
        "signed_call": _signed_call(str(markers[0]["marker"]), key),
        "permit_asks": {
            "reset": {"user_key": key, "ordered": True, "marker": markers[0]["marker"]},
            "change": {"user_key": key, "ordered": True, "marker": markers[0]["marker"]},
            "unlock": {"user_key": key, "ordered": False, "marker": markers[0]["marker"]},
            "authenticate": None,
            "preflight": None,
        },
    }


def main() -> None:
    from .make_vectors import write

    write("relay.json", relay_vectors())


if __name__ == "__main__":
    main()
