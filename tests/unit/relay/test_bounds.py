"""The JSON bounds the relay applies to what it stores and serves back."""

from __future__ import annotations

import pytest

from cloud.relay import bounds

SMALL = bounds.Limits(max_depth=3, max_items=4, max_string=8, max_bytes=200)


@pytest.mark.parametrize(
    ("raw", "path", "problem"),
    [
        (b'{"a": {"b": {"c": {"d": 1}}}}', "a.b.c", "nested deeper than 3"),
        (b'{"a": [1, 2, 3, 4, 5]}', "a", "more than 4 items"),
        (b'{"a": ["ok", "far too long"]}', "a.1", "longer than 8 characters"),
        (b'{"h": {"exp": NaN}}', "h.exp", "not a finite number"),
        (b'{"h": {"exp": 1e999}}', "h.exp", "not a finite number"),
        (b'{"h": -Infinity}', "h", "not a finite number"),
        (b'{"a": 1, "a": 2}', "", "not JSON (duplicate object key)"),
        (b'"' + b"x" * 300 + b'"', "", "302 bytes, limit 200"),
        (b'{"\xff": 1}', "", "not"),
    ],
)
def test_out_of_bounds_names_the_place(raw: bytes, path: str, problem: str) -> None:
    with pytest.raises(bounds.BoundsError) as info:
        bounds.parse(raw, SMALL)
    assert info.value.path == path
    assert info.value.problem.startswith(problem) or problem in str(info.value)


def test_within_bounds_parses_and_within_says_so() -> None:
    assert bounds.parse(b'{"a": [1, 2.5, "s", null]}', SMALL) == {"a": [1, 2.5, "s", None]}
    assert bounds.within({"a": {"b": 1}}, SMALL)
    assert not bounds.within({"a": {"b": {"c": {"d": 1}}}}, SMALL)


def test_deep_nesting_is_refused_without_recursing() -> None:
    for raw in (b"[" * 5000 + b"]" * 5000, b"[" * 200_000 + b"]" * 200_000):
        with pytest.raises(bounds.BoundsError) as info:
            bounds.parse(raw, bounds.Limits(32, 1024, 1024, 1 << 20))
        assert "nested deeper than 32" in str(info.value)
