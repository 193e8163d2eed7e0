"""The whole system for end-to-end tests: a real relay process over HTTP, a real agent
(configured from a real agent.toml, enrolled with the real CLI), real directories, and
a portal that talks through cloud/sdk.py and the relay's PortalClient.

    system = AgentSystem.start(tmp, relay, directory_env)
    result = system.portal.send("reset", "WB\\alice", new_password="...")
    assert result.status == "succeeded"
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from agent.app import AgentApp, build_agent
from agent.cli import main as agent_cli
from agent.config import load_settings
from agent.logging import configure_logging
from cloud.relay.client import PortalClient
from cloud.sdk import PortalSigner, Result, SignedRequest, build_request, verify_result
from connectors.base import DirectorySettings
from tests.servers._process import free_port
from tests.servers.relay import RelayProcess
from wire.keys import AgentPublicKeys
from wire.messages import Op, UserKind

_REPO = Path(__file__).resolve().parents[2]

# Where in-process agents log (set by the e2e conftest). The CLI's main() points the
# process-wide logging at stderr; after calling it in-process, point it back here.
LOG_STREAM: io.StringIO | None = None


def _restore_logging() -> None:
    if LOG_STREAM is not None:
        configure_logging(level="debug", fmt="json", stream=LOG_STREAM)


def cli(*args: str) -> int:
    try:
        return agent_cli(list(args))
    finally:
        _restore_logging()


def parent_dn(dn: str) -> str:
    """The DN one level up (the domain root of OU=People,DC=x,DC=y)."""
    return dn.split(",", 1)[1]


def directory_entry(
    settings: DirectorySettings, secrets_dir: Path, **overrides: Any
) -> dict[str, Any]:
    """A [[directories]] table for agent.toml, with the bind password in a 0600 file."""
    entry = settings.model_dump(mode="json", exclude_none=True)
    entry.pop("bind_password")
    name = str(overrides.get("name", entry.get("name", "dir")))
    secret_file = secrets_dir / f"{name}.bindpw"
    secret_file.write_text(settings.bind_password.get_secret_value())
    secret_file.chmod(0o600)
    entry["bind_password_file"] = str(secret_file)
    entry.update(overrides)
    return entry


class Portal:
    """The cloud portal's side: build, seal and sign with the SDK; submit to the relay."""

    def __init__(
        self, relay: RelayProcess, tenant: str, token: str, group: str, signer: PortalSigner
    ):
        self.relay = relay
        self.tenant = tenant
        self.token = token
        self.group = group
        self.signer = signer
        self.api_token = token
        self.client: PortalClient = relay.portal(token, timeout=30)

    def agents(self) -> list[AgentPublicKeys]:
        records = []
        for item in self.client.agents(self.group):
            public = dict(item["public_keys"])
            public["agent_id"] = item["agent_id"]
            records.append(AgentPublicKeys.model_validate(public))
        return records

    def request(
        self,
        op: Op,
        user: str,
        *,
        user_kind: UserKind = "login",
        signer: PortalSigner | None = None,
        **kwargs: Any,
    ) -> SignedRequest:
        return build_request(
            signer or self.signer,
            tenant=self.tenant,
            agent_group=self.group,
            agents=self.agents(),
            op=op,
            user_kind=user_kind,
            user_value=user,
            **kwargs,
        )

    def submit(self, request: SignedRequest) -> str:
        return self.client.submit(request.to_bytes())

    def wait(self, request: SignedRequest, timeout: float = 60) -> Result:
        raw = self.client.wait_result(request.id, timeout=timeout)
        return verify_result(raw, request=request, trusted_agents=self.agents())

    def send(self, op: Op, user: str, *, timeout: float = 60, **kwargs: Any) -> Result:
        request = self.request(op, user, **kwargs)
        self.submit(request)
        return self.wait(request, timeout)

    def wait_online(self, timeout: float = 30, *, why: Callable[[], str] = str) -> None:
        """Until an agent of this group is online at the relay (its heartbeat landed):
        before that, a submit is refused 503 (no agent online). `why()` is added to
        the failure message (an agent process's log)."""
        deadline = time.monotonic() + timeout
        while not any(a["online"] for a in self.client.agents(self.group)):
            assert time.monotonic() < deadline, f"no agent online: {why()}"
            time.sleep(0.1)

    def close(self) -> None:
        self.client.close()


