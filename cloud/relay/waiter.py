"""`ResultWaiter`: many threads of a portal wait for their own results over shared
long-polls (POST /v1/requests/results:wait), instead of one long-poll per request.

    waiter = ResultWaiter(client)           # one per PortalClient, shared by all threads
    client.submit(request.to_bytes())
    raw = waiter.wait(request.id, timeout=60)   # what client.wait_result would return
    waiter.close()

A poll covers every request waited for when it starts and returns when one of them is
settled; the thread that made it then polls again for what is left plus what was added
meanwhile. A request added while every poll is in flight is picked up by the next one
to return, or by a new poll after `fresh_after` seconds (at most `max_polls` at once),
so one slow request cannot hold up the others for long. While requests are still
pending, the next poll starts `min_interval` seconds after the last one returned, so
when results arrive one by one a poll still brings several (at the cost of up to that
much latency), and the requests that the threads just answered send next go in the
same poll as those still pending; a request waited for alone is polled at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from cloud.relay.client import (
    MAX_IDS,
    PortalClient,
    RelayError,
    RelayUnavailable,
    ResultState,
    ResultTimeout,
)


@dataclass
class _Waiting:
    state: ResultState | None = None
    error: RelayError | None = None
    done: threading.Event = field(default_factory=threading.Event)


class ResultWaiter:
    def __init__(
        self,
        client: PortalClient,
        *,
        poll_wait: float = 20.0,
        fresh_after: float = 0.2,
        max_polls: int = 4,
        min_interval: float = 0.02,
        retry_after: float = 0.5,
    ) -> None:
        self._client = client
        self._poll_wait = poll_wait
        self._min_interval = min_interval
        self._fresh_after = fresh_after
        self._retry_after = retry_after
        self._cond = threading.Condition()
        self._waiting: dict[str, _Waiting] = {}
        self._unpolled: dict[str, float] = {}  # id -> when to poll it (monotonic)
        self._polling = 0
        self._not_before = 0.0  # the next poll starts no sooner (min_interval)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._poller, name=f"result-waiter-{n}", daemon=True)
            for n in range(max(1, max_polls))
        ]
        for thread in self._threads:
            thread.start()

    def __repr__(self) -> str:
        return f"ResultWaiter({self._client!r})"

    def wait(self, request_id: str, timeout: float = 60.0) -> bytes:
        """The result envelope bytes; raises as `PortalClient.wait_result` does
        (RequestExpired, RequestInDoubt, UnknownRequest, ResultTimeout, RelayError)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the result waiter is closed")
            if request_id in self._waiting:
                raise ValueError(f"request {request_id} is waited for already")
            waiting = self._waiting[request_id] = _Waiting()
            now = time.monotonic()
            # While polls are in flight, the next one to return takes it along; else
            # it goes with the next poll, min_interval after the last one started.
            self._unpolled[request_id] = (
                now + self._fresh_after if self._polling else max(now, self._not_before)
            )
            self._cond.notify_all()
        settled = waiting.done.wait(timeout)
        with self._cond:
            self._waiting.pop(request_id, None)
            self._unpolled.pop(request_id, None)
        if waiting.error is not None:
            raise waiting.error
        if not settled or waiting.state is None:
            state = waiting.state.state if waiting.state is not None else "queued"
            raise ResultTimeout(
                f"no result for {request_id} after {timeout:.0f}s (state {state})", state=state
            )
        return waiting.state.value()

    def close(self) -> None:
        """Stop polling (a poll in flight ends with its wait); waiting threads time out."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> ResultWaiter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ pollers

    def _take(self) -> list[str] | None:
        """The ids for this thread's next poll (all waiting ones, once one is due);
        None when closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                due = min(self._unpolled.values(), default=None)
                if due is None:
                    self._cond.wait()
                    continue
                now = time.monotonic()
                if due > now:
                    self._cond.wait(due - now)
                    continue
                ids = list(self._unpolled)[:MAX_IDS]
                for request_id in ids:
                    del self._unpolled[request_id]
                self._polling += 1
                return ids

    def _poller(self) -> None:
        while (ids := self._take()) is not None:
            started = time.monotonic()
            states: list[ResultState] = []
            error: RelayError | None = None
            try:
                states = self._client.poll_results(ids, wait=self._poll_wait)
            except RelayUnavailable:
                started = time.monotonic() + self._retry_after  # polled again after a pause
            except RelayError as exc:
                error = exc
            # The next poll starts min_interval after this one returned: more results
            # arrive meanwhile, and the threads answered now add the requests they
            # send next, so one poll covers them all (rather than one poll for what
            # is left now and another for what is added a moment later).
            again = max(started, time.monotonic()) + self._min_interval
            with self._cond:
                self._polling -= 1
                answered = {state.id: state for state in states}
                for request_id in ids:
                    waiting = self._waiting.get(request_id)
                    if waiting is None:  # timed out meanwhile
                        continue
                    state = answered.get(request_id)
                    if error is not None:
                        waiting.error = error
                        waiting.done.set()
                    elif state is not None and state.settled:
                        waiting.state = state
                        waiting.done.set()
                    else:
                        waiting.state = state or waiting.state
                        self._unpolled[request_id] = again
                for request_id, due in self._unpolled.items():  # added meanwhile: go along
                    self._unpolled[request_id] = min(due, again)
                if self._unpolled:
                    # Others are still pending: pace the next poll, and a request added
                    # before it starts goes with it. With nothing pending a new request
                    # is polled at once (no added latency).
                    self._not_before = max(self._not_before, again)
                self._cond.notify_all()
