"""Loaded by the relay and the agent that `bench/trace_one.py --across` starts with
bench/_trace on PYTHONPATH and WB_TRACE_DIR set: it wraps the functions at the edges of
a request's steps and writes the wall clock of each edge to $WB_TRACE_DIR/<pid>.trace,
one line each ("<time> <process>: <edge>"). trace_one.py lines them up by request.
Not part of the product; nothing is wrapped without WB_TRACE_DIR, and a process that
lacks a module (Samba's own Python tools, which inherit the path) is left alone."""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

_DIR = os.environ.get("WB_TRACE_DIR", "")
_lock = threading.Lock()
_out: Any = None


def _mark(edge: str) -> None:
    global _out  # noqa: PLW0603 - one file per process, opened on first use
    line = f"{time.time():.6f} {edge}\n"
    with _lock:
        if _out is None:
            _out = open(os.path.join(_DIR, f"{os.getpid()}.trace"), "a", buffering=1)  # noqa: SIM115
        _out.write(line)


def _wrap(
    module: str,
    path: str,
    *,
    before: str | None = None,
    after: str | None = None,
    name: Callable[..., str] | None = None,
) -> None:
    """Stamp `before` when `module.path` is called and `after` when it returns (or
    raises); `name(*args)` adds a label (a route, a call's path)."""
    owner: Any = importlib.import_module(module)
    *parents, attr = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    fn = getattr(owner, attr)

    def label(args: tuple[Any, ...]) -> str:
        if name is None:
            return ""
        try:
            return " " + name(*args)
        except Exception:  # noqa: BLE001 - a label is a nicety
            return ""

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapped(*args: Any, **kwargs: Any) -> Any:
            tag = label(args)
            if before:
                _mark(before + tag)
            try:
                return await fn(*args, **kwargs)
            finally:
                if after:
                    _mark(after + tag)

        setattr(owner, attr, awrapped)
        return

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        tag = label(args)
        if before:
            _mark(before + tag)
        try:
            return fn(*args, **kwargs)
        finally:
            if after:
                _mark(after + tag)

    setattr(owner, attr, wrapped)


def _call_path(_self: Any, _method: str, path: str, *_: Any) -> str:
    """/v1/agent/leases/<id>/permit -> leases/permit (no id: one label per kind)."""
    return "/".join(p for p in path.split("/")[3:] if p.isalpha())


AGENT = [
    ("agent.pipeline", "Pipeline.handle", {"before": "agent: request taken by a worker"}),
    ("wire.verify", "RequestVerifier.verify", {"after": "agent: envelope verified"}),
    ("connectors.active_directory", "ActiveDirectoryConnector.look_ahead",
     {"after": "agent: lookup sent ahead"}),
    ("connectors.openldap", "OpenLdapConnector.look_ahead", {"after": "agent: lookup sent ahead"}),
    ("agent.journal", "Journal.claim", {"after": "agent: journal claim"}),
    ("wire.verify", "VerifiedRequest.open", {"after": "agent: sealed part opened"}),
    ("connectors.active_directory", "ActiveDirectoryConnector.find_user",
     {"after": "agent: user looked up"}),
    ("connectors.openldap", "OpenLdapConnector.find_user", {"after": "agent: user looked up"}),
    ("agent.transports.relay", "RelayTransport._call",
     {"before": "agent: call sent", "after": "agent: call answered", "name": _call_path}),
    ("agent.pipeline", "Pipeline._write",
     {"before": "agent: directory write", "after": "agent: directory write answered"}),
    ("agent.outcome", "sign_result", {"after": "agent: answer signed"}),
    ("agent.journal", "Journal.finish", {"after": "agent: answer journaled"}),
    ("agent.poster", "ResultPoster.post", {"before": "agent: answer handed to the poster"}),
]
RELAY = [
    ("cloud.relay.hotpath", "HotPath.serve",
     {"before": "relay: call in", "after": "relay: handler returned",
      "name": lambda _self, found, *_: found[0].name}),
]

if _DIR:
    for module, path, how in AGENT + RELAY:
        try:
            _wrap(module, path, **how)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001, S112 - not this process's module
            continue
