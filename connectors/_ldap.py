"""ldap3 plumbing shared by both connectors: TLS, binds, failover, and the ONE place
where ldap3 exceptions become our `DirectoryError`s (`translate_errors`, driven by the
tables below, in the style of httpx's `map_httpcore_exceptions`).

ldap3 splits server answers (`LDAPOperationResult`: the directory got the request and
said no) from socket faults (`LDAPCommunicationError` and friends: no answer). A
socket fault becomes `WriteNotSent` while connecting, binding or reading (no write
has gone out) and `WriteOutcomeUnknown` during a write (it may have been applied);
the pipeline reads `write_sent` and never looks at ldap3. Active Directory puts an
8-hex-digit extended error at the start of its diagnostic message (`0000052D: ...`);
we parse that prefix, never the prose.

Plain `ldap://` without StartTLS is refused in `open_connection` before any socket is
opened: the first thing on the wire would be a bind carrying a password.

Never shared across threads: each call to `open_connection` builds fresh Server
objects (ldap3 keeps per-server state that is not thread-safe).
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Literal
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as lexc
from pydantic import SecretStr

from connectors._tls import shared_tls
from connectors.base import (
    AccessDenied,
    AccountDisabled,
    AccountLocked,
    DirectoryError,
    DirectorySettings,
    DirectoryUnavailable,
    InsecureTransport,
    PolicyViolation,
    UserNotFound,
    WriteNotSent,
    WriteOutcomeUnknown,
    WrongOldPassword,
)
from wire.status import PolicyReason

Context = Literal["service_bind", "user_bind", "search", "write", "change"]
# Contexts in which a socket fault may have cut a write off after it was sent.
_WRITES: frozenset[str] = frozenset({"write", "change"})
# A connector-specific refinement of a server answer, tried before the generic mapping:
# e.g. OpenLDAP decodes its ppolicy response control to name the rule that failed.
# It gets the failed operation's result dict (`conn.result`, with its response controls)
# and returns None to fall through to the generic classification.
Refine = Callable[[lexc.LDAPOperationResult, Context, dict[str, Any] | None], DirectoryError | None]

_AD_CODE = re.compile(r"^\s*([0-9A-Fa-f]{8})\s*:")
# Windows/Samba bind "data" sub-codes (in the 52e-style message of a failed bind).
_AD_BIND_DATA = re.compile(r"data ([0-9a-fA-F]{3,4})")


def ad_extended_code(message: str | None) -> int | None:
    """The AD extended error (e.g. 0x52D) from a diagnostic message, if present."""
    if not message:
        return None
    match = _AD_CODE.match(message)
    return int(match.group(1), 16) if match else None


def ad_bind_data(message: str | None) -> int | None:
    """The `data NNN` sub-code of an AD bind failure (773 = must change, 775 = locked)."""
    if not message:
        return None
    match = _AD_BIND_DATA.search(message)
    return int(match.group(1), 16) if match else None


# --------------------------------------------------------------------------- factory


def is_secure(settings: DirectorySettings, url: str) -> bool:
    return urlsplit(url).scheme.lower() == "ldaps" or settings.start_tls


def require_secure_transport(settings: DirectorySettings) -> None:
    """Refuse plain LDAP before anything is sent: the bind that opens every session
    carries the service account's (or a user's) password, and AD and OpenLDAP alike
    would take a password write in clear when misconfigured. `allow_insecure` exists
    for tests only."""
    if settings.allow_insecure:
        return
    insecure = [u for u in settings.urls if not is_secure(settings, u)]
    if insecure:
        raise InsecureTransport(
            f"refusing to bind over plain LDAP ({', '.join(insecure)}): the bind would "
            "send the password in clear; use ldaps:// or start_tls = true"
        )


def _tls(settings: DirectorySettings) -> ldap3.Tls:
    """Certificates validated (CERT_REQUIRED, host name checked after the handshake),
    one SSLContext shared by all connections to these CAs (connectors/_tls.py)."""
    return shared_tls(str(settings.ca_file) if settings.ca_file else None)


def _server(settings: DirectorySettings, url: str) -> ldap3.Server:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise DirectoryError(f"unsupported directory URL {url!r}: use ldaps://host[:port]")
    use_ssl = scheme == "ldaps"
    return ldap3.Server(
        parts.hostname,
        port=parts.port or (636 if use_ssl else 389),
        use_ssl=use_ssl,
        tls=_tls(settings),
        get_info=ldap3.NONE,
        connect_timeout=settings.connect_timeout,
        mode=ldap3.IP_V4_PREFERRED,
    )


def server_url(conn: ldap3.Connection) -> str:
    """The URL of the server a connection actually talks to."""
    server = conn.server
    scheme = "ldaps" if server.ssl else "ldap"
    return f"{scheme}://{server.host}:{server.port}"


def server_identity(conn: ldap3.Connection) -> str:
    """The server a connection talks to, as precisely as the agent can tell: the URL
    and the address actually connected (DNS may round-robin one name over DCs)."""
    sock = getattr(conn, "socket", None)
    try:
        peer = sock.getpeername()[0] if sock is not None else ""
    except OSError:
        peer = ""
    return f"{server_url(conn)}|{peer}"


def check_write_guard(conn: ldap3.Connection, server: str, write_by: float | None) -> None:
    """For a guarded write (`write_by` set: the pipeline's, under a relay permit), refuse
    it before anything is sent on another server than the one the user was read from
    (its change stamp says nothing there) or past the permit's time."""
    if write_by is None:
        return
    if server and server_identity(conn) != server:
        raise WriteNotSent(
            "not written: the connection moved to another server since the user was read",
            dc=server_url(conn),
        )
    if write_by is not None and time.time() >= write_by:
        raise WriteNotSent(
            "not written: the write permit ran out before the write could be sent",
            dc=server_url(conn),
        )


def is_encrypted(conn: ldap3.Connection) -> bool:
    """True when the connection runs over TLS (ldaps, or after StartTLS)."""
    return bool(conn.server.ssl or getattr(conn, "tls_started", False))


def open_connection(
    settings: DirectorySettings,
    *,
    user: str | None = None,
    password: SecretStr | None = None,
    context: Context = "service_bind",
    bind_controls: Sequence[tuple[str, bool, bytes | None]] | None = None,
    refine: Refine | None = None,
) -> ldap3.Connection:
    """A bound connection to the first server of `settings.urls` that answers.

    Without `user`, binds as the service account. With `user` (a DN), binds as that
    user: used to verify a password (change, tests) where a failed bind must map
    to wrong_old_password / account_locked rather than access_denied.
    `bind_controls` go on the bind request (OpenLDAP: the ppolicy request control, so
    a locked account is told apart from a wrong password); `refine` is passed to
    `translate_errors`. Raises InsecureTransport before any socket is opened when a
    URL is plain LDAP, and WriteNotSent when no server answered.
    """
    require_secure_transport(settings)
    # Failover is our own loop, not an ldap3 ServerPool: the pool sleeps
    # POOLING_LOOP_TIMEOUT (10 s, a process-wide setting) after a failed cycle even
    # with active=1, so a dead DC set would cost 10 s per attempt. Here a dead server
    # costs at most connect_timeout, and the pipeline retries with backoff until the
    # request's deadline.
    bind_user = user if user is not None else settings.bind_dn
    secret = password if password is not None else settings.bind_password
    failures: list[str] = []
    for url in settings.urls:
        conn = ldap3.Connection(
            _server(settings, url),
            user=bind_user,
            password=secret.get_secret_value(),
            authentication=ldap3.SIMPLE,
            client_strategy=ldap3.SYNC,
            raise_exceptions=True,
            receive_timeout=int(settings.receive_timeout),
            read_only=False,
            auto_bind=ldap3.AUTO_BIND_NONE,
        )
        try:
            with translate_errors(context, dc=url, refine=refine, conn=conn):
                conn.open()
                if settings.start_tls and not conn.server.ssl:
                    conn.start_tls()
                # raise_exceptions=True raises before bind() could return False
                if not conn.bind(controls=list(bind_controls) if bind_controls else None):
                    raise DirectoryError("bind returned False", dc=url)
        except DirectoryUnavailable as exc:
            close_quietly(conn)
            failures.append(f"{url}: {exc.detail}")
            continue
        except BaseException:
            close_quietly(conn)  # a failed bind (wrong old password) must not leak the socket
            raise
        return conn
    raise WriteNotSent("no directory server answered: " + "; ".join(failures))


def close_quietly(conn: ldap3.Connection | None) -> None:
    if conn is None:
        return
    try:
        conn.unbind()
    except (lexc.LDAPException, OSError):
        pass  # closing a dead socket: nothing left to do
    # ldap3 leaves the socket of a failed connect() open (unbind skips a connection
    # that never opened): close it, or every dead-DC attempt leaks a descriptor.
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with suppress(OSError):
            sock.close()


# --------------------------------------------------------------------------- errors
#
# The translation table. Order of precedence for a server answer:
#   1. the connector's `refine` (OpenLDAP's ppolicy response control),
#   2. the AD extended code in the diagnostic text (_AD_CODES),
#   3. a failed bind (result 49): by context and AD's bind "data" code (_BIND_DATA),
#   4. the LDAP result code (_RESULT_CODES),
#   5. DirectoryError (internal_error).
# Faults without an answer (_NO_ANSWER) become WriteNotSent / WriteOutcomeUnknown.

Make = Callable[[str, str | None], DirectoryError]


def _policy(reason: PolicyReason) -> Make:
    return lambda detail, dc: PolicyViolation(reason, detail, dc=dc)


def _samba_policy(detail: str, dc: str | None) -> DirectoryError:
    return PolicyViolation(samba_policy_reason(detail), detail, dc=dc)


def _make(cls: type[DirectoryError]) -> Make:
    return lambda detail, dc: cls(detail, dc=dc)


# ldap3 exception classes that mean "no answer" (socket, TLS, timeouts), and server
# answers that mean "try another time" (busy, unavailable).
_NO_ANSWER: tuple[type[BaseException], ...] = (
    lexc.LDAPCommunicationError,  # socket open/send/receive, session terminated
    lexc.LDAPServerPoolError,
    lexc.LDAPServerPoolExhaustedError,
    lexc.LDAPResponseTimeoutError,
    lexc.LDAPStartTLSError,
    lexc.LDAPSSLConfigurationError,
    lexc.LDAPBusyResult,  # 51
    lexc.LDAPUnavailableResult,  # 52
    lexc.LDAPTimeLimitExceededResult,  # 3
    ssl.SSLError,
    OSError,
)

# AD extended error codes (the 8 hex digits before the colon).
_AD_CODES: Mapping[int, Make] = {
    0x52D: _samba_policy,  # password policy; Samba's text names the rule, Windows' not
    0x775: _make(AccountLocked),  # a change on a locked-out account
    0x56: _make(WrongOldPassword),
    0x208D: _make(UserNotFound),  # no such object
    0x2030: _make(UserNotFound),
    0x2077: _make(InsecureTransport),  # password write over an unencrypted connection
    0x1F: _make(InsecureTransport),
    0x5: _make(AccessDenied),
}

# AD bind "data" sub-codes of a failed user bind (result 49); anything else there is
# a wrong password.
_BIND_DATA: Mapping[int, Make] = {
    0x775: _make(AccountLocked),
    0x533: _make(AccountDisabled),  # disabled
    0x701: _make(AccountDisabled),  # account expired
    0x532: _make(AccountDisabled),  # password expired
}

# LDAP result codes (RFC 4511).
_RESULT_CODES: Mapping[int, Make] = {
    8: _make(InsecureTransport),  # strongerAuthRequired
    13: _make(InsecureTransport),  # confidentialityRequired
    19: _policy(PolicyReason.UNKNOWN),  # constraintViolation
    32: _make(UserNotFound),  # noSuchObject
    50: _make(AccessDenied),  # insufficientAccessRights
}


def _message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None)
    if isinstance(msg, str) and msg:
        return msg
    return str(exc)


