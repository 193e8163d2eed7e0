"""OpenLDAP-specific behaviour the contract tests do not cover: the ppolicy control,
pwdReset and pwdAccountLockedTime bookkeeping, rights, transport and failover.

Runs against the session's throwaway slapd (`slapd_env`, tests/servers/slapd.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import ldap3
import pytest
from ldap3.core import exceptions as lexc
from pydantic import SecretStr

from connectors import _ppolicy as pp
from connectors._ldap import open_connection, translate_errors
from connectors.base import (
    AccessDenied,
    AccountDisabled,
    AccountLocked,
    DirectoryUnavailable,
    DirectoryUser,
    InsecureTransport,
    LookupKind,
    PartiallyApplied,
    PolicyViolation,
    UserQuery,
)
from connectors.openldap import OpenLdapConnector
from tests.integration.openldap.ldap_proxy import (
    EXTENDED_REQUEST,
    EXTENDED_RESPONSE,
    MODIFY_REQUEST,
    LdapProxy,
)
from tests.servers._process import free_port
from tests.servers.base import BindOutcome, unique_login
from tests.servers.certs import make_ca
from tests.servers.slapd import PEOPLE as PEOPLE_DN
from tests.servers.slapd import POLICIES as POLICIES_DN
from tests.servers.slapd import PROTECTED_GROUP, SlapdEnv
from tests.servers.slapd import UNDELEGATED as UNDELEGATED_DN
from wire.status import PolicyReason, Status

pytestmark = pytest.mark.slapd

INITIAL = "Initial-Pass-1"
NEW = "Fresh-Secret-42"


@pytest.fixture
def env(slapd_env: SlapdEnv) -> SlapdEnv:
    return slapd_env


@pytest.fixture
def conn(env: SlapdEnv) -> Iterator[OpenLdapConnector]:
    connector = OpenLdapConnector(env.settings)
    yield connector
    connector.close()


def _user(env: SlapdEnv, conn: OpenLdapConnector, **kwargs: object) -> DirectoryUser:
    login = unique_login("o")
    env.create_user(login, INITIAL, **kwargs)  # type: ignore[arg-type]
    return conn.find_user(UserQuery(LookupKind.LOGIN, login))


# --------------------------------------------------------------------------- ppolicy control


@pytest.mark.parametrize(
    ("value", "error", "name"),
    [
        (b"\x30\x03\x81\x01\x06", 6, "passwordTooShort"),  # as slapd sent it
        (b"\x30\x03\x81\x01\x08", 8, "passwordInHistory"),
        (b"\x30\x03\x81\x01\x02", 2, "changeAfterReset"),
        (b"\x30\x00", None, None),
    ],
)
def test_decode_ppolicy_errors(value: bytes, error: int | None, name: str | None) -> None:
    decoded = pp.decode_ppolicy_response(value)
    assert decoded.error == error
    assert decoded.error_name == name


def test_decode_ppolicy_warning_and_garbage() -> None:
    # warning [0] { timeBeforeExpiration [0] 300 }
    decoded = pp.decode_ppolicy_response(b"\x30\x06\xa0\x04\x80\x02\x01\x2c")
    assert decoded.time_before_expiration == 300
    assert decoded.error is None
    assert pp.decode_ppolicy_response(b"\xff\x00garbage") == pp.PPolicyResponse()
    assert pp.decode_ppolicy_response(None) == pp.PPolicyResponse()


@pytest.mark.parametrize(
    ("code", "expected", "reason"),
    [
        (0, AccountDisabled, None),  # passwordExpired, as AD's 0x532
        (1, AccountLocked, None),
        (3, AccessDenied, None),
        (5, PolicyViolation, PolicyReason.COMPLEXITY),
        (6, PolicyViolation, PolicyReason.TOO_SHORT),
        (7, PolicyViolation, PolicyReason.TOO_YOUNG),
        (8, PolicyViolation, PolicyReason.HISTORY),
        (9, PolicyViolation, PolicyReason.TOO_LONG),
    ],
)
def test_refine_maps_ppolicy_errors(code: int, expected: type, reason: PolicyReason | None) -> None:
    exc = lexc.LDAPOperationResult(result=19, description="constraintViolation", message="x")
    result = {"controls": {pp.PPOLICY_OID: {"value": bytes([0x30, 3, 0x81, 1, code])}}}
    error = pp.refine(exc, "write", result)
    assert type(error) is expected
    assert error is not None and error.reason == (reason.value if reason else None)
    assert pp.refine(exc, "write", {"controls": {}}) is None  # no control: generic mapping


def test_server_side_refusal_is_named_from_the_control(
    env: SlapdEnv, conn: OpenLdapConnector
) -> None:
    """Bypass pre-validation: slapd itself says passwordTooShort, and we name it."""
    user = _user(env, conn)
    ldap = open_connection(env.settings)
    try:
        with (
            pytest.raises(PolicyViolation) as info,
            translate_errors("write", dc=None, refine=pp.refine, conn=ldap),
        ):
            ldap.extend.standard.modify_password(
                user.dn, new_password="Ab1-x", controls=[pp.PPOLICY_REQUEST]
            )
        assert pp.ppolicy_response(ldap.result).error_name == "passwordTooShort"
    finally:
        ldap.unbind()
    assert info.value.reason == PolicyReason.TOO_SHORT
    assert "Ab1-x" not in str(info.value)


def test_admin_reset_is_checked_against_history(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    """slapd 2.5 applies pwdInHistory to a `write` (non-manage) administrator too."""
    user = _user(env, conn)
    conn.reset_password(user, SecretStr(NEW))
    with pytest.raises(PolicyViolation) as info:
        conn.reset_password(user, SecretStr(INITIAL))
    assert info.value.reason == PolicyReason.HISTORY
    assert info.value.policy is not None and info.value.policy.history_length == 3
    assert env.bind(user.login, NEW) is BindOutcome.OK


def test_admin_reset_of_a_young_password_succeeds(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    """ppolicy would refuse it (passwordTooYoung) unless pwdReset is TRUE first."""
    user = _user(env, conn, young=True)
    assert user.pwd_last_set is not None
    outcome = conn.reset_password(user, SecretStr(NEW))
    assert outcome.applied == ("password",)
    assert env.first(user.login, "pwdReset") is None
    assert env.bind(user.login, NEW) is BindOutcome.OK


def test_failed_young_reset_leaves_pwd_reset_alone(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn, young=True)
    with pytest.raises(PolicyViolation) as info:
        conn.reset_password(user, SecretStr(INITIAL))  # in history
    assert info.value.reason == PolicyReason.HISTORY
    assert env.first(user.login, "pwdReset") is None


# --------------------------------------------------------------------------- policy cache


def test_policy_is_cached_and_read_again_when_it_refuses(
    env: SlapdEnv, conn: OpenLdapConnector
) -> None:
    """The policy entry is not read for every request, yet a change to it is never
    enforced stale: a refusal (slapd's or pre-validation's) reads it again."""
    name = unique_login("p")
    policy_dn = f"cn={name},{POLICIES_DN}"
    login = unique_login("o")
    dn = env.create_user(login, INITIAL)
    with env.admin() as admin:
        admin.add(policy_dn, ["device", "pwdPolicy"], {
            "cn": name, "pwdAttribute": "userPassword", "pwdMinLength": "8",
            "pwdCheckQuality": "2", "pwdInHistory": "3",
        })
        admin.modify(dn, {"pwdPolicySubentry": [(ldap3.MODIFY_REPLACE, [policy_dn])]})

    def min_length(value: str) -> None:
        with env.admin() as admin:
            admin.modify(policy_dn, {"pwdMinLength": [(ldap3.MODIFY_REPLACE, [value])]})

    user = conn.find_user(UserQuery(LookupKind.LOGIN, login))
    assert user.policy_dn == policy_dn
    assert conn.password_policy(user).min_length == 8
    min_length("12")
    assert conn.password_policy(user).min_length == 8  # cached
    with closing(OpenLdapConnector(
        env.settings.model_copy(update={"policy_cache_seconds": 0})
    )) as uncached:
        assert uncached.password_policy(user).min_length == 12
    with pytest.raises(PolicyViolation) as info:
        conn.reset_password(user, SecretStr("Fresh-Pass9"))  # 11: passes the cached rule
    assert info.value.reason == PolicyReason.TOO_SHORT  # slapd's refusal
    assert info.value.policy is not None and info.value.policy.min_length == 12
    assert conn.password_policy(user).min_length == 12
    min_length("8")  # relaxed: the cached 12 would refuse 10 characters
    assert conn.reset_password(user, SecretStr("Abcdef-1x9")).applied == ("password",)
    assert env.bind(login, "Abcdef-1x9") is BindOutcome.OK


# --------------------------------------------------------------------------- pwdReset


def test_pwd_reset_set_and_cleared(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn)
    conn.reset_password(user, SecretStr(NEW), must_change=True)
    assert env.first(user.login, "pwdReset") == "TRUE"
    assert conn.find_user(UserQuery(LookupKind.LOGIN, user.login)).pwd_last_set is None
    conn.reset_password(user, SecretStr("Third-Secret-7"))
    assert env.first(user.login, "pwdReset") is None
    assert env.bind(user.login, "Third-Secret-7") is BindOutcome.OK


def test_must_change_user_can_change_own_password(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn)
    conn.reset_password(user, SecretStr(NEW), must_change=True)
    conn.change_password(user, SecretStr(NEW), SecretStr("Own-Choice-88"))
    assert env.first(user.login, "pwdReset") is None
    assert env.bind(user.login, "Own-Choice-88") is BindOutcome.OK


# --------------------------------------------------------------------------- lock state


def test_lock_unlock_and_noop_unlock(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn)
    assert conn.unlock(user).applied == ("unlock",)  # not locked: a no-op success
    env.lock(user.login)
    locked = conn.find_user(UserQuery(LookupKind.LOGIN, user.login))
    assert locked.locked and not locked.disabled
    with pytest.raises(AccountLocked):
        conn.change_password(locked, SecretStr(INITIAL), SecretStr(NEW))
    conn.unlock(locked)
    assert env.first(user.login, "pwdAccountLockedTime") is None
    assert env.first(user.login, "pwdFailureTime") is None
    # the old failures are gone: one typo after an unlock does not lock again
    assert env.bind(user.login, "Typo-Pass-1") is BindOutcome.INVALID_CREDENTIALS
    assert env.bind(user.login, INITIAL) is BindOutcome.OK


def test_disabled_is_not_unlocked(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn, disabled=True)
    assert user.disabled and not user.locked
    assert env.bind(user.login, INITIAL) is BindOutcome.DISABLED
    attempts: tuple[Callable[[], object], ...] = (
        lambda: conn.unlock(user),
        lambda: conn.reset_password(user, SecretStr(NEW), unlock=True),
        lambda: conn.change_password(user, SecretStr(INITIAL), SecretStr(NEW)),
    )
    for attempt in attempts:
        with pytest.raises(AccountDisabled):
            attempt()
    assert env.first(user.login, "pwdAccountLockedTime") == pp.DISABLED_LOCK_TIME


# --------------------------------------------------------------------------- rights


def test_limited_account_reads_but_cannot_write(env: SlapdEnv) -> None:
    limited = OpenLdapConnector(env.limited_settings)
    user = _user(env, limited)
    assert limited.password_policy(user).min_length == 8
    with pytest.raises(AccessDenied):
        limited.reset_password(user, SecretStr(NEW))
    env.lock(user.login)
    with pytest.raises(AccessDenied):
        limited.unlock(user)
    report = limited.check()
    assert not report.ok
    (failed,) = [i for i in report.items if not i.ok]
    assert failed.name == f"rights {env.base_dn}"
    assert "userPassword" in failed.detail and "pwdFailureTime" in failed.detail


def test_check_of_the_full_account(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    _user(env, conn)
    report = conn.check()
    assert report.ok, report.items
    names = [item.name for item in report.items]
    assert names == [
        "transport",
        "connect",
        "service_bind",
        f"search_base {env.base_dn}",
        "password_policy",
        f"rights {env.base_dn}",
    ]
    assert "certificate validated" in report.items[1].detail


def test_check_says_which_scope_dn_lacks_the_rights(env: SlapdEnv) -> None:
    """The rights are verified where writes are allowed (write_scope), per DN."""

    class Scoped(type(env.settings)):  # type: ignore[misc]
        @property
        def write_scope(self) -> list[str]:
            return [PEOPLE_DN, UNDELEGATED_DN]

    settings = Scoped(**env.settings.model_dump())
    with closing(OpenLdapConnector(settings)) as scoped:
        report = scoped.check()
    failed = [i for i in report.items if not i.ok]
    assert [i.name for i in failed] == [f"rights {UNDELEGATED_DN}"]
    assert "userPassword" in failed[0].detail


def test_wrong_service_password_is_access_denied(env: SlapdEnv) -> None:
    bad = OpenLdapConnector(env.settings.model_copy(update={"bind_password": SecretStr("nope")}))
    with pytest.raises(AccessDenied):
        bad.find_user(UserQuery(LookupKind.LOGIN, "anyone"))
    assert not bad.check().ok


# --------------------------------------------------------------------------- transport


@pytest.fixture
def plain_proxy(env: SlapdEnv) -> Iterator[LdapProxy]:
    """slapd's plain LDAP port behind a proxy that records every byte clients send."""
    host, port = env.plain_url.removeprefix("ldap://").rsplit(":", 1)
    proxy = LdapProxy((host, int(port)))
    yield proxy
    proxy.close()


