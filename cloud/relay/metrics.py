"""Prometheus metrics of one relay process (`GET /metrics`).

    writeback_relay_requests{state}                requests in the store by state
    writeback_relay_agents_online{tenant,group}    agents seen within presence_timeout
    writeback_relay_lease_latency_seconds          submit -> first lease (histogram)
    writeback_relay_rate_limited_total{kind}       calls answered 429, by error code

The first two are read from the store at scrape time (so every replica reports the
same numbers for the shared database); the latency is observed by the process that
leases a request it also accepted, which with several replicas is a sample rather than
all requests. Each app has its own registry: no process-wide state, so tests can run
several apps in one process.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cloud.relay.store import OpsStore

_PENDING_LIMIT = 100_000  # submit times remembered for the latency histogram


class _StoreCollector(Collector):
    def __init__(self, store: OpsStore, clock: Callable[[], float], presence: float) -> None:
        self._store = store
        self._clock = clock
        self._presence = presence

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._clock()
        states = GaugeMetricFamily(
            "writeback_relay_requests", "Requests in the store by state.", labels=["state"]
        )
        for state, count in sorted(self._store.request_counts(now).items()):
            states.add_metric([state], count)
        yield states
        online = GaugeMetricFamily(
            "writeback_relay_agents_online",
            "Agents seen (lease poll or heartbeat) within presence_timeout, per group.",
            labels=["tenant", "group"],
        )
        for tenant, group, count in self._store.online_counts(now - self._presence):
            online.add_metric([tenant, group], count)
        yield online


class RelayMetrics:
    def __init__(self, store: OpsStore, clock: Callable[[], float], presence: float) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store, clock, presence))
        self.lease_latency = Histogram(
            "writeback_relay_lease_latency_seconds",
            "Time from a request's submit to its first lease (observed by this process).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "writeback_relay_rate_limited",
            "Calls answered 429, by limit.",
            labelnames=["kind"],
            registry=self.registry,
        )
        self._submitted: OrderedDict[tuple[str, str], float] = OrderedDict()

    def submitted(self, tenant: str, request_id: str, at: float) -> None:
        self._submitted[(tenant, request_id)] = at
        if len(self._submitted) > _PENDING_LIMIT:
            self._submitted.popitem(last=False)

    def leased(self, tenant: str, request_id: str, at: float) -> None:
        started = self._submitted.pop((tenant, request_id), None)
        if started is not None:
            self.lease_latency.observe(max(0.0, at - started))

    def render(self) -> bytes:
        """The exposition text; reads the store, so call it off the event loop."""
        return generate_latest(self.registry)
