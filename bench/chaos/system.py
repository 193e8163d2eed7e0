"""The real system of the chaos run, as processes: `writeback-relay serve` on SQLite,
and N `writeback-agent run` processes enrolled in one group, each talking to the
relay through its own CutProxy. The last agent runs with its wall clock ahead by
`clock_skew` seconds (bench/chaos/_skewed_agent.py says how, and why not libfaketime).

Agents are set up with the real CLI (`init`, then `enroll --code`) as an operator
would; the portal side is cloud/sdk.py + cloud.relay.client.PortalClient.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from bench.chaos.cutproxy import CutProxy
from cloud.sdk import PortalSigner
from tests.servers._process import free_port
from tests.servers.relay import RelayProcess, start_relay

REPO = Path(__file__).resolve().parents[2]
GROUP = "chaos"
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def _set_up_agent(config: Path, data_dir: Path, relay_url: str, code: str,
                  document: dict[str, Any]) -> None:
    """`writeback-agent init`, this agent.toml, `writeback-agent enroll` (one process)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.chaos._setup_agent", str(config), str(data_dir),
         relay_url, code],
        input=tomli_w.dumps(document).encode(), capture_output=True, env=_env(), timeout=120,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"agent set-up failed: {done.stderr.decode()[-2000:]}")


@dataclass
class AgentProcess:
    index: int
    root: Path
    config: Path
    proxy: CutProxy
    skew: float = 0.0
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def log(self) -> Path:
        return self.root / "agent.log"

    @property
    def journal(self) -> Path:
        return self.root / "data" / "journal.sqlite3"

    def start(self) -> None:
        module, extra = "agent.cli", {}
        if self.skew:
            module, extra = "bench.chaos._skewed_agent", {"WB_CHAOS_SKEW": f"{self.skew:g}"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, "-c", str(self.config), "run"],
                stdout=out, stderr=subprocess.STDOUT, env=_env(extra),
            )
        self.starts += 1

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def writing(self) -> set[str]:
        """Request ids this (dead) agent's journal had in state `writing`: it died
        between recording the write and recording its answer."""
        if not self.journal.exists():
            return set()
        with contextlib.closing(sqlite3.connect(self.journal, timeout=10)) as conn:
            try:
                rows = conn.execute("SELECT id FROM requests WHERE state = 'writing'").fetchall()
            except sqlite3.OperationalError:  # killed while starting: no table yet
                return set()
        return {str(row[0]) for row in rows}


@dataclass
class ChaosSystem:
    root: Path
    relay: RelayProcess
    tenant: str
    token: str
    signer: PortalSigner
    agents: list[AgentProcess]

    @classmethod
    def start(
        cls,
        root: Path,
        directory_entries: Callable[[Path], list[dict[str, Any]]],
        *,
        agents: int = 3,
        workers: int = 2,
        cut_probability: float = 0.05,
        clock_skew: float = 2.0,
        seed: int = 1,
        on_cut: Callable[[int, str], None] | None = None,
        lease_timeout: float = 5.0,
    ) -> ChaosSystem:
        relay = start_relay(root / "relay", lease_timeout=lease_timeout, presence_timeout=5)
        try:
            tenant, token = relay.create_tenant("chaos")
            signer = PortalSigner.generate()
            trusted = signer.trusted_key()
            relay.add_portal_key(tenant, trusted.kid, trusted.key)
            upstream = ("127.0.0.1", int(relay.base_url.rsplit(":", 1)[1]))
            procs: list[AgentProcess | None] = [None] * agents

            def set_up(i: int) -> None:
                agent_root = root / f"agent{i}"
                agent_root.mkdir(parents=True)

                def cut(kind: str, i: int = i) -> None:
                    if on_cut is not None:
                        on_cut(i, kind)

                proxy = CutProxy(upstream, cut_probability=cut_probability, seed=seed * 100 + i,
                                 on_cut=cut)
                document = {
                    "data_dir": str(agent_root / "data"),
                    "agent_name": f"chaos-{i}",
                    "workers": workers,
                    "directory_deadline_seconds": 20.0,
                    "relay": {"url": proxy.url, "lease_wait_seconds": 1.0, "timeout_seconds": 10.0},
                    "health": {"enabled": True, "host": "127.0.0.1", "port": free_port()},
                    "log": {"level": "info", "format": "json"},
                    "schedule": {"heartbeat_seconds": 1.0, "health_probe_seconds": 30.0},
                    "directories": directory_entries(agent_root),
                }
                config = agent_root / "agent.toml"
                _set_up_agent(config, agent_root / "data", proxy.url,
                              relay.enrollment_code(tenant, GROUP), document)
                skew = clock_skew if i == agents - 1 else 0.0
                procs[i] = AgentProcess(i, agent_root, config, proxy, skew)
            # init + enroll are a few Python start-ups each: set the agents up side by side
            with ThreadPoolExecutor(agents) as pool:
                list(pool.map(set_up, range(agents)))
            ready = [agent for agent in procs if agent is not None]
            system = cls(root, relay, tenant, token, signer, ready)
        except BaseException:
            relay.stop()
            raise
        for agent in ready:
            agent.start()
        return system

    def wait_online(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self.relay.portal(self.token) as portal:
            while True:
                agents = portal.agents(GROUP)
                if len(agents) == len(self.agents) and all(a["online"] for a in agents):
                    return
                if time.monotonic() > deadline:
                    logs = "\n".join(a.log.read_text(errors="replace")[-1500:] for a in self.agents)
                    raise TimeoutError(f"agents not online after {timeout:.0f}s:\n{logs}")
                time.sleep(0.3)

    def restart_relay(self, down: float = 1.0) -> None:
        """SIGTERM the relay, then the same relay again: same port, database, token."""
        self.relay.stop()
        time.sleep(down)
        log = self.relay.log_path.with_name("relay-restarted.log")
        with log.open("ab") as out:
            self.relay.proc = subprocess.Popen(self.relay.proc.args, stdout=out,
                                               stderr=subprocess.STDOUT, env=_env(),
                                               cwd=self.root / "relay")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.relay.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the relay did not come back after its restart")

    def close(self) -> None:
        for agent in self.agents:  # SIGTERM to all first: they drain side by side
            if agent.proc is not None and agent.proc.poll() is None:
                agent.proc.terminate()
        for agent in self.agents:
            agent.stop()
        for agent in self.agents:
            agent.proxy.close()
        self.relay.stop()