def test_plain_ldap_refused_before_the_first_bind(
    env: SlapdEnv, conn: OpenLdapConnector, plain_proxy: LdapProxy
) -> None:
    """Every op and `check` refuse plain ldap:// before a byte is sent: the service
    password never crosses the wire. (The same proxy sees it when allow_insecure is on.)"""
    user = _user(env, conn)
    service_pw = env.settings.bind_password.get_secret_value().encode()
    plain_settings = env.settings.model_copy(update={"urls": [plain_proxy.url]})
    with closing(OpenLdapConnector(plain_settings)) as plain:
        for attempt in (
            lambda: plain.find_user(UserQuery(LookupKind.LOGIN, user.login)),
            lambda: plain.password_policy(user),
            lambda: plain.group_dns(user),
            lambda: plain.reset_password(user, SecretStr(NEW)),
            lambda: plain.change_password(user, SecretStr(INITIAL), SecretStr(NEW)),
            lambda: plain.unlock(user),
        ):
            with pytest.raises(InsecureTransport) as info:
                attempt()
            assert info.value.write_sent is False
            assert "plain LDAP" in info.value.detail
        report = plain.check()
    assert [(i.name, i.ok) for i in report.items] == [("transport", False)]
    assert "certificate validated" not in repr(report)
    assert plain_proxy.connections == 0 and service_pw not in plain_proxy.sent
    assert env.bind(user.login, INITIAL) is BindOutcome.OK

    insecure = plain_settings.model_copy(update={"allow_insecure": True})
    with closing(OpenLdapConnector(insecure)) as allowed:
        assert allowed.find_user(UserQuery(LookupKind.LOGIN, user.login)).dn == user.dn
        report = allowed.check()
    assert report.ok, report.items
    connect = next(i for i in report.items if i.name == "connect")
    assert "certificate validated" not in connect.detail and "PLAIN" in connect.detail
    assert service_pw in plain_proxy.sent  # what the refusal above kept off the wire


