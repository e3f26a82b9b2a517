"""Feature values <-> JSON-compatible values, exact per manifest type, shared by the stores.

Timestamps travel as integer microseconds since the epoch (UTC) so that no precision or
zone is lost; lists carry their elements the same way. Values of the wrong type are
rejected rather than coerced, so a pipeline bug cannot silently turn `5` into `"5"`.
Columnar writes (Arrow tables) are held to the same types by `checked_table`. The
aggregations' later values (steps) are kept in a binary layout of fixed-size records, read
with one bisection and one `struct` unpack per window (`encode_steps`, `step_values`).
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
            out[name] = _to_json_of(type_)(value)
        except TypeError as exc:
            raise TypeError(f"{view.entity}.{name}: {exc}") from None
    return out


@functools.cache
def _to_json_of(type_: str) -> Callable[[Any], Any]:
    """`to_json` for one manifest type; a value of the type's own Python class (what the
    materializer gives) is returned as it is, without the general checks."""
    exact = {"float64": float, "int64": int, "string": str}.get(type_)
    general = functools.partial(to_json, type_)
    if exact is None:
        return general
    return lambda value: value if type(value) is exact else general(value)


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


STEPS_FORMAT = 1
"""First byte of the binary steps encoding (`encode_steps`); JSON text never starts with it."""

_BINARY = bytes([STEPS_FORMAT])
_VALUE, _NULL, _KEEP = 0, 1, 2
"""A record's flag per aggregation: its value follows; null; the row's value holds."""
_CODES = {"float64": "f", "int64": "i", "bool": "b", "timestamp": "t", "string": "s"}
_TYPES = {code: type_ for type_, code in _CODES.items()}
_FIXED = {"f": "d", "i": "q", "b": "?", "t": "q"}
"""struct codes of a fixed-size value in a record, by type code; text (a string or a
list) takes two: "II", the offset and length of its bytes in the text area."""
_PREFIX = struct.Struct("<BH")
_TIMES = tuple(struct.Struct(f"<{n}q") for n in range(65))
"""The times of `n` records, for the usual few (`_times` makes the longer ones)."""


@functools.cache
def _type_code(type_: str) -> str:
    """One character per manifest type: its scalar's code, upper case for a list."""
    code = _CODES[element_type(type_)]
    return code.upper() if is_list(type_) else code


def _code_type(code: str) -> str:
    """The manifest type of a type code (`_type_code` inverted)."""
    return _TYPES[code] if code.islower() else f"list<{_TYPES[code.lower()]}>"


def _times(count: int) -> struct.Struct:
    return _TIMES[count] if count < len(_TIMES) else struct.Struct(f"<{count}q")


@functools.cache
def _record_struct(codes: str) -> struct.Struct:
    """A record of aggregations with these type codes: the flags, then the values."""
    return struct.Struct("<" + "B" * len(codes) + "".join(_FIXED.get(c, "II") for c in codes))


def encode_steps(
    view: FeatureView, steps: Sequence[Step], values: dict[str, Any] | None = None
) -> bytes | None:
    """Steps as the bytes both stores keep; None when no step changes an aggregation.

    The aggregations that some step changes are kept in groups, one per window (a step is
    the moment an event leaves a window: it changes the aggregations over that window).
    A group keeps a record per step that changes it: each aggregation's value from that
    time on, or "the row's value holds" while it is (bit for bit: NaN equals NaN, -0.0 is
    not 0.0) what `values`, the row's values at its event time, give, or before a step
    gives it. An aggregation a step leaves out keeps its value from before; of steps at
    one time the last holds. A read bisects a group's times and unpacks one record
    (`step_values`).

    Layout, little-endian, `STEPS_FORMAT` first (the JSON text of earlier versions starts
    otherwise):

        B STEPS_FORMAT, H header length
        header     JSON `[[codes, name, ...], ...]`, per group one type code per
                   aggregation (f float64, i int64, b bool, t timestamp, s string; upper
                   case: a list of it) and the names
        I          per group its number of records m
        per group  m times (q microseconds, increasing), then m records: a flag byte
                   per aggregation (0 value, 1 null, 2 the row's value holds), then per
                   aggregation its value (zeros unless flag 0): d float64 (every NaN as
                   the quiet NaN), q int64 or timestamp microseconds, ? bool, or I offset
                   and I length of its text in the text area (a string as UTF-8, a list
                   as JSON of `to_json`'s value)
        text area

    An int64 beyond 64 bits has no binary form: such steps are kept as UTF-8 JSON text, the
    encoding of the previous version (`{feature: [[micros, value], ...]}`, the changes
    per aggregation), which `step_values` reads as well. Raises ValueError for a name that
    is not an aggregation of `view` or a step earlier than the one before, TypeError for
    a value of the wrong type."""
    if not steps:
        return None
    types = view.aggregation_types
    base: dict[str, Any] = {}
    if values is not None:
        base = {name: _to_json_of(types[name])(values[name]) for name in types if name in values}
    # Per step: its time, the aggregations that differ from the row's values then, and
    # the names whose value differs from the step before.
    records: list[tuple[int, dict[str, Any], set[str]]] = []
    state: dict[str, Any] = {}
    for moment, step in steps:
        at = to_micros(moment)
        changed: set[str] = set()
        for name, value in checked_steps(view, step).items():
            if name in state:
                if _same(state[name], value):
                    continue
                if name in base and _same(base[name], value):
                    del state[name]  # back to the row's value
                else:
                    state[name] = value
            elif name in base and _same(base[name], value):
                continue
            else:
                state[name] = value
            changed.add(name)
        if records and at <= records[-1][0]:
            if at < records[-1][0]:
                raise ValueError(f"{view.name}: steps out of time order at {moment}")
            # Steps at one time: the last holds, as one record against the one before.
            changed |= records.pop()[2]
            before = records[-1][1] if records else {}
            changed = {
                n for n in changed if not _same_or_kept(before.get(n, _KEPT), state.get(n, _KEPT))
            }
        if changed:
            records.append((at, dict(state), changed))
    names = {name for _, _, changed in records for name in changed}
    groups: dict[timedelta, list[str]] = {}
    for feature in view.aggregations:
        if feature.name in names and feature.aggregation is not None:
            groups.setdefault(feature.aggregation.window, []).append(feature.name)
    if not groups:
        return None
    try:
        return _packed(types, [groups[window] for window in sorted(groups)], records)
    except (struct.error, OverflowError):
        return _changes_json(types, base, records)


