"""The pure ppolicy value conversions (no server needed), beside the OpenLDAP tests
because they pin down the formats slapd writes (pwdChangedTime, pwdAccountLockedTime:
GeneralizedTime in UTC, with a fraction when slapd's ppolicy uses microseconds)."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors._ppolicy import parse_generalized_time


def test_generalized_time_as_slapd_writes_it() -> None:
    assert parse_generalized_time("20261201153012Z") == dt.datetime(
        2026, 12, 1, 15, 30, 12, tzinfo=dt.UTC
    )
    assert parse_generalized_time("20261201153012.123456Z") == dt.datetime(
        2026, 12, 1, 15, 30, 12, 123456, tzinfo=dt.UTC
    )
    assert parse_generalized_time("20261201153012.5Z") == dt.datetime(
        2026, 12, 1, 15, 30, 12, 500000, tzinfo=dt.UTC
    )
    # pwdAccountLockedTime's "locked until an administrator unlocks" value
    assert parse_generalized_time("000001010000Z") is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "Z",
        "2026120115301Z",  # a digit short
        "202612011530123Z",  # a digit too many
        "20261301153012Z",  # month 13
        "20260230153012Z",  # 30 February
        "20261201253012Z",  # hour 25
        "20261201153012",  # no zone
        "20261201153012+0100",  # not UTC
        "2026-12-01T15:30:12Z",
        "".join(chr(0xFF10 + int(d)) for d in "20261201153012") + "Z",  # fullwidth digits
    ],
)
def test_generalized_time_refuses_what_is_not_one(value: str | None) -> None:
    assert parse_generalized_time(value) is None
