"""Prometheus metrics for the agent, on a registry the `Metrics` object owns.

Why a private registry: prometheus_client's default REGISTRY is process-wide, so two
agents in one test process (or a test run twice) would collide on metric names, and
library collectors (process, GC) would mix with ours. Each `Metrics` is independent;
`health.HealthServer` serves `render()` at /metrics.

Label values must come from closed sets (op, status and reason strings of docs/protocol.md
section 8, configured directory names, key ids): never a user name or request id,
which would make one time series per request.

Series::

    writeback_requests_total{op,status}          counter   finished requests
    writeback_request_duration_seconds{op}       histogram time from lease to result
    writeback_in_flight                          gauge     requests being processed
    writeback_directory_writing{directory}       gauge     writes sent, not yet answered
    writeback_directory_up{directory}            gauge     1 if the last probe succeeded
    writeback_relay_up                           gauge     1 if the relay answered lately
    writeback_rejected_total{reason}             counter   envelopes refused before decrypt
    writeback_key_expiry_seconds{key}            gauge     seconds until a key expires
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

__all__ = ["Metrics"]

# A request is one LDAP modify plus a few searches: milliseconds on a LAN, seconds
# through a slow DC, up to the request's expiry (120 s by default) at worst.
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The agent's metrics. Thread-safe (prometheus_client's metrics lock internally)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "writeback_requests_total",
            "Requests finished, by operation and result status.",
            ["op", "status"],
            registry=r,
        )
        self._duration = Histogram(
            "writeback_request_duration_seconds",
            "Time from lease to signed result, by operation.",
            ["op"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self._in_flight = Gauge("writeback_in_flight", "Requests being processed now.", registry=r)
        self._directory_up = Gauge(
            "writeback_directory_up",
            "1 when the directory answered its last health probe, else 0.",
            ["directory"],
            registry=r,
        )
        self._directory_writing = Gauge(
            "writeback_directory_writing",
            "Password writes sent to the directory and not yet answered (its backlog; "
            "results, permits and leases wait for company while it is relay.hold_depth "
            "or more).",
            ["directory"],
            registry=r,
        )
        self._relay_up = Gauge(
            "writeback_relay_up",
            "1 when the relay answered the last poll or heartbeat, else 0.",
            registry=r,
        )
        self._rejected = Counter(
            "writeback_rejected_total",
            "Envelopes refused before decryption (signature, expiry, replay, ...).",
            ["reason"],
            registry=r,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._key_expiry = Gauge(
            "writeback_key_expiry_seconds",
            "Seconds until the key expires (negative once expired).",
            ["key"],
            registry=r,
        )

    def observe_request(self, op: str, status: str, seconds: float) -> None:
        """Count one finished request and record how long it took."""
        children = self._children.get((op, status))
        if children is None:
            # labels() takes a lock and builds the key on every call; the label sets are
            # closed (ops x statuses), so each pair's children are looked up once.
            children = (self._requests.labels(op=op, status=status), self._duration.labels(op=op))
            self._children[(op, status)] = children
        requests, duration = children
        requests.inc()
        duration.observe(seconds)

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason=reason).inc()

    def set_directory_up(self, name: str, up: bool) -> None:
        self._directory_up.labels(directory=name).set(1 if up else 0)

    def watch_directory_writing(self, name: str, writing: Callable[[], float]) -> None:
        """`writing()` is read at each scrape: the directory's writes in flight."""
        self._directory_writing.labels(directory=name).set_function(writing)

    def set_relay_up(self, up: bool) -> None:
        self._relay_up.set(1 if up else 0)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count the enclosed block as one request in flight, even if it raises."""
        self._in_flight.inc()
        try:
            yield
        finally:
            self._in_flight.dec()

    def set_key_expiry(self, key: str, seconds: float) -> None:
        self._key_expiry.labels(key=key).set(seconds)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry, and its content type.

        Our names are legacy-valid, so generate_latest() writes exactly the classic
        0.0.4 text format; label it so (prometheus_client's own default for a plain
        scrape) rather than CONTENT_TYPE_LATEST (1.0.0), which is newer than some
        scrapers and agents in the field.
        """
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
