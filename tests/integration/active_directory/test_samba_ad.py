"""Behaviour specific to Active Directory, checked against the Samba AD DC fixture.

These pin down what docs/directories.md says about AD and what we verified on Samba
4.17: one combined modify, the extended error codes, PSOs, the policy-hints control,
the delegated-rights check, and plain LDAP refused before a byte is sent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agent.config import DirectoryConfig, ScopeSettings
from connectors.active_directory import POLICY_HINTS, ActiveDirectoryConnector
from connectors.base import (
    AccessDenied,
    AccountLocked,
    DirectoryUnavailable,
    DirectoryUser,
    InsecureTransport,
    LookupKind,
    PolicyViolation,
    UserNotFound,
    UserQuery,
    WrongOldPassword,
)
from tests.servers._process import free_port
from tests.servers.base import BindOutcome, unique_login
from tests.servers.certs import make_ca
from tests.servers.samba import SambaEnv
from tests.servers.samba_env import DOMAIN_DN
from wire.status import PolicyReason, Status

pytestmark = [pytest.mark.samba, pytest.mark.slow]

INITIAL = "Initial-Pass-1"
NEW = "Fresh-Secret-42"


@pytest.fixture
def connector(samba_env: SambaEnv) -> Iterator[ActiveDirectoryConnector]:
    conn = ActiveDirectoryConnector(samba_env.settings)
    yield conn
    conn.close()


def _user(env: SambaEnv, conn: ActiveDirectoryConnector, **kwargs: Any) -> DirectoryUser:
    login = unique_login("ad")
    env.create_user(login, INITIAL, display_name="Kim Example", **kwargs)
    return conn.find_user(UserQuery(LookupKind.LOGIN, login))


# --------------------------------------------------------------------------- lockout state


def test_lockout_that_ran_out_is_not_locked(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    """find_user reads the DC's computed lockout flag only when lockoutTime is set. A
    lockout whose duration has passed keeps its lockoutTime (AD clears it at the next
    good logon) and must read as not locked; one still running as locked."""
    login = unique_login("ran")
    samba_env.create_user(login, INITIAL)
    fresh = connector.find_user(UserQuery(LookupKind.LOGIN, login))
    assert not fresh.locked  # lockoutTime absent or 0: no second read needed
    three_seconds = str(-3 * 10_000_000)  # 100-ns ticks
    pso = samba_env.add_pso(f"{login}-pso", samba_env.dn_of(login), {
        "msDS-PasswordSettingsPrecedence": "4",
        "msDS-PasswordHistoryLength": "0",
        "msDS-LockoutThreshold": "3",
        "msDS-LockoutDuration": three_seconds,
        "msDS-LockoutObservationWindow": three_seconds,
    })
    try:
        samba_env.lock(login)
        assert connector.find_user(UserQuery(LookupKind.LOGIN, login)).locked
        deadline = time.monotonic() + 30
        while connector.find_user(UserQuery(LookupKind.LOGIN, login)).locked:
            assert time.monotonic() < deadline, "the 3 s lockout never ran out"
            time.sleep(0.5)
        lockout_time = samba_env.read(samba_env.dn_of(login), ["lockoutTime"])
        assert int(lockout_time["raw"]["lockoutTime"][0]) > 0  # still set: the path under test
        assert samba_env.bind(login, INITIAL) is BindOutcome.OK  # the DC agrees
    finally:
        samba_env.admin().delete(pso)


# --------------------------------------------------------------------------- one modify


def test_reset_unlock_and_must_change_in_one_modify(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    """Samba 4.17 takes unicodePwd + lockoutTime + pwdLastSet in one modify."""
    user = _user(samba_env, connector)
    samba_env.lock(user.login)
    locked = connector.find_user(UserQuery(LookupKind.LOGIN, user.login))
    outcome = connector.reset_password(locked, SecretStr(NEW), unlock=True, must_change=True)
    assert outcome.applied == ("password", "unlock", "must_change")
    after = connector.find_user(UserQuery(LookupKind.LOGIN, user.login))
    assert not after.locked
    assert after.pwd_last_set is None  # pwdLastSet=0: must change
    assert samba_env.bind(user.login, NEW) is BindOutcome.MUST_CHANGE  # bind data 773


def test_failed_combined_modify_applies_nothing(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    """A refused password takes its companion attributes down with it (atomic modify)."""
    user = _user(samba_env, connector)
    with pytest.raises(PolicyViolation):
        connector._modify(user, {  # bypass pre-validation to reach the DC
            "unicodePwd": [("MODIFY_REPLACE", ['"x"'.encode("utf-16-le")])],
            "pwdLastSet": [("MODIFY_REPLACE", ["0"])],
        }, "write")
    assert connector.find_user(UserQuery(LookupKind.LOGIN, user.login)).pwd_last_set is not None
    assert samba_env.bind(user.login, INITIAL) is BindOutcome.OK


def test_must_change_user_can_change_her_password(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    """She cannot bind (773), but the change runs on the service connection."""
    user = _user(samba_env, connector)
    connector.reset_password(user, SecretStr(NEW), must_change=True)
    assert samba_env.bind(user.login, NEW) is BindOutcome.MUST_CHANGE
    fresh = connector.find_user(UserQuery(LookupKind.LOGIN, user.login))
    connector.change_password(fresh, SecretStr(NEW), SecretStr("Own-Choice-77"))
    assert samba_env.bind(user.login, "Own-Choice-77") is BindOutcome.OK


# --------------------------------------------------------------------------- policy


def test_pso_policy_read(samba_env: SambaEnv, connector: ActiveDirectoryConnector) -> None:
    young = _user(samba_env, connector, young=True)
    policy = connector.password_policy(young)
    assert policy.source.lower() == samba_env.pso_dn.lower()
    assert (policy.min_length, policy.complexity, policy.history_length) == (8, True, 3)
    assert policy.min_age.total_seconds() == 86400
    assert policy.max_age is None
    assert policy.lockout_threshold == 3
    plain = connector.password_policy(_user(samba_env, connector))
    assert plain.source == "domain"
    assert plain.min_age.total_seconds() == 0


def _recording(connector: ActiveDirectoryConnector) -> list[list[str]]:
    """The attribute lists of every search the connector sends from now on."""
    asked: list[list[str]] = []
    search = connector._session.search

    def recorded(base: str, flt: str, attrs: list[str], **kwargs: Any) -> list[dict[str, Any]]:
        asked.append(list(attrs))
        return search(base, flt, attrs, **kwargs)

    connector._session.search = recorded  # type: ignore[method-assign]
    return asked


def _asked_for_pso(asked: list[list[str]]) -> bool:
    return any("msDS-ResultantPSO" in attrs for attrs in asked)


def _stricter_psos(env: SambaEnv) -> list[str]:
    """PSOs with a longer minimum than the domain's 8 (it has complexity on already)."""
    conn = env.admin()
    conn.search(f"CN=Password Settings Container,CN=System,{DOMAIN_DN}",
                "(msDS-MinimumPasswordLength>=9)", search_scope="LEVEL", attributes=["cn"])
    return [str(e.entry_dn) for e in conn.entries]


