"""Entity keys by declared type, held to a brute-force reading of the rules on random input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.features.keys import INT64_MAX, INT64_MIN, InvalidKey, int64_key, parse_key

DIGITS = "0123456789"


def reference_int64(value: object) -> int | None:
    """The rule spelled out character by character: None where the key is refused."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != math.floor(value):
            return None
        value = int(value)
    if isinstance(value, str):
        negative = value.startswith("-")
        digits = value[1:] if negative else value
        if not 1 <= len(digits) <= 19 or any(c not in DIGITS for c in digits):
            return None
        number = 0
        for c in digits:
            number = number * 10 + DIGITS.index(c)
        value = -number if negative else number
    if not isinstance(value, int):
        return None
    return value if INT64_MIN <= value <= INT64_MAX else None


texts = st.one_of(
    st.text(max_size=22),
    st.text(alphabet="-0123456789²٣ +_e.", max_size=22),
    st.integers(INT64_MIN - 3, INT64_MAX + 3).map(str),
)
values = st.one_of(
    texts,
    st.integers(INT64_MIN - 3, INT64_MAX + 3),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-(2.0**64), 2.0**64).map(math.floor).map(float),
    st.booleans(),
    st.none(),
)


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(values)
def test_int64_keys_match_the_reference(value: object) -> None:
    expected = reference_int64(value)
    if expected is None:
        with pytest.raises(InvalidKey, match="expected an int64"):
            int64_key(value)
    else:
        assert int64_key(value) == expected


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.one_of(st.text(max_size=10), st.integers(), st.floats(), st.booleans(), st.none()))
def test_string_keys_are_non_empty_text_or_integral_numbers(value: object) -> None:
    if isinstance(value, str) and value:
        assert parse_key("string", value) == value
    elif isinstance(value, int) and not isinstance(value, bool):
        assert parse_key("string", value) == str(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        assert parse_key("string", value) == str(int(value))
    else:
        with pytest.raises(InvalidKey, match="expected a non-empty string"):
            parse_key("string", value)


def test_issue_11_cases() -> None:
    for refused in ("--5", "²", "٣", "9223372036854775808", 2**63, 1e19, 2.0**63, ""):
        with pytest.raises(InvalidKey):
            int64_key(refused)
    assert int64_key(9.223372036854775e18) == 9223372036854774784  # integral, in range
    assert int64_key(-(2.0**63)) == INT64_MIN
    with pytest.raises(ValueError, match="unknown key type"):
        parse_key("uuid", "x")
