"""The one log handler of the agent (agent/logging.py) and the relay (cloud/relay/logs.py).

Every line, structlog's or a stdlib logger's (httpx, apscheduler, uvicorn, ldap3),
goes through one stdlib handler whose structlog `ProcessorFormatter` adds an ISO-8601
UTC timestamp, the level and the logger name, runs `redact_secrets`, and renders:
one JSON object per line when the stream is not a terminal (journald, containers,
log shippers), readable coloured ``key=value`` lines when it is.

Redaction runs after exceptions have been formatted to text, so tracebacks are
scrubbed too; no renderer ever sees a live exception (rich/better-exceptions would
otherwise print local variables, which is where passwords live).

It lives in wire/ because that is the one package both the agent and the cloud may
import; like the rest of wire/ it imports nothing of ours. What only one side needs
(the agent's ldap3 cap, its quiet libraries) stays in that side's module.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.processors import NAME_TO_LEVEL
from structlog.typing import EventDict, Processor, WrappedLogger

from wire.redaction import redact_secrets

__all__ = ["LEVELS", "LevelGatedLogger", "LogFormat", "install_log_handler", "parse_level"]

LogFormat = Literal["auto", "json", "console"]

LEVELS: Mapping[str, int] = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

_LEADING_KEYS = ("timestamp", "level", "logger", "event")
# The handler attribute that names who installed it, so a second call replaces it.
_OWNER_ATTR = "_writeback_log_owner"
# Loggers a web server configured earlier in this process (uvicorn's own dictConfig)
# gives handlers of their own with propagation off.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def parse_level(level: str, levels: Mapping[str, int] = LEVELS) -> int:
    """The numeric level of `level` (any case); a clear error naming the choices."""
    try:
        return levels[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(levels)}") from None


def _lead_with_standard_fields(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """Put timestamp, level, logger, event first so JSON lines read well in `tail -f`."""
    head = {k: event_dict.pop(k) for k in _LEADING_KEYS if k in event_dict}
    return {**head, **event_dict}


def _redact(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    return redact_secrets(logger, method, event_dict)


def _shared_processors() -> list[Processor]:
    """Run for structlog events and for foreign (stdlib) records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class LevelGatedLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib BoundLogger that asks the stdlib logger's level first, as
    `filter_by_level` (the chain's first processor) does, so a line below the level
    costs one cached level check instead of a copy of the bound context, a processor
    call and a DropEvent (the relay's and the agent's debug lines on the hot path).
    The method names map to levels by structlog's own table, the one filter_by_level
    reads."""

    def _proxy_to_logger(
        self, method_name: str, event: str | None = None, *event_args: str, **event_kw: Any
    ) -> Any:
        if not self._logger.isEnabledFor(NAME_TO_LEVEL.get(method_name, logging.NOTSET)):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


def install_log_handler(
    owner: str,
    level: int,
    fmt: LogFormat = "auto",
    stream: TextIO | None = None,
    *,
    filters: Iterable[logging.Filter] = (),
    cache_logger_on_first_use: bool = True,
) -> None:
    """Route structlog and stdlib logging to one redacting handler on `stream`
    (default stderr), at `level`, with `filters` on the handler.

    Safe to call again (tests, reload): it replaces only the handler `owner` installed
    earlier, so handlers others attached to the root logger (pytest's) survive.
    """
    out = sys.stderr if stream is None else stream
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    renderer: Processor
    if fmt == "json" or (fmt == "auto" and not is_tty):
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
            _redact,
            _lead_with_standard_fields,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    for log_filter in filters:
        handler.addFilter(log_filter)
    setattr(handler, _OWNER_ATTR, owner)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OWNER_ATTR, None) == owner]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in _UVICORN:
        # Undo uvicorn's own setup, so every line goes through the one redacting handler.
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
        library.disabled = False

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=LevelGatedLogger,
        cache_logger_on_first_use=cache_logger_on_first_use,
    )
