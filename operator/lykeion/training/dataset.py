"""The training set of a Model: labels joined point-in-time with its input features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from lykeion.api.featuremanifest import FileSource
from lykeion.features.offline.base import FeatureRef, LabelSpec, OfflineStore, TrainingSet
from lykeion.features.view import FeatureView


class DatasetError(Exception):
    pass


def read_labels(source: FileSource, timestamp_column: str, data_root: Path) -> pa.Table:
    """Labels as Arrow, the timestamp column as UTC timestamps."""
    path = Path(source.path)
    path = path if path.is_absolute() else data_root / path
    if not path.exists():
        raise DatasetError(f"labels file {path} does not exist")
    reader = "read_parquet" if source.format == "parquet" else "read_csv"
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        quoted = str(path).replace("'", "''")
        ts = f'"{timestamp_column}"'
        return (
            con.sql(
                f"SELECT * REPLACE (CAST({ts} AS TIMESTAMPTZ) AS {ts}) FROM {reader}('{quoted}')"
            )
            .arrow()
            .read_all()
        )
    except duckdb.Error as error:
        raise DatasetError(f"cannot read labels {path}: {error}") from error
    finally:
        con.close()


def feature_refs(input_features: Sequence[str], views: Sequence[FeatureView]) -> list[FeatureRef]:
    """`entity.feature[:type]` references, in model input order, resolved to their views."""
    refs = []
    for text in input_features:
        name = text.split(":", 1)[0]
        entity, feature = name.split(".", 1)
        matches = [v for v in views if v.entity == entity and feature in v.feature_names]
        if len(matches) != 1:
            raise DatasetError(f"{name} is defined by {len(matches)} FeatureManifests, expected 1")
        refs.append(FeatureRef(matches[0], feature))
    return refs


def build(
    labels: pa.Table, spec: LabelSpec, refs: Sequence[FeatureRef], offline: OfflineStore
) -> TrainingSet:
    if spec.join_key not in labels.column_names:
        raise DatasetError(f"labels have no column {spec.join_key!r} (the entity's join key)")
    for column in (spec.timestamp_column, spec.target):
        if column not in labels.column_names:
            raise DatasetError(f"labels have no column {column!r}")
    return offline.training_set(labels, spec, refs)


def split_by_time(
    table: pa.Table, timestamp_column: str, test_fraction: float = 0.2
) -> tuple[pa.Table, pa.Table]:
    """Train on the earlier labels, evaluate on the last `test_fraction` of label times."""
    order = pc.sort_indices(table, sort_keys=[(timestamp_column, "ascending")])
    ordered = table.take(order)
    cut = round(ordered.num_rows * (1 - test_fraction))
    return ordered.slice(0, cut), ordered.slice(cut)
