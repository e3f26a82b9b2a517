"""Entity keys are read as the entity's declared `keyType` from file sources and label
files, whatever a CSV reader would guess from the values."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lykeion.api.featuremanifest import FeatureManifestSpec, FileSource
from lykeion.evaluation.labels import read_labels
from lykeion.features.compile import Range
from lykeion.features.materialize import query_history, split_errors
from lykeion.features.view import EVENT_TIME, KEY, FeatureView
from lykeion.stores.offline.base import LabelSpec, ResolvedFeature
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.training import dataset

T0 = datetime(2026, 3, 1, tzinfo=UTC)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def spec_for(path: Path, key_type: str, fmt: str = "csv") -> FeatureManifestSpec:
    return FeatureManifestSpec.model_validate(
        {
            "description": "d",
            "owner": "o",
            "entity": {"name": "rider", "joinKey": "rider_id", "keyType": key_type},
            "source": {"file": {"path": str(path), "format": fmt}, "timestampColumn": "ts"},
            "features": [
                {"name": "zip", "type": "string", "column": "zip"},
                {"name": "age", "type": "int64", "column": "age"},
                {
                    "name": "rides",
                    "type": "int64",
                    "aggregation": {"function": "count", "column": "ride", "window": "2d"},
                },
            ],
        }
    )


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _t(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def history_of(spec: FeatureManifestSpec) -> tuple[pa.Table, pa.Table]:
    return split_errors(query_history(spec, Range(), None))


# Strings a CSV reader would read as numbers (or dates): their text must survive.
NUMERIC_LOOKING = st.one_of(
    st.from_regex(r"\A0[0-9]{1,6}\Z"),
    st.from_regex(r"\A-?[0-9]{1,19}\Z"),
    st.from_regex(r"\A[0-9]{1,4}\.[0-9]{1,3}0\Z"),
    st.from_regex(r"\A[0-9]e[0-9]\Z"),
    st.sampled_from(["2024-01-01", "1_000", "+7", " 7", "0x1F", "nan", "inf", "true"]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keys=st.lists(NUMERIC_LOOKING, min_size=1, max_size=6, unique=True))
def test_string_keys_from_csv_keep_their_text(tmp_path: Path, keys: list[str]) -> None:
    path = write_csv(
        tmp_path / "rides.csv",
        ["ride", "rider_id", "ts", "zip", "age"],
        # Many plainly numeric rows first: a reader sampling them would guess BIGINT.
        [[f"x{i}", str(i), _t(i), "1", 30] for i in range(100)]
        + [[f"k{i}", key, _t(200 + i), "00123", 31] for i, key in enumerate(keys)],
    )
    good, bad = history_of(spec_for(path, "string"))
    assert bad.num_rows == 0
    assert good.schema.field(KEY).type == pa.string()
    got = {r[KEY]: r for r in good.to_pylist()}
    assert set(got) == {str(i) for i in range(100)} | set(keys)
    for key in keys:
        # The zip code, a string feature, keeps its leading zeros too.
        assert got[key]["zip"] == "00123"


def test_int64_keys_from_csv_are_int64_and_bad_ones_are_bad_rows(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "rides.csv",
        ["ride", "rider_id", "ts", "zip", "age"],
        [
            ["a", "007", _t(0), "01", 30],
            ["b", str(INT64_MAX), _t(1), "02", 30],
            ["c", str(INT64_MIN), _t(2), "03", 30],
            ["d", "seven", _t(3), "04", 30],
        ],
    )
    good, bad = history_of(spec_for(path, "int64"))
    assert good.schema.field(KEY).type == pa.int64()
    assert sorted(good.column(KEY).to_pylist()) == [INT64_MIN, 7, INT64_MAX]
    assert bad.column("_error").to_pylist() == ["null key rider_id"]


def test_times_in_any_row_are_read_per_row(tmp_path: Path) -> None:
    # Formats that differ after the reader's sample: one bad value is one bad row, the
    # others (an offset, a space instead of T) are read, not the whole file refused.
    rows = [[f"x{i}", "r1", _t(i), "1", 30] for i in range(3000)]
    rows += [
        ["y", "r2", "2026-03-02 10:00:00+02:00", "1", 30],
        ["z", "r3", "yesterday", "1", 30],
    ]
    path = write_csv(tmp_path / "rides.csv", ["ride", "rider_id", "ts", "zip", "age"], rows)
    good, bad = history_of(spec_for(path, "string"))
    r2 = [r for r in good.to_pylist() if r[KEY] == "r2"]
    assert [r[EVENT_TIME] for r in r2] == [datetime(2026, 3, 2, 8, tzinfo=UTC)]
    assert bad.column("_error").to_pylist() == ["null or invalid time ts"]


@pytest.mark.parametrize(
    ("key_type", "stored", "expected"),
    [
        ("string", pa.array(["007", "42"]), ["007", "42"]),
        ("int64", pa.array([INT64_MAX, -1], pa.int64()), [-1, INT64_MAX]),
        ("int64", pa.array(["007", "42"]), [7, 42]),  # text in the file, int64 declared
        ("string", pa.array([7, 42], pa.int64()), ["42", "7"]),
    ],
)
def test_keys_from_parquet_are_cast_to_the_declared_type(
    tmp_path: Path, key_type: str, stored: pa.Array, expected: list[Any]
) -> None:
    path = tmp_path / "rides.parquet"
    times = pa.array([T0, T0 + timedelta(hours=1)], pa.timestamp("us", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "ride": ["a", "b"],
                "rider_id": stored,
                "ts": times,
                "zip": ["01", "02"],
                "age": pa.array([1, 2], pa.int64()),
            }
        ),
        path,
    )
    good, bad = history_of(spec_for(path, key_type, "parquet"))
    assert bad.num_rows == 0
    assert good.schema.field(KEY).type == (pa.int64() if key_type == "int64" else pa.string())
    assert good.column(KEY).to_pylist() == expected


def test_naive_parquet_times_are_utc(tmp_path: Path) -> None:
    path = tmp_path / "rides.parquet"
    naive = datetime(2026, 3, 1, 12, 30)
    pq.write_table(
        pa.table(
            {
                "ride": ["a"],
                "rider_id": ["r1"],
                "ts": pa.array([naive], pa.timestamp("us")),
                "zip": ["01"],
                "age": [1],
            }
        ),
        path,
    )
    good, _ = history_of(spec_for(path, "string", "parquet"))
    assert good.column(EVENT_TIME).to_pylist() == [naive.replace(tzinfo=UTC)]


# -- label files --------------------------------------------------------------------


def read(path: Path, keys: dict[str, str], fmt: str = "csv") -> pa.Table:
    return read_labels(FileSource(path=str(path), format=fmt), "ts", path.parent, keys)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keys=st.lists(NUMERIC_LOOKING, min_size=1, max_size=6))
def test_string_label_keys_from_csv_keep_their_text(tmp_path: Path, keys: list[str]) -> None:
    path = write_csv(
        tmp_path / "labels.csv",
        ["rider_id", "ts", "label"],
        [[str(i), _t(i), 0] for i in range(50)] + [[k, _t(99), 1] for k in keys],
    )
    labels = read(path, {"rider_id": "string"})
    assert labels.schema.field("rider_id").type == pa.string()
    assert labels.column("rider_id").to_pylist() == [str(i) for i in range(50)] + keys
    assert labels.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert labels.column("label").type == pa.int64()  # other columns: the reader's types


def test_int64_label_keys_and_a_second_entity(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "labels.csv",
        ["rider_id", "driver_id", "ts", "label"],
        [["007", "0042", "2026-03-01 10:00:00", 1], ["r2", str(INT64_MIN), _t(1), 0]],
    )
    labels = read(path, {"rider_id": "string", "driver_id": "int64", "absent_id": "int64"})
    assert labels.column("rider_id").to_pylist() == ["007", "r2"]
    assert labels.schema.field("driver_id").type == pa.int64()
    assert labels.column("driver_id").to_pylist() == [42, INT64_MIN]
    assert labels.column("ts").to_pylist() == [
        datetime(2026, 3, 1, 10, tzinfo=UTC),
        T0 + timedelta(hours=1),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["seven", _t(0), 1]], "labels column rider_id: 'seven' is not a int64 key"),
        ([["7", "soon", 1]], "labels column ts: 'soon' is not a timestamp"),
    ],
)
def test_label_values_that_do_not_cast_are_named(
    tmp_path: Path, rows: list[list[Any]], message: str
) -> None:
    path = write_csv(tmp_path / "labels.csv", ["rider_id", "ts", "label"], rows)
    with pytest.raises(dataset.DatasetError, match=message):
        read(path, {"rider_id": "int64"})


def test_parquet_label_keys_are_cast_to_the_declared_type(tmp_path: Path) -> None:
    path = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table(
            {
                "rider_id": pa.array([7, INT64_MAX], pa.int64()),
                "driver_id": pa.array(["0042", "1"]),
                "ts": pa.array([datetime(2026, 3, 1), datetime(2026, 3, 2)], pa.timestamp("ms")),
                "label": [1, 0],
            }
        ),
        path,
    )
    labels = read(path, {"rider_id": "string", "driver_id": "int64"}, "parquet")
    assert labels.column("rider_id").to_pylist() == ["7", str(INT64_MAX)]
    assert labels.column("driver_id").to_pylist() == [42, 1]
    assert labels.schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_leading_zero_keys_join_from_source_to_training_set(tmp_path: Path) -> None:
    """A source and a label file keyed by `007`-like strings give a training set whose
    rows found their entity's features (the reported case: the reader made them 7)."""
    source = write_csv(
        tmp_path / "rides.csv",
        ["ride", "rider_id", "ts", "zip", "age"],
        [["a", "007", _t(0), "0100", 30], ["b", "7", _t(0), "0200", 40]],
    )
    spec = spec_for(source, "string")
    view = FeatureView.from_manifest("default", "riders", spec)
    good, _ = history_of(spec)
    store = DuckDBOfflineStore(tmp_path / "offline.duckdb")
    store.write_history(view, good)
    labels_path = write_csv(
        tmp_path / "labels.csv",
        ["rider_id", "ts", "label"],
        [["007", _t(1), 1], ["7", _t(1), 0]],
    )
    labels = read(labels_path, {"rider_id": view.key_type})
    refs = [ResolvedFeature(view, "zip"), ResolvedFeature(view, "age")]
    result = dataset.build(labels, LabelSpec("rider_id", "ts", "label"), refs, store)
    assert result.table.select(["rider_id", "rider__zip", "rider__age"]).to_pylist() == [
        {"rider_id": "007", "rider__zip": "0100", "rider__age": 30},
        {"rider_id": "7", "rider__zip": "0200", "rider__age": 40},
    ]
