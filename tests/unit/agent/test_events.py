"""The operator events in the code, in agent/events.py and in docs/errors.md agree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from agent.events import BY_NAME, markdown_table
from wire.status import EVENT_IDS, CredentialReason, NotManagedReason, PolicyReason

ROOT = Path(__file__).resolve().parents[3]
_LEVELS = {"debug": "debug", "info": "info", "warning": "warning", "error": "error",
           "exception": "error", "critical": "critical"}
_NUMERIC = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
_EVENT = re.compile(r"^[a-z_]+\.[a-z_]+$")


def _constants(node: ast.expr) -> list[object]:
    if isinstance(node, ast.Constant):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def logged_events() -> dict[str, set[str | None]]:
    """event name -> levels it is logged at (None where the level is computed)."""
    found: dict[str, set[str | None]] = {}

    def add(names: list[object], levels: list[str | None]) -> None:
        for i, name in enumerate(names):
            if isinstance(name, str) and _EVENT.match(name):
                level = levels[i] if i < len(levels) else (levels[0] if levels else None)
                found.setdefault(name, set()).add(level)

    for package in ("agent", "connectors"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    method = node.func.attr
                    if method in _LEVELS and node.args:
                        add(_constants(node.args[0]), [_LEVELS[method]])
                    elif method == "log" and len(node.args) >= 2:
                        numbers = _constants(node.args[0])
                        add(_constants(node.args[1]),
                            [_NUMERIC.get(n) if isinstance(n, int) else None for n in numbers])
                elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "event" for t in node.targets
                ):
                    add(_constants(node.value), [])
    return found


def test_every_logged_event_is_registered_at_its_level() -> None:
    logged = logged_events()
    assert set(logged) == set(BY_NAME), "add or remove the event in agent/events.py"
    wrong = {
        name: sorted(level for level in levels if level and level not in BY_NAME[name].levels)
        for name, levels in logged.items()
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_docs_errors_md_shows_the_generated_table() -> None:
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    assert markdown_table() in text, "regenerate it: python -m agent.events"


def test_the_logging_module_points_at_the_registry_instead_of_its_own_copy() -> None:
    text = (ROOT / "agent" / "logging.py").read_text(encoding="utf-8")
    assert "agent/events.py" in text
    assert "request.succeeded  info" not in text


def _status_table() -> dict[str, tuple[int, set[str]]]:
    """docs/errors.md's first table: status -> (event_id, the reasons it lists)."""
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    rows: dict[str, tuple[int, set[str]]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            rows[cells[1]] = (int(cells[0]), {r.strip() for r in cells[2].split(",") if r.strip()})
    return rows


def test_docs_errors_md_lists_every_status_with_its_event_id() -> None:
    """The ids SIEM rules are written against: the docs table is wire.status.EVENT_IDS."""
    rows = _status_table()
    assert {status: event_id for status, (event_id, _) in rows.items()} == {
        status.value: event_id for status, event_id in EVENT_IDS.items()
    }
    assert rows["policy_violation"][1] == {r.value for r in PolicyReason}
    assert rows["not_managed"][1] == {r.value for r in NotManagedReason}
    assert rows["password_expired"][1] == {r.value for r in CredentialReason}
