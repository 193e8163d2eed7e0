"""The user's lookup sent ahead (`DirectoryConnector.look_ahead`), against a real Samba
AD DC and a real slapd: the agent sends it as soon as a request is verified and reads
the answer when it looks the user up, so the directory works on it meanwhile.

What must hold: `find_user` for the same user answers from the search already sent
(no second request goes out); anything else the connector does next gets its own
answer, never the one sent ahead (a lookup for another user finds that user); and a
look-ahead that cannot be sent or read changes nothing the caller sees.
"""

from __future__ import annotations

import socket
from contextlib import closing
from typing import Any

import pytest
from pydantic import SecretStr

from connectors import _ldap_send
from connectors.base import (
    DirectoryConnector,
    DirectoryUnavailable,
    LookupKind,
    UserNotFound,
    UserQuery,
)
from tests.servers._process import free_port
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login

pytestmark = pytest.mark.slow

INITIAL = "Initial-Pass-1"
NEW = "Fresh-Secret-42"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The type of every LDAP request the connectors send, in order."""
    requests: list[str] = []
    send = _ldap_send._send

    def counting(conn: Any, op: bytes, controls: Any, request: dict[str, Any]) -> int:
        requests.append(str(request["type"]))
        return send(conn, op, controls, request)

    monkeypatch.setattr(_ldap_send, "_send", counting)
    return requests


def _login(kind: LookupKind = LookupKind.LOGIN, value: str = "") -> UserQuery:
    return UserQuery(kind, value)


def test_find_user_reads_the_search_sent_ahead(
    directory: DirectoryEnv, connector: DirectoryConnector, sent: list[str]
) -> None:
    login = unique_login()
    dn = directory.create_user(login, INITIAL)
    plain = connector.find_user(_login(value=login))  # a kept connection, the policy cached
    sent.clear()
    connector.look_ahead(_login(value=login))
    assert sent == ["searchRequest"]
    found = connector.find_user(_login(value=login))
    assert sent == ["searchRequest"]  # answered from the search already sent
    assert found == plain
    assert found.dn.lower() == dn.lower()


def test_another_lookup_never_gets_the_answer_sent_ahead(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    first, second = unique_login(), unique_login()
    directory.create_user(first, INITIAL)
    second_dn = directory.create_user(second, INITIAL)
    connector.look_ahead(_login(value=first))
    found = connector.find_user(_login(value=second))
    assert found.login == second
    assert found.dn.lower() == second_dn.lower()
    # by another kind of lookup, too: the same user by id is another search
    connector.look_ahead(_login(value=first))
    by_id = connector.find_user(UserQuery(LookupKind.ID, directory.user_id(second)))
    assert by_id.dn == found.dn
    # and the session goes on as usual: a reset after a look-ahead nobody read
    connector.look_ahead(_login(value=first))
    connector.reset_password(found, SecretStr(NEW))
    assert directory.bind(second, NEW) is BindOutcome.OK
    assert directory.bind(first, INITIAL) is BindOutcome.OK


@pytest.mark.parametrize("hostile", ["*)(uid=*", "*)(sAMAccountName=*", "*", "a\x00b", " "])
def test_hostile_names_ahead_find_nobody(
    directory: DirectoryEnv, connector: DirectoryConnector, hostile: str
) -> None:
    login = unique_login()
    directory.create_user(login, INITIAL)  # so that an unescaped wildcard WOULD match
    for kind in (LookupKind.LOGIN, LookupKind.UPN, LookupKind.ID):
        connector.look_ahead(UserQuery(kind, hostile))  # never raises
        with pytest.raises(UserNotFound):
            connector.find_user(UserQuery(kind, hostile))
    connector.look_ahead(UserQuery(LookupKind.LOGIN, hostile))
    assert connector.find_user(_login(value=login)).login == login


def test_connection_lost_after_the_search_went_out(
    directory: DirectoryEnv, connector: DirectoryConnector, sent: list[str]
) -> None:
    login = unique_login()
    directory.create_user(login, INITIAL)
    connector.find_user(_login(value=login))  # a kept connection
    connector.look_ahead(_login(value=login))
    # The connection dies before its answer is read (a DC restart, a firewall).
    conn = connector._session._conn  # type: ignore[attr-defined]
    conn.socket.shutdown(socket.SHUT_RDWR)
    sent.clear()
    found = connector.find_user(_login(value=login))  # searched again, on a new connection
    assert found.login == login
    assert sent == ["searchRequest"]
    connector.reset_password(found, SecretStr(NEW))
    assert directory.bind(login, NEW) is BindOutcome.OK


def test_look_ahead_to_a_directory_that_does_not_answer(directory: DirectoryEnv) -> None:
    dead = f"ldaps://127.0.0.1:{free_port()}"
    with closing(directory.connector(urls=[dead], connect_timeout=1.0)) as conn:
        conn.look_ahead(_login(value="anyone"))  # never raises
        with pytest.raises(DirectoryUnavailable):
            conn.find_user(_login(value="anyone"))
