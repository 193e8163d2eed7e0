"""One agent's set-up in one process (a Python start-up costs seconds on a busy CI
machine): `writeback-agent init`, the benchmark's agent.toml, `writeback-agent enroll`,
through the real CLI entry point, as an operator would run them.

    python -m bench.chaos._setup_agent CONFIG DATA_DIR RELAY_URL CODE  (agent.toml on stdin)
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent.cli import main as agent_cli


def main(argv: list[str]) -> int:
    config, data_dir, relay_url, code = argv
    if agent_cli(["-c", config, "init", "--data-dir", data_dir, "--relay-url", relay_url]):
        return 1
    Path(config).write_text(sys.stdin.read())
    return agent_cli(["-c", config, "enroll", "--code", code])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
