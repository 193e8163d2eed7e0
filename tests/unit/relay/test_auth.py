"""Agent signature verification, tokens and codes, without a server."""

from __future__ import annotations

import asyncio
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.transports.relay import authorization_header
from cloud.relay.auth import (
    RelayHTTPError,
    bearer_token,
    check_admin,
    new_enrollment_code,
    normalize_code,
    parse_agent_authorization,
    validate_sign_key,
    verify_agent_request,
)
from cloud.relay.notify import Notifier
from cloud.relay.store import AgentRecord
from tests.servers.relay import public_key_b64

KEY = Ed25519PrivateKey.generate()
NOW = 1_700_000_000.0


def _agent(removed: bool = False) -> AgentRecord:
    return AgentRecord("agt_1", "t", "g", "n", {}, public_key_b64(KEY), NOW, NOW, removed)


def _verify(
    header: str,
    *,
    agent: AgentRecord | None = None,
    body: bytes = b"{}",
    path: bytes = b"/v1/agent/heartbeat",
    now: float = NOW,
) -> AgentRecord:
    return verify_agent_request(
        parse_agent_authorization(header),
        agent if agent is not None else _agent(),
        method="POST",
        path_with_query=path,
        body=body,
        now=now,
        max_skew=300,
    )


def _header(body: bytes = b"{}", path: bytes = b"/v1/agent/heartbeat", now: float = NOW) -> str:
    return authorization_header(KEY, "agt_1", "POST", path, body, now=now)


def test_valid_signature() -> None:
    assert _verify(_header()).agent_id == "agt_1"
    assert _verify(_header(now=NOW - 299)).agent_id == "agt_1"


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"now": NOW + 301}, "clock_skew"),
        ({"body": b"{ }"}, "bad_signature"),
        ({"path": b"/v1/agent/lease"}, "bad_signature"),
        (
            {
                "agent": AgentRecord(
                    "agt_1",
                    "t",
                    "g",
                    "n",
                    {},
                    public_key_b64(Ed25519PrivateKey.generate()),
                    NOW,
                    NOW,
                    False,
                )
            },
            "bad_signature",
        ),
        ({"agent": _agent(removed=True)}, "agent_removed"),
    ],
)
def test_refusals(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(RelayHTTPError) as info:
        _verify(_header(), **kwargs)  # type: ignore[arg-type]
    assert (info.value.status, info.value.code) == (401, code)


def test_unknown_agent() -> None:
    with pytest.raises(RelayHTTPError) as info:
        verify_agent_request(
            parse_agent_authorization(_header()),
            None,
            method="POST",
            path_with_query=b"/",
            body=b"",
            now=NOW,
            max_skew=300,
        )
    assert info.value.code == "unknown_agent"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer abc",
        "WBA1 agent=a, ts=1",
        "WBA1 agent=a b, ts=1, sig=AA",
        "WBA1 agent=a, ts=-1, sig=AA",
        "WBA1 agent=a, ts=1, sig=A+A",
    ],
)
def test_malformed_headers(header: str | None) -> None:
    with pytest.raises(RelayHTTPError) as info:
        parse_agent_authorization(header)
    assert info.value.status == 401


def test_codes_and_tokens() -> None:
    code = new_enrollment_code()
    assert len(code) == 19 and code.count("-") == 3
    assert normalize_code(code.lower().replace("-", " ")) == code.replace("-", "")
    assert bearer_token("Bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token(None) is None
    check_admin("Bearer s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret")
    with pytest.raises(RelayHTTPError):
        check_admin("Bearer nope", "s3cret-s3cret-s3cret")
    with pytest.raises(RelayHTTPError) as info:
        check_admin("Bearer x", None)
    assert info.value.code == "admin_api_disabled"


def test_sign_key_validation() -> None:
    assert validate_sign_key(public_key_b64(KEY))
    for bad in (None, 5, "", "AAAA", "!!!"):
        with pytest.raises(RelayHTTPError):
            validate_sign_key(bad)


def test_notifier_wakes_only_its_key() -> None:
    async def scenario() -> tuple[bool, bool, float]:
        notifier = Notifier()
        woken = asyncio.create_task(notifier.wait("a", 5))
        other = asyncio.create_task(notifier.wait("b", 0.2))
        await asyncio.sleep(0.05)
        assert notifier.waiting("a") == 1
        started = time.monotonic()
        notifier.notify("a")
        result = await woken
        elapsed = time.monotonic() - started
        assert notifier.waiting("a") == 0
        return result, await other, elapsed

    woken, other, elapsed = asyncio.run(scenario())
    assert woken is True and other is False
    assert elapsed < 0.1
