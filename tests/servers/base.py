"""What every test directory offers the tests, whatever the server behind it.

The contract tests (tests/integration/test_connector_contract.py) run against a
parametrized `directory` fixture that yields a `DirectoryEnv`: the same behaviour
tests over Samba AD DC and slapd. Each env is session-scoped (one server process per
test session); tests isolate themselves by creating users with unique names
(`unique_login()`).

Default password policy of every env (so the same tests hold for both):
min length 8, complexity (3 of upper/lower/digit/symbol; AD also forbids the account
name), history 3, min age 0, lockout after 3 bad passwords. Users created with
`young=True` get a policy with a minimum age of 1 day.
"""

from __future__ import annotations

import itertools
import os
from enum import StrEnum
from typing import Any, Protocol

from connectors.base import DirectoryConnector, DirectorySettings

_counter = itertools.count(1)


def unique_login(prefix: str = "u") -> str:
    """A login name no other test in this session uses (<= 20 chars for sAMAccountName)."""
    return f"{prefix}{os.getpid() % 1000:03d}x{next(_counter):04d}"


class BindOutcome(StrEnum):
    OK = "ok"
    INVALID_CREDENTIALS = "invalid_credentials"
    MUST_CHANGE = "must_change"  # AD bind data 773 / ppolicy changeAfterReset
    LOCKED = "locked"  # AD data 775 / ppolicy accountLocked
    DISABLED = "disabled"  # AD data 533
    OTHER = "other"


class DirectoryEnv(Protocol):
    kind: str  # "active_directory" | "openldap"
    settings: DirectorySettings  # ldaps + CA validation, service account with full rights
    limited_settings: DirectorySettings  # a service account that may read but not write passwords
    plain_url: str  # ldap:// URL of the same server (insecure-write refusal test)
    base_dn: str  # where users are created (inside settings.base_dns)
    outside_base_dn: str  # an OU/branch outside settings.base_dns, for scope tests

    def connector(self, **overrides: Any) -> DirectoryConnector:
        """A fresh connector on `settings.model_copy(update=overrides)`."""
        ...

    def create_user(
        self,
        login: str,
        password: str,
        *,
        given_name: str | None = None,
        surname: str | None = None,
        display_name: str | None = None,
        mail: str | None = None,
        disabled: bool = False,
        young: bool = False,
        protected: bool = False,
        outside_base: bool = False,
    ) -> str:
        """Create the user with `password` set (so pwdLastSet/pwdChangedTime = now). Returns the DN.
        protected=True: AD adminCount=1; OpenLDAP: member of the env's protected group."""
        ...

    def bind(self, login: str, password: str) -> BindOutcome:
        """Bind as the user over TLS and say what the directory answered."""
        ...

    def lock(self, login: str) -> None:
        """Wrong-password binds until the directory locks the account (asserts it is locked)."""
        ...

    def create_group(self, name: str, members: list[str]) -> str:
        """A group with these member DNs (users or groups, for nesting). Returns its DN."""
        ...

    def add_member(self, group_dn: str, member_dn: str) -> None:
        """Add a user or group to an existing group."""
        ...

    def user_id(self, login: str) -> str:
        """objectGUID / entryUUID of the user, in the form `find_user(LookupKind.ID)` takes."""
        ...
