"""Feature values <-> JSON-compatible values, exact per manifest type, shared by the stores.

Timestamps travel as integer microseconds since the epoch (UTC) so that no precision or
zone is lost; lists carry their elements the same way. Values of the wrong type are
rejected rather than coerced, so a pipeline bug cannot silently turn `5` into `"5"`.
Columnar writes (Arrow tables) are held to the same types by `checked_table`.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lykeion.features.view import ARROW_TYPES, EVENT_TIME, KEY, FeatureView, element_type, is_list

if TYPE_CHECKING:
    # pyarrow only where tables flow: the Feature API reads without it.
    import pyarrow as pa

    from lykeion.stores.online.base import Step

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise TypeError(f"naive datetime {moment!r}: online stores need timezone-aware times")
    return (moment - EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _scalar_to_json(type_: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "int64" and isinstance(value, int) and not isinstance(value, bool):
        return value
    # An integral float64 often arrives as an int (JSON, pandas); the value is the same.
    if type_ == "float64" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type_ == "string" and isinstance(value, str):
        return value
    if type_ == "bool" and isinstance(value, bool):
        return value
    if type_ == "timestamp" and isinstance(value, datetime):
        return to_micros(value)
    raise TypeError(f"{value!r} is not a {type_}")


def _scalar_from_json(type_: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "timestamp":
        return from_micros(value)
    if type_ == "bool":
        return bool(value)
    if type_ == "float64":
        return float(value)
    return value


def to_json(type_: str, value: Any) -> Any:
    """A value the `json` module writes and reads back unchanged."""
    if value is None or not is_list(type_):
        return _scalar_to_json(type_, value)
    if not isinstance(value, list | tuple):
        raise TypeError(f"{value!r} is not a {type_}")
    element = element_type(type_)
    return [_scalar_to_json(element, item) for item in value]


def from_json(type_: str, value: Any) -> Any:
    if value is None or not is_list(type_):
        return _scalar_from_json(type_, value)
    element = element_type(type_)
    return [_scalar_from_json(element, item) for item in value]


def normalize_key(view: FeatureView, key: str | int) -> str | int:
    """The key as the view types it, so that `42` and `"42"` name the same int64 entity."""
    if view.key_type == "int64":
        if isinstance(key, bool):
            raise TypeError(f"{key!r} is not an int64 key")
        return int(key)
    if key == "":
        # Bigtable cannot store an empty row key; refuse it in every store alike.
        raise ValueError("an entity key cannot be empty")
    return str(key)


def checked_features(view: FeatureView, features: Sequence[str]) -> list[str]:
    """The requested names, each a feature of the view (KeyError names the missing one)."""
    return [view.feature(name).name for name in features]


def checked_values(view: FeatureView, values: dict[str, Any]) -> dict[str, Any]:
    """Every feature of the view -> JSON-compatible value; a missing feature is null."""
    unknown = set(values) - set(view.feature_names)
    if unknown:
        raise ValueError(f"not features of {view.name}: {sorted(unknown)}")
    out = {}
    for feature in view.features:
        try:
            out[feature.name] = to_json(feature.type, values.get(feature.name))
        except TypeError as exc:
            raise TypeError(f"{view.entity}.{feature.name}: {exc}") from None
    return out


def checked_steps(view: FeatureView, values: dict[str, Any]) -> dict[str, Any]:
    """A step's aggregation name -> JSON-compatible value (only aggregations may step)."""
    types = view.aggregation_types
    out = {}
    for name, value in values.items():
        type_ = types.get(name)
        if type_ is None:
            raise ValueError(f"{view.name}: {name!r} is not an aggregation, it has no steps")
        try:
            out[name] = to_json(type_, value)
        except TypeError as exc:
            raise TypeError(f"{view.entity}.{name}: {exc}") from None
    return out


