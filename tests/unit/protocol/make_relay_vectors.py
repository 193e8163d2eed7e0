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


def _hex(label: str) -> str:
    return hashlib.sha256(label.encode("utf-8")).hexdigest()


def _scenarios() -> list[dict[str, Any]]:
    """Section 12.3's decisions, step by step (lease time 30 s, grace 25 s)."""
    u, m1, m2 = _hex("user U"), _hex("marker 1"), _hex("marker 2")

    def submit(at: float, request: str) -> dict[str, Any]:
        return {"at": at, "do": "submit", "request": request}

    def lease(at: float, agent: str, lease_id: str, request: str) -> dict[str, Any]:
        return {"at": at, "do": "lease", "agent": agent, "lease": lease_id, "want": request}

    def ask(
        at: float, agent: str, lease_id: str, want: str, *, ordered: bool = True,
        marker: str | None = m1, user: str = u,
    ) -> dict[str, Any]:  # fmt: skip
        return {"at": at, "do": "ask", "agent": agent, "lease": lease_id, "user_key": user,
                "ordered": ordered, "marker": marker, "want": want}  # fmt: skip

    def post(at: float, agent: str, lease_id: str, request: str, want: str) -> dict[str, Any]:
        return {"at": at, "do": "post", "agent": agent, "lease": lease_id, "request": request,
                "want": want}  # fmt: skip

    def release(at: float, agent: str, lease_id: str) -> dict[str, Any]:
        return {"at": at, "do": "release", "agent": agent, "lease": lease_id}

    return [
        {
            "name": "asked_again_under_the_same_lease",
            "steps": [
                submit(0, "r1"),
                lease(0, "a1", "L1", "r1"),
                ask(1, "a1", "L1", "granted"),
                ask(2, "a1", "L1", "granted", marker=m2),
                post(3, "a1", "L1", "r1", "stored"),
                post(4, "a1", "L1", "r1", "stored"),
                ask(5, "a1", "L1", "lease_lost"),
            ],
        },
        {
            "name": "the_newer_request_wins",
            "steps": [
                submit(0, "r1"),
                submit(0, "r2"),
                lease(0, "a1", "L1", "r1"),
                lease(0, "a2", "L2", "r2"),
                ask(1, "a2", "L2", "granted"),
                ask(2, "a1", "L1", "superseded"),
                ask(3, "a1", "L1", "superseded"),
            ],
        },
        {
            "name": "one_open_permit_per_user",
            "steps": [
                submit(0, "r1"),
                submit(0, "r2"),
                submit(0, "r3"),
                lease(0, "a1", "L1", "r1"),
                lease(0, "a2", "L2", "r2"),
                lease(0, "a2", "L3", "r3"),
                ask(1, "a1", "L1", "granted"),
                ask(1, "a2", "L2", "busy"),
                ask(1, "a2", "L3", "busy", ordered=False),
                ask(1, "a2", "L3", "granted", ordered=False, user=_hex("user V")),
                post(2, "a1", "L1", "r1", "stored"),
                # r1 was written after L2 began: L2's read may be stale
                ask(3, "a2", "L2", "recheck"),
                ask(3, "a2", "L2", "granted", marker=m2),
            ],
        },
        {
            "name": "unordered_asks_neither_supersede_nor_are_superseded",
            "steps": [
                submit(0, "r1"),
                submit(0, "r2"),
                submit(0, "r3"),
                lease(0, "a1", "L1", "r1"),
                lease(0, "a1", "L2", "r2"),
                lease(0, "a1", "L3", "r3"),
                ask(1, "a1", "L3", "granted", ordered=False),
                post(2, "a1", "L3", "r3", "stored"),
                ask(3, "a1", "L1", "recheck"),
                ask(3, "a1", "L1", "granted", marker=m2),
                post(4, "a1", "L1", "r1", "stored"),
                ask(5, "a1", "L2", "recheck"),
                ask(5, "a1", "L2", "granted", marker=m2),
            ],
        },
        {
            "name": "a_redelivery_waits_for_the_late_answer_then_is_in_doubt",
            "steps": [
                submit(0, "r1"),
                lease(0, "a1", "L1", "r1"),
                ask(1, "a1", "L1", "granted"),
                lease(32, "a2", "L2", "r1"),
                ask(33, "a2", "L2", "busy", marker=m2),
                ask(55, "a2", "L2", "busy", marker=None),
                ask(56, "a2", "L2", "in_doubt", marker=m2),
                ask(57, "a2", "L2", "in_doubt", marker=None),
            ],
        },
        {
            "name": "the_first_writers_late_answer_is_kept",
            "steps": [
                submit(0, "r1"),
                lease(0, "a1", "L1", "r1"),
                ask(1, "a1", "L1", "granted"),
                lease(32, "a2", "L2", "r1"),
                ask(33, "a2", "L2", "busy", marker=m2),
                post(40, "a1", "L1", "r1", "stored"),
                ask(41, "a2", "L2", "lease_lost"),
                post(42, "a2", "L2", "r1", "lease_lost"),
            ],
        },
        {
            "name": "the_holders_marker_takes_the_permit_over",
            "steps": [
                submit(0, "r1"),
                lease(0, "a1", "L1", "r1"),
                ask(1, "a1", "L1", "granted"),
                lease(32, "a2", "L2", "r1"),
                ask(33, "a2", "L2", "granted"),
                post(34, "a1", "L1", "r1", "lease_lost"),
                post(35, "a2", "L2", "r1", "stored"),
            ],
        },
        {
            "name": "no_takeover_while_the_holders_permit_runs",
            "steps": [
                submit(0, "r1"),
                lease(0, "a1", "L1", "r1"),
                ask(1, "a1", "L1", "granted"),
                release(2, "a1", "L1"),
                lease(3, "a2", "L2", "r1"),
                ask(4, "a2", "L2", "busy"),
                ask(31, "a2", "L2", "granted"),
            ],
        },
        {
            "name": "a_reservation_excludes_and_a_redelivery_takes_it_over",
            "steps": [
                submit(0, "r1"),
                submit(0, "r2"),
                submit(0, "r3"),
                lease(0, "a1", "L1", "r1"),
                lease(0, "a1", "L2", "r2"),
                ask(1, "a1", "L1", "granted"),
                post(2, "a1", "L1", "r1", "stored"),
                ask(3, "a1", "L2", "recheck"),
                lease(3, "a2", "L3", "r3"),
                ask(4, "a2", "L3", "busy", ordered=False),
                lease(40, "a2", "L4", "r2"),
                ask(41, "a2", "L4", "granted", marker=None),
            ],
        },
        {
            "name": "a_reservation_given_back_is_dropped",
            "steps": [
                submit(0, "r1"),
                submit(0, "r2"),
                submit(0, "r3"),
                lease(0, "a1", "L1", "r1"),
                lease(0, "a1", "L2", "r2"),
                lease(0, "a1", "L3", "r3"),
                ask(1, "a1", "L1", "granted"),
                post(2, "a1", "L1", "r1", "stored"),
                ask(3, "a1", "L2", "recheck"),
                ask(4, "a1", "L3", "busy", ordered=False),
                release(5, "a1", "L2"),
                ask(6, "a1", "L3", "recheck", ordered=False),
            ],
        },
        {
            "name": "busy_until_the_holder_answers",
            "steps": [
                submit(0, "r1"),
                submit(0, "r2"),
                lease(0, "a1", "L1", "r1"),
                ask(1, "a1", "L1", "granted"),
                lease(1, "a2", "L2", "r2"),
                ask(2, "a2", "L2", "busy"),
                post(3, "a1", "L1", "r1", "stored"),
                ask(4, "a2", "L2", "recheck"),
                ask(4, "a2", "L2", "granted", marker=m2),
                post(5, "a2", "L2", "r2", "stored"),
            ],
        },
    ]


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
        "(null: the op asks no permit). permit_scenarios: section 12.3 step by step: "
        "at (seconds from the start), do: submit (queue a request), lease (the agent takes "
        "the oldest leasable request; want: which), ask (a permit; want: the decision or "
        "lease_lost), post (a result; want: stored or lease_lost), release.",
        "permit_scenarios": {
            "lease_seconds": 30,
            "late_answer_grace": 25,
            "request_lifetime": 600,
            "scenarios": _scenarios(),
        },
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
