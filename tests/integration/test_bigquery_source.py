"""The BigQuery dialect of a manifest's SQL, run by the BigQuery emulator on the example's
rides, gives the same history rows and online rows (with their steps) as the DuckDB
dialect does on the same file."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.cloud import bigquery

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import ERROR, ROWS, Range, history_sql
from lykeion.features.lateness import bigquery_project, count_late_rows
from lykeion.features.materialize import query_history, query_run, split_errors
from lykeion.features.pipeline import bigquery_online_sql
from lykeion.features.view import FeatureView
from lykeion.features.windows import STEP
from lykeion.local.controlplane import REPO_ROOT
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from tests.integration.bigquery_fixture import PROJECT, bigquery_emulator  # noqa: F401

EXAMPLE = REPO_ROOT / "examples" / "forward"
DATASET = "sources"
RIDES = f"{PROJECT}.{DATASET}.rides"
SCHEMA = [
    bigquery.SchemaField("ride_id", "STRING"),
    bigquery.SchemaField("rider_id", "STRING"),
    bigquery.SchemaField("event_time", "TIMESTAMP"),
    bigquery.SchemaField("age", "INT64"),
    bigquery.SchemaField("fare", "FLOAT64"),
    bigquery.SchemaField("tier", "STRING"),
]


def example_spec() -> FeatureManifestSpec:
    body = yaml.safe_load((EXAMPLE / "features.yaml").read_text())
    return FeatureManifestSpec.model_validate(body["spec"])


@pytest.fixture(scope="module")
def rides(bigquery_emulator: bigquery.Client) -> bigquery.Client:  # noqa: F811
    """The example's rides.csv as a BigQuery table (streamed: the emulator refuses loads)."""
    client = bigquery_emulator
    client.create_dataset(f"{PROJECT}.{DATASET}", exists_ok=True)
    table = client.create_table(bigquery.Table(RIDES, schema=SCHEMA), exists_ok=True)
    with (REPO_ROOT / "examples/forward/data/rides.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for start in range(0, len(rows), 2000):
        errors = client.insert_rows_json(table, rows[start : start + 2000])
        assert not errors, errors[:3]
    return client


def _normal(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def _rows(records: list[dict[str, Any]], names: list[str]) -> list[tuple[Any, ...]]:
    return sorted(tuple(_normal(r[n]) for n in names) for r in records)


@pytest.mark.parametrize("incremental", [False, True], ids=["backfill", "incremental"])
def test_bigquery_sql_gives_the_duckdb_rows(
    rides: bigquery.Client, tmp_path: Path, incremental: bool
) -> None:
    spec = example_spec()
    run_range = Range()
    if incremental:
        # A range starting inside the data: windows reach back before it, rows start after.
        start = datetime(2026, 2, 1, tzinfo=UTC)
        run_range = Range(start, start + timedelta(days=20))
    body = spec.model_dump(by_alias=True, exclude_none=True)
    body["source"] = {"bigquery": {"table": RIDES}, "timestampColumn": "event_time"}
    on_bigquery = FeatureManifestSpec.model_validate(body)

    expected = query_history(spec, run_range, str(REPO_ROOT)).to_pylist()
    sql = history_sql(on_bigquery, "bigquery", run_range)
    got = [dict(row) for row in rides.query(sql).result()]

    view = FeatureView.from_manifest("ns", "rides", spec)
    names = ["entity_key", "event_time", *(n for n, _ in view.history_columns), ERROR, ROWS]
    assert len(got) == len(expected) > 1000
    assert _rows(got, names) == _rows(expected, names)
    sums = [r["__agg_avg_fare_sum"] for r in got if r["__agg_avg_fare_sum"] is not None]
    assert sums and all(math.isfinite(m) for m in sums)

    # The online rows (each key's values at its newest event and the steps after it),
    # computed by BigQuery's dialect of the training set's SQL, equal DuckDB's.
    _, online = query_run(spec, view, run_range, str(REPO_ROOT))
    online_on_bigquery = [
        dict(row) for row in rides.query(bigquery_online_sql(on_bigquery, view, run_range)).result()
    ]
    columns = ["entity_key", "event_time", STEP, *view.feature_names]
    assert len(online_on_bigquery) == online.num_rows > 300
    assert _rows(online_on_bigquery, columns) == _rows(online.to_pylist(), columns)


def test_late_rows_of_a_bigquery_source_are_counted_in_bigquery(
    rides: bigquery.Client, tmp_path: Path
) -> None:
    """Source rows at or before the re-read boundary that the offline store lacks are
    counted by a query job where the source lives, and the count equals the one DuckDB
    makes of the same rows in the file."""
    spec = example_spec()
    body = spec.model_dump(by_alias=True, exclude_none=True)
    body["source"] = {"bigquery": {"table": RIDES}, "timestampColumn": "event_time"}
    on_bigquery = FeatureManifestSpec.model_validate(body)
    view = FeatureView.from_manifest("ns", "late", spec)
    boundary = datetime(2026, 2, 1, tzinfo=UTC)
    offline = DuckDBOfflineStore(tmp_path / "offline.duckdb")
    assert bigquery_project(on_bigquery) == PROJECT
    assert bigquery_project(on_bigquery, ["--runner=DataflowRunner", "--project=other"]) == "other"

    # Nothing stored yet: every valid (key, time) at or before the boundary is late.
    history, _ = split_errors(query_history(spec, Range(None, boundary), str(REPO_ROOT)))
    assert history.num_rows > 1000
    late = count_late_rows(on_bigquery, view, boundary, offline, None, client=rides)
    assert late == history.num_rows

    # The runs read all but 7 of them: those 7 are late, in both engines' counts.
    offline.write_history(view, history.slice(7))
    late = count_late_rows(on_bigquery, view, boundary, offline, None, client=rides)
    in_file = count_late_rows(spec, view, boundary, offline, str(REPO_ROOT))
    assert late == in_file == 7

    offline.write_history(view, history)
    assert count_late_rows(on_bigquery, view, boundary, offline, None, client=rides) == 0
