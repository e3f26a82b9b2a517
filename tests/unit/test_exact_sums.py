"""Float sums of DuckDB's window plan (`window_values_join_sql`, the training set's and
the online store's) are exact: the window's values added without rounding error and
rounded once, as `math.fsum` and Python's `Fraction` round, whatever order the engine
meets the rows in; a window holding a value the integer limbs cannot carry (NaN, ±Inf,
2^42 or more in magnitude, finer than 2^-64) or a total of 2^42 or more adds in
event-time order. Held to a brute-force reference on adversarial values (cancellation,
totals at the limit, subnormals), and on one long window summed by two threads."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lykeion.features.view import AggregationDef, FeatureDef
from lykeion.features.windows import (
    EXACT_BELOW,
    QUERY,
    exact_sum_parts,
    stored_limbs,
    window_values_join_sql,
)
from tests.reference import UNIT, carried, exact_sum

TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEATURES = [
    FeatureDef("total", "float64", AggregationDef("sum", timedelta(hours=5))),
    FeatureDef("avg", "float64", AggregationDef("mean", timedelta(days=1))),
    FeatureDef("n", "int64", AggregationDef("count", timedelta(days=1))),
]


def same_float(left: Any, right: Any) -> bool:
    if left is None or right is None:
        return left is right
    return (math.isnan(left) and math.isnan(right)) or left == right


# Values that round differently in different orders: big and small, cancelling pairs,
# the limits of the limbs, subnormals and non-finite values.
LIMIT = float(EXACT_BELOW)
special = st.sampled_from(
    [
        1e12, -1e12, 1.0, 0.1, -0.1, 1e-3, 3.0 * 2**-64, 2**-64, 2**-65, 5e-324,
        LIMIT, -LIMIT, math.nextafter(LIMIT, 0), -math.nextafter(LIMIT, 0), LIMIT / 2,
        math.nan, math.inf, -math.inf, -0.0, 1.7976931348623157e308,
    ]
)  # fmt: skip
values = st.one_of(
    st.none(),
    special,
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.integers(-(2**60), 2**60).map(lambda i: i * 2.0**-60),
)


def run(
    history: pa.Table, asked: pa.Table, threads: int, stored: bool = False
) -> dict[int, tuple[Any, ...]]:
    """The join plan's answers; `stored`: from limbs stored beside the partials, as the
    DuckDB store keeps them, rather than computed by the plan."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET threads = {threads}")
        con.register("raw", history)
        limbs = stored_limbs(FEATURES) if stored else []
        columns = "".join(f", {expression} AS {name}" for name, expression in limbs)
        con.execute(f"CREATE TABLE history AS SELECT *{columns} FROM raw")
        con.register("asked", asked)
        present = {n for f in FEATURES for n, _ in f.parts()} | {n for n, _ in limbs}
        rows = con.sql(window_values_join_sql(FEATURES, "history", "asked", present)).fetchall()
    finally:
        con.close()
    return {row[0]: tuple(row[1:]) for row in rows}


