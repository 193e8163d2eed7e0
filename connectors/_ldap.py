"""ldap3 plumbing shared by both connectors: TLS, server pools, binds, and the ONE
place where ldap3 exceptions become our `DirectoryError`s.

ldap3 splits server answers (`LDAPOperationResult`, permanent) from socket faults
(`LDAPCommunicationError` and friends, retryable); that split is our
permanent-vs-`DirectoryUnavailable` line. Active Directory puts an 8-hex-digit
extended error at the start of its diagnostic message (`0000052D: ...`); we parse
that prefix, never the prose.

Never shared across threads: each call to `open_connection` builds fresh Server and
ServerPool objects (ldap3 keeps per-server state that is not thread-safe).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, Literal
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as lexc
from pydantic import SecretStr

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
    WrongOldPassword,
)
from wire.status import PolicyReason

Context = Literal["service_bind", "user_bind", "search", "write", "change"]
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


def require_secure_for_writes(settings: DirectorySettings) -> None:
    """AD rejects password writes in clear on Windows and Samba >= 4.19, but Samba 4.17
    with relaxed settings and any OpenLDAP would take them: refuse here, before any
    byte leaves the machine, unless a test explicitly allowed it."""
    if settings.allow_insecure:
        return
    insecure = [u for u in settings.urls if not is_secure(settings, u)]
    if insecure:
        raise InsecureTransport(
            f"refusing to write a password over plain LDAP ({', '.join(insecure)}); "
            "use ldaps:// or start_tls = true"
        )


def _tls(settings: DirectorySettings) -> ldap3.Tls:
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=str(settings.ca_file) if settings.ca_file else None,
    )


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
    """The URL of the server a (pooled) connection actually talks to."""
    server = conn.server
    scheme = "ldaps" if server.ssl else "ldap"
    return f"{scheme}://{server.host}:{server.port}"


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
    `translate_errors`.
    """
    # Failover is our own loop, not an ldap3 ServerPool: the pool sleeps
    # POOLING_LOOP_TIMEOUT (10 s, a process-wide setting) after a failed cycle even
    # with active=1, so a dead DC set would cost 10 s per attempt. Here a dead server
    # costs at most connect_timeout, and the pipeline retries with backoff until the
    # request's deadline.
    bind_user = user if user is not None else settings.bind_dn
    secret = password if password is not None else settings.bind_password
    failures: list[str] = []
    last_cause: BaseException | None = None
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
            last_cause = exc.__cause__
            continue
        except BaseException:
            close_quietly(conn)  # a failed bind (wrong old password) must not leak the socket
            raise
        return conn
    # `from` the last socket fault: it tells the pipeline nothing was sent (safe retry).
    raise DirectoryUnavailable(
        "no directory server answered: " + "; ".join(failures)
    ) from last_cause


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

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    lexc.LDAPCommunicationError,  # socket open/send/receive, session terminated
    lexc.LDAPServerPoolError,
    lexc.LDAPServerPoolExhaustedError,  # every server of the pool refused the connection
    lexc.LDAPResponseTimeoutError,
    lexc.LDAPStartTLSError,
    lexc.LDAPSSLConfigurationError,
    lexc.LDAPBusyResult,
    lexc.LDAPUnavailableResult,
    lexc.LDAPTimeLimitExceededResult,
    ssl.SSLError,
    OSError,
)


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
    code = ad_extended_code(message)
    description = getattr(exc, "description", "") or type(exc).__name__
    detail = f"{description}: {message}".strip()

    # Active Directory extended errors first: they are the most specific.
    if code == 0x52D:
        return PolicyViolation(samba_policy_reason(message), detail, dc=dc)
    if code == 0x775:  # a change on a locked-out account (Samba: "account locked out")
        return AccountLocked(detail, dc=dc)
    if code == 0x56:
        return WrongOldPassword(detail, dc=dc)
    if code in (0x208D, 0x2030):
        return UserNotFound(detail, dc=dc)
    if code in (0x2077, 0x1F):
        return InsecureTransport(detail, dc=dc)
    if code == 0x5:
        return AccessDenied(detail, dc=dc)

    if isinstance(exc, lexc.LDAPInvalidCredentialsResult):
        if context == "service_bind":
            return AccessDenied(f"service account bind failed: {detail}", dc=dc)
        data = ad_bind_data(message)
        if data == 0x775:
            return AccountLocked(detail, dc=dc)
        if data in (0x533, 0x701, 0x532):  # disabled, account expired, password expired
            return AccountDisabled(detail, dc=dc)
        return WrongOldPassword(detail, dc=dc)
    if isinstance(exc, lexc.LDAPInsufficientAccessRightsResult):
        return AccessDenied(detail, dc=dc)
    if isinstance(exc, lexc.LDAPNoSuchObjectResult):
        return UserNotFound(detail, dc=dc)
    if isinstance(
        exc, lexc.LDAPStrongerAuthRequiredResult | lexc.LDAPConfidentialityRequiredResult
    ):
        return InsecureTransport(detail, dc=dc)
    if isinstance(exc, lexc.LDAPConstraintViolationResult):
        return PolicyViolation(PolicyReason.UNKNOWN, detail, dc=dc)
    return DirectoryError(detail, dc=dc)


@contextmanager
def translate_errors(
    context: Context,
    *,
    dc: str | None,
    refine: Refine | None = None,
    conn: ldap3.Connection | None = None,
) -> Iterator[None]:
    """Map ldap3 (and socket/TLS) exceptions to the most specific DirectoryError.

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
    except lexc.LDAPOperationResult as exc:
        if isinstance(exc, _UNAVAILABLE):
            raise DirectoryUnavailable(f"{type(exc).__name__}: {_message(exc)}", dc=dc) from exc
        result = conn.result if conn is not None else None
        refined = refine(exc, context, result) if refine is not None else None
        raise (refined or _classify_result(exc, context, dc)) from exc
    except _UNAVAILABLE as exc:
        raise DirectoryUnavailable(f"{type(exc).__name__}: {exc}", dc=dc) from exc
    except lexc.LDAPException as exc:
        raise DirectoryError(f"{type(exc).__name__}: {exc}", dc=dc) from exc


def first_value(attrs: dict[str, Any], name: str) -> Any:
    """ldap3 returns lists for multi-valued attributes and [] for absent ones."""
    value = attrs.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value
