"""The training set of a Model: labels joined point-in-time with its input features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from lykeion.api.featuremanifest import FileSource
from lykeion.features.offline.base import LabelSpec, OfflineStore, TrainingSet
from lykeion.features.reference import ResolvedFeature, resolve
from lykeion.features.view import FeatureView


class DatasetError(Exception):
    pass


# Declared key types -> the DuckDB type a label column is cast to.
_KEY_TYPES = {"string": "VARCHAR", "int64": "BIGINT"}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_labels(
    source: FileSource,
    timestamp_column: str,
    data_root: Path,
    keys: Mapping[str, str] | None = None,
) -> pa.Table:
    """Labels as Arrow: each entity key column in `keys` (column -> declared `keyType`,
    `string` or `int64`; columns the file lacks are skipped) as that type, and the
    timestamp column as UTC timestamps (`timestamp[us, tz=UTC]`; naive times are UTC).

    A CSV file's key and time columns are read as text and cast by the declaration, not
    by what a CSV reader guesses from the values: `007` stays the string `"007"` for a
    string key, is 7 for an int64 key. Parquet columns are cast from their stored type.
    Other columns keep the reader's types. Raises DatasetError when the file is missing
    or unreadable, or a key or time value does not cast (naming the column and value).
    """
    path = Path(source.path)
    path = path if path.is_absolute() else data_root / path
    if not path.exists():
        raise DatasetError(f"labels file {path} does not exist")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        if source.format == "parquet":
            reader = f"read_parquet({_literal(str(path))})"
        else:
            reader = f"read_csv({_literal(str(path))})"
            present = con.sql(f"SELECT * FROM {reader} LIMIT 0").columns
            text = [c for c in [*(keys or {}), timestamp_column] if c in present]
            types = ", ".join(f"{_literal(c)}: 'VARCHAR'" for c in dict.fromkeys(text))
            reader = f"read_csv({_literal(str(path))}, types = {{{types}}})"
        con.execute(f"CREATE TEMP TABLE labels AS SELECT * FROM {reader}")
        columns = con.sql("SELECT * FROM labels LIMIT 0").columns
        if timestamp_column not in columns:
            raise DatasetError(f"labels have no column {timestamp_column!r}")
        # column -> (DuckDB type, what a value must be)
        casts = {c: (_KEY_TYPES[t], f"a {t} key") for c, t in (keys or {}).items() if c in columns}
        casts[timestamp_column] = ("TIMESTAMPTZ", "a timestamp")
        for column, (type_, wanted) in casts.items():
            name = _quote(column)
            bad = con.execute(
                f"SELECT CAST({name} AS VARCHAR) FROM labels"
                f" WHERE {name} IS NOT NULL AND TRY_CAST({name} AS {type_}) IS NULL LIMIT 1"
            ).fetchone()
            if bad is not None:
                raise DatasetError(f"labels column {column}: {bad[0]!r} is not {wanted}")
        replace = ", ".join(
            f"CAST({_quote(c)} AS {t}) AS {_quote(c)}" for c, (t, _) in casts.items()
        )
        return con.sql(f"SELECT * REPLACE ({replace}) FROM labels").arrow().read_all()
    except duckdb.Error as error:
        raise DatasetError(f"cannot read labels {path}: {error}") from error
    finally:
        con.close()


def feature_refs(
    input_features: Sequence[str], views: Sequence[FeatureView]
) -> list[ResolvedFeature]:
    """`entity.feature[:type]` references, in model input order, resolved to their views
    (`features.reference.resolve`); raises DatasetError naming the unresolved one."""
    try:
        return resolve(input_features, views)
    except ValueError as error:  # UnresolvedFeature, InvalidFeatureReference
        raise DatasetError(str(error)) from error


def build(
    labels: pa.Table, spec: LabelSpec, refs: Sequence[ResolvedFeature], offline: OfflineStore
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
