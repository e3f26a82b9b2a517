"""Entity keys as their FeatureManifest declares them: one parser for every API edge.

A key arrives as JSON text, a JSON number, a GraphQL `ID` or a V2 tensor element; it leaves
as the value the online stores hold (`int` for `int64` keys, `str` for `string` keys).
The rules, the same for the model server's three protocols and the Feature API:

- `int64`: an integer in [-2^63, 2^63 - 1]; a double that is integral and inside that
  range (SeldonClient sends every number as a double: `42.0`); or decimal text, ASCII
  digits with an optional leading `-` (`"--5"`, `"+5"`, `" 5"`, `"5_000"`, Unicode digits
  such as `"²"` or `"٣"` are refused, though Python's `int()` takes some of them).
  Booleans are refused: JSON `true` is not the key 1.
- `string`: non-empty text; an integer (or integral double) is taken as its decimal text,
  so that `42` and `"42"` name the same entity.

Anything else raises `InvalidKey` with what was expected, for the caller to name the
input and element it came from.
"""

from __future__ import annotations

import math
import re
from typing import Final

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
KEY_TYPES: Final = ("string", "int64")

_DECIMAL = re.compile(r"-?[0-9]{1,19}", re.ASCII)
EXPECTED = {
    "int64": "an int64 (a whole number from -9223372036854775808 to 9223372036854775807, "
    "as a JSON number or decimal text)",
    "string": "a non-empty string",
}


class InvalidKey(ValueError):
    """A value that is not a key of the declared type; the message says what was expected
    and what came, without saying where (the caller knows the input and element)."""


def _refuse(key_type: str, value: object) -> InvalidKey:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidKey(f"expected {EXPECTED[key_type]}, got {shown}")


def int64_key(value: object) -> int:
    """`value` as an int64 key (see the module docstring); raises InvalidKey."""
    if isinstance(value, bool):
        raise _refuse("int64", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        # float(2**63 - 1) rounds up to 2**63: compare against the exact bound.
        if not (math.isfinite(value) and value.is_integer() and -(2.0**63) <= value < 2.0**63):
            raise _refuse("int64", value)
        number = int(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise _refuse("int64", value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise _refuse("int64", value)
    return number


def string_key(value: object) -> str:
    """`value` as a string key: non-empty text, or an integer as its decimal text."""
    if isinstance(value, str):
        if value:
            return value
        raise _refuse("string", value)
    if isinstance(value, bool):
        raise _refuse("string", value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    raise _refuse("string", value)


def parse_key(key_type: str, value: object) -> str | int:
    """`value` as the stores hold a key of `key_type` (`int64` -> int, `string` -> str).

    Raises InvalidKey for a value the type cannot hold and ValueError for an unknown type.
    """
    if key_type == "int64":
        return int64_key(value)
    if key_type == "string":
        return string_key(value)
    raise ValueError(f"unknown key type {key_type!r} (known: {', '.join(KEY_TYPES)})")