def test_start_tls_on_the_plain_port_is_secure(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn)
    starttls = OpenLdapConnector(
        env.settings.model_copy(update={"urls": [env.plain_url], "start_tls": True})
    )
    outcome = starttls.reset_password(user, SecretStr(NEW))
    assert outcome.dc == env.plain_url
    assert env.bind(user.login, NEW) is BindOutcome.OK
    report = starttls.check()
    assert report.ok, report.items
    assert "certificate validated" in next(i for i in report.items if i.name == "connect").detail
    starttls.close()


def test_first_url_dead_second_answers(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn)
    real = env.settings.urls[0]
    dead = f"ldaps://127.0.0.1:{free_port()}"
    failover = OpenLdapConnector(env.settings.model_copy(update={"urls": [dead, real],
                                                                 "connect_timeout": 2.0}))
    assert failover.find_user(UserQuery(LookupKind.LOGIN, user.login)).dn == user.dn
    outcome = failover.change_password(user, SecretStr(INITIAL), SecretStr(NEW))
    assert outcome.dc == real


def test_every_url_dead_is_unavailable(env: SlapdEnv) -> None:
    dead = OpenLdapConnector(env.settings.model_copy(update={
        "urls": [f"ldaps://127.0.0.1:{free_port()}"], "connect_timeout": 1.0}))
    with pytest.raises(DirectoryUnavailable):
        dead.find_user(UserQuery(LookupKind.LOGIN, "anyone"))


