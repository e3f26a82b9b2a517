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


def test_row_features_and_trailing_windows(tmp_path: Path) -> None:
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
    assert [r["rides_2d"] for r in r1] == [1, 2, 2]
    assert [r["fare_2d"] for r in r1] == [10.0, 15.0, 25.0]
    assert [r["max_fare_2d"] for r in r1] == [10.0, 20.0, 30.0]
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


def test_same_key_and_time_yields_one_row(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "rides.csv",
        [["a", "r1", _t(0), 30, 10.0, "standard"], ["b", "r1", _t(0), 30, 20.0, "standard"]],
    )
    good, _ = split_errors(query_history(_spec(path), Range(), None))
    assert good.num_rows == 1
    assert good.to_pylist()[0]["rides_2d"] == 2  # both rides are in the window


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
    assert "RANGE BETWEEN 3600000000 PRECEDING AND CURRENT ROW" in sql
    assert "SAFE_CAST" in sql and "TRY_CAST" not in sql
    with pytest.raises(ValueError, match="file sources are read by DuckDB"):
        history_sql(_spec(tmp_path / "x.csv"), "bigquery")
