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
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from connectors.ldap_logging import Ldap3DetailCap, cap_ldap3_logging
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
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # A web server configured earlier in this process (uvicorn's own dictConfig)
        # gives these loggers handlers of their own and stops propagation: undo that,
        # so every line goes through the one redacting handler.
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
        library.disabled = False
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
