"""The directory id a user key is made of (docs/protocol.md section 12.3) is what the
connectors read, on a real Samba AD DC and a real slapd: an agent written from the
spec in another language computes the same user key for the same entry, so the
relay's one-permit-per-user fence holds across implementations.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from agent.permits import user_key, write_marker
from connectors.base import LookupKind, UserQuery
from tests.servers.base import DirectoryEnv, unique_login

pytestmark = pytest.mark.slow


def _spec_guid(raw: bytes) -> str:
    """Section 12.3: the first three groups little endian, the last two in order."""
    first, second, third = struct.unpack("<IHH", raw[:8])
    return f"{first:08x}-{second:04x}-{third:04x}-{raw[8:10].hex()}-{raw[10:].hex()}"


def _read_id(directory: DirectoryEnv, login: str) -> str:
    if directory.kind == "active_directory":
        raw = directory.read(directory.dn_of(login), ["objectGUID"])["raw"]["objectGUID"][0]  # type: ignore[attr-defined]
        assert len(raw) == 16
        return _spec_guid(bytes(raw))
    return str(directory.first(login, "entryUUID")).strip().lower()  # type: ignore[attr-defined]


def test_the_user_key_is_made_of_the_id_the_spec_names(directory: DirectoryEnv) -> None:
    login = unique_login()
    directory.create_user(login, "Initial-Pass-1")
    connector = directory.connector()
    try:
        user = connector.find_user(UserQuery(LookupKind.LOGIN, login))
    finally:
        connector.close()
    ident = _read_id(directory, login)
    assert user.id == ident
    want = hashlib.sha256(f"writeback-user-key/v1\nacme\n{ident}".encode()).hexdigest()
    assert user_key("acme", user.id) == want
    # The marker's stamp is the one the spec names: uSNChanged in decimal, entryCSN as read.
    if directory.kind == "active_directory":
        usn = directory.read(directory.dn_of(login), ["uSNChanged"])["uSNChanged"]  # type: ignore[attr-defined]
        assert user.change_stamp == str(usn[0] if isinstance(usn, list) else usn)
        assert user.change_stamp.isdigit()
    else:
        assert user.change_stamp == directory.first(login, "entryCSN")  # type: ignore[attr-defined]
    material = f"writeback-write-marker/v1\n{want}\n{user.server}\n{user.change_stamp}"
    assert (
        write_marker(want, user.server, user.change_stamp)
        == hashlib.sha256(material.encode()).hexdigest()
    )
