"""Labels declared as a BigQuery table or query (in a Model or a project's lykeion.yaml)
read from the BigQuery emulator equal the same labels read from the example's CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pytest
from google.cloud import bigquery

from lykeion.api.featuremanifest import BigQuerySource, FileSource
from lykeion.api.model import LabelsSource
from lykeion.evaluation.labels import (
    DatasetError,
    bigquery_project,
    read_bigquery_labels,
    read_labels,
    utc_timestamps,
)
from lykeion.local.controlplane import REPO_ROOT
from tests.integration.bigquery_fixture import PROJECT, bigquery_emulator  # noqa: F401

LABELS_CSV = REPO_ROOT / "examples/forward/data/labels.csv"
TABLE = f"{PROJECT}.labels.forward"


@pytest.fixture(scope="module")
def labels_table(bigquery_emulator: bigquery.Client) -> bigquery.Client:  # noqa: F811
    client = bigquery_emulator
    client.create_dataset(f"{PROJECT}.labels", exists_ok=True)
    schema = [
        bigquery.SchemaField("rider_id", "STRING"),
        bigquery.SchemaField("label_time", "TIMESTAMP"),
        bigquery.SchemaField("ordered_again", "INT64"),
    ]
    table = client.create_table(bigquery.Table(TABLE, schema=schema), exists_ok=True)
    with LABELS_CSV.open() as handle:
        rows = list(csv.DictReader(handle))
    errors = client.insert_rows_json(table, rows)
    assert not errors, errors[:3]
    return client


def _sorted(table: pa.Table) -> list[tuple[object, ...]]:
    names = ["rider_id", "label_time", "ordered_again"]
    return sorted(zip(*(table[n].to_pylist() for n in names), strict=True))


@pytest.mark.parametrize(
    "source",
    [
        BigQuerySource(table=TABLE),
        BigQuerySource(query=f"SELECT rider_id, label_time, ordered_again FROM `{TABLE}`"),
    ],
    ids=["table", "query"],
)
def test_bigquery_labels_equal_the_file(
    labels_table: bigquery.Client, source: BigQuerySource
) -> None:
    from_bigquery = read_bigquery_labels(source, "label_time", labels_table)
    from_file = read_labels(FileSource(path=str(LABELS_CSV), format="csv"), "label_time", Path("."))
    assert from_bigquery["label_time"].type == pa.timestamp("us", tz="UTC")
    assert from_bigquery.num_rows == from_file.num_rows > 0
    assert _sorted(from_bigquery) == _sorted(from_file.cast(from_bigquery.schema))


def test_bigquery_labels_name_what_is_wrong(labels_table: bigquery.Client) -> None:
    with pytest.raises(DatasetError, match="no column 'event_time'"):
        read_bigquery_labels(BigQuerySource(table=TABLE), "event_time", labels_table)
    with pytest.raises(DatasetError, match="not a TIMESTAMP"):
        read_bigquery_labels(BigQuerySource(table=TABLE), "rider_id", labels_table)
    with pytest.raises(DatasetError, match="cannot read labels from BigQuery"):
        read_bigquery_labels(BigQuerySource(table=f"{PROJECT}.labels.none"), "t", labels_table)


def test_labels_are_a_file_or_bigquery_and_where_bigquery_bills() -> None:
    both = {"file": {"path": "l.csv"}, "bigquery": {"table": TABLE}}
    for wrong in (both, {}):
        with pytest.raises(ValueError, match="exactly one of bigquery or file"):
            LabelsSource.model_validate({**wrong, "timestampColumn": "t", "target": "y"})
    assert bigquery_project(BigQuerySource(table="p.d.t"), "bigquery://billing/ds") == "billing"
    assert bigquery_project(BigQuerySource(table="p.d.t"), "duckdb:///x.duckdb") == "p"
    with pytest.raises(DatasetError, match="need a BigQuery project"):
        bigquery_project(BigQuerySource(query="SELECT 1"), "duckdb:///x.duckdb")
    naive = pa.table({"t": pa.array([0, 3_600_000_000], pa.timestamp("us"))})
    assert utc_timestamps(naive, "t")["t"].type == pa.timestamp("us", tz="UTC")
    assert utc_timestamps(naive, "t")["t"].cast(pa.int64()).to_pylist() == [0, 3_600_000_000]