# Samba's check_password_restrictions names the rule after the 0000052D prefix
# (Windows does not); matched only once the hex code said "policy".
_SAMBA_POLICY_TEXT: tuple[tuple[str, PolicyReason], ...] = (
    ("password is too short", PolicyReason.TOO_SHORT),
    ("password is too long", PolicyReason.TOO_LONG),
    ("does not meet the complexity", PolicyReason.COMPLEXITY),
    ("already used (in history)", PolicyReason.HISTORY),
    ("password is too young", PolicyReason.TOO_YOUNG),
)


def samba_policy_reason(message: str | None) -> PolicyReason:
    """The rule a 0000052D names in Samba's diagnostic text; UNKNOWN on Windows."""
    lowered = (message or "").lower()
    matches = (reason for text, reason in _SAMBA_POLICY_TEXT if text in lowered)
    return next(matches, PolicyReason.UNKNOWN)


def _classify_result(
    exc: lexc.LDAPOperationResult, context: Context, dc: str | None
) -> DirectoryError:
    message = _message(exc)
    description = getattr(exc, "description", "") or type(exc).__name__
    detail = f"{description}: {message}".strip()
    code = ad_extended_code(message)
    if code is not None and code in _AD_CODES:
        return _AD_CODES[code](detail, dc)
    result = getattr(exc, "result", None)
    if result == 49:  # invalidCredentials
        if context == "service_bind":
            return AccessDenied(f"service account bind failed: {detail}", dc=dc)
        make = _BIND_DATA.get(ad_bind_data(message) or 0, _make(WrongOldPassword))
        return make(detail, dc)
    if isinstance(result, int) and result in _RESULT_CODES:
        return _RESULT_CODES[result](detail, dc)
    return DirectoryError(detail, dc=dc)


