"""The online stores' encoding of an entity's later window values (`codec.encode_steps`).

The reference is what a step means (`OnlineRow`): at `t`, each aggregation holds its
value in the last step at or before `t` that gives it, or the row's value at the event
time before that. The binary encoding keeps per window the records that change, and a
read takes the last one by bisection (or straight away after the last): these tests
decode it at random times and at every edge — before the first step, between, exactly
at a step, 1 µs either side, after the last — and compare with the reference and with
the JSON encodings of earlier versions (which the stores still hold and must still
read), value by value and bit by bit (NaN, -0.0).
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.features.view import AggregationDef, FeatureDef, FeatureView
from lykeion.stores.online.codec import STEPS_FORMAT, encode_steps, step_values, to_micros
from tests.previous_steps import per_aggregation_json, whole_steps_json

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEEK = timedelta(days=7)
MONTH = timedelta(days=30)
THREE_DAYS = timedelta(days=3)
VIEW = FeatureView(
    namespace="team-a",
    name="riders",
    entity="rider",
    join_key="rider_id",
    key_type="string",
    features=(
        FeatureDef("city", "string"),
        FeatureDef("rides_7d", "int64", AggregationDef("count", WEEK)),
        FeatureDef("spent_7d", "float64", AggregationDef("sum", WEEK)),
        FeatureDef("last_city_30d", "string", AggregationDef("last", MONTH)),
        FeatureDef("tags_30d", "list<string>", AggregationDef("last", MONTH)),
        FeatureDef("seen_3d", "timestamp", AggregationDef("max", THREE_DAYS)),
        FeatureDef("vip_3d", "bool", AggregationDef("last", THREE_DAYS)),
        FeatureDef("fares_30d", "list<float64>", AggregationDef("last", MONTH)),
    ),
    ttl=timedelta(days=1),
)
AGGREGATIONS = [f.name for f in VIEW.aggregations]

floats = st.sampled_from([0.0, -0.0, 1.5, math.nan, -math.nan, math.inf, -math.inf]) | st.floats()
value_of = {
    "rides_7d": st.none() | st.integers(0, 5) | st.integers(-(2**63), 2**63 - 1),
    "spent_7d": st.none() | floats,
    "last_city_30d": st.none() | st.sampled_from(["a", "b", "", "é\x00"]),
    "tags_30d": st.none() | st.lists(st.none() | st.sampled_from(["x", "y"]), max_size=2),
    "seen_3d": st.none()
    | st.sampled_from([T0, T0 + timedelta(microseconds=1), datetime(1969, 12, 31, tzinfo=UTC)]),
    "vip_3d": st.none() | st.booleans(),
    "fares_30d": st.none() | st.lists(st.none() | floats, max_size=2),
}
values = st.fixed_dictionaries({name: value_of[name] for name in AGGREGATIONS})
# A step may leave aggregations out: they keep their value from before.
partial = st.fixed_dictionaries({}, optional={name: value_of[name] for name in AGGREGATIONS})


def bits(value: Any) -> Any:
    """A value's identity bit for bit: floats by hex (every NaN alike), lists and dicts by
    item."""
    if isinstance(value, float):
        return ("nan",) if math.isnan(value) else (float, value.hex())
    if isinstance(value, list):
        return [bits(item) for item in value]
    if isinstance(value, dict):
        return {name: bits(item) for name, item in value.items()}
    return (type(value), value)


def reference(base: dict[str, Any], steps: list[tuple[datetime, dict[str, Any]]], at: datetime):
    """The aggregations at `at`: the row's values, updated by each step at or before `at`."""
    current = dict(base)
    for moment, step in steps:
        if moment <= at:
            current.update(step)
    return {name: current[name] for name in AGGREGATIONS}


def decoded(raw: str | bytes | None, base: dict[str, Any], at: datetime, names: list[str]):
    later = step_values(VIEW, raw, to_micros(at), names) or {}
    return {name: later.get(name, base[name]) for name in names}


def read_times(steps: list[tuple[datetime, dict[str, Any]]], data: st.DataObject) -> list[datetime]:
    """Before the first step, each step and 1 µs either side, long after the last, and
    random times in between."""
    times = [T0 - timedelta(days=1), T0, T0 + timedelta(days=400)]
    for moment, _ in steps:
        times += [moment - timedelta(microseconds=1), moment, moment + timedelta(microseconds=1)]
    span = st.integers(-86_400 * 10**6, 45 * 86_400 * 10**6)
    times += [T0 + timedelta(microseconds=m) for m in data.draw(st.lists(span, max_size=8))]
    return times


