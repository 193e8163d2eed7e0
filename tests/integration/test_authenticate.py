"""Op authenticate at the connector: a bind as the user, against a real Samba AD DC
and a real slapd (the same bodies). The portal signs users in with it, so what is
asserted is what a person at the sign-in page meets: the right password works, a
wrong one does not, the domain's lockout counts the attempts, and a password that
must be changed is told apart from a wrong one."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.base import (
    AccountDisabled,
    AccountLocked,
    DirectoryConnector,
    InsecureTransport,
    InvalidCredentials,
    LookupKind,
    PasswordExpired,
    UserQuery,
)
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from wire.status import CredentialReason, Status

pytestmark = pytest.mark.slow

INITIAL = "Initial-Pass-1"


def _user(directory: DirectoryEnv, connector: DirectoryConnector, **kwargs: object):
    login = unique_login("a")
    directory.create_user(login, INITIAL, given_name="Ada", surname="Byron", **kwargs)  # type: ignore[arg-type]
    return login, connector.find_user(UserQuery(LookupKind.LOGIN, login))


def test_right_password_signs_in_wrong_one_does_not(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    _, user = _user(directory, connector)
    connector.authenticate(user, SecretStr(INITIAL))
    with pytest.raises(InvalidCredentials) as info:
        connector.authenticate(user, SecretStr("Not-" + INITIAL))
    assert info.value.status is Status.INVALID_CREDENTIALS
    assert INITIAL not in str(info.value)
    with pytest.raises(InvalidCredentials):  # an empty bind would be anonymous: refused
        connector.authenticate(user, SecretStr(""))


def test_wrong_attempts_lock_the_account_like_any_logon(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    """Lockout threshold 3 in both fixtures: three wrong sign-ins lock the account,
    and then even the right password is refused as locked."""
    login, user = _user(directory, connector)
    for _ in range(3):
        with pytest.raises((InvalidCredentials, AccountLocked)):
            connector.authenticate(user, SecretStr("Wrong-Pass-9"))
    with pytest.raises(AccountLocked) as info:
        connector.authenticate(user, SecretStr(INITIAL))
    assert info.value.status is Status.ACCOUNT_LOCKED
    assert directory.bind(login, INITIAL) is BindOutcome.LOCKED


def test_must_change_is_not_a_wrong_password(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    _, user = _user(directory, connector)
    connector.reset_password(user, SecretStr("Reset-Pass-77"), must_change=True)
    with pytest.raises(PasswordExpired) as info:
        connector.authenticate(user, SecretStr("Reset-Pass-77"))
    assert info.value.status is Status.PASSWORD_EXPIRED
    assert info.value.reason == CredentialReason.MUST_CHANGE.value


def test_disabled_account(directory: DirectoryEnv, connector: DirectoryConnector) -> None:
    # AD: userAccountControl ACCOUNTDISABLE; OpenLDAP: the administrator's permanent
    # lock (pwdAccountLockedTime 000001010000Z), which slapd itself calls accountLocked.
    _, user = _user(directory, connector, disabled=True)
    with pytest.raises(AccountDisabled):
        connector.authenticate(user, SecretStr(INITIAL))


def test_plain_ldap_refused_before_the_bind(
    directory: DirectoryEnv, connector: DirectoryConnector
) -> None:
    _, user = _user(directory, connector)
    plain = directory.connector(urls=[directory.plain_url])
    with pytest.raises(InsecureTransport):
        plain.authenticate(user, SecretStr(INITIAL))