def enroll_agent_config(
    root: Path,
    relay: RelayProcess,
    tenant: str,
    group: str,
    directories: list[dict[str, Any]],
    /,
    *,
    relay_url: str | None = None,
    **top: Any,
) -> Path:
    """`writeback-agent init` and `enroll` via the CLI; `relay_url` may point at a
    proxy in front of the relay. Returns the agent.toml."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "agent.toml"
    data_dir = root / "data"
    url = relay_url or relay.base_url
    if "relay" in top:  # a [relay] table given whole: it names the URL itself
        url = top["relay"]["url"]
    assert cli("-c", str(config), "init", "--data-dir", str(data_dir), "--relay-url", url) == 0
    document: dict[str, Any] = {
        "data_dir": str(data_dir),
        "agent_name": f"e2e-{root.name}",
        "workers": 2,
        "directory_deadline_seconds": 4.0,
        "relay": {"url": url, "lease_wait_seconds": 1.0, "timeout_seconds": 10.0},
        "health": {"enabled": True, "host": "127.0.0.1", "port": free_port()},
        "log": {"level": "debug", "format": "json"},
        "schedule": {"heartbeat_seconds": 1.0, "health_probe_seconds": 30.0},
        "directories": directories,
    }
    document.update(top)
    config.write_text(tomli_w.dumps(document))
    code = relay.enrollment_code(tenant, group)
    assert cli("-c", str(config), "enroll", "--code", code) == 0
    return config


@dataclass
class AgentSystem:
    root: Path
    config: Path
    portal: Portal
    agent: AgentApp | None = None
    directories: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        root: Path,
        relay: RelayProcess,
        directories: list[dict[str, Any]],
        /,
        *,
        group: str = "default",
        tenant: str | None = None,
        signer: PortalSigner | None = None,
        portal_relay: RelayProcess | None = None,
        **top: Any,
    ) -> AgentSystem:
        """Tenant + portal key at the relay; `writeback-agent init` and `enroll` via the CLI.
        With `portal_relay` (another relay on the same database) the portal talks to that
        one while the agent talks to `relay`."""
        root.mkdir(parents=True, exist_ok=True)
        tenant, token = relay.create_tenant(tenant)
        signer = signer or PortalSigner.generate()
        trusted = signer.trusted_key()
        relay.add_portal_key(tenant, trusted.kid, trusted.key)
        config = enroll_agent_config(root, relay, tenant, group, directories, **top)
        portal = Portal(portal_relay or relay, tenant, token, group, signer)
        return cls(root, config, portal, directories=directories)

    def add_agent(self, root: Path, *, relay_url: str | None = None, **top: Any) -> Path:
        """Another agent of the same group (same directories): its agent.toml."""
        return enroll_agent_config(
            root,
            self.portal.relay,
            self.portal.tenant,
            self.portal.group,
            self.directories,
            relay_url=relay_url,
            **top,
        )

    def settings(self) -> Any:
        return load_settings(self.config)

    def start_agent(self) -> AgentApp:
        self.agent = build_agent(self.settings())
        self.agent.start()
        return self.agent

    def stop_agent(self) -> None:
        if self.agent is not None:
            self.agent.stop(timeout=15)
            self.agent = None

    @contextlib.contextmanager
    def present_while_stopped(self, every: float = 1.0) -> Iterator[None]:
        """Heartbeats signed as this agent while it is stopped, so that the relay
        still counts it online and queues requests for it (rather than answering
        no_agent_online once the presence timeout passes on a slow machine)."""
        from agent.enrollment import Enrollment, relay_transport
        from tests.servers.relay import signed_heartbeat
        from wire.keys import AgentKeys

        settings = self.settings()
        enrollment = Enrollment.load(settings.enrollment_path)
        keys = AgentKeys.load(settings.keys_dir)
        transport = relay_transport(settings, enrollment, keys)
        stop = threading.Event()

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception):  # the relay may be busy: beat again
                    transport.heartbeat(signed_heartbeat(keys.signing, enrollment.agent_id))
                if stop.wait(every):
                    return

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
            transport.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[AgentSystem]:
        self.start_agent()
        try:
            yield self
        finally:
            self.stop_agent()

    def close(self) -> None:
        self.stop_agent()
        self.portal.close()


def journal_state(config: Path, request_id: str) -> str | None:
    """The state of a request in the journal of the agent configured by `config`
    (read-only, while that agent runs); None before the agent has it."""
    row = journal_row(config, request_id)
    return row[0] if row else None


def journal_row(config: Path, request_id: str) -> tuple[str, str | None] | None:
    """(state, lease id) of a request in that journal: a lease id is kept only with a
    write made under a relay permit (agent/journal.py)."""
    path = config.parent / "data" / "journal.sqlite3"
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT state, lease_id FROM requests WHERE id = ?", (request_id,)
            ).fetchone()
    except sqlite3.Error:
        return None
    return (str(row[0]), row[1]) if row else None


@dataclass
class AgentProcess:
    """`writeback-agent run` as its own process (to kill -9, SIGTERM or skew its clock),
    logging to `log` (appended: a restart adds to the same file)."""

    config: Path
    log: Path
    proc: subprocess.Popen[bytes]

    @classmethod
    def spawn(
        cls, config: Path, log: Path, *, env: Mapping[str, str] | None = None
    ) -> AgentProcess:
        """Started, not waited for (`wait_started`); `env` is added to this process's."""
        argv = [sys.executable, "-m", "agent.cli", "-c", str(config), "run"]
        full = {**os.environ, **(env or {})}
        # The agent of this tree, as tests/servers/relay.py runs the relay of its tree.
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), full.get("PYTHONPATH")]))
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=full)
        return cls(config, log, proc)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def wait_started(self, count: int = 1, timeout: float = 30) -> AgentProcess:
        """Until the log holds `count` agent.started lines (one per start into it)."""
        deadline = time.monotonic() + timeout
        while self.text().count('"agent.started"') < count:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.text()
            time.sleep(0.1)
        return self

    def kill(self) -> None:
        """kill -9: no shutdown, nothing flushed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (finish what is in hand), then kill if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