@settings(max_examples=400, deadline=None)
@given(
    base=values,
    offsets=st.lists(st.integers(1, 60 * 24 * 40), max_size=8),
    data=st.data(),
    with_base=st.booleans(),
)
def test_each_aggregation_reads_its_value_at_any_time(base, offsets, data, with_base) -> None:
    """Full and partial steps, some at one time; the binary encoding, the previous
    version's JSON (as SQLite's text and Bigtable's bytes) and the first version's whole
    steps (full steps only) all read as the reference."""
    full = data.draw(st.booleans())
    steps = [
        (T0 + timedelta(minutes=m), data.draw(values if full else partial)) for m in sorted(offsets)
    ]
    given_base = base if with_base else None
    raw = encode_steps(VIEW, steps, given_base)
    assert raw is None or raw[:1] == bytes([STEPS_FORMAT])
    earlier = per_aggregation_json(VIEW, steps, given_base)
    encodings = [raw, earlier, earlier.encode() if earlier is not None else None]
    if full:
        encodings.append(whole_steps_json(VIEW, steps))
    names = data.draw(st.lists(st.sampled_from([*AGGREGATIONS, "city"]), min_size=1))
    wanted = [name for name in names if name in AGGREGATIONS]
    for at in read_times(steps, data):
        want = bits({name: reference(base, steps, at)[name] for name in wanted})
        for encoding in encodings:
            assert bits(decoded(encoding, base, at, wanted)) == want, (at, encoding)
        # Names that are not aggregations are never in the answer.
        assert set(step_values(VIEW, raw, to_micros(at), names) or {}) <= set(wanted)
    if raw is not None:
        check_layout(raw, len(steps))


def check_layout(raw: bytes, steps: int) -> None:
    """The documented layout (`encode_steps`): one group per window; each group's records
    start with a change, never repeat the record before, at increasing times, no
    more of them than steps; the text area is all used."""
    _, size = struct.unpack_from("<BH", raw)
    groups = json.loads(raw[3 : 3 + size])
    at = 3 + size
    counts = struct.unpack_from(f"<{len(groups)}I", raw, at)
    at += 4 * len(groups)
    windows = {f.name: f.aggregation.window for f in VIEW.aggregations if f.aggregation}
    assert sorted({windows[names[0]] for _, *names in groups}) == [
        windows[names[0]] for _, *names in groups
    ]
    texts = 0
    for (codes, *names), count in zip(groups, counts, strict=True):
        assert len({windows[name] for name in names}) == 1
        assert 1 <= count <= steps
        fixed = {"f": "d", "i": "q", "b": "?", "t": "q"}
        record = struct.Struct("<" + "B" * len(codes) + "".join(fixed.get(c, "II") for c in codes))
        times = struct.unpack_from(f"<{count}q", raw, at)
        assert list(times) == sorted(set(times))
        at += 8 * count
        records = [record.unpack_from(raw, at + i * record.size) for i in range(count)]
        packed = [raw[at + i * record.size : at + (i + 1) * record.size] for i in range(count)]
        at += record.size * count
        assert any(flag != 2 for flag in records[0][: len(codes)])
        # Bit for bit (0.0 == -0.0 in Python): equal values pack alike, one NaN for all.
        for before, after in itertools.pairwise(packed):
            assert before != after
        position = len(codes)
        for code in codes:
            if code not in fixed:
                texts = max([texts, *(r[position] + r[position + 1] for r in records)])
            position += 1 if code in fixed else 2
    assert len(raw) - at >= texts


def test_no_steps_and_steps_that_change_nothing_encode_as_nothing() -> None:
    base = {"rides_7d": 2, "spent_7d": math.nan, "last_city_30d": "a", "tags_30d": ["x"]}
    assert encode_steps(VIEW, []) is None
    same = {"rides_7d": 2, "spent_7d": math.nan, "last_city_30d": "a", "tags_30d": ["x"]}
    assert encode_steps(VIEW, [(T0, same)], base) is None
    # -0.0 is a change from 0.0, and 1 (int64) stays distinct from True.
    raw = encode_steps(VIEW, [(T0, {**same, "spent_7d": -0.0})], {**base, "spent_7d": 0.0})
    assert raw is not None
    assert step_values(VIEW, raw, to_micros(T0) - 1, AGGREGATIONS) is None
    later = step_values(VIEW, raw, to_micros(T0), AGGREGATIONS)
    assert later == {"spent_7d": 0.0} and math.copysign(1, later["spent_7d"]) < 0


def test_every_nan_encodes_alike() -> None:
    """A NaN with its sign bit set is NaN: rewriting the same values changes no byte (so a
    re-run counts no change), as when NaN was a JSON token."""
    negative = struct.unpack("<d", struct.pack("<d", -math.nan))[0]
    assert math.copysign(1, negative) < 0
    assert encode_steps(VIEW, [(T0, {"spent_7d": negative})]) == encode_steps(
        VIEW, [(T0, {"spent_7d": math.nan})]
    )


