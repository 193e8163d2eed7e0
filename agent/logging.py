"""Structured logs for operators who tail the agent, with secrets scrubbed before rendering.

Every line, ours or a library's (httpx, apscheduler, uvicorn, ldap3), goes through one
stdlib handler whose structlog `ProcessorFormatter` adds an ISO-8601 UTC timestamp, the
level and the logger name, runs `redact_secrets`, and renders: one JSON object per line
when the stream is not a terminal (journald, files, log shippers), readable coloured
``key=value`` lines when it is.

Redaction is defence in depth. Callers never pass passwords; `redact_secrets` makes sure
that if one ever does (or a library does, or an exception message does), it still never
reaches a log line. It runs after exceptions have been formatted to text, so tracebacks
are scrubbed too; no renderer ever sees a live exception (rich/better-exceptions would
otherwise print local variables, which is where passwords live).

ldap3 logging is capped at BASIC: at PROTOCOL and above ldap3 dumps modify requests,
and it does not strip ``unicodePwd`` values there (its sensitive-attribute list only
applies to some messages). `configure_logging` calls connectors.ldap_logging, which
lowers ldap3's detail level to BASIC if anything raised it and turns on its own hiding
of sensitive data, and the handler drops any ldap3 record tagged PROTOCOL/NETWORK/
EXTENDED that slips through anyway (the agent itself never imports ldap3).

Operator events have stable names, levels and meanings; the one table of them is
`agent/events.py` (docs/errors.md shows it, a test checks the code against it).

Avoid field names that `is_secret_key` treats as secret (``code``, ``*_token``...) for
values operators need: they render as "[redacted]".

``user`` is the directory reference the portal sent (sAMAccountName / uid), never a
password, and ``reason`` is a stable string from docs/protocol.md section 8.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from pydantic import SecretBytes, SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

from connectors.ldap_logging import Ldap3DetailCap, cap_ldap3_logging

__all__ = [
    "REDACTED",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "redact_secrets",
    "scrub_text",
]

REDACTED = "[redacted]"

# Substrings that make a key secret, compared case-insensitively after "-" -> "_".
_SECRET_PARTS = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "private_key",
    "privatekey",
    "authorization",
    "api_key",
    "apikey",
    "credential",
)
# Directory attributes that contain "pwd" but hold policy metadata, never a password;
# operators need to see them when diagnosing policy failures.
_NOT_SECRET = frozenset(
    {
        "pwdlastset",
        "pwdreset",
        "pwdaccountlockedtime",
        "pwdchangedtime",
        "pwdfailuretime",
        "pwdpolicysubentry",
        "pwdproperties",
        "pwdhistorylength",
        "minpwdlength",
        "minpwdage",
        "maxpwdage",
        "pwdminlength",
        "pwdminage",
        "pwdmaxage",
        "pwdinhistory",
        # Samba's diagnostic prefix ("check_password_restrictions: the password is too
        # short"): a function name; hiding the text after it hides the useful reason.
        "check_password_restrictions",
    }
)
# "code" is secret on its own (enrollment codes) but these are plain numbers.
_HARMLESS_CODES = frozenset(
    {"status_code", "error_code", "exit_code", "result_code", "reason_code", "http_code"}
)


def is_secret_key(key: str) -> bool:
    """True when a value stored under `key` must never be printed.

    Over-redaction is the intended failure mode: `password_policy` is hidden too.
    """
    k = key.lower().replace("-", "_")
    if k in _NOT_SECRET:
        return False
    if any(part in k for part in _SECRET_PARTS):
        return True
    return (k == "code" or k.endswith("_code")) and k not in _HARMLESS_CODES


# key=value / key: value / 'key': 'value' / "key": "value" inside free text (exception
# messages, tracebacks, library log messages, reprs). The value may be quoted, a
# bracketed list (ldap3 modify dumps), an HTTP auth scheme plus credentials, or a bare
# word up to a separator.
_TEXT_SECRET = re.compile(
    r"""
    (?<![\w-])
    (?P<key>[\w-]*(?:password|passwd|pwd|secret|token|private[_-]?key|authorization
                    |api[_-]?key|credential)[\w-]*
        |(?:[\w-]*_)?code)
    (?P<sep>["']?\s*[=:]\s*)
    (?P<value>
        (?:Bearer|Basic|Digest|Negotiate)\s+\S+
        |b?"(?:[^"\\\n]|\\.)*"
        |b?'(?:[^'\\\n]|\\.)*'
        |\[[^\]\n]*\]
        |[^\s,;&)}\]'"]+
    )
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _scrub_match(match: re.Match[str]) -> str:
    if not is_secret_key(match["key"]):
        return match[0]
    return f"{match['key']}{match['sep']}{REDACTED}"


def scrub_text(text: str) -> str:
    """Replace the value of every secret-looking ``key=value`` pair in free text."""
    return _TEXT_SECRET.sub(_scrub_match, text)


def _redact_value(value: Any) -> Any:  # one return per kind of value
    """Make one value safe to render. Primitives stay native so JSON keeps its types."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, SecretStr | SecretBytes):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret_key(str(k)) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    # Anything else would be repr()'d by the renderer anyway; scrub that text now.
    return scrub_text(repr(value))


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: secret keys become "[redacted]", every other value is scrubbed.

    Must run after `format_exc_info` (so the traceback is text) and before the renderer.
    """
    return {
        key: REDACTED if is_secret_key(key) else _redact_value(value)
        for key, value in event_dict.items()
    }


# Libraries that log every request or job run at INFO; at info level that drowns the
# events operators look for (a heartbeat every 30 s would log four lines).
_CHATTY_LIBRARIES = ("httpx", "httpcore", "apscheduler")

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _lead_with_standard_fields(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """Put timestamp, level, logger, event first so JSON lines read well in `tail -f`."""
    head = {k: event_dict.pop(k) for k in _LEADING_KEYS if k in event_dict}
    return {**head, **event_dict}


def _shared_processors() -> list[Processor]:
    """Run for structlog events and for foreign (stdlib) records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to one handler on `stream` (default stderr).

    Safe to call again (tests, reload): it replaces only the handler it installed
    earlier, so handlers others attached to the root logger (pytest's) survive.
    """
    try:
        numeric_level = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(_LEVELS)}") from None
    out = sys.stderr if stream is None else stream
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    use_json = fmt == "json" or (fmt == "auto" and not is_tty)

    renderer: Processor
    if use_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        # The exception is already text by now; plain_traceback is only a fallback
        # that never prints locals.
        renderer = structlog.dev.ConsoleRenderer(
            colors=is_tty, exception_formatter=structlog.dev.plain_traceback
        )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            _lead_with_standard_fields,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(Ldap3DetailCap())
    handler._writeback_agent = True  # type: ignore[attr-defined]  # marks ours for replacement

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_writeback_agent", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _CHATTY_LIBRARIES:
        # At debug an operator wants every request and job run; otherwise warnings only.
        quiet = logging.NOTSET if numeric_level <= logging.DEBUG else logging.WARNING
        logging.getLogger(name).setLevel(max(quiet, numeric_level))
    cap_ldap3_logging()

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger first used before configure_logging() (at import, in a
        # test) would otherwise keep the default configuration for the process's life.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger whose `logger` field is `name` (use ``__name__``)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
