"""`bench/trace_one.py --across`: the functions its relay and agent wrappers stamp
still exist (a wrapper skips what it cannot find, so a rename would silently leave a
step out of the table), a wrapped function still returns what it returned, and an
answer is counted for the request whose call it answers."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from bench.trace_one import _opened_at

_SITE = Path(__file__).resolve().parents[2] / "bench" / "_trace" / "sitecustomize.py"


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The wrappers' module as a process without WB_TRACE_DIR loads it (nothing of this
    test process is wrapped)."""
    monkeypatch.delenv("WB_TRACE_DIR", raising=False)
    spec = importlib.util.spec_from_file_location("wb_trace_site", _SITE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_edge_it_stamps_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    site = _load(monkeypatch)
    for module, path, _how in site.AGENT + site.RELAY:
        owner: object = importlib.import_module(module)
        for part in path.split("."):
            owner = getattr(owner, part)  # raises AttributeError when renamed
        assert callable(owner), f"{module}.{path}"


def test_a_wrapped_function_answers_as_before_and_stamps_both_edges(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    site = _load(monkeypatch)
    monkeypatch.setattr(site, "_DIR", str(tmp_path))
    target = ModuleType("wb_trace_target")

    def add(a: int, b: int) -> int:
        return a + b

    target.add = add  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wb_trace_target", target)
    site._wrap("wb_trace_target", "add", before="t: in", after="t: out")
    try:
        assert target.add(2, 3) == 5
    finally:
        site._out.close()  # the process's one file, left open by design
    (trace,) = tmp_path.glob("*.trace")
    assert [line.split(" ", 1)[1] for line in trace.read_text().splitlines()] == [
        "t: in",
        "t: out",
    ]


def test_an_answer_counts_where_its_call_began() -> None:
    stamps = [
        (1.0, "agent: call sent results/batch"),
        (2.0, "relay: call in post_results"),
        (2.5, "agent: call sent leases"),  # a long-poll: counted when it answers
        (5.0, "relay: handler returned post_results"),
        (6.0, "agent: call answered results/batch"),
        (7.0, "agent: call answered leases"),
    ]
    opened = {edge: began for _, edge, began in _opened_at(stamps)}
    assert opened["relay: handler returned post_results"] == 2.0
    assert opened["agent: call answered results/batch"] == 1.0
    assert opened["agent: call answered leases"] == 7.0
