"""A TCP forwarder between one agent and the relay that cuts some result posts.

Agents talk HTTP/1.1 with keep-alive, one request at a time per connection, so every
client->relay chunk that starts a request starts with its request line. When that line
is a result post (`POST /v1/agent/results`, or `/v1/agent/results/batch` carrying
several results) and the dice say so, the post is cut in one of two ways:

- `lost`: the request is swallowed (never reaches the relay) and the connection is
  closed: the agent sent its result and the relay never heard of it;
- `unanswered`: the request is forwarded, and the relay's answer is swallowed and the
  connection closed: the relay stored the result, the agent cannot know.

`on_cut(kind)` is called for each cut (the fault scheduler may kill the agent right
then: the "result post lost, then the writer dies" case of issue 8).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from tests.servers.tcp_proxy import Link, TcpProxy, Verdict

_RESULTS = (b"POST /v1/agent/results ", b"POST /v1/agent/results/batch ")


class CutProxy(TcpProxy):
    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        cut_probability: float,
        seed: int,
        on_cut: Callable[[str], None] | None = None,
    ) -> None:
        self._probability = cut_probability
        self._random = random.Random(seed)
        self._dice = threading.Lock()
        self._on_cut = on_cut
        self.cuts = {"lost": 0, "unanswered": 0}
        super().__init__(upstream, connect_timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _roll(self) -> str | None:
        with self._dice:
            if self._random.random() >= self._probability:
                return None
            return self._random.choice(("lost", "unanswered"))

    def from_client(self, link: Link, chunk: bytes) -> Verdict:
        kind = self._roll() if chunk.startswith(_RESULTS) else None
        if kind is None:
            return Verdict.PASS
        with self._dice:
            self.cuts[kind] += 1
        if self._on_cut is not None:
            self._on_cut(kind)
        if kind == "lost":
            return Verdict.CLOSE  # swallowed: close both ends
        link.cut.set()  # unanswered: pass the post on, swallow the answer, then close
        return Verdict.PASS

    def from_server(self, link: Link, chunk: bytes) -> Verdict:
        # The answer to a cut post is never passed on.
        return Verdict.CLOSE if link.cut.is_set() else Verdict.PASS

    def keep_open(self, link: Link, *, client_side: bool) -> bool:
        return client_side and link.cut.is_set()  # the relay side closes both
