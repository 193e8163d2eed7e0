"""`Submitter`: the threads of a busy portal submit their requests over shared calls
(POST /v1/requests:batch), each getting exactly what `PortalClient.submit` would
have given it.

    submitter = Submitter(client)            # one per PortalClient, shared by all threads
    request_id = submitter.submit(request.to_bytes())

A thread that finds no submit call in flight sends with whatever is queued, after
waiting up to `linger` seconds for company (0 by default; `PortalCalls` uses 3 ms),
and an envelope that goes alone goes over the single submit call. Envelopes
submitted while a call is in flight go together in the next one (up to 16, and no
more than `max_bytes` of envelopes).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from cloud.relay.client import (
    EnvelopeTooLarge,
    InvalidEnvelope,
    PortalClient,
    RateLimited,
    RelayError,
    SubmitAnswer,
)

MAX_BATCH = 16  # the relay's limit per call


@dataclass
class _Pending:
    envelope: bytes
    answer: SubmitAnswer | None = None
    error: Exception | None = None
    done: bool = False


class Submitter:
    def __init__(
        self, client: PortalClient, *, max_bytes: int = 60_000, linger: float = 0.0
    ) -> None:
        self._client = client
        self._max_bytes = max_bytes
        self._linger = linger
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._sending = False

    def __repr__(self) -> str:
        return f"Submitter({self._client!r})"

    def submit(self, envelope: bytes) -> str:
        """Queue the envelope; its request id, or raises as `PortalClient.submit`."""
        item = _Pending(envelope)
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()  # a sender lingering for company
        while True:
            with self._cond:
                while self._sending and not item.done:
                    self._cond.wait()
                if item.done:
                    break
                self._sending = True
                self._gather()
                batch = self._next()
            try:
                self._send(batch)
            finally:
                with self._cond:
                    for pending in batch:
                        if not pending.done:  # a bug in _send must not leave a thread waiting
                            pending.error = RelayError("submit: the call failed")
                            pending.done = True
                    self._sending = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        assert item.answer is not None  # noqa: S101  # done without error means an answer
        return item.answer.value()

    def _gather(self) -> None:
        """With the lock held: wait up to `linger` for others to queue theirs."""
        until = time.monotonic() + self._linger
        while len(self._queue) < MAX_BATCH:
            left = until - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _next(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and len(batch) < MAX_BATCH:
            size += len(self._queue[0].envelope)
            if batch and size > self._max_bytes:
                break
            batch.append(self._queue.pop(0))
        return batch

    def _send(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:  # alone: the single call, exactly as without sharing
            (item,) = batch
            try:
                item.answer = SubmitAnswer(self._client.submit(item.envelope))
            except RelayError as exc:
                item.error = exc
            item.done = True
            return
        try:
            answers = self._client.submit_many([item.envelope for item in batch])
        except (EnvelopeTooLarge, InvalidEnvelope):
            # The call's body as a whole was refused: one bad envelope must not sink
            # the others, so each goes alone and gets its own answer.
            for item in batch:
                self._send([item])
            return
        except RelayError as exc:
            for item in batch:  # each thread raises its own exception object
                item.error, item.done = _copy(exc), True
            return
        for item, answer in zip(batch, answers, strict=True):
            item.answer, item.done = answer, True


def _copy(exc: RelayError) -> RelayError:
    copy = (
        RateLimited(str(exc), code=exc.code, retry_after=exc.retry_after)
        if isinstance(exc, RateLimited)
        else type(exc)(str(exc), status=exc.status, code=exc.code)
    )
    copy.__cause__ = exc.__cause__  # the fault behind it (was the call sent at all?)
    return copy