def test_which_pso_applies_is_read_only_when_it_can_matter(samba_env: SambaEnv) -> None:
    """msDS-ResultantPSO is constructed on every read (about 1 ms of DC time). While no
    PSO is stricter than the domain in length or complexity, a reset never reads it;
    a self-service change that a PSO's minimum age could refuse does, and so does every
    lookup once a stricter PSO exists."""
    assert not _stricter_psos(samba_env), "a test left a stricter PSO in the shared domain"
    with closing(ActiveDirectoryConnector(samba_env.settings)) as connector:
        asked = _recording(connector)
        user = _user(samba_env, connector)
        connector.reset_password(user, SecretStr(NEW))
        assert samba_env.bind(user.login, NEW) is BindOutcome.OK
        assert not _asked_for_pso(asked), asked
        # "young" has a one-day minimum age; this user is not in it and may change again
        # at once: the minimum age of the strictest policy refuses, the user's own not.
        again = connector.find_user(UserQuery(LookupKind.LOGIN, user.login))
        connector.change_password(again, SecretStr(NEW), SecretStr("Own-Choice-77"))
        assert samba_env.bind(user.login, "Own-Choice-77") is BindOutcome.OK
        assert _asked_for_pso(asked), asked
        young = _user(samba_env, connector, young=True)
        with pytest.raises(PolicyViolation) as info:
            connector.change_password(young, SecretStr(INITIAL), SecretStr("Own-Choice-78"))
        assert info.value.policy_reason is PolicyReason.TOO_YOUNG
        assert info.value.policy is not None
        assert info.value.policy.source.lower() == samba_env.pso_dn.lower()

    strict = unique_login("ad")
    samba_env.create_user(strict, INITIAL)
    pso = samba_env.add_pso(f"{strict}-pso", samba_env.dn_of(strict),
                            {"msDS-MinimumPasswordLength": "14"})
    try:
        with closing(ActiveDirectoryConnector(samba_env.settings)) as connector:
            asked = _recording(connector)
            found = connector.find_user(UserQuery(LookupKind.LOGIN, strict))
            assert _asked_for_pso(asked) and found.policy_dn is not None
            with pytest.raises(PolicyViolation) as info:
                connector.reset_password(found, SecretStr("Twelve-Chars"))
            assert info.value.policy_reason is PolicyReason.TOO_SHORT
            assert info.value.policy is not None and info.value.policy.min_length == 14
            assert samba_env.bind(strict, INITIAL) is BindOutcome.OK  # nothing written
    finally:
        samba_env.admin().delete(pso)
    no_cache = samba_env.settings.model_copy(update={"policy_cache_seconds": 0})
    with closing(ActiveDirectoryConnector(no_cache)) as connector:
        asked = _recording(connector)
        connector.find_user(UserQuery(LookupKind.LOGIN, strict))
        assert len(asked) == 1 and _asked_for_pso(asked)  # no PSO list read on each lookup


