"""The compiled feature SQL, run in DuckDB on small files, against hand-computed answers."""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import Range, history_sql, lookback
from lykeion.features.materialize import query_history, split_errors
from lykeion.features.view import FeatureView
from lykeion.features.windows import window_values_sql

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _spec(path: Path, features: list[dict[str, Any]] | None = None) -> FeatureManifestSpec:
    return FeatureManifestSpec.model_validate(
        {
            "description": "d",
            "owner": "o",
            "entity": {"name": "rider", "joinKey": "rider_id"},
            "source": {"file": {"path": str(path), "format": "csv"}, "timestampColumn": "ts"},
            "features": features
            or [
                {"name": "age", "type": "int64", "column": "age"},
                {
                    "name": "rides_2d",
                    "type": "int64",
                    "aggregation": {"function": "count", "column": "ride", "window": "2d"},
                },
                {
                    "name": "fare_2d",
                    "type": "float64",
                    "aggregation": {"function": "mean", "column": "fare", "window": "2d"},
                },
                {
                    "name": "max_fare_2d",
                    "type": "float64",
                    "aggregation": {"function": "max", "column": "fare", "window": "2d"},
                },
                {"name": "premium", "type": "bool", "expression": "tier = 'premium'"},
            ],
        }
    )


def _write(path: Path, rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ride", "rider_id", "ts", "age", "fare", "tier"])
        writer.writerows(rows)
    return path


def _t(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_row_features_and_partial_aggregates_per_time(tmp_path: Path) -> None:
    """The history holds each moment's row-level values and the partial aggregates of
    that moment's rows; windows are computed at query times (tests/integration/
    test_feature_semantics.py holds them to the reference)."""
    path = _write(
        tmp_path / "rides.csv",
        [
            ["a", "r1", _t(0), 30, 10.0, "premium"],
            ["b", "r1", _t(24), 30, 20.0, "standard"],
            ["c", "r1", _t(50), 31, 30.0, "standard"],  # 'a' is now outside the 2d window
            ["d", "r2", _t(1), 40, 5.0, "standard"],
        ],
    )
    rows = split_errors(query_history(_spec(path), Range(), None))[0].to_pylist()
    r1 = [r for r in rows if r["entity_key"] == "r1"]
    assert [r["__agg_rides_2d_n"] for r in r1] == [1, 1, 1]
    assert [r["__agg_fare_2d_sum"] for r in r1] == [10.0, 20.0, 30.0]
    assert [r["__agg_fare_2d_n"] for r in r1] == [1, 1, 1]
    assert [r["__agg_max_fare_2d_max"] for r in r1] == [10.0, 20.0, 30.0]
    assert "rides_2d" not in r1[0]
    assert [r["premium"] for r in r1] == [True, False, False]
    assert [r["age"] for r in r1] == [30, 30, 31]
    assert rows[-1]["entity_key"] == "r2"


def test_bad_rows_are_flagged_not_written(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "rides.csv",
        [
            ["a", "r1", _t(0), 30, 10.0, "standard"],
            ["b", "", _t(1), 30, 10.0, "standard"],  # null key
            ["c", "r1", _t(2), "thirty", 10.0, "standard"],  # not an int64
            ["d", "r1", "not a time", 30, 10.0, "standard"],
        ],
    )
    good, bad = split_errors(query_history(_spec(path), Range(), None))
    assert good.num_rows == 1
    reasons = sorted(bad.column("_error").to_pylist())
    assert reasons == [
        "feature age: value does not cast to int64",
        "null key rider_id",
        "null or invalid time ts",
    ]


@pytest.mark.parametrize("flip", [False, True])
def test_same_key_and_time_yields_one_row(tmp_path: Path, flip: bool) -> None:
    rides = [["a", "r1", _t(0), 31, 10.0, "standard"], ["b", "r1", _t(0), 30, 20.0, "premium"]]
    path = _write(tmp_path / "rides.csv", rides[::-1] if flip else rides)
    table = query_history(_spec(path), Range(), None)
    good, _ = split_errors(table)
    assert good.num_rows == 1
    assert table.column("_rows").to_pylist() == [2]  # one duplicate, counted
    row = good.to_pylist()[0]
    assert row["__agg_rides_2d_n"] == 2  # both rides count in windows
    assert row["__agg_max_fare_2d_max"] == 20.0
    # Row-level values come from one row, the first in value order, whatever the read
    # order: age 30 (and its row's premium) wins.
    assert (row["age"], row["premium"]) == (30, True)


def test_an_invalid_duplicate_never_wins(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "rides.csv",
        [["a", "r1", _t(0), "old", 10.0, "standard"], ["b", "r1", _t(0), 30, 20.0, "standard"]],
    )
    table = query_history(_spec(path), Range(), None)
    good, bad = split_errors(table)
    assert good.column("age").to_pylist() == [30]
    assert good.column("__agg_rides_2d_n").to_pylist() == [1]  # the invalid row is out
    assert bad.num_rows == 1


def test_incremental_range_reads_lookback_and_matches_full_run(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = [
        [
            f"x{i}",
            f"r{rng.randint(0, 4)}",
            _t(rng.uniform(0, 24 * 10)),
            30,
            round(rng.uniform(1, 9), 2),
            "standard",
        ]
        for i in range(300)
    ]
    spec = _spec(_write(tmp_path / "rides.csv", rows))
    assert lookback(spec) == timedelta(days=2)
    full = split_errors(query_history(spec, Range(), None))[0].to_pylist()
    cut = T0 + timedelta(days=6)
    part = split_errors(query_history(spec, Range(start=cut), None))[0].to_pylist()
    _same_rows(part, [r for r in full if r["event_time"] > cut])
    head = split_errors(query_history(spec, Range(end=cut), None))[0].to_pylist()
    _same_rows(head + part, full)


def _same_rows(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> None:
    """Equal rows; floats to 1e-12 (window sums may add in a different order)."""
    order = lambda r: (r["entity_key"], r["event_time"])  # noqa: E731
    left, right = sorted(left, key=order), sorted(right, key=order)
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert a[k] == pytest.approx(b[k], rel=1e-12), k
            else:
                assert a[k] == b[k], k


def test_bigquery_dialect_uses_numeric_ranges_and_safe_cast(tmp_path: Path) -> None:
    spec = FeatureManifestSpec.model_validate(
        {
            "description": "d",
            "owner": "o",
            "entity": {"name": "rider", "joinKey": "rider_id"},
            "source": {"bigquery": {"table": "proj.ds.rides"}, "timestampColumn": "ts"},
            "features": [
                {
                    "name": "n",
                    "type": "int64",
                    "aggregation": {"function": "count", "column": "ride", "window": "1h"},
                }
            ],
        }
    )
    sql = history_sql(spec, "bigquery", Range(start=T0))
    assert "FROM `proj.ds.rides`" in sql
    assert "SAFE_CAST" in sql and "TRY_CAST" not in sql
    view = FeatureView.from_manifest("ns", "m", spec)
    at_time = window_values_sql(view.aggregations, "bigquery", "`h`", "`q`")
    # The window (t - 1h, t] at microseconds, on 2 x micros (+1 for the query row).
    assert "RANGE BETWEEN 7199999999 PRECEDING AND CURRENT ROW" in at_time
    assert "UNIX_MICROS(__t) * 2" in at_time
    with pytest.raises(ValueError, match="file sources are read by DuckDB"):
        history_sql(_spec(tmp_path / "x.csv"), "bigquery")