def _same(a: Any, b: Any) -> bool:
    """JSON-compatible values equal bit for bit: NaN equals NaN, -0.0 is not 0.0, and a
    float is never equal to an int or a bool."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if a != a:
            return bool(b != b)
        return bool(a == b) and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))
    if type(a) is list:
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def encode_steps(
    view: FeatureView, steps: Sequence[Step], values: dict[str, Any] | None = None
) -> str | None:
    """Steps as the JSON text both stores keep, per aggregation: its changes in time
    order, `{feature: [[micros, value], ...], ...}` (values as `to_json` gives them; NaN
    and ±Inf as JSON's NaN/Infinity tokens). A step that leaves an aggregation's value as
    it was (bit for bit) adds nothing to that aggregation's list; `values`, the row's
    values at its event time, drops the first step's unchanged ones the same way. An
    aggregation a step leaves out keeps its value from before (the materializer's steps
    give every aggregation; the earlier whole-step encoding read one left out as null). None
    when no aggregation changes. Raises ValueError for a name that is not an aggregation
    of `view`, TypeError for a value of the wrong type.

    A feature's list holds only its own changes, so that a read looks up one list per
    aggregation and the row stays small: a step is the moment an event leaves one
    window, and it changes only the aggregations over that window."""
    if not steps:
        return None
    previous: dict[str, Any] = {}
    if values is not None:
        previous = {
            name: to_json(type_, values.get(name))
            for name, type_ in view.aggregation_types.items()
            if name in values
        }
    changes: dict[str, list[list[Any]]] = {}
    for moment, step in steps:
        at = to_micros(moment)
        for name, value in checked_steps(view, step).items():
            if name in previous and _same(previous[name], value):
                continue
            previous[name] = value
            changes.setdefault(name, []).append([at, value])
    if not changes:
        return None
    return json.dumps(changes, separators=(",", ":"))


def step_values(
    view: FeatureView, raw: str | bytes | None, at: int, names: Sequence[str]
) -> dict[str, Any] | None:
    """The aggregations among `names` whose value at `at` (micros) comes from encoded
    steps, to their value then; None when none has changed by then (the values at the
    event time hold). Reads both encodings: per aggregation (`encode_steps`) and the
    earlier list of whole steps, `[[micros, {feature: value}], ...]`."""
    if raw is None:
        return None
    aggregations = view.aggregation_types
    wanted = [name for name in names if name in aggregations]
    if not wanted:
        return None
    steps = json.loads(raw)
    if isinstance(steps, list):
        index = bisect.bisect_right([step[0] for step in steps], at) - 1
        if index < 0:
            return None
        values = steps[index][1]
        return {name: from_json(aggregations[name], values.get(name)) for name in wanted}
    out = {}
    for name in wanted:
        changes = steps.get(name)
        if not changes:
            continue
        # Newest first: a read is most often after the last change (a value long after
        # the entity's last event), and a list holds a few changes per window.
        for moment, value in reversed(changes):
            if moment <= at:
                out[name] = value if value is None else _decoder(aggregations[name])(value)
                break
    return out or None


@functools.cache
def _decoder(type_: str) -> Callable[[Any], Any]:
    """`from_json` for one manifest type, for a value that is not None."""
    if type_ in ("int64", "string"):
        return _unchanged
    return functools.partial(from_json, type_)


def _unchanged(value: Any) -> Any:
    return value


# -- Arrow tables ------------------------------------------------------------------------


def arrow_type(type_: str) -> pa.DataType:
    """The Arrow type that holds a manifest type exactly."""
    import pyarrow as pa

    element = element_type(type_)
    inner = (
        pa.timestamp("us", tz="UTC")
        if element == "timestamp"
        else pa.type_for_alias(ARROW_TYPES[element])
    )
    return pa.list_(inner) if is_list(type_) else inner


def arrow_schema(view: FeatureView) -> pa.Schema:
    """Key, event time and every feature of the view, in that order."""
    import pyarrow as pa

    key = pa.int64() if view.key_type == "int64" else pa.string()
    fields = [pa.field(KEY, key), pa.field(EVENT_TIME, pa.timestamp("us", tz="UTC"))]
    fields += [pa.field(f.name, arrow_type(f.type)) for f in view.features]
    return pa.schema(fields)


def _is_text(arrow: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_string(arrow)
        or pa.types.is_large_string(arrow)
        or pa.types.is_string_view(arrow)
    )


def _scalar_kind(type_: str) -> Callable[[pa.DataType], bool]:
    """Which Arrow types carry values that `to_json` accepts for a scalar manifest type."""
    import pyarrow as pa

    kinds: dict[str, Callable[[pa.DataType], bool]] = {
        "int64": pa.types.is_integer,
        # As `to_json` takes an int for a float64, an integer column feeds a float64 feature.
        "float64": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "string": _is_text,
        "bool": pa.types.is_boolean,
        "timestamp": pa.types.is_timestamp,
    }
    return kinds[type_]


def _naive(arrow: pa.DataType) -> bool:
    import pyarrow as pa

    while pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        arrow = arrow.value_type
    return pa.types.is_timestamp(arrow) and arrow.tz is None


def _accepts(type_: str, arrow: pa.DataType) -> bool:
    import pyarrow as pa

    if pa.types.is_null(arrow):
        return True
    if not is_list(type_):
        return _scalar_kind(type_)(arrow)
    if not (pa.types.is_list(arrow) or pa.types.is_large_list(arrow)):
        return False
    inner = arrow.value_type
    return pa.types.is_null(inner) or _scalar_kind(element_type(type_))(inner)


def _cast(column: pa.ChunkedArray, target: pa.DataType, what: str) -> pa.ChunkedArray:
    import pyarrow as pa

    if _naive(column.type):
        raise TypeError(f"{what}: naive {column.type}: online stores need timezone-aware times")
    # An integer -> float64 rounds like `float(int)` in `to_json`; every other cast must
    # keep each value exactly (a nanosecond remainder, an out-of-range integer fail).
    safe = not (pa.types.is_integer(column.type) and pa.types.is_floating(target))
    try:
        return column.cast(target, safe=safe)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TypeError(f"{what}: {exc}") from None


def _checked_keys(view: FeatureView, column: pa.ChunkedArray) -> pa.ChunkedArray:
    """As `normalize_key` types them: an int64 view parses string keys, a string view
    prints integer ones; no key may be null or empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    target = pa.int64() if view.key_type == "int64" else pa.string()
    if not (pa.types.is_integer(column.type) or _is_text(column.type)):
        raise TypeError(f"{view.entity} keys of type {column.type} are not {view.key_type} keys")
    if column.null_count:
        raise ValueError("an entity key cannot be null")
    try:
        keys = column.cast(target)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{view.entity} keys: {exc}") from None
    if target == pa.string() and pc.any(pc.equal(keys, "")).as_py():
        # Bigtable cannot store an empty row key; refuse it in every store alike.
        raise ValueError("an entity key cannot be empty")
    return keys


def checked_table(view: FeatureView, table: pa.Table) -> pa.Table:
    """The table in `arrow_schema(view)`: keys typed as `normalize_key` types them, event
    times and timestamps as UTC microseconds, a missing feature null. Columns of a type
    that `to_json` would refuse raise TypeError (naming the feature), unknown columns
    ValueError, as `checked_values` does for rows."""
    import pyarrow as pa

    unknown = set(table.column_names) - {KEY, EVENT_TIME, *view.feature_names}
    if unknown:
        raise ValueError(f"not features of {view.name}: {sorted(unknown)}")
    for reserved in (KEY, EVENT_TIME):
        if reserved not in table.column_names:
            raise ValueError(f"{view.name}: a table to write needs a {reserved!r} column")
    schema = arrow_schema(view)
    times = table.column(EVENT_TIME)
    if not pa.types.is_timestamp(times.type):
        raise TypeError(f"{EVENT_TIME} of type {times.type} is not a timestamp")
    if times.null_count:
        raise ValueError(f"{EVENT_TIME} cannot be null")
    columns = [
        _checked_keys(view, table.column(KEY)),
        _cast(times, schema.field(EVENT_TIME).type, EVENT_TIME),
    ]
    for feature in view.features:
        what = f"{view.entity}.{feature.name}"
        target = schema.field(feature.name).type
        if feature.name not in table.column_names:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, target)]))
            continue
        column = table.column(feature.name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not _accepts(feature.type, column.type):
            raise TypeError(f"{what}: a column of {column.type} is not a {feature.type}")
        columns.append(_cast(column, target, what))
    return pa.Table.from_arrays(columns, schema=schema)
