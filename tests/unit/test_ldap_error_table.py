"""The one translation of ldap3 exceptions (connectors/_ldap.py): every row of the
table, and whether each error says the write was sent. Pure: no server needed, the
exceptions are the ones ldap3 raises."""

from __future__ import annotations

import ssl

import pytest
from ldap3.core import exceptions as lexc

from connectors._cache import TtlCache
from connectors._ldap import translate_errors
from connectors.base import (
    AccessDenied,
    AccountDisabled,
    AccountLocked,
    DirectoryError,
    InsecureTransport,
    PolicyViolation,
    UserNotFound,
    WriteNotSent,
    WriteOutcomeUnknown,
    WrongOldPassword,
)
from wire.status import PolicyReason, Status


def _result(code: int, message: str = "") -> lexc.LDAPOperationResult:
    cls = lexc.LDAPOperationResult
    for sub in cls.__subclasses__():
        if getattr(sub, "__name__", "") and code == _CODES.get(sub.__name__):
            cls = sub
    return cls(result=code, description="x", message=message)


_CODES = {
    "LDAPInvalidCredentialsResult": 49,
    "LDAPInsufficientAccessRightsResult": 50,
    "LDAPNoSuchObjectResult": 32,
    "LDAPConstraintViolationResult": 19,
    "LDAPUnwillingToPerformResult": 53,
    "LDAPStrongerAuthRequiredResult": 8,
    "LDAPBusyResult": 51,
}


def _translate(exc: BaseException, context: str = "write") -> DirectoryError:
    with pytest.raises(DirectoryError) as info, translate_errors(context, dc="ldaps://dc1"):  # type: ignore[arg-type]
        raise exc
    assert info.value.__cause__ is exc
    assert info.value.dc == "ldaps://dc1"
    return info.value


@pytest.mark.parametrize(
    ("message", "code", "expected", "reason"),
    [
        (
            "0000052D: Constraint violation - check_password_restrictions: "
            "the password is too short",
            19,
            PolicyViolation,
            PolicyReason.TOO_SHORT,
        ),
        ("0000052D: Constraint violation", 53, PolicyViolation, PolicyReason.UNKNOWN),
        ("00000056: AtrErr: DSID-03190F80", 19, WrongOldPassword, None),
        ("00000775: account locked out", 19, AccountLocked, None),
        ("0000208D: NameErr: DSID-03100288", 32, UserNotFound, None),
        ("00002077: unencrypted", 53, InsecureTransport, None),
        ("00000005: SecErr: DSID-03152E29", 50, AccessDenied, None),
        ("", 50, AccessDenied, None),
        ("", 32, UserNotFound, None),
        ("", 8, InsecureTransport, None),
        ("", 19, PolicyViolation, PolicyReason.UNKNOWN),
        ("", 53, DirectoryError, None),
    ],
)
def test_server_answers(
    message: str, code: int, expected: type, reason: PolicyReason | None
) -> None:
    error = _translate(_result(code, message))
    assert type(error) is expected
    assert error.write_sent is True  # the directory answered: it got the request
    if reason is not None:
        assert error.reason == reason.value


@pytest.mark.parametrize(
    ("context", "data", "expected"),
    [
        ("service_bind", "52e", AccessDenied),
        ("user_bind", "52e", WrongOldPassword),
        ("user_bind", "775", AccountLocked),
        ("user_bind", "533", AccountDisabled),
        ("user_bind", "532", AccountDisabled),
    ],
)
def test_failed_binds(context: str, data: str, expected: type) -> None:
    message = (
        "80090308: LdapErr: DSID-0C09050F, comment: AcceptSecurityContext error, "
        f"data {data}, v4563"
    )
    assert type(_translate(_result(49, message), context)) is expected


@pytest.mark.parametrize(
    "fault",
    [
        lexc.LDAPSocketOpenError("connection refused"),
        lexc.LDAPSocketReceiveError("reset by peer"),
        lexc.LDAPSessionTerminatedByServerError("gone"),
        lexc.LDAPResponseTimeoutError("no answer"),
        lexc.LDAPStartTLSError("handshake"),
        ssl.SSLError("bad record"),
        ConnectionResetError(),
    ],
)
def test_no_answer_says_whether_the_write_went_out(fault: BaseException) -> None:
    for context in ("service_bind", "user_bind", "search"):
        error = _translate(fault, context)
        assert type(error) is WriteNotSent and error.write_sent is False
        assert error.status is Status.DIRECTORY_UNAVAILABLE
    for context in ("write", "change"):
        error = _translate(fault, context)
        assert type(error) is WriteOutcomeUnknown and error.write_sent is None


def test_busy_server_during_a_write_is_not_assumed_unwritten() -> None:
    assert type(_translate(_result(51), "write")) is WriteOutcomeUnknown
    assert type(_translate(_result(51), "search")) is WriteNotSent


def test_refusals_before_sending_say_so() -> None:
    assert InsecureTransport("plain").write_sent is False


def test_ttl_cache() -> None:
    now = [0.0]
    loads: list[str] = []
    cache: TtlCache[str] = TtlCache(60, clock=lambda: now[0])

    def load() -> str:
        loads.append("x")
        return f"v{len(loads)}"

    assert cache.get("k", load) == "v1"
    now[0] = 59.9
    assert cache.get("k", load) == "v1"
    now[0] = 60.0
    assert cache.get("k", load) == "v2"
    cache.clear()
    assert cache.get("k", load) == "v3"
    uncached: TtlCache[str] = TtlCache(0)
    assert uncached.get("k", load) == "v4" and uncached.get("k", load) == "v5"