def history_table(rows: list[tuple[str, datetime, float | None]]) -> pa.Table:
    present = [int(v is not None) for _, _, v in rows]
    vals = [v for _, _, v in rows]
    return pa.table(
        {
            "entity_key": pa.array([k for k, _, _ in rows], pa.string()),
            "event_time": pa.array([t for _, t, _ in rows], TS),
            "__agg_total_n": pa.array(present, pa.int64()),
            "__agg_total_sum": pa.array(vals, pa.float64()),
            "__agg_avg_n": pa.array(present, pa.int64()),
            "__agg_avg_sum": pa.array(vals, pa.float64()),
            "__agg_n_n": pa.array(present, pa.int64()),
        }
    )


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 48), values),
        max_size=40,
        unique_by=lambda r: (r[0], r[1]),  # one history row per key and time
    ),
    queries=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 60)), min_size=1, max_size=10
    ),
)
def test_float_sums_equal_the_exact_reference(
    rows: list[tuple[str, int, float | None]], queries: list[tuple[str, int]]
) -> None:
    timed = [(k, T0 + timedelta(hours=h), v) for k, h, v in rows]
    history = history_table(timed)
    asked = pa.table(
        {
            "__k": pa.array([k for k, _ in queries], pa.string()),
            "__t": pa.array([T0 + timedelta(hours=h) for _, h in queries], TS),
            QUERY: pa.array(range(len(queries)), pa.int64()),
        }
    )
    answers = [run(history, asked, 1), run(history, asked, 2), run(history, asked, 2, True)]
    for q, (key, hour) in enumerate(queries):
        t = T0 + timedelta(hours=hour)
        by_time = sorted((when, v) for k, when, v in timed if k == key and v is not None)
        in_5h = [v for when, v in by_time if t - timedelta(hours=5) < when <= t]
        in_1d = [v for when, v in by_time if t - timedelta(days=1) < when <= t]
        day_total = exact_sum(in_1d) if in_1d else None
        want = (
            exact_sum(in_5h) if in_5h else None,
            None if day_total is None else day_total / len(in_1d),
            len(in_1d),
        )
        for got in (answer[q] for answer in answers):
            assert all(same_float(g, w) for g, w in zip(got[:2], want[:2], strict=True)), (
                key,
                hour,
                got,
                want,
                in_5h,
                in_1d,
            )
            assert got[2] == want[2]


def test_a_long_window_sums_exactly_in_any_thread_order() -> None:
    """200,000 values in one key's window, summed by two threads, for one query and for
    the same query among others: each time the correctly rounded sum."""
    rng = random.Random(7)
    count = 200_000
    vals = [rng.uniform(-1e6, 1e6) * rng.choice([1.0, 1e-3, 1e3]) for _ in range(count)]
    rows = [("k", T0 + timedelta(microseconds=i), v) for i, v in enumerate(vals)]
    rows.append(("other", T0, 1.0))
    history = history_table(rows)
    end = T0 + timedelta(microseconds=count - 1)
    want = math.fsum(vals)
    assert want != sum(vals)  # adding in order rounds differently: the case is a real one
    for keys in (["k"], ["other", "k", "k", "other"]):
        asked = pa.table(
            {
                "__k": pa.array(keys, pa.string()),
                "__t": pa.array([end] * len(keys), TS),
                QUERY: pa.array(range(len(keys)), pa.int64()),
            }
        )
        got = run(history, asked, 2)
        for q, key in enumerate(keys):
            if key == "k":
                assert got[q][0] == want
                assert got[q][1] == want / count
                assert got[q][2] == count


@pytest.mark.parametrize(
    ("value", "carries"),
    [
        (0.1, True),
        (-0.1, True),
        (2.0**-12 * (1 + 2**-52), True),  # the smallest binade with every bit carried
        (2.0**-13 * (1 + 2**-52), False),  # its last bit is 2^-65
        (2.0**-64, True),
        (2.0**-65, False),
        (5e-324, False),
        (math.nextafter(float(EXACT_BELOW), 0), True),
        (float(EXACT_BELOW), False),
        (-float(EXACT_BELOW), False),
        (math.nan, False),
        (math.inf, False),
        (-0.0, True),
    ],
)
def test_the_limbs_carry_a_value_exactly_or_not_at_all(value: float, carries: bool) -> None:
    hi, lo = exact_sum_parts("x")
    (got,) = duckdb.sql(
        f"SELECT {hi}, {lo} FROM (SELECT ?::DOUBLE AS x)", params=[value]
    ).fetchall()
    assert carried(value) is carries
    if not carries:
        assert got == (None, None)
        return
    high, low = got
    assert abs(low) < 2**53
    assert high * low >= 0  # the limbs have the value's sign
    assert Fraction(high, 2**11) + Fraction(low, UNIT) == Fraction(value)