def _packed(
    types: dict[str, str],
    groups: list[list[str]],
    records: list[tuple[int, dict[str, Any], set[str]]],
) -> bytes:
    """The binary layout of `encode_steps`; struct.error for an int64 beyond 64 bits."""
    head = _head(tuple((_codes(types, names), tuple(names)) for names in groups))
    counts: list[int] = []
    parts: list[bytes | bytearray] = []
    offsets: dict[bytes, int] = {}
    area = bytearray()
    for (codes, names), layout, fixed in zip(head.groups, head.records, head.fixed, strict=True):
        times: list[int] = []
        body = bytearray()
        for at, state, changed in records:
            if changed.isdisjoint(names):
                continue
            kept = [state.get(name, _KEPT) for name in names]
            flags = [_KEEP if v is _KEPT else _NULL if v is None else _VALUE for v in kept]
            if fixed:
                # One NaN for all: equal values encode alike, as they did in JSON.
                slots = [0 if v is _KEPT or v is None else math.nan if v != v else v for v in kept]
            else:
                slots = []
                for value, code in zip(kept, codes, strict=True):
                    if value is _KEPT or value is None:
                        slots += (0,) if code in _FIXED else (0, 0)
                    elif code in _FIXED:
                        slots.append(math.nan if value != value else value)
                    else:
                        text = value.encode() if code == "s" else json.dumps(value).encode()
                        offset = offsets.get(text)
                        if offset is None:
                            offset = offsets[text] = len(area)
                            area += text
                        slots += (offset, len(text))
            times.append(at)
            body += layout.pack(*flags, *slots)
        counts.append(len(times))
        parts += (_times(len(times)).pack(*times), body)
    return head.prefix + head.counts.pack(*counts) + b"".join(parts) + area


def _codes(types: dict[str, str], names: list[str]) -> str:
    return "".join(_type_code(types[name]) for name in names)


@dataclass(frozen=True)
class _Head:
    """What `_packed` writes alike for every row of the same groups: the prefix (format,
    header length, header), the counts' struct, and per group its record struct and
    whether all its values are of fixed size."""

    groups: tuple[tuple[str, tuple[str, ...]], ...]
    prefix: bytes
    counts: struct.Struct
    records: tuple[struct.Struct, ...]
    fixed: tuple[bool, ...]


@functools.lru_cache(maxsize=1024)
def _head(groups: tuple[tuple[str, tuple[str, ...]], ...]) -> _Head:
    text = json.dumps([[codes, *names] for codes, names in groups], separators=(",", ":"))
    header = text.encode()
    if len(header) > 0xFFFF:
        raise struct.error("the steps' header is longer than 64 KiB")
    return _Head(
        groups,
        _PREFIX.pack(STEPS_FORMAT, len(header)) + header,
        struct.Struct(f"<{len(groups)}I"),
        tuple(_record_struct(codes) for codes, _ in groups),
        tuple(all(code in _FIXED for code in codes) for codes, _ in groups),
    )


class _Kept:
    """An aggregation's value in a record while the row's value holds."""


_KEPT = _Kept()


def _same_or_kept(a: Any, b: Any) -> bool:
    return a is b if a is _KEPT or b is _KEPT else _same(a, b)


def _changes_json(
    types: dict[str, str],
    base: dict[str, Any],
    records: list[tuple[int, dict[str, Any], set[str]]],
) -> bytes:
    """The records as the previous version's JSON text: per aggregation, its changes."""
    previous = dict(base)
    changes: dict[str, list[list[Any]]] = {}
    for at, record, _ in records:
        for name in types:
            if name not in record and name not in base:
                continue  # not given yet: the row's value holds
            value = record[name] if name in record else base[name]
            if name in previous and _same(previous[name], value):
                continue
            previous[name] = value
            changes.setdefault(name, []).append([at, value])
    return json.dumps(changes, separators=(",", ":")).encode()


