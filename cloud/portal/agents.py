"""The portal's only road to the directory: cloud/sdk.py builds, seals and signs a
request, the relay's PortalClient carries it, and the signed result is verified
before anything is shown. Relay faults become results the pages already know
(directory_unavailable), so a route never handles transport exceptions.

The page threads share one `PortalCalls`: a request sent while no other is on its
way is one call (submit and wait); requests sent together share batched submits and
a few result long-polls. So a burst of users holds a bounded number of the tenant's
portal long-polls at the relay (`max_long_polls_per_tenant`) instead of one each, and
is not refused with 429 for it.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from cloud.portal.settings import PortalSettings
from cloud.relay.client import PortalClient, RelayError, nothing_queued
from cloud.relay.portal_calls import PortalCalls
from cloud.sdk import (
    AgentPublicKeys,
    PortalSigner,
    Result,
    ResultRejected,
    SDKError,
    Status,
    build_request,
    verify_result,
)
from wire.messages import Op


class AgentGateway:
    def __init__(self, settings: PortalSettings, client: PortalClient, signer: PortalSigner,
                 log: Any) -> None:
        self._settings = settings
        self._client = client
        self._calls = PortalCalls(client)
        self._signer = signer
        self._log = log

    def close(self) -> None:
        self._calls.close()
        self._client.close()

    def _agents(self) -> list[AgentPublicKeys]:
        records = []
        for item in self._client.agents(self._settings.agent_group):
            public = dict(item["public_keys"])
            public["agent_id"] = item["agent_id"]
            records.append(AgentPublicKeys.model_validate(public))
        return records

    def send(
        self,
        op: Op,
        user_id: str,
        *,
        new_password: SecretStr | None = None,
        old_password: SecretStr | None = None,
        unlock: bool = False,
    ) -> Result | Status:
        """The verified result, or a bare Status when no result could be had
        (directory_unavailable: relay or agents unreachable; in_doubt: a write was
        submitted but its answer never came)."""
        s = self._settings
        writes = op in ("reset", "change", "unlock")
        try:
            agents = self._agents()
            request = build_request(
                self._signer, tenant=s.tenant, agent_group=s.agent_group, agents=agents,
                op=op, user_kind=s.user_id_kind, user_value=user_id,
                new_password=new_password, old_password=old_password, unlock=unlock,
            )
        except (RelayError, SDKError) as exc:
            self._log.warning("portal.agent_unreachable", op=op, user=user_id,
                              error=type(exc).__name__, detail=str(exc)[:300])
            return Status.DIRECTORY_UNAVAILABLE
        try:  # alone, one call: the submit and the wait for its result
            raw = self._calls.send(request.to_bytes(), request.id, timeout=s.agent_timeout_seconds)
            result = verify_result(raw, request=request, trusted_agents=agents)
        except (RelayError, ResultRejected) as exc:
            if nothing_queued(exc):  # nothing can change
                self._log.warning("portal.submit_failed", op=op, user=user_id,
                                  request_id=request.id, error=type(exc).__name__)
                return Status.DIRECTORY_UNAVAILABLE
            # Once submitted, a write may have happened: say so rather than "failed".
            self._log.warning("portal.no_result", op=op, user=user_id, request_id=request.id,
                              error=type(exc).__name__)
            return Status.IN_DOUBT if writes else Status.DIRECTORY_UNAVAILABLE
        self._log.info("portal.result", op=op, user=user_id, request_id=request.id,
                       status=result.status.value, reason=result.reason)
        return result


def status_of(answer: Result | Status) -> Status:
    return answer if isinstance(answer, Status) else answer.status