def test_wrong_ca_is_unavailable_not_silently_trusted(env: SlapdEnv, tmp_path: Path) -> None:
    _, _, other_ca = make_ca(tmp_path)
    untrusting = OpenLdapConnector(env.settings.model_copy(update={"ca_file": other_ca}))
    with pytest.raises(DirectoryUnavailable):
        untrusting.find_user(UserQuery(LookupKind.LOGIN, "anyone"))


# --------------------------------------------------------------------------- two writes


def test_follow_up_refused_after_the_password_is_set_says_so(
    env: SlapdEnv, conn: OpenLdapConnector
) -> None:
    """A real fault between the exop and the pwdReset/unlock modify: an ACL refuses
    the modify for this user. The error says the password WAS set and what was not."""
    login = unique_login("nofollow")
    env.create_user(login, INITIAL)
    env.lock(login)
    user = conn.find_user(UserQuery(LookupKind.LOGIN, login))
    with pytest.raises(PartiallyApplied) as info:
        conn.reset_password(user, SecretStr(NEW), unlock=True, must_change=True)
    error = info.value
    assert error.status is Status.PARTIALLY_APPLIED and error.write_sent is True
    assert error.applied == ("password",)
    # slapd's reset lifted the lock by itself (read back); pwdReset was not set
    assert error.not_applied == ("must_change",)
    assert "WAS set" in error.detail and NEW not in error.detail
    # What the user sees matches the answer: the new password works, and nobody
    # asks for a change at the next sign-in.
    assert env.bind(login, NEW) is BindOutcome.OK
    assert env.bind(login, INITIAL) is BindOutcome.INVALID_CREDENTIALS


