"""Assemble a running agent from the settings object: keys, enrollment, journal,
verifier, pipeline, worker service, scheduler and health endpoint.

`build_agent` is what `writeback-agent run` calls and what the end-to-end tests call
to run the real agent in-process; nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.config import Settings
from agent.enrollment import Enrollment, load_keyring, relay_transport
from agent.health import HealthServer, HealthState
from agent.journal import Journal
from agent.logging import get_logger
from agent.metrics import Metrics
from agent.pipeline import ConnectorPool, Identity, Pipeline
from agent.scheduler import AgentScheduler
from agent.service import AgentService
from agent.transports.base import Transport
from wire.keys import AgentKeys
from wire.verify import RequestVerifier


@dataclass
class Agent:
    service: AgentService
    scheduler: AgentScheduler
    health_server: HealthServer | None
    health: HealthState
    metrics: Metrics

    def start(self) -> None:
        self.service.start()
        self.scheduler.start()
        if self.health_server is not None:
            self.health_server.start()
        self.health.mark_started()

    def stop(self, timeout: float = 60.0) -> None:
        self.health.mark_stopping()
        self.service.stop()
        self.service.join(timeout)
        self.scheduler.shutdown(wait=False)
        if self.health_server is not None:
            self.health_server.stop()

    @property
    def health_port(self) -> int | None:
        return self.health_server.port if self.health_server is not None else None


def relay_transport_factory(
    settings: Settings, enrollment: Enrollment, keys: AgentKeys
) -> Callable[[], Transport]:
    """One relay client per worker thread (httpx clients are not shared across them)."""
    return lambda: relay_transport(settings, enrollment, keys)


def build_agent(
    settings: Settings,
    *,
    transport_factory: Callable[[], Transport] | None = None,
    log: Any | None = None,
) -> Agent:
    keys = AgentKeys.load(settings.keys_dir)
    enrollment = Enrollment.load(settings.enrollment_path)
    keyring = load_keyring(settings.data_dir)
    identity = Identity(enrollment.agent_id, enrollment.tenant, enrollment.agent_group)
    log = log if log is not None else get_logger("writeback.agent")
    metrics = Metrics()
    health = HealthState()
    journal = Journal(settings.journal_path)
    connectors = ConnectorPool()
    verifier = RequestVerifier(
        keyring,
        keys,
        tenant=identity.tenant,
        agent_group=identity.agent_group,
        max_bytes=settings.max_request_bytes,
        max_skew=settings.max_clock_skew_seconds,
    )
    pipeline = Pipeline(
        settings,
        identity=identity,
        keys=keys,
        verifier=verifier,
        journal=journal,
        connectors=connectors,
        log=log,
        metrics=metrics,
    )
    service = AgentService(
        settings,
        identity=identity,
        keys=keys,
        transport_factory=transport_factory or relay_transport_factory(settings, enrollment, keys),
        pipeline=pipeline,
        journal=journal,
        connectors=connectors,
        log=log,
        metrics=metrics,
        health=health,
        verifier=verifier,
    )
    sched = settings.schedule
    scheduler = AgentScheduler(
        heartbeat=service.heartbeat,
        heartbeat_interval=sched.heartbeat_seconds,
        health_probe=service.probe_directories,
        health_probe_interval=sched.health_probe_seconds,
        prune_journal=service.prune_journal,
        prune_interval=sched.journal_prune_seconds,
        check_key_expiry=service.check_key_expiry,
        key_expiry_interval=sched.key_expiry_check_seconds,
    )
    health_server = (
        HealthServer(health, metrics, host=settings.health.host, port=settings.health.port)
        if settings.health.enabled
        else None
    )
    return Agent(service, scheduler, health_server, health, metrics)
