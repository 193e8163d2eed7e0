"""The relay's log setup: structlog and every stdlib logger (uvicorn's included) through
one handler, the agent's (wire/log_setup.py), with the same redaction rules.

One JSON object per line when stderr is not a terminal (journald, containers, log
shippers), readable ``key=value`` lines when it is, or as `--log-format` says.
uvicorn is started with `log_config=None` (server.py), so its "Started server process"
and error lines propagate to the root handler installed here instead of printing
plain text in between. uvicorn's per-request access line is off unless
`--access-log` asks for it: at a few hundred requests a second it is most of the
relay's logging cost, and the relay's own events carry the ids that matter.
"""

from __future__ import annotations

from typing import TextIO

from wire.log_setup import LEVELS, LogFormat, install_log_handler, parse_level

__all__ = ["LogFormat", "configure_logging"]

_LEVELS = {**LEVELS, "trace": LEVELS["debug"]}  # uvicorn's extra level name


def configure_logging(
    level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to one redacting handler on `stream`
    (default stderr); calling it again replaces the handler it installed."""
    install_log_handler("relay", parse_level(level, _LEVELS), fmt, stream)
