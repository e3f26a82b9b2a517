"""Reading a Model's labels from where its contract says: a file or BigQuery.

Either way the result is an Arrow table whose timestamp column is UTC timestamps, so the
point-in-time join (`training/dataset.py`) and the model server's live metric
(`serving/outcomes.py`) see one shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from lykeion.api.featuremanifest import BigQuerySource, FileSource
from lykeion.api.model import LabelsSource

if TYPE_CHECKING:
    from google.cloud import bigquery


class DatasetError(Exception):
    """Labels (or, in training, a training set) that cannot be read or built; the message
    says which and why."""


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


def bigquery_sql(source: BigQuerySource) -> str:
    """The Standard SQL reading `source`: its query, or every column of its table (pure)."""
    if source.query is not None:
        return source.query
    return f"SELECT * FROM `{source.table}`"


def bigquery_project(source: BigQuerySource, offline_store: str) -> str:
    """The project BigQuery labels are read (and billed) in: the BigQuery offline store's,
    else the labels table's. Raises DatasetError for a query without either (pure)."""
    if offline_store.startswith("bigquery://"):
        return offline_store.removeprefix("bigquery://").split("/", 1)[0]
    if source.table is not None:
        return source.table.split(".", 1)[0]
    raise DatasetError(
        "BigQuery labels given as a query need a BigQuery project: use a bigquery:// "
        "offline store, or name a table `project.dataset.table`"
    )


def utc_timestamps(table: pa.Table, column: str) -> pa.Table:
    """`table` with `column` as UTC timestamps; a TIMESTAMP stays, a DATETIME (no zone) is
    taken as UTC. Raises DatasetError when the column is missing or not a time (pure)."""
    if column not in table.column_names:
        raise DatasetError(f"labels have no column {column!r}")
    values = table[column]
    if not pa.types.is_timestamp(values.type):
        raise DatasetError(f"labels column {column!r} is {values.type}, not a TIMESTAMP")
    if values.type.tz is None:
        values = pc.assume_timezone(values, "UTC")
    values = values.cast(pa.timestamp("us", tz="UTC"))
    return table.set_column(table.column_names.index(column), column, values)


def read_bigquery_labels(
    source: BigQuerySource, timestamp_column: str, client: bigquery.Client
) -> pa.Table:
    """Labels from BigQuery as Arrow (see `utc_timestamps`); DatasetError on a failed query."""
    from google.api_core.exceptions import GoogleAPIError

    try:
        # No BigQuery Storage client: it would bypass the endpoint the client is set up with.
        table = client.query(bigquery_sql(source)).result().to_arrow(create_bqstorage_client=False)
    except GoogleAPIError as error:
        raise DatasetError(f"cannot read labels from BigQuery: {error}") from error
    return utc_timestamps(table, timestamp_column)


def typed_keys(table: pa.Table, keys: Mapping[str, str]) -> pa.Table:
    """`table` with each key column in `keys` (column -> declared `keyType`) cast to that
    type; DatasetError naming the column when a value does not cast (pure)."""
    arrow = {"string": pa.string(), "int64": pa.int64()}
    for column, key_type in keys.items():
        if column not in table.column_names:
            continue
        try:
            values = table[column].cast(arrow[key_type])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise DatasetError(
                f"labels column {column!r} is not a {key_type} key: {error}"
            ) from None
        table = table.set_column(table.column_names.index(column), column, values)
    return table


def read(
    labels: LabelsSource,
    data_root: Path,
    offline_store: str,
    keys: Mapping[str, str] | None = None,
) -> pa.Table:
    """The labels `labels` names, each entity key column in `keys` (column -> declared
    `keyType`) as that type; a BigQuery client is made for the project that
    `bigquery_project` picks (Application Default Credentials; BIGQUERY_EMULATOR_HOST)."""
    if labels.file is not None:
        return read_labels(labels.file, labels.timestamp_column, data_root, keys)
    assert labels.bigquery is not None  # one of the two, by the model's validator
    from google.auth.exceptions import GoogleAuthError
    from google.cloud import bigquery

    project = bigquery_project(labels.bigquery, offline_store)
    try:
        client = bigquery.Client(project=project)
    except GoogleAuthError as error:
        raise DatasetError(f"no credentials for BigQuery project {project}: {error}") from error
    try:
        table = read_bigquery_labels(labels.bigquery, labels.timestamp_column, client)
    finally:
        client.close()
    return typed_keys(table, keys or {})
