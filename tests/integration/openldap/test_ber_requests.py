"""connectors/_ldap_send.py against ldap3 itself, on the real slapd: for each request
shape the reset path uses (and the odd ones an operator's values can produce), the
bytes put on the wire are the bytes ldap3 + pyasn1 put there, and the answer the
caller gets (entries, result, exception) is the same.

The message id is the only thing allowed to differ, so each pair of calls starts from
the same id (ldap3 numbers messages with one process-wide counter)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import ldap3
import pytest
from ldap3.core import exceptions as lexc
from ldap3.protocol.microsoft import security_descriptor_control
from ldap3.protocol.rfc4511 import Control
from ldap3.utils.conv import escape_filter_chars

from connectors import _ldap_send as send
from connectors import _ppolicy as pp
from connectors._ldap import close_quietly, open_connection
from tests.servers.base import BindOutcome, unique_login
from tests.servers.slapd import PEOPLE, SUFFIX, SlapdEnv

pytestmark = pytest.mark.slapd

_RELAX = ("1.3.6.1.4.1.4203.666.5.12", True, None)


class _Recorder:
    """The connection's socket, keeping a copy of what is sent."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@pytest.fixture
def conn(slapd_env: SlapdEnv) -> Iterator[ldap3.Connection]:
    c = open_connection(slapd_env.settings, context="service_bind")
    c.socket = _Recorder(c.socket)
    yield c
    c.socket = c.socket._sock
    close_quietly(c)


def _twice(
    conn: ldap3.Connection,
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    *,
    direct: bool = True,
) -> Any:
    """Run ldap3's call and ours from the same message id; both must send the same bytes
    and leave the same result (or raise the same error). Returns our return value."""
    outcomes = []
    through_ldap3: list[Any] = []
    counts = []
    original = conn.send  # what ldap3's Connection methods send through

    def counted(*args: Any, **kwargs: Any) -> Any:
        through_ldap3.append(args[0])
        return original(*args, **kwargs)

    conn.send = counted
    for call in (theirs, ours):
        ldap3.Server._message_counter = 1000
        conn.socket.sent.clear()
        through_ldap3.clear()
        try:
            value: Any = call()
            raised = None
        except lexc.LDAPException as exc:
            value, raised = None, (type(exc), str(exc))
        outcomes.append((list(conn.socket.sent), raised, conn.result, value))
        counts.append(len(through_ldap3))
    conn.send = original
    # ours went out directly, unless it was given pyasn1 Control objects
    assert counts == [1, 0 if direct else 1]
    (their_bytes, their_error, their_result, _), (our_bytes, our_error, our_result, ours_v) = (
        outcomes
    )
    assert len(our_bytes) == 1
    assert our_bytes == their_bytes
    assert our_error == their_error
    assert our_result == their_result
    return ours_v


_VALUES = [
    "alice",
    escape_filter_chars("*)(uid=*"),
    escape_filter_chars("Jürgen Grüß 東京"),
    "x" * 120,  # the message passes 127 bytes: long length form
    "y" * 300,  # and 255 bytes: two length octets
    escape_filter_chars("back\\slash(paren)nul\x00"),
]


@pytest.mark.parametrize("value", _VALUES)
def test_user_lookup_filter(conn: ldap3.Connection, value: str) -> None:
    flt = f"(&(|(objectClass=person)(objectClass=posixAccount))(uid={value}))"
    attrs = ["uid", "mail", "displayName", "pwdChangedTime", "pwdAccountLockedTime"]
    _twice(
        conn,
        lambda: send.search(conn, PEOPLE, flt, attrs, size_limit=2),
        lambda: conn.search(PEOPLE, flt, attributes=attrs, size_limit=2),
    )


@pytest.mark.parametrize(
    "flt",
    [
        "(objectClass=*)",
        "(uid=a*b*c)",
        "(uid=*abc)",
        "(uid=abc*)",
        "(!(uid=alice))",
        "(uidNumber>=1000)",
        "(uidNumber<=1000)",
        "(cn~=alice)",
        "(cn:caseExactMatch:=Alice)",
        "(:dn:2.5.13.5:=people)",
        "(ou:dn:=people)",
        "(uid=\\2a\\28)",
        "( &  (uid = spaced ) (objectClass=*) )",
        "(|(uid=a)(uid=b)(&(cn=c)(!(sn=d))))",
    ],
)
def test_filter_shapes(conn: ldap3.Connection, flt: str) -> None:
    _twice(
        conn,
        lambda: send.search(conn, SUFFIX, flt, ["uid"]),
        lambda: conn.search(SUFFIX, flt, attributes=["uid"]),
    )


@pytest.mark.parametrize(
    ("attrs", "scope", "controls"),
    [
        ([], ldap3.BASE, None),  # no attributes: ldap3 asks for 1.1
        (["*", "+"], ldap3.BASE, None),
        (["uid"], ldap3.LEVEL, [(pp.PPOLICY_OID, False, None)]),
        (["uid"], ldap3.LEVEL, security_descriptor_control(sdflags=4)),  # pyasn1 Controls
        (
            ["uid"],
            ldap3.SUBTREE,
            [("1.2.840.113556.1.4.319", True, b"\x30\x05\x02\x01\x05\x04\x00")],
        ),
    ],
)
def test_search_options(
    conn: ldap3.Connection, attrs: list[str], scope: str, controls: Any
) -> None:
    entries = _twice(
        conn,
        lambda: send.search(conn, PEOPLE, "(objectClass=*)", attrs, scope=scope, controls=controls),
        lambda: conn.search(
            PEOPLE, "(objectClass=*)", search_scope=scope, attributes=attrs, controls=controls
        ),
        direct=not any(isinstance(c, Control) for c in controls or ()),
    )
    assert entries == conn.response


