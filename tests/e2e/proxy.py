"""TCP forwarders (tests/servers/tcp_proxy.py) that lose answers on cue: how the crash
and permit tests catch an agent mid-write for real."""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable

from tests.servers.tcp_proxy import Link, TcpProxy, Verdict


class HoldingProxy(TcpProxy):
    """Between the agent and a directory: `hold_when()` is asked before each
    server->client chunk is passed on (with `hold_requests`, each client->server chunk
    instead: the write never reaches the directory); once it says yes, that chunk and
    all later ones of that connection are held (never delivered), and `holding` is
    set. Other connections pass untouched."""

    def __init__(
        self,
        upstream: tuple[str, int],
        hold_when: Callable[[], bool],
        *,
        hold_requests: bool = False,
    ) -> None:
        self._hold_when = hold_when
        self._hold_requests = hold_requests
        self.holding = threading.Event()
        super().__init__(upstream)

    def _hold(self, link: Link) -> Verdict:
        if link.cut.is_set() or self._hold_when():
            link.cut.set()
            self.holding.set()
            return Verdict.DROP  # swallowed: never delivered
        return Verdict.PASS

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        return self._hold(link) if self._hold_requests else Verdict.PASS

    def from_server(self, link: Link, chunk: bytes) -> Verdict:
        return Verdict.PASS if self._hold_requests else self._hold(link)


class CuttingProxy(TcpProxy):
    """Between an agent and the relay, cutting the agent's result posts: once a
    client->server chunk starts with `cut_prefix`, that chunk and all later ones on the
    connection are swallowed and the connection is left open (the relay never sees the
    result, the agent never hears back). Everything else passes."""

    def __init__(
        self, upstream: tuple[str, int], cut_prefix: bytes = b"POST /v1/agent/results"
    ) -> None:
        self._cut_prefix = cut_prefix
        self.cut = threading.Event()
        self.cutting = True  # False: pass result posts through too
        super().__init__(upstream)

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        if link.cut.is_set() or (self.cutting and chunk.startswith(self._cut_prefix)):
            link.cut.set()
            self.cut.set()
            return Verdict.DROP
        return Verdict.PASS

    def keep_open(self, link: Link, *, client_side: bool) -> bool:
        return client_side and link.cut.is_set()


class CountingProxy(TcpProxy):
    """Between HTTP clients and the relay: counts the requests per route (method and
    path, ids left out), as bench/http_count_proxy.py does."""

    _REQUEST_LINE = re.compile(rb"(GET|POST|PUT|DELETE) (/[^\s?]*)\S* HTTP/1\.1\r\n")
    _IDS = re.compile(r"(?<=/leases/)[^/]+(?=/)|(?<=/requests/)[^/]+(?=/result$)")

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.routes: collections.Counter[str] = collections.Counter()
        self._count_lock = threading.Lock()
        super().__init__(upstream)

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        lines = self._REQUEST_LINE.findall(chunk)
        with self._count_lock:
            for method, path in lines:
                self.routes[method.decode() + " " + self._IDS.sub("{id}", path.decode())] += 1
        return Verdict.PASS

    def counted(self) -> collections.Counter[str]:
        with self._count_lock:
            return collections.Counter(self.routes)