def _no_answer(exc: BaseException, context: Context, dc: str | None) -> DirectoryUnavailable:
    detail = f"{type(exc).__name__}: {_message(exc)}"
    if context in _WRITES:
        return WriteOutcomeUnknown(detail, dc=dc)
    return WriteNotSent(detail, dc=dc)


@contextmanager
def translate_errors(
    context: Context,
    *,
    dc: str | None,
    refine: Refine | None = None,
    conn: ldap3.Connection | None = None,
) -> Iterator[None]:
    """Map ldap3 (and socket/TLS) exceptions to the most specific DirectoryError,
    `raise ... from exc`. `context` says what was running: a bind or a read cannot
    have sent a write; a fault during a write leaves its outcome unknown.

    `refine` lets a connector name a server answer more precisely from what only it
    understands (the response controls in `conn.result`); it is consulted for server
    answers only.
    """
    try:
        yield
    except DirectoryError:
        raise
    except lexc.LDAPBindError as exc:  # auto-bind style failure without a result object
        if context == "service_bind":
            raise AccessDenied(f"service account bind failed: {exc}", dc=dc) from exc
        raise WrongOldPassword(f"bind failed: {exc}", dc=dc) from exc
    except _NO_ANSWER as exc:
        raise _no_answer(exc, context, dc) from exc
    except lexc.LDAPOperationResult as exc:
        result = conn.result if conn is not None else None
        refined = refine(exc, context, result) if refine is not None else None
        error = refined or _classify_result(exc, context, dc)
        error.dc = error.dc or dc
        error.write_sent = True  # the directory answered: it got the request (and refused)
        raise error from exc
    except lexc.LDAPException as exc:
        raise DirectoryError(f"{type(exc).__name__}: {exc}", dc=dc) from exc


def first_value(attrs: dict[str, Any], name: str) -> Any:
    """ldap3 returns lists for multi-valued attributes and [] for absent ones."""
    value = attrs.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value
