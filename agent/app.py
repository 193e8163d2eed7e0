"""Assemble a running agent from the settings object: keys, enrollment, journal,
verifier, pipeline, worker service, scheduler and health endpoint.

`build_agent` is what `writeback-agent run` calls and what the end-to-end tests call
to run the real agent in-process; nothing here reads the environment.

Everything the agent needs is checked before it leases anything (`preflight`, then
`AgentApp.start` binds the health port before the workers start): a problem found later
would leave leased requests waiting out their lease. Each refusal is a ConfigError
whose one line names the file or key.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from agent.backlog import DirectoryBacklog
from agent.config import ConfigError, Settings
from agent.connector_pool import ConnectorPool
from agent.enrollment import Enrollment, load_keyring, relay_transport, trusted_files
from agent.health import HealthServer, HealthState
from agent.journal import Journal
from agent.journal_probe import unusable_message
from agent.keywatch import KeyWatcher, ReloadingVerifier
from agent.localfiles import (
    UntrustedFile,
    check_trusted,
    create_private,
    key_hint,
    restrict_data_dir,
    unusable_data_dir,
)
from agent.logging import get_logger
from agent.malloc import TrimWhenIdle
from agent.metrics import Metrics
from agent.outcome import Identity
from agent.pipeline import Pipeline
from agent.scheduler import AgentScheduler
from agent.service import AgentService
from agent.systemd import Notifier
from agent.transports.base import Transport
from wire.errors import KeyFileError
from wire.keys import AgentKeys


@dataclass
class AgentApp:
    service: AgentService
    scheduler: AgentScheduler
    health_server: HealthServer | None
    health: HealthState
    metrics: Metrics
    key_watcher: KeyWatcher | None = None
    notifier: Notifier = field(default_factory=lambda: Notifier(HealthState(), env={}))

    def start(self) -> None:
        """Health port first: if it is taken, nothing has been leased yet."""
        if self.health_server is not None:
            try:
                self.health_server.start()
            except OSError as exc:
                self.service.join(0)  # closes the journal; no worker was started
                host, port = self.health_server.address
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"[health] port {port} on {host} is in use (another agent running?): "
                        "stop it or change [health] port"
                    ) from None
                raise ConfigError(
                    f"[health] cannot listen on {host}:{port}: {exc.strerror}"
                ) from None
        self.service.start()
        self.scheduler.start()
        self.health.mark_started()
        self.notifier.start()

    def reload_keys(self) -> bool:
        """SIGHUP: re-read the agent keys and portal_keys.json now."""
        return self.key_watcher.reload() if self.key_watcher is not None else False

    def stop(self, timeout: float = 60.0) -> None:
        self.health.mark_stopping()
        self.notifier.stop()
        self.service.stop()
        self.service.join(timeout)
        self.scheduler.shutdown(wait=False)
        if self.health_server is not None:
            self.health_server.stop()


def relay_transport_factory(
    settings: Settings, enrollment: Enrollment, keys: AgentKeys
) -> Callable[[], Transport]:
    """One relay client per worker thread, each with its own keep-alive connection."""
    return lambda: relay_transport(settings, enrollment, keys)


def preflight(settings: Settings) -> None:
    """What `run` refuses to start without, checked before anything is leased."""
    if not settings.directories:
        raise ConfigError(
            "no [[directories]] configured: add one to the configuration "
            "(`writeback-agent config example` shows every key)"
        )
    problem = unusable_data_dir(settings.data_dir)
    if problem is not None:
        raise ConfigError(problem)
    for path in trusted_files(settings):
        if path.exists():
            try:
                check_trusted(path)
            except UntrustedFile as exc:
                raise ConfigError(f"refusing to start: {exc}") from None
    # Then tighten what is merely too readable (an older install: 0755 / 0644).
    try:
        changed = restrict_data_dir(settings.data_dir)
    except OSError as exc:
        raise ConfigError(f"data_dir {settings.data_dir}: {exc.strerror}") from None
    if changed:
        get_logger("writeback.agent").warning(
            "files.restricted", paths=[str(p) for p in changed], detail="now 0700/0600"
        )


def _open_journal(path: Path) -> Journal:
    create_private(path)
    try:
        return Journal(path)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(unusable_message(path, exc)) from None


def build_agent(
    settings: Settings,
    *,
    transport_factory: Callable[[], Transport] | None = None,
    log: Any | None = None,
) -> AgentApp:
    preflight(settings)
    try:
        keys = AgentKeys.load(settings.keys_dir)
    except KeyFileError as exc:
        raise ConfigError(key_hint(str(exc), settings.keys_dir)) from None
    enrollment = Enrollment.load(settings.enrollment_path)
    keyring = load_keyring(settings.data_dir)
    identity = Identity(enrollment.agent_id, enrollment.tenant, enrollment.agent_group)
    log = log if log is not None else get_logger("writeback.agent")
    if settings.relay is not None and settings.relay.url != enrollment.relay_url:
        log.warning(
            "relay.url_changed",
            url=settings.relay.url,
            enrolled_at=enrollment.relay_url,
            detail="using [relay] url from the configuration",
        )
    metrics = Metrics()
    health = HealthState()
    journal = _open_journal(settings.journal_path)
    connectors = ConnectorPool()
    verifier = ReloadingVerifier(
        keyring,
        keys,
        tenant=identity.tenant,
        agent_group=identity.agent_group,
        max_bytes=settings.max_request_bytes,
        max_skew=settings.max_clock_skew_seconds,
    )
    verifier.watcher = KeyWatcher(verifier, settings.keys_dir, settings.data_dir)
    relay = settings.relay
    backlog = (
        DirectoryBacklog(
            relay.hold_depth,
            most_hold=relay.hold_seconds,
            directories=[d.name for d in settings.directories],
        )
        if relay is not None
        else DirectoryBacklog(0)
    )
    for directory in settings.directories:
        metrics.watch_directory_writing(directory.name, partial(backlog.writing, directory.name))
    pipeline = Pipeline(
        settings,
        identity=identity,
        keys=keys,
        verifier=verifier,
        journal=journal,
        connectors=connectors,
        log=log,
        metrics=metrics,
        backlog=backlog,
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
        backlog=backlog,
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
        trim_memory=TrimWhenIdle(lambda: service.finished, lambda: service.in_flight),
    )
    health_server = (
        HealthServer(
            health,
            metrics,
            host=settings.health.host,
            port=settings.health.port,
            allow_remote=settings.health.allow_remote,
        )
        if settings.health.enabled
        else None
    )
    return AgentApp(
        service,
        scheduler,
        health_server,
        health,
        metrics,
        key_watcher=verifier.watcher,
        notifier=Notifier(health),
    )
