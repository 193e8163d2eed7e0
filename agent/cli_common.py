"""What every `writeback-agent` subcommand shares: where the configuration is, the
settings built from it once, the agent's keys, and the error an operator can fix."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agent.config import Settings, load_settings
from agent.localfiles import key_hint
from wire.errors import KeyFileError
from wire.keys import AgentKeys

DEFAULT_CONFIGS = (Path("agent.toml"), Path("/etc/writeback-agent/agent.toml"))


class CliError(Exception):
    """A problem the operator can fix; printed as one line, exit 2."""


def config_path(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    env = os.environ.get("WRITEBACK_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIGS:
        if candidate.exists():
            return candidate
    return DEFAULT_CONFIGS[0]


def settings_from_args(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(args.config))


def load_keys(settings: Settings) -> AgentKeys:
    try:
        return AgentKeys.load(settings.keys_dir)
    except KeyFileError as exc:
        raise CliError(key_hint(str(exc), settings.keys_dir)) from None
