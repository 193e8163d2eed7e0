"""`PortalCalls`: what each thread of a portal calls to send one request and get its
result, in as few HTTP calls as the moment allows.

    calls = PortalCalls(client)             # one per PortalClient, shared by all threads
    raw = calls.send(request.to_bytes(), request.id, timeout=60)   # the result bytes
    calls.close()

A request sent while no other is on its way goes alone, over the one call that submits
it and waits for its result (`PortalClient.submit_and_wait`): one HTTP call for the
reset. A request sent while others are on their way shares the calls with them: its
submit goes with theirs (`Submitter`), and one long-poll waits for several results
(`ResultWaiter`). Either way `send` returns or raises what `submit_and_wait` would.
"""

from __future__ import annotations

import threading
import time

from cloud.relay.client import (
    PortalClient,
    RateLimited,
    RelayError,
    RelayUnavailable,
    raise_once_queued,
)
from cloud.relay.submitter import Submitter
from cloud.relay.waiter import ResultWaiter

# A request sent while others are on their way waits this long for more to share its
# submit call: the answers to a busy portal's requests come back together (agent/
# backlog.py), and the requests its users send next then go in one call.
SUBMIT_LINGER = 0.003


class PortalCalls:
    def __init__(self, client: PortalClient) -> None:
        self._client = client
        self._submitter = Submitter(client, linger=SUBMIT_LINGER)
        self._waiter = ResultWaiter(client)
        self._lock = threading.Lock()
        self._sending = 0  # requests on their way, this one included

    def __repr__(self) -> str:
        return f"PortalCalls({self._client!r})"

    def send(self, envelope: bytes, request_id: str, timeout: float = 60.0) -> bytes:
        """The result envelope bytes of the request `envelope` (whose id is
        `request_id`); raises as `PortalClient.submit_and_wait` does."""
        with self._lock:
            alone = self._sending == 0
            self._sending += 1
        try:
            if alone:
                return self._client.submit_and_wait(envelope, timeout=timeout)
            deadline = time.monotonic() + timeout
            try:
                self._submitter.submit(envelope)
            except RateLimited:
                raise
            except RelayUnavailable as exc:  # no answer: it may have been queued
                return self._client.wait_submitted(
                    request_id, deadline - time.monotonic(), lost=exc
                )
            try:
                return self._waiter.wait(request_id, timeout=deadline - time.monotonic())
            except RelayError as exc:  # queued: never "nothing was queued" from here on
                raise_once_queued(exc, request_id)
        finally:
            with self._lock:
                self._sending -= 1

    def close(self) -> None:
        """Stop the shared result polls (threads waiting in them time out)."""
        self._waiter.close()

    def __enter__(self) -> PortalCalls:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