def test_one_step_changes_only_the_aggregations_over_its_window() -> None:
    base = {"rides_7d": 3, "spent_7d": 12.5, "last_city_30d": "a", "tags_30d": ["x"]}
    # An event leaves the 7-day windows: the 30-day ones keep their values.
    week_later = {**base, "rides_7d": 2, "spent_7d": 8.0}
    raw = encode_steps(VIEW, [(T0 + WEEK, week_later)], base)
    assert raw is not None
    _, size = struct.unpack_from("<BH", raw)
    assert json.loads(raw[3 : 3 + size]) == [["if", "rides_7d", "spent_7d"]]
    at = to_micros(T0 + timedelta(days=8))
    assert step_values(VIEW, raw, at, AGGREGATIONS) == {"rides_7d": 2, "spent_7d": 8.0}
    assert step_values(VIEW, raw, at, ["last_city_30d", "city"]) is None
    assert step_values(VIEW, raw, to_micros(T0), AGGREGATIONS) is None


def test_an_int64_beyond_64_bits_keeps_the_previous_json_encoding() -> None:
    """No binary form: the steps are the previous version's JSON, read back exactly."""
    huge = 2**70
    steps = [(T0, {"rides_7d": huge, "spent_7d": -0.0}), (T0 + WEEK, {"rides_7d": 0})]
    raw = encode_steps(VIEW, steps, {"rides_7d": 1, "spent_7d": 0.0})
    assert raw is not None
    assert json.loads(raw) == {
        "rides_7d": [[to_micros(T0), huge], [to_micros(T0 + WEEK), 0]],
        "spent_7d": [[to_micros(T0), -0.0]],
    }
    assert step_values(VIEW, raw, to_micros(T0), ["rides_7d"]) == {"rides_7d": huge}
    assert step_values(VIEW, raw, to_micros(T0 + WEEK), ["rides_7d"]) == {"rides_7d": 0}


def test_steps_out_of_time_order_are_refused() -> None:
    with pytest.raises(ValueError, match="time order"):
        encode_steps(VIEW, [(T0 + WEEK, {"rides_7d": 1}), (T0, {"rides_7d": 0})])
    with pytest.raises(ValueError, match="not an aggregation"):
        encode_steps(VIEW, [(T0, {"city": "a"})])


def test_the_earlier_whole_step_encoding_still_reads() -> None:
    """Rows written before the per-aggregation encoding: `[[micros, {feature: value}]]`."""
    first = {"rides_7d": 1, "spent_7d": 4.0, "last_city_30d": "b", "tags_30d": None}
    second = {"rides_7d": 0, "spent_7d": None, "last_city_30d": "b", "tags_30d": None}
    earlier = json.dumps(
        [[to_micros(T0 + timedelta(days=1)), first], [to_micros(T0 + timedelta(days=2)), second]]
    )
    assert step_values(VIEW, earlier, to_micros(T0), AGGREGATIONS) is None
    at = to_micros(T0 + timedelta(days=1, hours=1))
    assert step_values(VIEW, earlier, at, ["rides_7d", "tags_30d"]) == {
        "rides_7d": 1,
        "tags_30d": None,
    }
    assert step_values(VIEW, earlier, to_micros(T0 + timedelta(days=3)), ["spent_7d"]) == {
        "spent_7d": None
    }


def test_a_view_changed_since_the_write_reads_binary_steps_as_it_read_json() -> None:
    """A feature no longer an aggregation gets nothing from the steps; one whose type
    changed reads its value as `from_json` reads the JSON text, as before."""
    changed = FeatureView(
        namespace=VIEW.namespace,
        name=VIEW.name,
        entity=VIEW.entity,
        join_key=VIEW.join_key,
        key_type=VIEW.key_type,
        features=(
            FeatureDef("rides_7d", "float64", AggregationDef("count", WEEK)),
            FeatureDef("spent_7d", "float64"),
            FeatureDef("seen_3d", "timestamp", AggregationDef("max", THREE_DAYS)),
        ),
        ttl=VIEW.ttl,
    )
    steps = [
        (T0, {"rides_7d": 1, "spent_7d": 2.5, "seen_3d": T0}),
        (T0 + WEEK, {"rides_7d": 0, "spent_7d": None, "seen_3d": None}),
    ]
    raw = encode_steps(VIEW, steps)
    earlier = per_aggregation_json(VIEW, steps)
    names = ["rides_7d", "spent_7d", "seen_3d"]
    for at, step in steps:
        # The two views in turn: what one view's read found of the layout holds only for it.
        assert bits(step_values(VIEW, raw, to_micros(at), names)) == bits(step)
        got = step_values(changed, raw, to_micros(at), names)
        assert bits(got) == bits(step_values(changed, earlier, to_micros(at), names))
    assert bits(step_values(changed, raw, to_micros(T0), names)) == bits(
        {"rides_7d": 1.0, "seen_3d": T0}
    )