def test_a_pso_added_after_the_list_was_read_names_its_rule(samba_env: SambaEnv) -> None:
    """The PSO list is cached: a stricter PSO created meanwhile is not known when the
    password is checked, the DC refuses it (0000052D), and the answer names the rule
    of the PSO read again, not "history"."""
    with closing(ActiveDirectoryConnector(samba_env.settings)) as connector:
        user = _user(samba_env, connector)  # the PSO list is read and cached here
        pso = samba_env.add_pso(f"{user.login}-pso", user.dn, {"msDS-MinimumPasswordLength": "14"})
        try:
            found = connector.find_user(UserQuery(LookupKind.LOGIN, user.login))
            with pytest.raises(PolicyViolation) as info:
                connector.reset_password(found, SecretStr("Twelve-Chars"))
            assert info.value.policy_reason is PolicyReason.TOO_SHORT
            assert info.value.policy is not None and info.value.policy.min_length == 14
            assert samba_env.bind(user.login, INITIAL) is BindOutcome.OK  # nothing written
        finally:
            samba_env.admin().delete(pso)


def test_policy_hints_and_history_on_reset(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    """The control goes out only when advertised. Samba 4.17 does not advertise it and
    its resets skip the history; a DC that does must refuse a reused password."""
    user = _user(samba_env, connector)
    connector.reset_password(user, SecretStr(NEW))
    controls = connector._write_controls()
    if controls is None:
        assert not set(POLICY_HINTS) & set(connector._root_dse()["supportedControl"])
        connector.reset_password(user, SecretStr(INITIAL))  # history not enforced on reset
        assert samba_env.bind(user.login, INITIAL) is BindOutcome.OK
        assert connector.password_policy(user).describe()["history_on_reset"] is False
    else:
        assert controls[0][1] is False  # never critical
        assert connector.password_policy(user).describe()["history_on_reset"] is True
        with pytest.raises(PolicyViolation) as info:
            connector.reset_password(user, SecretStr(INITIAL))
        assert info.value.reason == PolicyReason.HISTORY


# --------------------------------------------------------------------------- error codes


def test_extended_codes(samba_env: SambaEnv, connector: ActiveDirectoryConnector) -> None:
    user = _user(samba_env, connector)
    # 00000056: wrong old password
    with pytest.raises(WrongOldPassword):
        connector.change_password(user, SecretStr("Not-It-1234"), SecretStr(NEW))
    # 0000052D + Samba's "already used (in history)": history on a change
    connector.change_password(user, SecretStr(INITIAL), SecretStr(NEW))
    with pytest.raises(PolicyViolation) as info:
        connector.change_password(user, SecretStr(NEW), SecretStr(INITIAL))
    assert info.value.reason == PolicyReason.HISTORY
    assert info.value.policy is not None and info.value.policy.history_length == 3
    # 00002030: the object is gone
    gone = DirectoryUser(dn=f"CN=gone-{unique_login()},{samba_env.base_dn}", id="", login="gone")
    with pytest.raises(UserNotFound):
        connector.unlock(gone)


def test_change_on_locked_account_is_account_locked(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    user = _user(samba_env, connector)
    samba_env.lock(user.login)
    stale = user  # found before the lock: the DC answers 00000775
    with pytest.raises(AccountLocked):
        connector.change_password(stale, SecretStr(INITIAL), SecretStr(NEW))


def test_delegation_stops_at_the_ou(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    """The service account's rights are delegated on OU=People only."""
    login = unique_login("ad")
    dn = samba_env.create_user(login, INITIAL, outside_base=True)
    outside = DirectoryUser(dn=dn, id="", login=login)
    with pytest.raises(AccessDenied):
        connector.reset_password(outside, SecretStr(NEW))
    with pytest.raises(AccessDenied):
        connector.unlock(outside)
    with pytest.raises(UserNotFound):  # and lookups do not see it
        connector.find_user(UserQuery(LookupKind.LOGIN, login))


def test_limited_account_denied_and_check_says_why(samba_env: SambaEnv) -> None:
    with closing(ActiveDirectoryConnector(samba_env.settings)) as full:
        user = _user(samba_env, full)
        report = full.check()
        assert report.ok, report
    with closing(ActiveDirectoryConnector(samba_env.limited_settings)) as limited:
        with pytest.raises(AccessDenied) as info:
            limited.unlock(user)
        assert info.value.status is Status.ACCESS_DENIED
        report = limited.check()
        assert not report.ok
        rights = next(item for item in report.items if item.name.startswith("rights"))
        assert "Reset Password" in rights.detail
        assert "lockoutTime" in rights.detail and "pwdLastSet" in rights.detail


def _scoped(env: SambaEnv, scope: list[str]) -> DirectoryConfig:
    """As the agent configures it: the whole domain searched, writes allowed in `scope`."""
    return DirectoryConfig(
        **{**env.settings.model_dump(), "base_dns": [env.domain_dn]},
        scope=ScopeSettings(base_dns=scope),
    )


def test_check_verifies_the_rights_on_the_scope_not_on_a_sampled_user(
    samba_env: SambaEnv,
) -> None:
    """Rights delegated on the scope's OU only, the whole domain as search base, and a
    service account in CN=Users (like the DNS one that made it flaky): check passes,
    and a scope OU without the delegation is named with what it lacks."""
    login = unique_login("dns")
    samba_env.admin().add(
        f"CN={login},CN=Users,{samba_env.domain_dn}",
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": login, "userAccountControl": "514"},
    )
    with closing(ActiveDirectoryConnector(_scoped(samba_env, [samba_env.base_dn]))) as conn:
        report = conn.check()
    assert report.ok, report.items
    assert [i.name for i in report.items if i.name.startswith("rights")] == [
        f"rights {samba_env.base_dn}"
    ]
    both = _scoped(samba_env, [samba_env.base_dn, samba_env.outside_base_dn])
    with closing(ActiveDirectoryConnector(both)) as conn:
        report = conn.check()
    (failed,) = [i for i in report.items if not i.ok]
    assert failed.name == f"rights {samba_env.outside_base_dn}"
    for right in ("Reset Password", "lockoutTime", "pwdLastSet"):
        assert right in failed.detail


def test_wrong_service_password_is_access_denied(samba_env: SambaEnv) -> None:
    # the limited account: wrong binds count towards lockout, keep svc-writeback clean
    bad = samba_env.limited_settings.model_copy(update={"bind_password": SecretStr("Wrong-Svc-1")})
    with closing(ActiveDirectoryConnector(bad)) as conn:
        report = conn.check()
        assert [i.name for i in report.items if not i.ok] == ["service_bind"]
        assert "Wrong-Svc-1" not in repr(report)


# --------------------------------------------------------------------------- transport


def test_plain_ldap_refused_before_sending(samba_env: SambaEnv) -> None:
    """Not even a TCP connection: the refusal happens before any byte is sent."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        settings = samba_env.settings.model_copy(update={"urls": [f"ldap://127.0.0.1:{port}"]})
        user = DirectoryUser(dn=f"CN=x,{samba_env.base_dn}", id="", login="x")
        with closing(ActiveDirectoryConnector(settings)) as conn:
            with pytest.raises(InsecureTransport):
                conn.reset_password(user, SecretStr(NEW))
            with pytest.raises(InsecureTransport):
                conn.change_password(user, SecretStr(INITIAL), SecretStr(NEW))
            with pytest.raises(InsecureTransport):
                conn.unlock(user)
        with pytest.raises(TimeoutError):
            listener.accept()


def test_failover_and_all_down(samba_env: SambaEnv) -> None:
    dead = f"ldaps://127.0.0.1:{free_port()}"
    urls = [dead, samba_env.url]
    pool = samba_env.settings.model_copy(update={"urls": urls, "connect_timeout": 2.0})
    with closing(ActiveDirectoryConnector(pool)) as conn:
        user = _user(samba_env, conn)
        assert conn.unlock(user).dc == samba_env.url
    down = samba_env.settings.model_copy(update={"urls": [dead], "connect_timeout": 1.0})
    with closing(ActiveDirectoryConnector(down)) as conn:
        with pytest.raises(DirectoryUnavailable) as info:
            conn.find_user(UserQuery(LookupKind.LOGIN, "anyone"))
        assert info.value.status is Status.DIRECTORY_UNAVAILABLE


def test_tls_validates_against_the_configured_ca(samba_env: SambaEnv, tmp_path: Path) -> None:
    """A CA that did not sign the DC's certificate: no connection (retryable status)."""
    _, _, other_ca = make_ca(tmp_path / "other")
    settings = samba_env.settings.model_copy(update={"ca_file": other_ca})
    with closing(ActiveDirectoryConnector(settings)) as conn:
        report = conn.check()
        assert [(i.name, i.ok) for i in report.items] == [("transport", True), ("connect", False)]


# --------------------------------------------------------------------------- lookups


def test_state_flags_and_nested_groups(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    protected = _user(samba_env, connector, protected=True)
    assert protected.protected
    disabled = _user(samba_env, connector, disabled=True)
    assert disabled.disabled and not disabled.locked
    inner = samba_env.create_group(unique_login("gi"), [protected.dn])
    outer = samba_env.create_group(unique_login("go"), [inner])
    groups = connector.group_dns(protected)
    assert {inner.lower(), outer.lower()} <= groups
    assert all(dn == dn.lower() for dn in groups)


def test_guid_lookup_rejects_garbage(connector: ActiveDirectoryConnector) -> None:
    for value in ("not-a-guid", "*", "", "00000000-0000-0000-0000-000000000000"):
        with pytest.raises(UserNotFound):
            connector.find_user(UserQuery(LookupKind.ID, value))


def test_dead_connection_is_replaced_before_a_write(
    samba_env: SambaEnv, connector: ActiveDirectoryConnector
) -> None:
    """A kept connection that died (DC restart, idle timeout) is replaced before the
    write is sent, without an extra round trip (the socket is polled)."""
    user = _user(samba_env, connector)
    connector.password_policy(user)  # the policy is cached: the write is the next op
    kept = connector._session.connection()
    kept.socket.shutdown(socket.SHUT_RDWR)  # the server "went away"
    outcome = connector.reset_password(user, SecretStr(NEW))
    assert outcome.applied == ("password",)
    assert samba_env.bind(user.login, NEW) is BindOutcome.OK
    fresh = connector._session.connection()
    assert fresh is not kept
    assert fresh.request is None  # no unicodePwd left behind in ldap3
