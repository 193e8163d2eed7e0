"""The portal's road to the agents (cloud/portal/agents.py) when the relay's answer is
lost: over real sockets against a scripted relay (tests/servers/scripted_http.py), the
page a user would get. A lost answer must never read "nothing was changed" while the
request may have been queued."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from cloud.portal.agents import AgentGateway
from cloud.portal.settings import PortalSettings
from cloud.relay.client import PortalClient
from cloud.sdk import PortalSigner, Status
from tests.servers.scripted_http import DROP, Received, Reply, ScriptedServer
from wire.keys import AgentKeys

AGENT = AgentKeys.generate().public("agt_1").model_dump(mode="json", exclude={"agent_id"})
AGENTS = Reply(200, {"agents": [{"agent_id": "agt_1", "public_keys": AGENT}]})


def _send(tmp_path: Path, relay: Callable[[Received], Reply | str]) -> Status:
    def script(request: Received) -> Reply | str:
        return AGENTS if request.target.startswith("/v1/groups/") else relay(request)

    with ScriptedServer(script) as server:
        settings = PortalSettings(
            tenant="t", relay_url=server.url, relay_token_file=tmp_path / "t",
            signing_key_file=tmp_path / "k", data_dir=tmp_path, secret_key_file=tmp_path / "s",
            agent_timeout_seconds=1.0,
        )
        gateway = AgentGateway(settings, PortalClient(server.url, "token"),
                               PortalSigner.generate(), structlog.get_logger())
        try:
            answer = gateway.send("reset", "alice@corp.example",
                                  new_password=SecretStr("N3w-Passw0rd!"))
        finally:
            gateway.close()
    assert isinstance(answer, Status)
    return answer


@pytest.mark.parametrize(
    ("lookup", "page"),
    [
        # The relay never heard of it: it was not queued, nothing can change.
        (Reply(404, {"error": "unknown_request"}), Status.DIRECTORY_UNAVAILABLE),
        # The relay can't be heard: the request may be queued and written.
        (DROP, Status.IN_DOUBT),
        # Queued and still pending when the portal stops waiting.
        (Reply(202, {"state": "leased"}), Status.IN_DOUBT),
    ],
)
def test_a_lost_submit_answer_is_looked_up_before_the_page_is_chosen(
    tmp_path: Path, lookup: Reply | str, page: Status
) -> None:
    def relay(request: Received) -> Reply | str:
        return DROP if request.method == "POST" else lookup

    assert _send(tmp_path, relay) is page


def test_refused_submits_changed_nothing(tmp_path: Path) -> None:
    refused = Reply(503, {"error": "no_agent_online"})
    assert _send(tmp_path, lambda r: refused) is Status.DIRECTORY_UNAVAILABLE
