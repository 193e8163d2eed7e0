"""What must hold when things go wrong: a replay is never written twice, a crash
mid-write is answered in_doubt (or written once by the next agent when the entry
provably did not change), the agent survives a relay outage, and no password
ever reaches a log line."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent.app import build_agent
from agent.transports.memory import MemoryQueue, MemoryTransport
from cloud.sdk import verify_result
from connectors.base import LookupKind, UserQuery
from tests.e2e.harness import AgentProcess, AgentSystem, directory_entry, journal_state
from tests.e2e.proxy import HoldingProxy
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess, start_relay
from tests.servers.slapd import SlapdEnv

INITIAL = "Initial-Pass-1"
REPLAYED = "Replayed-Secret-55"
THIRD = "Admin-Set-Later-66"
CRASH = "Crash-Window-Pass-77"
OUTAGE = "After-Outage-Pass-88"
_REPO = Path(__file__).resolve().parents[2]


def _user(env: DirectoryEnv) -> str:
    login = unique_login("r")
    env.create_user(login, INITIAL)
    time.sleep(1.0)
    return login


def _process_via_memory(system: AgentSystem, envelope: bytes) -> bytes:
    """Run the real agent (its journal, keys, directories) fed by an in-memory queue."""
    queue = MemoryQueue()
    request_id = queue.put(envelope)
    agent = build_agent(
        system.settings(),
        transport_factory=lambda: MemoryTransport(queue, system.portal.agents()[0].agent_id or "a"),
    )
    agent.start()
    try:
        return queue.wait_result(request_id, timeout=30)
    finally:
        agent.stop(timeout=15)


def test_replayed_request_is_not_written_twice(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path
) -> None:
    env = slapd_env
    system = AgentSystem.create(
        tmp_path / "replay",
        relay,
        [directory_entry(env.settings, tmp_path, name="main", default=True)],
    )
    try:
        login = _user(env)
        request = system.portal.request("reset", login, new_password=REPLAYED)
        first = _process_via_memory(system, request.to_bytes())
        assert (
            verify_result(first, request=request, trusted_agents=system.portal.agents()).status
            == "succeeded"
        )
        assert env.bind(login, REPLAYED) is BindOutcome.OK

        # An administrator sets another password; then the same request arrives again
        # (another queue, after a restart of the agent).
        connector = env.connector()
        connector.reset_password(
            connector.find_user(UserQuery(LookupKind.LOGIN, login)), SecretStr(THIRD)
        )
        connector.close()
        second = _process_via_memory(system, request.to_bytes())
        assert second == first  # the stored, signed answer
        assert env.bind(login, THIRD) is BindOutcome.OK  # not reverted by a second write
    finally:
        system.close()


def test_a_replay_then_the_next_request_in_one_running_agent(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path
) -> None:
    """One worker, so one directory connection: the replay's lookup, sent ahead and
    never read (the journal answers it), must not reach the next request, which is for
    another user and writes that user's password."""
    env = slapd_env
    system = AgentSystem.create(
        tmp_path / "replay-next",
        relay,
        [directory_entry(env.settings, tmp_path, name="main", default=True)],
    )
    first_login, next_login = _user(env), _user(env)
    first = system.portal.request("reset", first_login, new_password=REPLAYED)
    following = system.portal.request("reset", next_login, new_password=THIRD)
    queue = MemoryQueue()
    agent = build_agent(
        system.settings().model_copy(update={"workers": 1}),
        transport_factory=lambda: MemoryTransport(queue, system.portal.agents()[0].agent_id or "a"),
    )
    agent.start()
    try:
        answer = queue.wait_result(queue.put(first.to_bytes()), timeout=30)
        again = queue.wait_result(queue.put(first.to_bytes(), request_id="copy"), timeout=30)
        last = queue.wait_result(queue.put(following.to_bytes()), timeout=30)
    finally:
        agent.stop(timeout=15)
        system.close()
    assert again == answer  # the stored answer
    trusted = system.portal.agents()
    assert verify_result(last, request=following, trusted_agents=trusted).status == "succeeded"
    assert env.bind(first_login, REPLAYED) is BindOutcome.OK
    assert env.bind(next_login, THIRD) is BindOutcome.OK


