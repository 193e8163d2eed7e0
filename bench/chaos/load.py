"""The portal side of the chaos run: threads that submit bursts of resets through
cloud/sdk.py and the relay's PortalClient, and wait for every answer.

A burst is one user's 1-3 resets submitted back to back, without waiting for the
earlier answers; each newer request has a later `iat` (whole seconds) than the one
before, so which one is newer is never ambiguous. Half the bursts are *spaced*: the
portal waits for the next second before building the newer request. The other half are
*together*: built and submitted at once, the newer one stamped one second after the
previous (the portal's clock then runs at most 2 s ahead, well within the allowed
skew): two resets for one user arriving together, the case of issue 8's finding 2.
Every user gets exactly one burst, so the final state of the directory says what that
burst did. Some resets ask for must_change, the first of a burst also for unlock.

A portal retries a submit or a result poll that failed because the relay was down (the
relay restart), and a submit refused with no_agent_online (nothing was queued: the
user is told "try again later" and does; counted in `no_agent_refusals`). It gives up
on a request at its expiry plus a grace period: that request is *lost* (no final answer).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from dataclasses import dataclass, field

from cloud.relay.client import (
    DuplicateRequest,
    NoAgentOnline,
    PortalClient,
    RelayError,
    RelayUnavailable,
    RequestExpired,
    RequestInDoubt,
    ResultTimeout,
)
from cloud.sdk import (
    AgentPublicKeys,
    PortalSigner,
    ResultRejected,
    SignedRequest,
    build_request,
    verify_result,
)

TTL = 120  # the SDK's default request lifetime
GRACE = 20.0  # after exp: a result that has not come by then never will


@dataclass
class Sent:
    """One reset as the portal saw it."""

    user: str  # the login in the directory
    route: str  # the header's user value (DOMAIN\\login: which directory serves it)
    burst: int
    position: int  # 0 = the oldest of its burst
    password: str
    must_change: bool
    together: bool = False  # submitted at once with the rest of its burst
    request_id: str = ""
    iat: int = 0
    status: str | None = None  # the verified final answer; None = lost
    reason: str | None = None
    agent_id: str | None = None
    problem: str = ""  # why there is no answer


@dataclass
class Plan:
    bursts: list[list[Sent]]

    @property
    def requests(self) -> list[Sent]:
        return [sent for burst in self.bursts for sent in burst]

    @property
    def users(self) -> list[str]:
        return [burst[0].user for burst in self.bursts]


def _password(rng: random.Random) -> str:
    return f"Cz-{rng.getrandbits(40):010x}-{secrets.token_hex(3)}Q9"


def make_plan(
    prefix: str, domain: str, requests: int, seed: int, *,
    sizes: tuple[int, int, int] = (40, 35, 25), together: float = 0.5,
) -> Plan:
    """Bursts of 1, 2 or 3 resets (weights `sizes`), a share `together` of them
    submitted at once, until `requests` are planned."""
    rng = random.Random(seed)
    bursts: list[list[Sent]] = []
    total = 0
    while total < requests:
        size = min(rng.choices((1, 2, 3), weights=sizes)[0], requests - total)
        user = f"{prefix}{len(bursts):05d}"
        at_once = rng.random() < together
        bursts.append([
            Sent(user, f"{domain}\\{user}", len(bursts), i, _password(rng),
                 must_change=rng.random() < 0.2, together=at_once)
            for i in range(size)
        ])
        total += size
    return Plan(bursts)


@dataclass
class Load:
    """Runs a plan with `threads` portal threads; `answered` counts final answers."""

    base_url: str
    token: str
    tenant: str
    group: str
    signer: PortalSigner
    agents: list[AgentPublicKeys]
    plan: Plan
    threads: int = 6
    submit_until: float = float("inf")  # time.time() after which no new burst starts
    answered: int = 0
    no_agent_refusals: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    def run(self) -> None:
        workers = [threading.Thread(target=self._portal, name=f"portal-{i}", daemon=True)
                   for i in range(self.threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        self.done.set()

    def _take(self) -> list[Sent] | None:
        with self._lock:
            if self._next >= len(self.plan.bursts) or time.time() > self.submit_until:
                return None
            self._next += 1
            return self.plan.bursts[self._next - 1]

    def _portal(self) -> None:
        with PortalClient(self.base_url, self.token, timeout=15) as client:
            while (burst := self._take()) is not None:
                self._burst(client, burst)

    def _burst(self, client: PortalClient, burst: list[Sent]) -> None:
        signed: list[tuple[Sent, SignedRequest]] = []
        last_iat = 0
        for sent in burst:
            now = None
            if sent.together:
                now = max(int(time.time()), last_iat + 1)
            while now is None and int(time.time()) <= last_iat:  # spaced: the next second
                time.sleep(0.05)
            request = build_request(
                self.signer, tenant=self.tenant, agent_group=self.group, agents=self.agents,
                op="reset", user_kind="login", user_value=sent.route,
                new_password=sent.password, must_change=sent.must_change,
                unlock=sent.position == 0, ttl=TTL, now=now,
            )
            sent.request_id, sent.iat = request.id, request.header.iat
            last_iat = sent.iat
            if self._submit(client, sent, request):
                signed.append((sent, request))
        for sent, request in signed:
            self._wait(client, sent, request)

    def _submit(self, client: PortalClient, sent: Sent, request: SignedRequest) -> bool:
        deadline = time.time() + 60
        while True:
            try:
                client.submit(request.to_bytes())
                return True
            except DuplicateRequest:
                return True  # an earlier try got through before the relay went down
            except NoAgentOnline:
                with self._lock:
                    self.no_agent_refusals += 1
                if time.time() > deadline:
                    self._answer(sent, "no_agent_online", None, None)  # answered at once
                    return False
                time.sleep(0.5)
            except RelayUnavailable as exc:
                if time.time() > deadline:
                    sent.problem = f"submit: {exc}"
                    self._answer(sent, None, None, None)
                    return False
                time.sleep(0.5)
            except RelayError as exc:
                sent.problem = f"submit: {exc}"
                self._answer(sent, None, None, None)
                return False

    def _wait(self, client: PortalClient, sent: Sent, request: SignedRequest) -> None:
        deadline = request.header.exp + GRACE
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                sent.problem = "no answer before the request expired"
                break
            try:
                raw = client.wait_result(request.id, timeout=min(remaining, 30))
            except (ResultTimeout, RelayUnavailable):
                time.sleep(0.2)
                continue
            except RequestExpired:
                sent.problem = "relay: expired before any agent answered"
                break
            except RequestInDoubt:
                # A write was permitted and its agent never answered: the relay itself
                # says in doubt (an answer, not a lost request).
                self._answer(sent, "in_doubt", "relay_in_doubt", None)
                return
            except RelayError as exc:
                sent.problem = f"result: {exc}"
                break
            try:
                result = verify_result(raw, request=request, trusted_agents=self.agents)
            except ResultRejected as exc:
                sent.problem = f"result rejected by the SDK: {exc.reason}"
                break
            self._answer(sent, str(result.status), result.reason, result.agent_id)
            return
        self._answer(sent, None, None, None)

    def _answer(self, sent: Sent, status: str | None, reason: str | None,
                agent_id: str | None) -> None:
        sent.status, sent.reason, sent.agent_id = status, reason, agent_id
        with self._lock:
            self.answered += 1