def test_refused_follow_up_that_is_not_needed_is_a_complete_reset(
    env: SlapdEnv, conn: OpenLdapConnector
) -> None:
    """The same refusal when the entry already is as wanted: nothing is missing."""
    login = unique_login("nofollow")
    env.create_user(login, INITIAL)
    outcome = conn.reset_password(conn.find_user(UserQuery(LookupKind.LOGIN, login)),
                                  SecretStr(NEW))
    assert outcome.applied == ("password",)
    assert env.bind(login, NEW) is BindOutcome.OK


def test_reset_is_the_exop_alone_unless_the_entry_needs_more(
    env: SlapdEnv, plain_proxy: LdapProxy
) -> None:
    """Under a policy without pwdMustChange, ppolicy clears pwdReset, the lock and the
    failure times in the exop's own write: a reset sends no follow-up modify. It does
    for must_change, and for unlocking a user found locked."""
    name = unique_login("p")
    policy_dn = f"cn={name},{POLICIES_DN}"
    logins = [unique_login("one") for _ in range(3)]
    with env.admin() as admin:
        admin.add(policy_dn, ["device", "pwdPolicy"], {
            "cn": name, "pwdAttribute": "userPassword", "pwdMinLength": "8",
            "pwdCheckQuality": "2", "pwdLockout": "TRUE", "pwdMaxFailure": "3",
        })
        for login in logins:
            dn = env.create_user(login, INITIAL)
            admin.modify(dn, {"pwdPolicySubentry": [(ldap3.MODIFY_REPLACE, [policy_dn])]})
    settings = env.settings.model_copy(update={"urls": [plain_proxy.url], "allow_insecure": True})

    def writes(call: Callable[[], object]) -> list[int]:
        before = len(plain_proxy.requests())
        call()
        sent = plain_proxy.requests()[before:]
        return [tag for tag in sent if tag in (EXTENDED_REQUEST, MODIFY_REQUEST)]

    plain, must, locked = logins
    with closing(OpenLdapConnector(settings)) as conn:
        user = conn.find_user(UserQuery(LookupKind.LOGIN, plain))
        assert writes(lambda: conn.reset_password(user, SecretStr(NEW))) == [EXTENDED_REQUEST]
        assert env.bind(plain, NEW) is BindOutcome.OK

        user = conn.find_user(UserQuery(LookupKind.LOGIN, must))
        assert writes(lambda: conn.reset_password(user, SecretStr(NEW), must_change=True)) == [
            EXTENDED_REQUEST, MODIFY_REQUEST]
        assert env.first(must, "pwdReset") == "TRUE"
        user = conn.find_user(UserQuery(LookupKind.LOGIN, must))
        assert writes(lambda: conn.reset_password(user, SecretStr("Third-Secret-7"))) == [
            EXTENDED_REQUEST]
        assert env.first(must, "pwdReset") is None  # cleared by the exop itself
        assert env.bind(must, "Third-Secret-7") is BindOutcome.OK

        env.lock(locked)
        user = conn.find_user(UserQuery(LookupKind.LOGIN, locked))
        assert user.locked
        outcome = conn.reset_password(user, SecretStr(NEW), unlock=True)
        assert outcome.applied == ("password", "unlock")
        assert env.first(locked, "pwdAccountLockedTime") is None
        assert env.first(locked, "pwdFailureTime") is None
        assert env.bind(locked, NEW) is BindOutcome.OK