@pytest.mark.parametrize("landed", [True, False], ids=["write_landed", "write_never_sent"])
def test_agent_killed_mid_write(
    relay: RelayProcess, slapd_env: SlapdEnv, tmp_path: Path, landed: bool
) -> None:
    """kill -9 with the reset in the directory's hands: the next agent answers
    in_doubt (it may have been applied). kill -9 after the permit and the journal mark
    but before the write left the proxy: the entry is provably unchanged, so the next
    agent takes the permit over and writes it, once."""
    env = slapd_env
    host_port = env.settings.urls[0].split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    state: dict[str, str] = {}

    def hold() -> bool:
        if "id" not in state or journal_state(config, state["id"]) != "writing":
            return False
        # Landed: hold only answers given after the entry changed (the write's own).
        return not landed or str(env.read(state["login"], "entryCSN")) != state["before"]

    proxy = HoldingProxy((host, int(port)), hold_when=hold, hold_requests=not landed)
    system = AgentSystem.create(
        tmp_path / "crash",
        relay,
        [
            directory_entry(
                env.settings,
                tmp_path,
                name="main",
                default=True,
                urls=[f"ldaps://127.0.0.1:{proxy.port}"],
                receive_timeout=60,
            )
        ],
    )
    config = system.config  # hold() reads its journal
    agent = AgentProcess.spawn(config, tmp_path / "agent.log")
    try:
        login = _user(env)
        system.portal.wait_online(why=agent.text)
        state.update(login=login, before=str(env.read(login, "entryCSN")))
        request = system.portal.request("reset", login, new_password=CRASH)
        state["id"] = request.id
        system.portal.submit(request)
        assert proxy.holding.wait(30), agent.text()
        agent.kill()
        assert journal_state(config, request.id) == "writing"
        del state["id"]  # the next agent's connections pass untouched

        # the relay redelivers after the lease times out
        agent = AgentProcess.spawn(config, agent.log)
        result = system.portal.wait(request, timeout=60)
        text = agent.text()
        assert '"request.interrupted"' in text  # the restart hands the row to the relay
        if landed:
            assert result.status == "in_doubt", result
            assert "Try again" in result.message
        else:
            assert result.status == "succeeded", result
            assert env.bind(login, CRASH) is BindOutcome.OK
            # Written once: the history holds the initial password only.
            assert len(env.read(login, "pwdHistory").get("pwdHistory") or []) == 1
    finally:
        proxy.close()  # first: a health probe stuck on the held connection ends with it
        agent.stop(30)
        system.close()


@pytest.mark.parametrize("lease_batch", [1, 4])
def test_sigterm_stops_within_two_seconds(
    relay: RelayProcess, slapd_env: DirectoryEnv, tmp_path: Path, lease_batch: int
) -> None:
    """Idle workers sit in 20 s lease long-polls: SIGTERM does not wait them out; a
    request in hand is finished and answered first."""
    system = AgentSystem.create(
        tmp_path / "term",
        relay,
        [directory_entry(slapd_env.settings, tmp_path, name="main", default=True)],
        workers=4,
        relay={
            "url": relay.base_url,
            "lease_wait_seconds": 20.0,
            "timeout_seconds": 10.0,
            "lease_batch": lease_batch,
        },
    )
    agent = AgentProcess.spawn(system.config, tmp_path / "agent.log").wait_started()
    try:
        login = _user(slapd_env)
        assert (
            system.portal.send("reset", login, new_password="Before-Term-Pass-1").status
            == "succeeded"
        )
        time.sleep(1.0)  # every worker is back in its long-poll
        in_hand = system.portal.request("reset", login, new_password="In-Hand-Pass-2")
        system.portal.submit(in_hand)
        deadline = time.monotonic() + 30
        while journal_state(system.config, in_hand.id) is None:  # the agent has it in hand
            assert time.monotonic() < deadline, agent.text()
            time.sleep(0.002)
        started = time.monotonic()
        assert agent.stop(30) == 0
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"stopped after {elapsed:.2f} s"
        assert system.portal.wait(in_hand, timeout=30).status == "succeeded"
        assert slapd_env.bind(login, "In-Hand-Pass-2") is BindOutcome.OK
        text = agent.text()
        assert '"agent.stopping"' in text and '"agent.stopped"' in text
        print(f"\nSIGTERM -> exit: {elapsed * 1000:.0f} ms")
    finally:
        if agent.proc.poll() is None:
            agent.kill()
        system.close()


def _restart(relay: RelayProcess, log: Path) -> subprocess.Popen[bytes]:
    """The same relay again: same port, database and admin token (Popen keeps its argv)."""
    import httpx

    with log.open("ab") as out:
        proc = subprocess.Popen(
            relay.proc.args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(_REPO)},
            cwd=log.parent,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(relay.base_url + "/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"relay did not come back: {log.read_text()}")


def test_relay_outage_is_survived(slapd_env: DirectoryEnv, tmp_path: Path) -> None:
    relay = start_relay(tmp_path / "relay", lease_timeout=5, presence_timeout=5)
    system = AgentSystem.create(
        tmp_path / "outage",
        relay,
        [directory_entry(slapd_env.settings, tmp_path, name="main", default=True)],
    )
    restarted: subprocess.Popen[bytes] | None = None
    try:
        with system.running():
            login = _user(slapd_env)
            relay.stop()
            time.sleep(3)  # the agent's polls fail; it backs off, it does not die
            restarted = _restart(relay, tmp_path / "relay-restarted.log")
            # The agent is back once its next heartbeat lands (within a second); a
            # submit before that is refused 503 when the outage outlasted the
            # presence timeout, as it does on a loaded machine.
            system.portal.wait_online(15)
            result = system.portal.send("reset", login, new_password=OUTAGE, timeout=60)
            assert result.status == "succeeded", result
            assert slapd_env.bind(login, OUTAGE) is BindOutcome.OK
    finally:
        system.close()
        if restarted is not None:
            restarted.terminate()
            restarted.wait(10)
