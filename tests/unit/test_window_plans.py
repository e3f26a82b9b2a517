"""DuckDB's two plans of a window's value at a time give the same values: the window over
the union of queries and history (`window_values_sql`, also BigQuery's) and the range join
the DuckDB training set runs (`window_values_join_sql`), bucketed or not. Random histories
and query times, bucket edges and times before 1970 included (the bucket is a floor)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lykeion.features.view import AggregationDef, FeatureDef
from lykeion.features.windows import QUERY, window_values_join_sql, window_values_sql

TS = pa.timestamp("us", tz="UTC")
W = timedelta(days=2)
FEATURES = [
    FeatureDef("n", "int64", AggregationDef("count", W)),
    FeatureDef("total", "float64", AggregationDef("sum", timedelta(hours=5))),
    FeatureDef("avg", "float64", AggregationDef("mean", W)),
    FeatureDef("low", "float64", AggregationDef("min", timedelta(hours=1))),
    FeatureDef("high", "float64", AggregationDef("max", W)),
    FeatureDef("newest", "float64", AggregationDef("last", timedelta(hours=7))),
]
# Bucket edges sit at multiples of the longest window (2d) since the epoch; both eras.
BASES = [
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 1, tzinfo=UTC),
    datetime(2026, 1, 1, tzinfo=UTC),
]
floats = st.one_of(
    st.none(), st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(-8, 8).map(float)
)
offsets = st.one_of(
    st.integers(-10 * 24, 10 * 24).map(lambda h: timedelta(hours=h)),
    st.sampled_from([timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1)]),
)


def _value(value: Any) -> Any:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    base=st.sampled_from(BASES),
    rows=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), offsets, st.integers(0, 3), floats),
        max_size=25,
    ),
    queries=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", None]), st.one_of(offsets, st.none())),
        min_size=1,
        max_size=12,
    ),
)
def test_the_join_plan_equals_the_window_plan(
    base: datetime,
    rows: list[tuple[str, timedelta, int, float | None]],
    queries: list[tuple[str | None, timedelta | None]],
) -> None:
    by_moment = {(k, base + o): (n, v) for k, o, n, v in rows}  # one row per (key, time)
    keys = [k for k, _ in by_moment]
    values = [v for _, v in by_moment.values()]
    history = pa.table(
        {
            "entity_key": pa.array(keys, pa.string()),
            "event_time": pa.array([t for _, t in by_moment], TS),
            "__agg_n_n": pa.array([n for n, _ in by_moment.values()], pa.int64()),
            "__agg_total_n": pa.array([int(v is not None) for v in values], pa.int64()),
            "__agg_total_sum": pa.array(values, pa.float64()),
            "__agg_avg_n": pa.array([int(v is not None) for v in values], pa.int64()),
            "__agg_avg_sum": pa.array(values, pa.float64()),
            "__agg_low_min": pa.array(values, pa.float64()),
            "__agg_high_max": pa.array(values, pa.float64()),
            "__agg_newest_last": pa.array(values, pa.float64()),
        }
    )
    asked = pa.table(
        {
            "__k": pa.array([k for k, _ in queries], pa.string()),
            "__t": pa.array([None if o is None else base + o for _, o in queries], TS),
            QUERY: pa.array(range(len(queries)), pa.int64()),
        }
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("history", history)
        con.register("asked", asked)
        window = con.sql(window_values_sql(FEATURES, "duckdb", "history", "asked")).fetchall()
        join = con.sql(window_values_join_sql(FEATURES, "history", "asked")).fetchall()
        unbucketed = window_values_join_sql(FEATURES, "history", "asked", bucketed=False)
        by_key = con.sql(unbucketed).fetchall()
        known = {
            q
            for (q,) in con.sql(
                f"SELECT {QUERY} FROM asked WHERE EXISTS (SELECT 1 FROM history h"
                " WHERE h.entity_key = asked.__k AND h.event_time <= asked.__t)"
            ).fetchall()
        }
    finally:
        con.close()
    # The join plan answers as if every key were known; the training set nulls the rest.
    from_join = {
        row[0]: tuple(_value(v) if row[0] in known else None for v in row[1:]) for row in join
    }
    from_window = {row[0]: tuple(_value(v) for v in row[1:]) for row in window}
    assert from_join == from_window
    # Joined on the key alone (no buckets), float sums added in the same (time) order.
    plain = {row[0]: tuple(_value(v) for v in row[1:]) for row in by_key}
    assert plain == {row[0]: tuple(_value(v) for v in row[1:]) for row in join}
