"""The online stores' encoding of an entity's later window values (`codec.encode_steps`).

The reference is what a step means (`OnlineRow`): at `t`, the aggregations hold the
values of the last step at or before `t`, or the values at the event time before the
first step. The encoding keeps per aggregation only its changes, so these tests decode
it at every interesting time and compare with that reference, value by value and bit by
bit (NaN, -0.0), and check that the earlier encoding (whole steps) still reads.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.features.view import AggregationDef, FeatureDef, FeatureView
from lykeion.stores.online.codec import encode_steps, step_values, to_micros

T0 = datetime(2026, 1, 1, tzinfo=UTC)
WEEK = AggregationDef("count", timedelta(days=7))
VIEW = FeatureView(
    namespace="team-a",
    name="riders",
    entity="rider",
    join_key="rider_id",
    key_type="string",
    features=(
        FeatureDef("city", "string"),
        FeatureDef("rides_7d", "int64", WEEK),
        FeatureDef("spent_7d", "float64", AggregationDef("sum", timedelta(days=7))),
        FeatureDef("last_city_30d", "string", AggregationDef("last", timedelta(days=30))),
        FeatureDef("tags_30d", "list<string>", AggregationDef("last", timedelta(days=30))),
    ),
    ttl=timedelta(days=1),
)
AGGREGATIONS = [f.name for f in VIEW.aggregations]

floats = st.sampled_from([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf]) | st.floats()
value_of = {
    "rides_7d": st.none() | st.integers(0, 5),
    "spent_7d": st.none() | floats,
    "last_city_30d": st.none() | st.sampled_from(["a", "b", ""]),
    "tags_30d": st.none() | st.lists(st.sampled_from(["x", "y"]), max_size=2),
}
values = st.fixed_dictionaries({name: value_of[name] for name in AGGREGATIONS})


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
    """The aggregations at `at`: the last step at or before `at`, else the base values."""
    current = base
    for moment, step in steps:
        if moment <= at:
            current = step
    return {name: current[name] for name in AGGREGATIONS}


def decoded(raw: str | None, base: dict[str, Any], at: datetime, names: list[str]):
    later = step_values(VIEW, raw, to_micros(at), names) or {}
    return {name: later.get(name, base[name]) for name in names}


@settings(max_examples=300, deadline=None)
@given(
    base=values,
    offsets=st.lists(st.integers(1, 60 * 24 * 40), unique=True, max_size=8),
    data=st.data(),
    with_base=st.booleans(),
)
def test_each_aggregation_reads_its_value_at_any_time(base, offsets, data, with_base) -> None:
    steps = [(T0 + timedelta(minutes=m), data.draw(values)) for m in sorted(offsets)]
    raw = encode_steps(VIEW, steps, base if with_base else None)
    times = [T0 - timedelta(days=1), T0]
    for moment, _ in steps:
        times += [moment - timedelta(microseconds=1), moment, moment + timedelta(microseconds=1)]
    times.append(T0 + timedelta(days=400))
    names = data.draw(st.lists(st.sampled_from([*AGGREGATIONS, "city"]), min_size=1))
    wanted = [name for name in names if name in AGGREGATIONS]
    for at in times:
        want = reference(base, steps, at)
        got = decoded(raw, base, at, wanted)
        assert bits(got) == bits({name: want[name] for name in wanted}), at
    if raw is not None:
        # Only changes are kept: no aggregation's list repeats the value before it.
        previous = dict(base) if with_base else {}
        for name, changes in json.loads(raw).items():
            last = previous.get(name, object())
            for _, value in changes:
                assert bits(value) != bits(last)
                last = value


def test_no_steps_and_steps_that_change_nothing_encode_as_nothing() -> None:
    base = {"rides_7d": 2, "spent_7d": math.nan, "last_city_30d": "a", "tags_30d": ["x"]}
    assert encode_steps(VIEW, []) is None
    same = {"rides_7d": 2, "spent_7d": math.nan, "last_city_30d": "a", "tags_30d": ["x"]}
    assert encode_steps(VIEW, [(T0, same)], base) is None
    # -0.0 is a change from 0.0, and 1 (int64) stays distinct from True.
    raw = encode_steps(VIEW, [(T0, {**same, "spent_7d": -0.0})], {**base, "spent_7d": 0.0})
    assert raw is not None
    assert json.loads(raw) == {"spent_7d": [[to_micros(T0), -0.0]]}
    assert math.copysign(1, step_values(VIEW, raw, to_micros(T0), ["spent_7d"])["spent_7d"]) < 0


def test_one_step_changes_only_the_aggregations_over_its_window() -> None:
    base = {"rides_7d": 3, "spent_7d": 12.5, "last_city_30d": "a", "tags_30d": ["x"]}
    # An event leaves the 7-day windows: the 30-day ones keep their values.
    week_later = {**base, "rides_7d": 2, "spent_7d": 8.0}
    raw = encode_steps(VIEW, [(T0 + timedelta(days=7), week_later)], base)
    assert raw is not None
    assert set(json.loads(raw)) == {"rides_7d", "spent_7d"}
    at = to_micros(T0 + timedelta(days=8))
    assert step_values(VIEW, raw, at, AGGREGATIONS) == {"rides_7d": 2, "spent_7d": 8.0}
    assert step_values(VIEW, raw, at, ["last_city_30d", "city"]) is None
    assert step_values(VIEW, raw, to_micros(T0), AGGREGATIONS) is None


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
