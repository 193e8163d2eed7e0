"""One chaos run: servers up, system up, load and faults together, then the verdict
per directory from the directory itself. Everything it starts, it stops."""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.directories import ChaosDirectory, open_directory
from bench.chaos.faults import FaultPlan, Faults
from bench.chaos.load import Load, Plan, make_plan
from bench.chaos.system import GROUP, ChaosSystem
from bench.chaos.verify import Verdict, judge, report
from tests.servers.samba import SambaEnv
from wire.keys import AgentPublicKeys

# NetBIOS-style domain that routes a request to each directory (agent.toml `domains`).
DOMAINS = {"slapd": "SL", "samba": "AD"}


@dataclass
class Settings:
    directories: tuple[str, ...] = ("slapd", "samba")
    requests: dict[str, int] = field(default_factory=lambda: {"slapd": 2000, "samba": 300})
    agents: int = 3
    workers: int = 2
    portal_threads: int = 8
    burst_sizes: tuple[int, int, int] = (40, 35, 25)  # weights of bursts of 1, 2, 3 resets
    together: float = 0.5  # share of bursts submitted at once (the rest a second apart)
    cut_probability: float = 0.05
    lease_timeout: float = 5.0  # the relay's; a killed agent's leases come back after it
    clock_skew: float = 2.0
    faults: FaultPlan = field(default_factory=FaultPlan)
    max_load_seconds: float = 900.0
    seed: int = 8
    keep: Path | None = None  # keep the run's files (logs, journals) here
    shared_samba: SambaEnv | None = None  # a running DC to use (never stopped) instead of one's own


@dataclass
class Outcome:
    verdicts: dict[str, Verdict]
    reports: dict[str, str]
    faults: Counter[str]
    fault_errors: list[str]
    seconds: float
    phases: dict[str, float]  # wall seconds of: directories, system, load, judge

    @property
    def failed(self) -> bool:
        return any(v.failed for v in self.verdicts.values())


def _directory_entry(directory: ChaosDirectory, root: Path) -> dict[str, Any]:
    """The agent.toml [[directories]] table, the bind password in a 0600 file."""
    entry = directory.env.settings.model_dump(mode="json", exclude_none=True)
    entry.pop("bind_password")
    secret = root / f"{directory.name}.bindpw"
    secret.write_text(directory.env.settings.bind_password.get_secret_value())
    secret.chmod(0o600)
    entry.update(name=directory.name, bind_password_file=str(secret),
                 domains=[DOMAINS[directory.name]])
    return entry


def _interleave(plans: list[Plan], seed: int) -> Plan:
    bursts = [burst for plan in plans for burst in plan.bursts]
    random.Random(seed).shuffle(bursts)
    return Plan(bursts)


def _public_keys(system: ChaosSystem) -> list[AgentPublicKeys]:
    with system.relay.portal(system.token) as portal:
        return [
            AgentPublicKeys.model_validate({**item["public_keys"], "agent_id": item["agent_id"]})
            for item in portal.agents(GROUP)
        ]


def run(settings: Settings, log: Any = print) -> Outcome:
    with contextlib.ExitStack() as stack:
        if settings.keep is not None:
            root = settings.keep
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wb-chaos-")))
        started = time.monotonic()
        directories: list[ChaosDirectory] = [
            stack.enter_context(open_directory(name, root / name, settings.shared_samba))
            for name in settings.directories
        ]
        plans = {}
        for n, directory in enumerate(directories):
            plan = make_plan(f"c{directory.name[:2]}", DOMAINS[directory.name],
                             settings.requests[directory.name], settings.seed + n,
                             sizes=settings.burst_sizes, together=settings.together)
            directory.create_users(plan.users)
            plans[directory.name] = plan
        phases = {"directories": time.monotonic() - started}
        log(f"directories up with {sum(len(p.users) for p in plans.values())} users "
            f"({phases['directories']:.0f} s)")

        faults: Faults | None = None

        def on_cut(agent: int, kind: str) -> None:
            if faults is not None:
                faults.on_cut(agent, kind)

        system = ChaosSystem.start(
            root / "system",
            lambda agent_root: [_directory_entry(d, agent_root) for d in directories],
            agents=settings.agents, workers=settings.workers,
            cut_probability=settings.cut_probability, clock_skew=settings.clock_skew,
            seed=settings.seed, on_cut=on_cut, lease_timeout=settings.lease_timeout,
        )
        stack.callback(system.close)
        system.wait_online()
        phases["system"] = time.monotonic() - started - phases["directories"]
        log(f"relay and {settings.agents} agents up ({time.monotonic() - started:.0f} s)")

        combined = _interleave(list(plans.values()), settings.seed)
        total = len(combined.requests)
        load = Load(system.relay.base_url, system.token, system.tenant, GROUP, system.signer,
                    _public_keys(system), combined, threads=settings.portal_threads,
                    submit_until=time.time() + settings.max_load_seconds)
        faults = Faults(system, directories, lambda: load.answered / total, load.done,
                        settings.faults, seed=settings.seed)
        # On the way out (also after an error or Ctrl+C): the faults stop first, so no
        # agent is restarted behind system.close().
        stack.callback(faults.join)
        stack.callback(load.done.set)
        if settings.clock_skew:
            faults.counts[f"agent clock skewed {settings.clock_skew:+g} s"] = 1
        load_started = time.monotonic()
        faults.start()
        load.run()
        faults.join()
        if load.no_agent_refusals:
            faults.counts["submits refused no_agent_online (retried)"] = load.no_agent_refusals
        seconds = phases["load"] = time.monotonic() - load_started
        judging = time.monotonic()
        log(f"load done: {load.answered} of {total} answered ({seconds:.0f} s); judging")

        verdicts, reports = {}, {}
        for directory in directories:
            plan = Plan([b for b in plans[directory.name].bursts if b[0].request_id])
            verdict = judge(plan, directory.binds, directory.write_counts(plan.users),
                            faults.died_mid_write)
            verdicts[directory.name] = verdict
            reports[directory.name] = report(verdict, directory=directory.name,
                                             faults=faults.counts, seconds=seconds)
        phases["judge"] = time.monotonic() - judging
        timing = "  wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items())
        reports = {name: f"{text}\n{timing}" for name, text in reports.items()}
        return Outcome(verdicts, reports, faults.counts, faults.errors, seconds, phases)
