"""The event timestamp text: iso() keeps the last second's text, and must print what strftime does."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tracer.explain.explanation import iso

pytestmark = pytest.mark.unit


def _plain(wall_ns: int) -> str:
    dt = datetime.fromtimestamp(wall_ns / 1e9, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def test_iso_prints_what_strftime_prints_across_seconds_and_roundings():
    base = 1_764_680_000 * 10**9
    values = [base, base + 1, base + 999_000_000, base + 999_999_600,   # the last rounds up a second
              base + 10**9, base + 5, base - 1, base + 61 * 10**9 + 7, base + 999_999_999, base + 2 * 10**9 - 1,
              base + 10**9 + 123_456_789, 0, 86_399_999_999_999]
    for v in values + values[::-1]:
        assert iso(v) == _plain(v), v
    assert iso(base + 999_999_600) == "2025-12-02T12:53:21.000Z"


def test_iso_prints_what_strftime_prints_for_any_nanosecond():
    """Spread over decades and over the nanoseconds where the float rounds (every value the
    float of wall_ns / 1e9 can split differently near a microsecond or a second)."""
    import random
    rng = random.Random(15)
    values = [rng.randrange(0, 4 * 10**18) for _ in range(20_000)]
    values += [s * 10**9 + us * 1000 + d for s in (1_764_680_000, 1_999_999_999, 12)
               for us in (0, 499, 500, 999_999) for d in range(-700, 700, 7)]
    for v in values:
        assert iso(v) == _plain(v), v