def test_connection_killed_between_the_two_writes_is_retried(env: SlapdEnv) -> None:
    """slapd answers the exop, the connection dies, the first reconnects are refused:
    the follow-up is retried until it is done and the reset is complete."""
    login = unique_login("o")
    env.create_user(login, INITIAL)
    host, port = env.plain_url.removeprefix("ldap://").rsplit(":", 1)
    proxy = LdapProxy((host, int(port)))
    settings = env.settings.model_copy(update={"urls": [proxy.url], "allow_insecure": True})
    try:
        with closing(OpenLdapConnector(settings)) as flaky:
            user = flaky.find_user(UserQuery(LookupKind.LOGIN, login))
            proxy.cut_after, proxy.refuse_next = EXTENDED_RESPONSE, 2
            outcome = flaky.reset_password(user, SecretStr(NEW), must_change=True)
        assert proxy.cuts == 1 and proxy.refuse_next == 0
        assert outcome.applied == ("password", "must_change")
        assert env.first(login, "pwdReset") == "TRUE"
        assert env.bind(login, NEW) is BindOutcome.MUST_CHANGE

        env.create_user(login2 := unique_login("o"), INITIAL)
        with closing(OpenLdapConnector(settings, sleep=lambda _s: None)) as dead:
            user = dead.find_user(UserQuery(LookupKind.LOGIN, login2))
            proxy.cut_after, proxy.refuse_next = EXTENDED_RESPONSE, 100
            with pytest.raises(PartiallyApplied) as info:
                dead.reset_password(user, SecretStr(NEW))  # pwdMustChange: pwdReset stated
        assert "WAS set" in info.value.detail and "WriteNotSent" in info.value.detail
        assert info.value.not_applied == ("clear must_change (pwdReset) (unverified)",)
        assert env.bind(login2, NEW) is BindOutcome.OK
    finally:
        proxy.close()


# --------------------------------------------------------------------------- groups


def test_nested_groups_with_a_cycle(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn, protected=True)
    inner = env.create_group(unique_login("g"), [user.dn])
    outer = env.create_group(unique_login("g"), [inner])
    loop_a = env.create_group(unique_login("g"), [outer])
    loop_b = env.create_group(unique_login("g"), [loop_a])
    with env.admin() as admin:  # close the cycle: loop_a <- loop_b
        admin.modify(loop_a, {"member": [(ldap3.MODIFY_ADD, [loop_b])]})
    env.create_group(unique_login("g"), [])  # unrelated
    groups = conn.group_dns(user)
    assert groups == {d.lower() for d in (inner, outer, loop_a, loop_b, PROTECTED_GROUP)}


# --------------------------------------------------------------------------- secrets


def _frame_text(exc: BaseException) -> str:
    """Every local of every frame of the exception chain, as repr: what a traceback
    renderer that shows locals would print."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        if current is exc and tb is not None:
            tb = tb.tb_next  # the test's own frame
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                parts.append(repr(value))
                request = getattr(value, "request", None)
                parts.append(repr(request))
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def test_no_secret_left_in_traceback_locals(env: SlapdEnv, conn: OpenLdapConnector) -> None:
    user = _user(env, conn)
    conn.reset_password(user, SecretStr(NEW))
    service_pw = env.settings.bind_password.get_secret_value()
    with pytest.raises(PolicyViolation) as refused:  # refused by slapd (history), not by us
        conn.reset_password(user, SecretStr(INITIAL))
    with pytest.raises(PolicyViolation) as refused_change:
        conn.change_password(user, SecretStr(NEW), SecretStr(INITIAL))
    for info in (refused, refused_change):
        text = _frame_text(info.value)
        for secret in (INITIAL, NEW, service_pw):
            assert secret not in text
