"""Structured logs for operators who tail the agent, with secrets scrubbed before rendering.

Every line, ours or a library's (httpx, apscheduler, uvicorn, ldap3), goes through one
stdlib handler that adds an ISO-8601 UTC timestamp, the level and the logger name, runs
`redact_secrets`, and renders: one JSON object per line when the stream is not a
terminal (journald, files, log shippers), readable coloured ``key=value`` lines when it
is. The handler is the relay's too (wire/log_setup.py); this module adds what only the
agent needs: the ldap3 cap and quieter HTTP and scheduler libraries.

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
from typing import TextIO

import structlog

from connectors.ldap_logging import Ldap3DetailCap, cap_ldap3_logging
from wire.log_setup import LogFormat, install_log_handler, parse_level
from wire.redaction import REDACTED, is_secret_key, redact_secrets, scrub_text

__all__ = [
    "REDACTED",
    "configure_logging",
    "get_logger",
    "is_secret_key",
    "redact_secrets",
    "scrub_text",
]

# Libraries that log every request or job run at INFO; at info level that drowns the
# events operators look for (a heartbeat every 30 s would log four lines).
_CHATTY_LIBRARIES = ("httpx", "httpcore", "apscheduler")


def configure_logging(
    level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to one handler on `stream` (default stderr).

    Safe to call again (tests, reload): it replaces only the handler it installed
    earlier, so handlers others attached to the root logger (pytest's) survive.
    """
    numeric_level = parse_level(level)
    install_log_handler(
        "agent", numeric_level, fmt, stream,
        filters=[Ldap3DetailCap()],
        # Not cached: a logger first used before configure_logging() (at import, in a
        # test) would otherwise keep the default configuration for the process's life.
        cache_logger_on_first_use=False,
    )
    for name in _CHATTY_LIBRARIES:
        # At debug an operator wants every request and job run; otherwise warnings only.
        quiet = logging.NOTSET if numeric_level <= logging.DEBUG else logging.WARNING
        logging.getLogger(name).setLevel(max(quiet, numeric_level))
    cap_ldap3_logging()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger whose `logger` field is `name` (use ``__name__``)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
