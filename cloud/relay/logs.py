"""The relay's log setup: structlog and every stdlib logger (uvicorn's included) through
one handler, with the same redaction rules as the agent (wire/redaction.py).

One JSON object per line when stderr is not a terminal (journald, containers, log
shippers), readable ``key=value`` lines when it is, or as `--log-format` says.
uvicorn is started with `log_config=None` (server.py), so its "Started server process"
and error lines propagate to the root handler installed here instead of printing
plain text in between. uvicorn's per-request access line is off unless
`--access-log` asks for it: at a few hundred requests a second it is most of the
relay's logging cost, and the relay's own events carry the ids that matter.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from wire.redaction import redact_secrets

LogFormat = Literal["auto", "json", "console"]

_LEVELS = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": logging.DEBUG,  # uvicorn's extra level name
}
_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _lead_with_standard_fields(_l: WrappedLogger, _m: str, event_dict: EventDict) -> EventDict:
    head = {k: event_dict.pop(k) for k in _LEADING_KEYS if k in event_dict}
    return {**head, **event_dict}


def _redact(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    return redact_secrets(logger, method, event_dict)


def _shared() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(
    level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    try:
        numeric = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(_LEVELS)}") from None
    out = sys.stderr if stream is None else stream
    is_tty = bool(getattr(out, "isatty", lambda: False)())
    renderer: Processor
    if fmt == "json" or (fmt == "auto" and not is_tty):
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=is_tty, exception_formatter=structlog.dev.plain_traceback
        )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(),
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
    handler._writeback_relay = True  # type: ignore[attr-defined]  # marks ours for replacement
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_writeback_relay", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
