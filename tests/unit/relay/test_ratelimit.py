"""Per-tenant limits: moving windows that expire, no timer thread per call, and the
long-poll slots given back."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cloud.relay.auth import RelayHTTPError
from cloud.relay.ratelimit import TenantLimits


def _limits() -> TenantLimits:
    return TenantLimits(submit_rate="2/second", long_poll_rate="100/second",
                        enroll_rate_per_client="1/minute", enroll_rate_total="100/minute",
                        max_long_polls_per_tenant=1)


def test_rate_windows_refuse_then_expire_without_threads() -> None:
    limits = _limits()

    def live_timers() -> int:
        return sum(isinstance(t, threading.Timer) and t.is_alive() for t in threading.enumerate())

    time.sleep(0.1)  # the storage's one timer from its constructor has run out

    async def scenario() -> None:
        await limits.hit("submit", "acme")
        await limits.hit("submit", "acme")
        assert live_timers() == 0  # limits' stock storage starts one per call
        with pytest.raises(RelayHTTPError) as info:
            await limits.hit("submit", "acme")
        assert (info.value.status, info.value.code) == (429, "rate_limited")
        assert info.value.headers["Retry-After"] == "1"
        await limits.hit("submit", "other-tenant")  # per tenant
        await asyncio.sleep(1.1)
        limits.sweep()
        await limits.hit("submit", "acme")

    asyncio.run(scenario())


def test_long_poll_slot_is_given_back_even_on_error() -> None:
    limits = _limits()

    async def scenario() -> None:
        with pytest.raises(ValueError, match="boom"):
            async with limits.long_poll("acme", "portal"):
                with pytest.raises(RelayHTTPError) as info:
                    async with limits.long_poll("acme", "portal"):
                        pass
                assert info.value.code == "too_many_long_polls"
                raise ValueError("boom")
        assert limits.open_long_polls("acme", "portal") == 0
        async with limits.long_poll("acme", "portal"):
            assert limits.open_long_polls("acme", "portal") == 1

    asyncio.run(scenario())


def test_a_tenants_agents_and_portals_have_their_own_long_poll_slots() -> None:
    """A portal's result waits filling its slots leave the agents' lease polls free."""
    limits = _limits()

    async def scenario() -> None:
        async with limits.long_poll("acme", "portal"):
            with pytest.raises(RelayHTTPError):
                async with limits.long_poll("acme", "portal"):
                    pass
            async with limits.long_poll("acme", "agents"):
                assert limits.open_long_polls("acme", "agents") == 1
                with pytest.raises(RelayHTTPError):
                    async with limits.long_poll("acme", "agents"):
                        pass
            async with limits.long_poll("other", "portal"):
                pass

    asyncio.run(scenario())


def test_enrollment_is_limited_per_client() -> None:
    limits = _limits()

    async def scenario() -> None:
        await limits.enroll_attempt("10.0.0.1")
        with pytest.raises(RelayHTTPError) as info:
            await limits.enroll_attempt("10.0.0.1")
        assert 1 <= int(info.value.headers["Retry-After"]) <= 60
        await limits.enroll_attempt("10.0.0.2")

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 5