class _Layout:
    """A header of the binary encoding, parsed: where the groups start, the struct of
    their record counts, per group its record struct and the bytes of one record and
    its time, and per aggregation (group, flag position, value position, type code,
    whether the value is read as it is unpacked) and its manifest type."""

    __slots__ = ("agrees", "counts", "groups", "slots", "start", "types")

    def __init__(self, header: bytes) -> None:
        groups = json.loads(header)
        self.counts = struct.Struct(f"<{len(groups)}I")
        self.start = _PREFIX.size + len(header) + self.counts.size
        records = [_record_struct(codes) for codes, *_ in groups]
        self.groups = tuple((record, record.size + 8) for record in records)
        self.slots: dict[str, tuple[int, int, int, str, bool]] = {}
        self.types: dict[str, str] = {}
        for group, (codes, *names) in enumerate(groups):
            position = len(codes)
            for flag, (name, code) in enumerate(zip(names, codes, strict=True)):
                self.slots[name] = (group, flag, position, code, code in "fib")
                self.types[name] = _code_type(code)
                position += 1 if code in _FIXED else 2
        self.agrees: dict[str, str] | None = None
        """The aggregation types of the view last found to hold every aggregation here
        with its type (one view reads one table: its rows share a layout)."""

    def agree(self, aggregations: dict[str, str]) -> bool:
        """Whether every aggregation here is one of `aggregations` with the same type."""
        if self.agrees is aggregations:
            return True
        if any(aggregations.get(name) != type_ for name, type_ in self.types.items()):
            return False
        self.agrees = aggregations
        return True


_LAYOUTS: dict[bytes, _Layout] = {}
_MAX_LAYOUTS = 1024


def _layout(header: bytes) -> _Layout:
    """The rows of a view share a few headers: each is parsed once."""
    layout = _LAYOUTS.get(header)
    if layout is None:
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            _LAYOUTS.clear()
        layout = _LAYOUTS[header] = _Layout(header)
    return layout


def step_values(
    view: FeatureView, raw: str | bytes | None, at: int, names: Sequence[str]
) -> dict[str, Any] | None:
    """The aggregations among `names` whose value at `at` (micros) comes from encoded
    steps, to their value then; None when none has changed by then (the values at the
    event time hold). Reads every encoding: the binary one (`encode_steps`), and the
    JSON text of earlier versions (str, or its UTF-8 bytes as Bigtable keeps it): per
    aggregation `{feature: [[micros, value], ...]}`, and the list of whole steps
    `[[micros, {feature: value}], ...]`."""
    if raw is None:
        return None
    if isinstance(raw, bytes) and raw[:1] == _BINARY:
        return _record_values(view, raw, at, names)
    return _json_step_values(view, raw, at, names)


def _record_values(
    view: FeatureView, raw: bytes, at: int, names: Sequence[str]
) -> dict[str, Any] | None:
    """`step_values` of the binary encoding: per group, its last record at or before `at`."""
    layout = _layout(raw[_PREFIX.size : _PREFIX.size + _PREFIX.unpack_from(raw)[1]])
    start = layout.start
    current: list[tuple[Any, ...] | None] = []
    found = False
    counts = layout.counts.unpack_from(raw, start - layout.counts.size)
    for count, (record, stride) in zip(counts, layout.groups, strict=True):
        index = bisect.bisect_right(_times(count).unpack_from(raw, start), at) - 1
        if index < 0:
            current.append(None)
        else:
            current.append(record.unpack_from(raw, start + 8 * count + record.size * index))
            found = True
        start += stride * count
    if not found:
        return None
    aggregations = view.aggregation_types
    agree = layout.agree(aggregations)
    out: dict[str, Any] = {}
    for name in names:
        slot = layout.slots.get(name)
        if slot is None:
            continue
        group, flag, position, code, plain = slot
        values = current[group]
        if values is None:
            continue
        state = values[flag]
        if state:
            if state == _NULL and (agree or name in aggregations):
                out[name] = None
            continue  # or the row's value holds
        value = values[position]
        if plain and agree:
            out[name] = value
            continue
        type_ = aggregations.get(name)
        if type_ is None:
            continue  # no longer an aggregation of the view
        if code not in _FIXED:
            begin = start + value  # `start` is the text area's now
            value = raw[begin : begin + values[position + 1]]
            value = value.decode() if code == "s" else json.loads(value)
        if code != "s" or not agree:
            # (A view whose type changed since reads the value as the JSON text did.)
            value = from_json(type_, value)
        out[name] = value
    return out or None


def _json_step_values(
    view: FeatureView, raw: str | bytes, at: int, names: Sequence[str]
) -> dict[str, Any] | None:
    """`step_values` of the JSON encodings of earlier versions."""
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
        # Newest first: a read is most often after the last change.
        for moment, value in reversed(changes):
            if moment <= at:
                out[name] = from_json(aggregations[name], value)
                break
    return out or None


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