def test_a_bad_filter_is_refused_before_anything_is_sent(conn: ldap3.Connection) -> None:
    for flt in ("uid=alice", "(uid=alice", "((uid=a)(uid=b))"):
        conn.socket.sent.clear()
        with pytest.raises(lexc.LDAPInvalidFilterError):
            send.search(conn, PEOPLE, flt, ["uid"])
        assert conn.socket.sent == []


def test_modify_shapes(conn: ldap3.Connection, slapd_env: SlapdEnv) -> None:
    login = unique_login("ber")
    slapd_env.create_user(login, "Initial-Pass-1")
    dn = f"uid={login},{PEOPLE}"
    for changes, controls in [
        ({"pwdReset": [(ldap3.MODIFY_REPLACE, ["TRUE"])]}, None),
        ({"pwdReset": [(ldap3.MODIFY_REPLACE, [])]}, None),
        ({"description": (ldap3.MODIFY_REPLACE, ["Grüße", b"\xff\x00raw", "z" * 300])}, None),
        ({"description": [(ldap3.MODIFY_DELETE, [b"\xff\x00raw"])], "sn": [(2, "Other")]}, None),
        ({"pwdFailureTime": [(ldap3.MODIFY_REPLACE, [])]}, [_RELAX]),
        ({"description": [(ldap3.MODIFY_ADD, ["Grüße"])]}, None),  # exists: both refused
    ]:
        _twice(
            conn,
            lambda c=changes, k=controls: send.modify(conn, dn, c, controls=k),  # type: ignore[misc]
            lambda c=changes, k=controls: conn.modify(dn, c, controls=k),  # type: ignore[misc]
        )
    _twice(  # no such entry
        conn,
        lambda: send.modify(conn, f"uid=nobody-{login},{PEOPLE}", {"sn": [(2, ["x"])]}),
        lambda: conn.modify(f"uid=nobody-{login},{PEOPLE}", {"sn": [(2, ["x"])]}),
    )


def test_malformed_changes_are_refused_before_anything_is_sent(conn: ldap3.Connection) -> None:
    for changes in ({}, {"sn": [("BOGUS", ["x"])]}, {"sn": [(2, ["x"], "extra")]}):
        conn.socket.sent.clear()
        with pytest.raises(lexc.LDAPChangeError):
            send.modify(conn, f"uid=x,{PEOPLE}", changes)
        assert conn.socket.sent == []


@pytest.mark.parametrize(
    "new",
    [
        "Fresh-Secret-42",
        "Pässwörd-ﬁne-1",  # SASLprep maps the ligature: the same bytes as ldap3's
        "short",  # refused by ppolicy: the same error and response control
        "N" * 200 + "-7a",
    ],
)
def test_password_modify(conn: ldap3.Connection, slapd_env: SlapdEnv, new: str) -> None:
    # Two users whose DNs have the same length (history would refuse the same password
    # twice on one): ldap3 sets theirs, we set ours; the bytes differ by the DN only.
    theirs, ours = unique_login("ber"), unique_login("ber")
    for login in (theirs, ours):
        slapd_env.create_user(login, "Initial-Pass-1")
    their_dn, our_dn = f"uid={theirs},{PEOPLE}", f"uid={ours},{PEOPLE}"
    controls = [pp.PPOLICY_REQUEST]
    outcomes = []
    through_ldap3: list[Any] = []
    original = conn.send

    def counted(*args: Any, **kwargs: Any) -> Any:
        through_ldap3.append(args[0])
        return original(*args, **kwargs)

    conn.send = counted
    for call in (
        lambda: conn.extend.standard.modify_password(
            their_dn, new_password=new, hash_algorithm=None, controls=controls
        ),
        lambda: send.password_modify(conn, our_dn, new, controls=controls),
    ):
        ldap3.Server._message_counter = 2000
        conn.socket.sent.clear()
        try:
            call()
            raised = None
        except lexc.LDAPException as exc:
            raised = (type(exc), str(exc))
        outcomes.append((list(conn.socket.sent), raised, dict(conn.result)))
    conn.send = original
    assert through_ldap3 == ["extendedReq"]  # ldap3's call only: ours went out directly
    (their_bytes, their_error, their_result), (our_bytes, our_error, our_result) = outcomes
    assert len(our_bytes) == 1
    assert [b.replace(their_dn.encode(), our_dn.encode()) for b in their_bytes] == our_bytes
    assert our_error == their_error
    for key in ("result", "description", "message", "controls"):
        assert our_result.get(key) == their_result.get(key)
    expected = BindOutcome.OK if len(new) > 6 else BindOutcome.INVALID_CREDENTIALS
    assert slapd_env.bind(ours, new) is expected
    assert slapd_env.bind(theirs, new) is expected


def test_a_malformed_dn_is_refused_every_time_before_anything_is_sent(
    conn: ldap3.Connection,
) -> None:
    # DN checks are cached for DNs ldap3 accepts; a refused one is checked (and refused)
    # again on every call.
    for _ in range(2):
        conn.socket.sent.clear()
        with pytest.raises(lexc.LDAPInvalidDnError):
            send.modify(conn, "uid=a , ou=people", {"sn": [(2, ["x"])]})
        with pytest.raises(lexc.LDAPInvalidDnError):
            send.password_modify(conn, "not a dn", "Fresh-Secret-42")
        assert conn.socket.sent == []
