"""Fixtures: a portal signer, agents, a keyring and a verifier with a fixed clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from cloud.sdk import PortalSigner, SignedRequest, build_request
from wire import AgentKeys, PortalKeyring, RequestVerifier

NOW = 1_800_000_000
TENANT = "acme"
GROUP = "hq"
NEW_PW = "N3w-Passw0rd!ü"
OLD_PW = "0ld-Passw0rd?"


@dataclass
class Clock:
    now: int = NOW

    def __call__(self) -> float:
        return float(self.now)


@dataclass
class World:
    """One portal and one group of agents, with a clock the test can move."""

    signer: PortalSigner
    agents: list[AgentKeys]
    clock: Clock = field(default_factory=Clock)
    keyring: PortalKeyring = field(default_factory=PortalKeyring)

    def __post_init__(self) -> None:
        if not self.keyring.keys:
            self.keyring = PortalKeyring([self.signer.trusted_key()])

    def verifier(self, agent: AgentKeys | None = None, **kw: Any) -> RequestVerifier:
        kw.setdefault("tenant", TENANT)
        kw.setdefault("agent_group", GROUP)
        return RequestVerifier(self.keyring, agent or self.agents[0], clock=self.clock, **kw)

    def request(self, **kw: Any) -> SignedRequest:
        kw.setdefault("tenant", TENANT)
        kw.setdefault("agent_group", GROUP)
        kw.setdefault("agents", [a.public(f"agent-{i}") for i, a in enumerate(self.agents)])
        kw.setdefault("op", "reset")
        kw.setdefault("user_kind", "upn")
        kw.setdefault("user_value", "alice@acme.example")
        if kw["op"] in ("reset", "change"):
            kw.setdefault("new_password", NEW_PW)
        if kw["op"] == "change":
            kw.setdefault("old_password", OLD_PW)
        kw.setdefault("now", self.clock.now)
        signer = kw.pop("signer", self.signer)
        return build_request(signer, **kw)


@pytest.fixture(params=["x25519", "mlkem768-x25519"])
def kem(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(kem: str) -> World:
    return World(PortalSigner.generate(), [AgentKeys.generate(kem), AgentKeys.generate(kem)])  # type: ignore[arg-type]


@pytest.fixture
def x_world() -> World:
    """X25519 only, for tests where the KEM does not matter (faster, fewer ids)."""
    return World(PortalSigner.generate(), [AgentKeys.generate(), AgentKeys.generate()])


Mutator = Callable[[dict[str, Any]], None]
