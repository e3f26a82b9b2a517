"""`GET /analysis?since=`: RFC 3339 times (section 5.6) as UTC, else the reason of a 400."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lykeion.serving.app import parse_since


@pytest.mark.parametrize(
    "text",
    ["2026-12-02T01:00:00Z", "2026-12-02t01:00:00z", "2026-12-02T02:00:00+01:00",
     "2026-12-02T01:00:00.000000Z"],
)  # fmt: skip
def test_rfc3339_times_in_either_case_and_any_offset_are_the_same_utc_time(text: str) -> None:
    assert parse_since(text) == datetime(2026, 12, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "why"),
    [("abc", "is not an RFC 3339 time"), ("1e400", "is not an RFC 3339 time"),
     ("2026-12-02T01:00:00", "has no time zone"), ("0001-01-01T00:00:00+01:00", "is out of range")],
)  # fmt: skip
def test_what_is_not_a_zoned_time_in_range_says_why(text: str, why: str) -> None:
    assert parse_since(text) == why
