"""GraphQL scalars for feature values, and the JSON form of a typed value.

`int64` is served as the custom scalar `Int64`, written as a decimal string: GraphQL's
`Int` is 32-bit, and a JSON number above 2^53 silently loses precision in JavaScript
clients. Strings are what protobuf's JSON mapping does for int64 for the same reason.
Clients parse `"9007199254740993"` with BigInt/Long; nothing is rounded on the way.
`timestamp` is `DateTime`, an ISO 8601 / RFC 3339 string in UTC (`2024-05-01T12:00:00+00:00`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLFloat,
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

DateTime = GraphQLScalarType(
    "DateTime",
    description="An instant as an ISO 8601 string in UTC.",
    serialize=datetime_text,
    parse_value=_datetime_value,
    parse_literal=_datetime_literal,
)

JSON = GraphQLScalarType(
    "JSON",
    description="A feature value in its JSON form: Int64 and DateTime values as strings.",
    serialize=lambda value: value,
    parse_value=lambda value: value,
    parse_literal=_json_literal,
)

_SCALARS: dict[str, GraphQLScalarType] = {
    "int64": Int64,
    "float64": GraphQLFloat,
    "string": GraphQLString,
    "bool": GraphQLBoolean,
    "timestamp": DateTime,
}


def graphql_type(type_: str) -> GraphQLOutputType:
    """The (nullable) GraphQL type of a manifest feature type."""
    scalar = _SCALARS[element_type(type_)]
    return GraphQLList(scalar) if is_list(type_) else scalar


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GraphQLError(f"Float cannot represent {value!r}")
    return float(value)


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
    "float64": _finite,
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
