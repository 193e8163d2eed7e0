"""One write per request and the newest password wins, across agents (issue 8 items 1-2),
with real agent processes killed -9, a real relay over HTTP, real slapd and Samba AD.

How a write is counted, from the directory itself:
- Samba AD: the version of unicodePwd in its replication metadata (+1 per write,
  resets included: Samba 4.17 skips history on resets, so a second reset would succeed).
- slapd: entryCSN (changes with every modification) read right after the first agent
  wrote and again at the end, plus the number of pwdHistory values.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
import pytest

from agent.enrollment import Enrollment, relay_transport
from agent.transports.base import Lease
from tests.e2e.harness import AgentProcess, AgentSystem, directory_entry, journal_state
from tests.e2e.proxy import CuttingProxy
from tests.servers.base import BindOutcome, DirectoryEnv, unique_login
from tests.servers.relay import RelayProcess, start_relay
from wire.messages import UserKind

INITIAL = "Initial-Pass-1"
LEASE_TIMEOUT = 3


# ------------------------------------------------------------------ directory facts


_UNICODE_PWD_ATTID = 0x9005A


def _ad_password_version(env: Any, login: str) -> int:
    """unicodePwd's version in replPropertyMetaData (what msDS-ReplAttributeMetaData
    shows on Windows; Samba 4.17 serves only the NDR blob): 16-byte header, then
    48-byte entries of attid, version, change time, invocation id, two USNs."""
    (blob,) = env.read(env.dn_of(login), ["replPropertyMetaData"])["raw"]["replPropertyMetaData"]
    _, _, count, _ = struct.unpack_from("<IIII", blob, 0)
    for n in range(count):
        attid, version = struct.unpack_from("<II", blob, 16 + 48 * n)
        if attid == _UNICODE_PWD_ATTID:
            return int(version)
    raise AssertionError(f"no unicodePwd metadata for {login}")


def _stamp(env: DirectoryEnv, login: str) -> tuple[Any, ...]:
    """What changes with every password write: (version,) on AD, (entryCSN, history) on slapd."""
    if env.kind == "active_directory":
        return (_ad_password_version(env, login),)
    attrs = env.read(login, "entryCSN", "pwdHistory")  # type: ignore[attr-defined]
    csn = attrs.get("entryCSN")
    return (str(csn[0] if isinstance(csn, list) else csn), len(attrs.get("pwdHistory") or []))


def _writes_between(env: DirectoryEnv, before: tuple[Any, ...], after: tuple[Any, ...]) -> int:
    if env.kind == "active_directory":
        return int(after[0]) - int(before[0])
    return 0 if before[0] == after[0] else max(1, after[1] - before[1])


def _without_history(env: DirectoryEnv, login: str) -> None:
    """Give this user a password policy that keeps no history."""
    tag = unique_login("nh")
    if env.kind == "active_directory":
        env.add_pso(tag, env.dn_of(login), {"msDS-PasswordHistoryLength": "0"})  # type: ignore[attr-defined]
        return
    from tests.servers.slapd import POLICIES

    dn = f"cn={tag},{POLICIES}"
    with env.admin() as conn:  # type: ignore[attr-defined]
        conn.add(dn, ["device", "pwdPolicy"], {
            "cn": tag, "pwdAttribute": "userPassword", "pwdMinLength": 8, "pwdInHistory": 0,
            "pwdMustChange": "TRUE", "pwdAllowUserChange": "TRUE",
        })
        conn.modify(env.user_dn(login), {"pwdPolicySubentry": [(ldap3.MODIFY_REPLACE, [dn])]})  # type: ignore[attr-defined]
    assert env.first(login, "pwdPolicySubentry") == dn  # type: ignore[attr-defined]


# ------------------------------------------------------------------ processes


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        message = "libfaketime missing: apt-get install faketime"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found[0]


def _skewed(skew: str | None) -> dict[str, str]:
    """The environment that shifts an agent's clocks by `skew` ("+20s") with
    libfaketime, preloaded into the agent itself (the `faketime` wrapper forks, so a
    kill -9 of it would leave the agent running)."""
    if skew is None:
        return {}
    # Only the wall clock is skewed, as on a real machine: libfaketime would otherwise
    # also shift the monotonic clock that timed waits use.
    return {"LD_PRELOAD": _libfaketime(), "FAKETIME": skew, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def _stop(agent: AgentProcess | None) -> None:
    if agent is not None:
        agent.stop()


@dataclass
class Pair:
    """Two agents of one group: A behind a proxy that cuts its result posts, B direct."""

    system: AgentSystem
    config_a: Path
    config_b: Path
    proxy: CuttingProxy
    relay: RelayProcess

    def wait_written_and_cut(self, request_id: str, agent_a: AgentProcess) -> None:
        """Until A's journal says written and the proxy has cut A's result post."""
        deadline = time.monotonic() + 30
        while journal_state(self.config_a, request_id) != "done" or not self.proxy.cut.is_set():
            assert time.monotonic() < deadline, agent_a.text()
            time.sleep(0.05)


@pytest.fixture
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Pair, DirectoryEnv]]:
    env: DirectoryEnv = request.getfixturevalue(request.param)
    relay = start_relay(tmp_path / "relay", lease_timeout=LEASE_TIMEOUT, presence_timeout=5)
    host, port = relay.base_url.rsplit("//", 1)[1].rsplit(":", 1)
    proxy = CuttingProxy((host, int(port)))
    directories = [directory_entry(env.settings, tmp_path, name="main", default=True,
                                   domains=["WB"], receive_timeout=10)]
    system = AgentSystem.create(tmp_path / "b", relay, directories, workers=1)
    config_a = system.add_agent(tmp_path / "a", relay_url=f"http://127.0.0.1:{proxy.port}",
                                workers=1)
    try:
        yield Pair(system, config_a, system.config, proxy, relay), env
    finally:
        proxy.close()
        system.close()
        relay.stop()


VARIANTS = ["plain", "must_change", "no_history", "skewed_clocks"]


@pytest.mark.parametrize("pair", ["samba_env", "slapd_env"], indirect=True)
@pytest.mark.parametrize("variant", VARIANTS)
def test_first_writer_dies_after_writing_and_the_request_is_never_written_again(
    pair: tuple[Pair, DirectoryEnv], variant: str, tmp_path: Path
) -> None:
    """Issue 8 item 1: A writes, its result post is lost, A is killed -9; B gets the
    request after the lease timeout and answers in_doubt; exactly one write."""
    p, env = pair
    login = unique_login("p")
    env.create_user(login, INITIAL)
    if variant == "no_history":
        _without_history(env, login)
    new_password = f"Permit-{variant.replace('_', '-')}-7x"
    skewed = variant == "skewed_clocks"
    agent_a = AgentProcess.spawn(
        p.config_a, tmp_path / "a.log", env=_skewed("+20s" if skewed else None)
    )
    agent_b: AgentProcess | None = None
    try:
        agent_a.wait_started()
        before = _stamp(env, login)
        now = int(time.time()) + (3 if variant == "skewed_clocks" else 0)  # portal clock +3 s
        request = p.system.portal.request(
            "reset", login, new_password=new_password, must_change=variant == "must_change",
            now=now,
        )
        p.system.portal.submit(request)
        p.wait_written_and_cut(request.id, agent_a)
        after_a = _stamp(env, login)
        assert _writes_between(env, before, after_a) == 1
        agent_a.kill()  # its answer never reached the relay
        if variant == "skewed_clocks":  # the agent really ran 20 s ahead
            started = next(json.loads(line) for line in agent_a.text().splitlines()
                           if '"agent.started"' in line)
            ahead = dt.datetime.fromisoformat(started["timestamp"]).timestamp() - time.time()
            assert 10 < ahead < 30, ahead

        agent_b = AgentProcess.spawn(p.config_b, tmp_path / "b.log",
                                     env=_skewed("-20s" if skewed else None))
        result = p.system.portal.wait(request, timeout=60)
        assert (result.status, result.reason) == ("in_doubt", "redelivered"), result
        assert _stamp(env, login) == after_a, "written again"
        expected = BindOutcome.MUST_CHANGE if variant == "must_change" else BindOutcome.OK
        assert env.bind(login, new_password) is expected
    finally:
        _stop(agent_a)
        _stop(agent_b)


@pytest.mark.parametrize("pair", ["slapd_env"], indirect=True)
def test_a_writer_killed_before_its_answer_got_through_posts_it_after_a_restart(
    pair: tuple[Pair, DirectoryEnv], tmp_path: Path
) -> None:
    """A writes, its result post is lost, A is killed -9 and restarted before the lease
    runs out: A posts the answer from its journal (the relay takes the permit holder's
    answer late), so the portal hears `succeeded`, not in_doubt, and nothing is
    written again."""
    p, env = pair
    login = unique_login("p")
    env.create_user(login, INITIAL)
    agent_a = AgentProcess.spawn(p.config_a, tmp_path / "a.log")
    try:
        agent_a.wait_started()
        before = _stamp(env, login)
        request = p.system.portal.request("reset", login, new_password="Reposted-Answer-8x")
        p.system.portal.submit(request)
        p.wait_written_and_cut(request.id, agent_a)
        after_a = _stamp(env, login)
        agent_a.kill()  # its answer never reached the relay
        p.proxy.cutting = False  # the restarted agent's posts get through
        agent_a = AgentProcess.spawn(p.config_a, agent_a.log)
        result = p.system.portal.wait(request, timeout=60)
        assert result.status == "succeeded", result
        assert _writes_between(env, before, after_a) == 1
        assert _stamp(env, login) == after_a, "written again"
        assert env.bind(login, "Reposted-Answer-8x") is BindOutcome.OK
        assert '"result.reposted"' in agent_a.text()
    finally:
        _stop(agent_a)


# ------------------------------------------------------------------ ordering


def _forms(env: DirectoryEnv, login: str) -> list[tuple[UserKind, str]]:
    """`alice`, `alice@corp` and `CORP\\alice`: one directory user."""
    if env.kind == "active_directory":
        from tests.servers.samba_env import UPN_SUFFIX

        upn = f"{login}@{UPN_SUFFIX}"
    else:
        upn = f"{login}@wb.test"  # mail
    return [("login", login), ("upn", upn), ("login", f"WB\\{login}")]


@pytest.mark.parametrize("pair", ["samba_env", "slapd_env"], indirect=True)
def test_an_older_request_after_a_newer_one_is_superseded(
    pair: tuple[Pair, DirectoryEnv], tmp_path: Path
) -> None:
    """Issue 8 item 2, deterministic: the older request is held (leased by agent A's
    identity, not processed) while the newer one is written; given back, the older
    one is answered superseded and never written."""
    p, env = pair
    login = unique_login("o")
    env.create_user(login, INITIAL)
    (older_kind, older_user), (newer_kind, newer_user), _ = _forms(env, login)
    older = p.system.portal.request("reset", older_user, user_kind=older_kind,
                                    new_password="Older-Pass-1x")
    newer = p.system.portal.request("reset", newer_user, user_kind=newer_kind,
                                    new_password="Newer-Pass-2x")
    from agent.config import load_settings
    from tests.servers.relay import signed_heartbeat
    from wire.keys import AgentKeys

    settings_a = load_settings(p.config_a)
    enrollment_a = Enrollment.load(settings_a.enrollment_path)
    keys_a = AgentKeys.load(settings_a.keys_dir)
    holder = relay_transport(settings_a, enrollment_a, keys_a)
    agent_b: AgentProcess | None = None
    try:
        # online, so the relay takes submits (heartbeats are verified: sign it)
        holder.heartbeat(signed_heartbeat(keys_a.signing, enrollment_a.agent_id))
        p.system.portal.submit(older)
        held: Lease | None = holder.lease(wait=5)
        assert held is not None and held.request_id == older.id
        p.system.portal.submit(newer)
        agent_b = AgentProcess.spawn(p.config_b, tmp_path / "b.log")
        deadline = time.monotonic() + 60
        while p.system.portal.client.poll_result(newer.id, wait=0.5)[1] is None:
            held = holder.renew(held)  # hold the older one (lease timeout 3 s)
            assert time.monotonic() < deadline, agent_b.text()
        assert p.system.portal.wait(newer, timeout=5).status == "succeeded"
        stamp = _stamp(env, login)
        holder.release(held)
        result = p.system.portal.wait(older, timeout=60)
        assert result.status == "superseded", result
        assert "newer request" in result.message
        assert _stamp(env, login) == stamp  # the older password was never written
        assert env.bind(login, "Newer-Pass-2x") is BindOutcome.OK
        assert env.bind(login, "Older-Pass-1x") is not BindOutcome.OK
    finally:
        holder.close()
        _stop(agent_b)


@pytest.mark.parametrize("pair", ["samba_env", "slapd_env"], indirect=True)
def test_two_requests_per_user_through_several_agents_the_newer_wins(
    pair: tuple[Pair, DirectoryEnv], tmp_path: Path
) -> None:
    """Issue 8 item 2 under load: for each user an older and a newer reset (under
    different names for the user) submitted back to back, served by three agent
    processes with two workers each. The newer password is live for every user; the
    older request is answered succeeded (written, then overwritten) or superseded."""
    p, env = pair
    users = 4 if env.kind == "active_directory" else 10
    logins = [unique_login("w") for _ in range(users)]
    for login in logins:
        env.create_user(login, INITIAL)
    config_c = p.system.add_agent(tmp_path / "c", workers=2)
    configs = [p.config_b, config_c, p.system.add_agent(tmp_path / "d", workers=2)]
    agents = [AgentProcess.spawn(c, tmp_path / f"agent{n}.log") for n, c in enumerate(configs)]
    try:
        for agent in agents:
            agent.wait_started()
        pairs = []
        for n, login in enumerate(logins):
            forms = _forms(env, login)
            older_kind, older_user = forms[n % 3]
            newer_kind, newer_user = forms[(n + 1) % 3]
            older = p.system.portal.request("reset", older_user, user_kind=older_kind,
                                            new_password=f"Older-{n}-Pass-1x")
            newer = p.system.portal.request("reset", newer_user, user_kind=newer_kind,
                                            new_password=f"Newer-{n}-Pass-2x")
            p.system.portal.submit(older)
            p.system.portal.submit(newer)
            pairs.append((login, older, newer))
        superseded = 0
        for n, (login, older, newer) in enumerate(pairs):
            old_result = p.system.portal.wait(older, timeout=90)
            new_result = p.system.portal.wait(newer, timeout=90)
            assert new_result.status == "succeeded", new_result
            assert old_result.status in ("succeeded", "superseded"), old_result
            superseded += old_result.status == "superseded"
            assert env.bind(login, f"Newer-{n}-Pass-2x") is BindOutcome.OK, login
        print(f"\n{env.kind}: {users} users, {superseded} older requests superseded")
    finally:
        for agent in agents:
            _stop(agent)
