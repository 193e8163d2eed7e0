"""The fault injector of the chaos run, one thread until the load is done:

- kill -9 of a random running agent every few seconds (never the last one running),
  restarted after a short pause; right after each kill the dead agent's journal is read
  for requests it had marked `writing` (its writer really died mid-write);
- a kill -9 of the agent whose result post the CutProxy just swallowed (half of the
  `lost` cuts): issue 8's "result post lost, then the writer dies";
- one relay restart, once a given share of the requests is answered;
- each directory stopped for `directory_down` seconds, once, at its own point of progress
  (a directory the benchmark only borrowed, `can_stop` false, is never stopped).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.chaos.directories import ChaosDirectory
from bench.chaos.system import ChaosSystem


@dataclass
class FaultPlan:
    kill_every: tuple[float, float] = (3.0, 6.0)
    restart_after: float = 1.5
    kill_after_lost_post: float = 0.5
    relay_restart_at: float = 0.3  # share of requests answered
    directory_down_at: tuple[float, ...] = (0.5, 0.7)  # one per directory
    directory_down: float = 10.0


@dataclass
class Faults:
    system: ChaosSystem
    directories: list[ChaosDirectory]
    progress: Callable[[], float]  # share of requests answered, 0..1
    done: threading.Event
    plan: FaultPlan
    seed: int = 1
    counts: Counter[str] = field(default_factory=Counter)
    died_mid_write: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    _kill_now: queue.Queue[int] = field(default_factory=queue.Queue)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def on_cut(self, agent: int, kind: str) -> None:
        with self._lock:
            self.counts[f"result post cut ({kind})"] += 1
            kill = kind == "lost" and random.random() < self.plan.kill_after_lost_post
        if kill:
            self._kill_now.put(agent)

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="faults", daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(60)

    def _run(self) -> None:
        rng = random.Random(self.seed)
        next_kill = time.monotonic() + rng.uniform(*self.plan.kill_every)
        relay_restarted = False
        stoppable = [d for d in self.directories if d.can_stop]
        down = list(zip(self.plan.directory_down_at, stoppable, strict=False))
        while not self.done.is_set():
            try:
                target = self._kill_now.get(timeout=0.2)
                self._kill(target, "agent kill -9 after a lost result post")
            except queue.Empty:
                pass
            progress = self.progress()
            try:
                if not relay_restarted and progress >= self.plan.relay_restart_at:
                    relay_restarted = True
                    self.system.restart_relay()
                    self.counts["relay restart"] += 1
                while down and progress >= down[0][0]:
                    _, directory = down.pop(0)
                    self._spawn(self._outage, directory)
                if time.monotonic() >= next_kill:
                    running = [a.index for a in self.system.agents if a.running()]
                    if running:
                        self._kill(rng.choice(running), "agent kill -9")
                    next_kill = time.monotonic() + rng.uniform(*self.plan.kill_every)
            except Exception as exc:  # noqa: BLE001 - a failed fault is reported, not fatal
                self.errors.append(f"{type(exc).__name__}: {exc}")
        for agent in self.system.agents:  # everyone back for the drain
            with agent.lock:
                if not agent.running():
                    agent.start()

    def _kill(self, index: int, what: str) -> None:
        agent = self.system.agents[index]
        with agent.lock:
            if not agent.running() or sum(a.running() for a in self.system.agents) < 2:
                return
            agent.kill9()
            writing = agent.writing()
        with self._lock:
            self.counts[what] += 1
            self.died_mid_write |= writing
            self.counts["writers killed mid-write"] += len(writing)
        self._spawn(self._restart, agent.index)

    def _restart(self, index: int) -> None:
        time.sleep(self.plan.restart_after)
        agent = self.system.agents[index]
        with agent.lock:
            if not agent.running():
                agent.start()

    def _outage(self, directory: ChaosDirectory) -> None:
        directory.stop()
        with self._lock:
            self.counts[f"{directory.name} stopped {self.plan.directory_down:g} s"] += 1
        time.sleep(self.plan.directory_down)
        directory.start()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception as exc:  # noqa: BLE001 - reported with the results
                self.errors.append(f"{target.__name__}: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)
