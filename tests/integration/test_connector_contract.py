"""The behaviour every directory connector owes its callers, checked against a real
Samba AD DC and a real slapd with the same test bodies (the `directory` fixture).

What a user would see is what is asserted: after a reset the user can bind with the
new password; a refusal names the rule; a lookup with a hostile name finds nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

import pytest
from pydantic import SecretStr

from connectors.base import (
    AccountDisabled,
    AccountLocked,
    AmbiguousUser,
    DirectoryConnector,
    DirectoryUser,
    InsecureTransport,
    LookupKind,
    PolicyViolation,
    UserNotFound,
    UserQuery,
    WrongOldPassword,
)
from tests.servers._process import free_port
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from wire.status import PolicyReason, Status

pytestmark = pytest.mark.slow

INITIAL = "Initial-Pass-1"
NEW = "Fresh-Secret-42"
NON_BMP = "Pässwörd-ñ-密码-🔑x9"


def secret(value: str) -> SecretStr:
    return SecretStr(value)


def _new_user(directory: DirectoryEnv, **kwargs: object) -> str:
    login = unique_login()
    directory.create_user(login, INITIAL, given_name="Robin", surname="Quartz", **kwargs)  # type: ignore[arg-type]
    return login


def _find(connector: DirectoryConnector, login: str) -> DirectoryUser:
    return connector.find_user(UserQuery(LookupKind.LOGIN, login))


# --------------------------------------------------------------------------- lookups


def test_find_by_login_upn_and_id(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = unique_login()
    mail = f"{login}@mail.wb.test"
    dn = directory.create_user(login, INITIAL, mail=mail)
    by_login = _find(connector, login)
    assert by_login.dn.lower() == dn.lower()
    assert by_login.login == login
    by_mail = connector.find_user(UserQuery(LookupKind.UPN, mail))
    assert by_mail.dn == by_login.dn
    by_id = connector.find_user(UserQuery(LookupKind.ID, directory.user_id(login)))
    assert by_id.dn == by_login.dn
    assert by_id.id == by_login.id


def test_user_not_found(connector: DirectoryConnector) -> None:
    with pytest.raises(UserNotFound) as info:
        connector.find_user(UserQuery(LookupKind.LOGIN, "nobody-" + unique_login()))
    assert info.value.status is Status.USER_NOT_FOUND


def test_ambiguous_user(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    shared = f"shared-{unique_login()}@mail.wb.test"
    directory.create_user(unique_login(), INITIAL, mail=shared)
    directory.create_user(unique_login(), INITIAL, mail=shared)
    with pytest.raises(AmbiguousUser) as info:
        connector.find_user(UserQuery(LookupKind.UPN, shared))
    assert info.value.status is Status.AMBIGUOUS_USER


@pytest.mark.parametrize(
    "hostile", ["*)(uid=*", "admin)(|(x=*", "*", "*)(sAMAccountName=*", "\\2a", "a\x00b"]
)
@pytest.mark.parametrize("kind", [LookupKind.LOGIN, LookupKind.UPN, LookupKind.ID])
def test_hostile_names_find_nobody(
    directory: DirectoryEnv, connector: DirectoryConnector, hostile: str, kind: LookupKind
) -> None:
    _new_user(directory)  # so that an unescaped wildcard WOULD match someone
    with pytest.raises(UserNotFound):
        connector.find_user(UserQuery(kind, hostile))


# --------------------------------------------------------------------------- reset


def test_reset_then_user_binds_with_new_password(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    outcome = connector.reset_password(_find(connector, login), secret(NEW))
    assert "password" in outcome.applied
    assert outcome.dc in directory.settings.urls
    assert directory.bind(login, NEW) is BindOutcome.OK
    assert directory.bind(login, INITIAL) is BindOutcome.INVALID_CREDENTIALS


def test_non_ascii_and_non_bmp_password(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    connector.reset_password(_find(connector, login), secret(NON_BMP))
    assert directory.bind(login, NON_BMP) is BindOutcome.OK
    # and the user can change from it to another non-ASCII one
    connector.change_password(_find(connector, login), secret(NON_BMP), secret("Nöch-Ein-Pass-9"))
    assert directory.bind(login, "Nöch-Ein-Pass-9") is BindOutcome.OK


def test_reset_too_short(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory)
    with pytest.raises(PolicyViolation) as info:
        connector.reset_password(_find(connector, login), secret("Ab1-x"))
    assert info.value.reason == PolicyReason.TOO_SHORT
    assert info.value.status is Status.POLICY_VIOLATION
    assert directory.bind(login, INITIAL) is BindOutcome.OK  # nothing was written


def test_reset_complexity(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory)
    with pytest.raises(PolicyViolation) as info:
        connector.reset_password(_find(connector, login), secret("alllowercaseletters"))
    assert info.value.reason == PolicyReason.COMPLEXITY
    assert directory.bind(login, INITIAL) is BindOutcome.OK


def test_reset_contains_account_name(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    with pytest.raises(PolicyViolation) as info:
        connector.reset_password(_find(connector, login), secret(f"X-{login.upper()}-9z"))
    assert info.value.reason == PolicyReason.CONTAINS_NAME


def test_change_history(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory)
    connector.change_password(_find(connector, login), secret(INITIAL), secret(NEW))
    with pytest.raises(PolicyViolation) as info:
        connector.change_password(_find(connector, login), secret(NEW), secret(INITIAL))
    assert info.value.reason == PolicyReason.HISTORY
    assert directory.bind(login, NEW) is BindOutcome.OK


def test_change_too_young(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory, young=True)
    with pytest.raises(PolicyViolation) as info:
        connector.change_password(_find(connector, login), secret(INITIAL), secret(NEW))
    assert info.value.reason == PolicyReason.TOO_YOUNG
    assert directory.bind(login, INITIAL) is BindOutcome.OK


def test_policy_is_reported(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory)
    policy = connector.password_policy(_find(connector, login))
    assert policy.min_length == 8
    assert policy.complexity is True
    assert policy.history_length == 3
    young = connector.password_policy(_find(connector, _new_user(directory, young=True)))
    assert young.min_age.total_seconds() == 86400


# --------------------------------------------------------------------------- change


def test_change_with_right_old_password(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    outcome = connector.change_password(_find(connector, login), secret(INITIAL), secret(NEW))
    assert "password" in outcome.applied
    assert directory.bind(login, NEW) is BindOutcome.OK


def test_change_with_wrong_old_password(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    with pytest.raises(WrongOldPassword) as info:
        connector.change_password(_find(connector, login), secret("Not-The-Old-1"), secret(NEW))
    assert info.value.status is Status.WRONG_OLD_PASSWORD
    assert directory.bind(login, INITIAL) is BindOutcome.OK


# --------------------------------------------------------------------------- account state


def test_disabled_account(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory, disabled=True)
    user = _find(connector, login)
    assert user.disabled
    with pytest.raises(AccountDisabled) as info:
        connector.reset_password(user, secret(NEW))
    assert info.value.status is Status.ACCOUNT_DISABLED


def test_locked_account_and_unlock(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory)
    directory.lock(login)
    user = _find(connector, login)
    assert user.locked
    with pytest.raises(AccountLocked):
        connector.reset_password(user, secret(NEW))
    outcome = connector.unlock(user)
    assert "unlock" in outcome.applied
    assert not _find(connector, login).locked
    assert directory.bind(login, INITIAL) is BindOutcome.OK


def test_reset_with_unlock(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    login = _new_user(directory)
    directory.lock(login)
    outcome = connector.reset_password(_find(connector, login), secret(NEW), unlock=True)
    assert set(outcome.applied) >= {"password", "unlock"}
    assert directory.bind(login, NEW) is BindOutcome.OK


def test_must_change_seen_at_next_bind(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    outcome = connector.reset_password(_find(connector, login), secret(NEW), must_change=True)
    assert "must_change" in outcome.applied
    assert directory.bind(login, NEW) is BindOutcome.MUST_CHANGE


def test_reset_without_must_change_is_a_normal_login(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    connector.reset_password(_find(connector, login), secret(NEW), must_change=True)
    connector.reset_password(_find(connector, login), secret("Third-Secret-7"))
    assert directory.bind(login, "Third-Secret-7") is BindOutcome.OK


# --------------------------------------------------------------------------- transport


def test_plain_ldap_refused_before_the_first_bind(directory: DirectoryEnv) -> None:
    """Reads, writes and check alike: the bind would carry the service password."""
    login = _new_user(directory)
    with closing(directory.connector()) as reader:
        user = _find(reader, login)
    with closing(directory.connector(urls=[directory.plain_url], ca_file=None)) as plain:
        for attempt in (
            lambda: _find(plain, login),
            lambda: plain.reset_password(user, secret(NEW)),
            lambda: plain.unlock(user),
        ):
            with pytest.raises(InsecureTransport) as info:
                attempt()
            assert "ldaps" in str(info.value)
            assert info.value.write_sent is False
        report = plain.check()
    assert [(item.name, item.ok) for item in report.items] == [("transport", False)]
    assert directory.bind(login, INITIAL) is BindOutcome.OK


def test_check_reports_the_same_items_for_every_directory(
    connector: DirectoryConnector,
) -> None:
    """One set of item names (connectors/base.py), in the order a request travels, so
    `writeback-agent check` reads the same for AD and OpenLDAP."""
    report = connector.check()
    assert report.ok, report.items
    settings = connector.settings
    assert [item.name for item in report.items] == [
        "transport",
        "connect",
        "service_bind",
        *(f"search_base {base}" for base in settings.base_dns),
        "password_policy",
        *(f"rights {dn}" for dn in settings.write_scope),
    ]


def test_first_url_dead_second_answers(directory: DirectoryEnv) -> None:
    login = _new_user(directory)
    real = directory.settings.urls[0]
    dead = f"ldaps://127.0.0.1:{free_port()}"
    with closing(directory.connector(urls=[dead, real], connect_timeout=2.0)) as conn:
        outcome = conn.reset_password(_find(conn, login), secret(NEW))
    assert outcome.dc == real
    assert directory.bind(login, NEW) is BindOutcome.OK


def test_limited_service_account_is_denied(directory: DirectoryEnv) -> None:
    from connectors.base import AccessDenied, make_connector

    login = _new_user(directory)
    with (
        closing(make_connector(directory.limited_settings)) as limited,
        pytest.raises(AccessDenied) as info,
    ):
        limited.reset_password(_find(limited, login), secret(NEW))
    assert info.value.status is Status.ACCESS_DENIED
    assert directory.bind(login, INITIAL) is BindOutcome.OK


def test_errors_never_contain_the_password(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    attempts: list[Callable[[], object]] = [
        lambda: connector.reset_password(_find(connector, login), secret("shrt-Ü1")),
        lambda: connector.change_password(
            _find(connector, login), secret("Wrong-Old-77"), secret(NEW)
        ),
    ]
    for attempt in attempts:
        with pytest.raises(Exception) as info:
            attempt()
        text = f"{info.value} {info.value!r} {getattr(info.value, 'detail', '')}"
        for pw in ("shrt-Ü1", "Wrong-Old-77", NEW):
            assert pw not in text


# --- write guard (the write marker's two halves, agent/permits.py) -------------------


def test_the_change_stamp_moves_with_a_write_and_not_with_a_read(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    login = _new_user(directory)
    before = _find(connector, login)
    assert before.server.startswith(("ldaps://", "ldap://")) and before.change_stamp
    assert _find(connector, login).change_stamp == before.change_stamp  # a read changes nothing
    connector.reset_password(before, secret(NEW))
    after = _find(connector, login)
    assert after.server == before.server
    assert after.change_stamp != before.change_stamp


def test_a_write_is_never_sent_to_another_server_or_after_its_time(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    import dataclasses
    import time

    from connectors.base import WriteNotSent

    login = _new_user(directory)
    user = _find(connector, login)
    elsewhere = dataclasses.replace(
        user, server=user.server + "-another-dc", write_by=time.time() + 60
    )
    with pytest.raises(WriteNotSent, match="another server"):
        connector.reset_password(elsewhere, secret(NEW))
    late = dataclasses.replace(user, write_by=time.time() - 1)
    with pytest.raises(WriteNotSent, match="permit ran out"):
        connector.reset_password(late, secret(NEW))
    assert _find(connector, login).change_stamp == user.change_stamp  # nothing was written
    assert directory.bind(login, INITIAL) is BindOutcome.OK
