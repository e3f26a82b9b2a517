"""GraphQL scalars for feature values, and the JSON form of a typed value.

`int64` is served as the custom scalar `Int64`, written as a decimal string: GraphQL's
`Int` is 32-bit, and a JSON number above 2^53 silently loses precision in JavaScript
clients. Strings are what protobuf's JSON mapping does for int64 for the same reason.
Clients parse `"9007199254740993"` with BigInt/Long; nothing is rounded on the way.
`timestamp` is `DateTime`, an ISO 8601 / RFC 3339 string in UTC (`2024-05-01T12:00:00+00:00`).
`float64` is `Float64`: a finite value is a JSON number, as GraphQL's `Float` writes it;
NaN and the infinities, which JSON numbers (and so `Float`) cannot carry, are the strings
`"NaN"`, `"Infinity"` and `"-Infinity"` — the spelling of protobuf's JSON mapping for
`double` and of BigQuery's JSON rows. A feature whose value is NaN is served as NaN, not
as null and not as an error: null means no value, NaN is one (a model trained on it).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from graphql import (
    FloatValueNode,
    GraphQLBoolean,
    GraphQLError,
    GraphQLList,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLString,
    IntValueNode,
    StringValueNode,
    ValueNode,
    value_from_ast_untyped,
)

from lykeion.features.keys import INT64_MAX, INT64_MIN, InvalidKey, int64_key
from lykeion.features.view import element_type, is_list


def int64_text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphQLError(f"Int64 cannot represent a non-integer value: {value!r}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise GraphQLError(f"Int64 cannot represent an out-of-range value: {value}")
    return str(value)


def _int64_value(value: Any) -> int:
    try:
        return int64_key(value)
    except InvalidKey as error:
        raise GraphQLError(f"Int64 cannot represent {value!r}: {error}") from None


def _int64_literal(node: ValueNode, _variables: Any = None) -> int:
    if isinstance(node, IntValueNode | StringValueNode):
        return _int64_value(node.value)
    raise GraphQLError("Int64 must be an integer or a decimal string")


NAN, INFINITY, MINUS_INFINITY = "NaN", "Infinity", "-Infinity"
_NON_FINITE = {NAN: math.nan, INFINITY: math.inf, MINUS_INFINITY: -math.inf}


def float64_json(value: Any) -> float | str:
    """A float64 in its JSON form: a finite number as a float, NaN and ±infinity as the
    strings `"NaN"`, `"Infinity"`, `"-Infinity"`. Raises GraphQLError for a non-number
    (bool included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GraphQLError(f"Float64 cannot represent a non-numeric value: {value!r}")
    number = float(value)
    if math.isfinite(number):
        return number
    if math.isnan(number):
        return NAN
    return INFINITY if number > 0 else MINUS_INFINITY


def _float64_value(value: Any) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GraphQLError(f"Float64 cannot represent {value!r}")
    return float(value)


def _float64_literal(node: ValueNode, _variables: Any = None) -> float:
    if isinstance(node, IntValueNode | FloatValueNode):
        return float(node.value)
    if isinstance(node, StringValueNode) and node.value in _NON_FINITE:
        return _NON_FINITE[node.value]
    raise GraphQLError('Float64 must be a number, "NaN", "Infinity" or "-Infinity"')


def datetime_text(value: Any) -> str:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    raise GraphQLError(f"DateTime cannot represent {value!r}")


def _datetime_value(value: Any) -> datetime:
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime must be an ISO 8601 string, not {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise GraphQLError(f"DateTime cannot parse {value!r}: {error}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _datetime_literal(node: ValueNode, _variables: Any = None) -> datetime:
    if isinstance(node, StringValueNode):
        return _datetime_value(node.value)
    raise GraphQLError("DateTime must be an ISO 8601 string")


def _json_literal(node: ValueNode, variables: Any = None) -> Any:
    return value_from_ast_untyped(node, variables)


Int64 = GraphQLScalarType(
    "Int64",
    description="A signed 64-bit integer, written as a decimal string so no client rounds it.",
    serialize=int64_text,
    parse_value=_int64_value,
    parse_literal=_int64_literal,
)

Float64 = GraphQLScalarType(
    "Float64",
    description='A 64-bit float: a JSON number when finite, else "NaN", "Infinity" or '
    '"-Infinity" (JSON has no such numbers).',
    serialize=float64_json,
    parse_value=_float64_value,
    parse_literal=_float64_literal,
)

DateTime = GraphQLScalarType(
    "DateTime",
    description="An instant as an ISO 8601 string in UTC.",
    serialize=datetime_text,
    parse_value=_datetime_value,
    parse_literal=_datetime_literal,
)

JSON = GraphQLScalarType(
    "JSON",
    description="A feature value in its JSON form: Int64 and DateTime values as strings, "
    "Float64 ones as numbers or NaN/Infinity/-Infinity as strings.",
    serialize=lambda value: value,
    parse_value=lambda value: value,
    parse_literal=_json_literal,
)

_SCALARS: dict[str, GraphQLScalarType] = {
    "int64": Int64,
    "float64": Float64,
    "string": GraphQLString,
    "bool": GraphQLBoolean,
    "timestamp": DateTime,
}


def graphql_type(type_: str) -> GraphQLOutputType:
    """The (nullable) GraphQL type of a manifest feature type."""
    scalar = _SCALARS[element_type(type_)]
    return GraphQLList(scalar) if is_list(type_) else scalar


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise GraphQLError(f"Boolean cannot represent {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise GraphQLError(f"String cannot represent {value!r}")
    return value


_JSON_FORMS = {
    "int64": int64_text,
    "float64": float64_json,
    "string": _str,
    "bool": _bool,
    "timestamp": datetime_text,
}


def json_value(type_: str, value: Any) -> Any:
    """A typed feature value as the JSON scalar carries it, the same form the typed fields use."""
    if value is None:
        return None
    form = _JSON_FORMS[element_type(type_)]
    if is_list(type_):
        return [None if item is None else form(item) for item in value]
    return form(value)
