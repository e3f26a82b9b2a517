"""The production offline store: one BigQuery table per feature view in one dataset.

Table `view.table`: `entity_key` (STRING or INT64, REQUIRED), `event_time` (TIMESTAMP,
REQUIRED), one column per feature. A `list<T>` feature is stored as
`STRUCT<elements ARRAY<T>>`: BigQuery stores a NULL array as an empty one and returns
NULL arrays as empty ones, so a bare ARRAY column could not give back a null list; a
null STRUCT can.

Writes are idempotent on (entity_key, event_time): rows go to a staging table, then one
MERGE replaces matching rows and inserts the others. Staging uses `insert_rows_json`
(the streaming API), not a load job: the BigQuery emulator the tests run against rejects
the upload the client library sends for `load_table_from_json`/`_file`/`_dataframe`
(its media part is typed `*/*`). Rows in the streaming buffer can be read by queries,
which is all the MERGE does with them. Staging tables expire after an hour, so a crash
leaves nothing behind for long.

Training sets are built in BigQuery, which has no ASOF join: each view's history is
joined to the labels on the key and `label time - TTL <= event_time <= label time`, and
`QUALIFY ROW_NUMBER() = 1` over the label row, latest event time first, keeps the row the
ASOF join would pick; a label with no row in that window gets nulls from the LEFT JOIN.
Aggregations are computed at each label's time by the SQL the DuckDB store runs
(`features/windows.py`), in BigQuery's dialect.
Bounding the join by the TTL also keeps it from pairing a label with all its entity's
history. (`entity_key, event_time` is unique, so the pick is deterministic.) Each
QUALIFY has a `WHERE TRUE` beside it: BigQuery has refused QUALIFY without WHERE,
GROUP BY or HAVING.

Which columns a history table has is read from a dry run of `SELECT *`, which is free
and reports the table as stored (the emulator's table metadata misses columns added by
`ALTER TABLE`). Columns a view gains are added with `ALTER TABLE ADD COLUMN`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from lykeion.features.compile import sql_type as compiled_type
from lykeion.features.view import EVENT_TIME, KEY, FeatureView, element_type, is_list
from lykeion.features.windows import QUERY, window_values_sql
from lykeion.stores.offline.base import LabelSpec, ResolvedFeature, TrainingSet
from lykeion.stores.offline.tables import (
    POSITION,
    ROW,
    TIMESTAMP,
    TrainingPlan,
    conform_history,
    empty_history,
    finish,
    history_schema,
    micros,
    plan_training_set,
    with_positions,
)

# Dry runs report legacy type names.
_LEGACY = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
_ELEMENTS = "elements"
_STAGING_TTL = timedelta(hours=1)
# insertAll requests are limited to 10 MB and 50,000 rows; Google recommends 500.
_INSERT_BATCH = 500


def sql_type(type_: str) -> str:
    if is_list(type_):
        # Stored wrapped: a STRUCT can hold a null list, a bare ARRAY column cannot.
        return f"STRUCT<{_ELEMENTS} {compiled_type(type_, 'bigquery')}>"
    return compiled_type(type_, "bigquery")


def _signature(field: bigquery.SchemaField) -> str:
    """A schema field as a SQL type, to compare stored columns with wanted ones."""
    base = _LEGACY.get(field.field_type, field.field_type)
    if base in ("RECORD", "STRUCT"):
        inner = ", ".join(f"{f.name} {_signature(f)}" for f in field.fields)
        base = f"STRUCT<{inner}>"
    return f"ARRAY<{base}>" if field.mode == "REPEATED" else base


def _label_field(field: pa.Field) -> bigquery.SchemaField:
    """A normalized label column (see `tables.plan_training_set`) as a staging field."""
    types = {pa.int64(): "INT64", pa.float64(): "FLOAT64", pa.string(): "STRING"}
    types |= {pa.bool_(): "BOOL", TIMESTAMP: "TIMESTAMP"}
    return bigquery.SchemaField(field.name, types[field.type])


def _schema_field(name: str, type_: str, *, required: bool = False) -> bigquery.SchemaField:
    """A column of a manifest type; see the module docstring for lists."""
    if is_list(type_):
        inner = bigquery.SchemaField(_ELEMENTS, sql_type(element_type(type_)), mode="REPEATED")
        return bigquery.SchemaField(name, "RECORD", mode="NULLABLE", fields=[inner])
    return bigquery.SchemaField(name, sql_type(type_), mode="REQUIRED" if required else "NULLABLE")


def _json_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """One column as insertAll JSON values: timestamps as RFC 3339 text, non-finite
    floats as the strings BigQuery accepts, lists wrapped like the stored STRUCT."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    type_ = array.type
    if pa.types.is_timestamp(type_):
        return pc.strftime(array, format="%Y-%m-%dT%H:%M:%SZ").to_pylist()
    if pa.types.is_floating(type_):
        return [_json_float(v) for v in array.to_pylist()]
    if pa.types.is_list(type_):
        values = iter(_json_values(array.flatten()))
        return [
            None if n is None else {_ELEMENTS: [next(values) for _ in range(n)]}
            for n in pc.list_value_length(array).to_pylist()
        ]
    return array.to_pylist()


def _json_float(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    columns = [_json_values(table.column(name)) for name in table.column_names]
    return [dict(zip(table.column_names, row, strict=True)) for row in zip(*columns, strict=True)]


def _unwrap_lists(table: pa.Table) -> pa.Table:
    """Stored `STRUCT<elements ARRAY<T>>` columns back to Arrow lists, null kept."""
    for index, field in enumerate(table.schema):
        if pa.types.is_struct(field.type) and field.type.names == [_ELEMENTS]:
            unwrapped = pc.struct_field(table.column(index), [0])
            table = table.set_column(index, field.name, unwrapped)
    return table


def _history_fields(view: FeatureView) -> list[bigquery.SchemaField]:
    return [
        _schema_field(KEY, view.key_type, required=True),
        _schema_field(EVENT_TIME, "timestamp", required=True),
        *(_schema_field(name, type_) for name, type_ in view.history_columns),
    ]


class BigQueryOfflineStore:
    def __init__(
        self,
        project: str,
        dataset: str,
        client: bigquery.Client | None = None,
        *,
        location: str | None = None,
    ) -> None:
        self.project = project
        self.dataset = dataset
        self.location = location
        self.client = client or bigquery.Client(project=project, location=location)
        self._owns_client = client is None
        self._dataset_ready = False

    def _id(self, table: str) -> str:
        return f"{self.project}.{self.dataset}.{table}"

    def _ref(self, table: str) -> str:
        return f"`{self._id(table)}`"

    def _ensure_dataset(self) -> None:
        if not self._dataset_ready:
            dataset = bigquery.Dataset(f"{self.project}.{self.dataset}")
            if self.location:
                dataset.location = self.location
            self.client.create_dataset(dataset, exists_ok=True)
            self._dataset_ready = True

    def _query(self, sql: str) -> bigquery.table.RowIterator:
        return self.client.query(sql, location=self.location).result()

    def _arrow(self, sql: str) -> pa.Table:
        # No BigQuery Storage client: it would bypass the endpoint the client is
        # configured with (an emulator's), and training sets are read once.
        return _unwrap_lists(self._query(sql).to_arrow(create_bqstorage_client=False))

    def _stored_columns(self, table: str) -> dict[str, str] | None:
        """Column name -> SQL type as stored, or None when the table does not exist."""
        config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
        try:
            job = self.client.query(
                f"SELECT * FROM {self._ref(table)}", job_config=config, location=self.location
            )
        except NotFound:
            return None
        return {f.name: _signature(f) for f in job.schema or []}

    def _ensure_table(self, view: FeatureView) -> None:
        wanted = {
            KEY: sql_type(view.key_type),
            EVENT_TIME: sql_type("timestamp"),
            **{name: sql_type(type_) for name, type_ in view.history_columns},
        }
        stored = self._stored_columns(view.table)
        if stored is None:
            table = bigquery.Table(self._id(view.table), _history_fields(view))
            self.client.create_table(table, exists_ok=True)
            return
        missing = [name for name in wanted if name not in stored]
        for name, sql in wanted.items():
            if name in stored and stored[name] != sql:
                raise ValueError(
                    f"{view.table}.{name} is stored as {stored[name]}, the view says {sql}"
                )
        if missing:
            additions = ", ".join(f"ADD COLUMN IF NOT EXISTS `{n}` {wanted[n]}" for n in missing)
            self._query(f"ALTER TABLE {self._ref(view.table)} {additions}")

    def _staging(self, base: str, schema: list[bigquery.SchemaField], table: pa.Table) -> str:
        """A fresh staging table holding `table`; the caller deletes it."""
        name = f"_staging_{base}_{uuid.uuid4().hex[:12]}"
        staging = bigquery.Table(self._id(name), schema)
        staging.expires = datetime.now(UTC) + _STAGING_TTL
        created = self.client.create_table(staging)
        for batch in _batches(_json_rows(table), _INSERT_BATCH):
            errors = self.client.insert_rows_json(created, batch)
            if errors:
                raise RuntimeError(f"staging rows into {name} failed: {errors[:3]}")
        return name

    def write_history(self, view: FeatureView, table: pa.Table) -> int:
        incoming = with_positions(conform_history(view, table), POSITION)
        self._ensure_dataset()
        self._ensure_table(view)
        if incoming.num_rows == 0:
            return 0
        schema = [*_history_fields(view), bigquery.SchemaField(POSITION, "INT64")]
        staging = self._staging(view.table, schema, incoming)
        try:
            self._query(merge_sql(self._ref(view.table), self._ref(staging), view))
        finally:
            self.client.delete_table(self._id(staging), not_found_ok=True)
        return table.num_rows

    def history(self, view: FeatureView) -> pa.Table:
        stored = self._stored_columns(view.table)
        if stored is None:
            return empty_history(view)
        select = [
            f"`{name}`" if name in stored else f"CAST(NULL AS {sql_type(type_)}) AS `{name}`"
            for name, type_ in view.history_columns
        ]
        result = self._arrow(
            f"SELECT {', '.join([KEY, EVENT_TIME, *select])} FROM {self._ref(view.table)}"
            f" ORDER BY {KEY}, {EVENT_TIME}"
        )
        return result.cast(history_schema(view))

    def count_history(self, view: FeatureView, until: datetime) -> int:
        if self._stored_columns(view.table) is None:
            return 0
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("until", "TIMESTAMP", until)]
        )
        rows = self.client.query(
            f"SELECT COUNT(*) AS n FROM {self._ref(view.table)} WHERE {EVENT_TIME} <= @until",
            job_config=config,
            location=self.location,
        ).result()
        return int(next(iter(rows))["n"])

    def drop(self, view: FeatureView) -> None:
        self.client.delete_table(self._id(view.table), not_found_ok=True)

    def training_set(
        self, labels: pa.Table, spec: LabelSpec, features: Sequence[ResolvedFeature]
    ) -> TrainingSet:
        plan = plan_training_set(labels, spec, features)
        self._ensure_dataset()
        columns: dict[str, set[str]] = {}
        for join in plan.joins:
            stored = self._stored_columns(join.view.table)
            if stored is not None:
                columns[join.view.table] = set(stored)
        schema = [_label_field(f) for f in plan.labels.schema]
        staging = self._staging("labels", schema, plan.labels)
        try:
            result = self._arrow(training_sql(plan, columns, self._ref, self._ref(staging)))
        finally:
            self.client.delete_table(self._id(staging), not_found_ok=True)
        return finish(plan, result)

    def close(self) -> None:
        """Closes the client if the store made it; a client passed in is the caller's."""
        if self._owns_client:
            self.client.close()


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def merge_sql(target: str, staging: str, view: FeatureView) -> str:
    """Replace rows with a matching (key, time), insert the others; among staged
    duplicates of a (key, time) the last one wins, as a later write would."""
    columns = [name for name, _ in view.history_columns]
    names = [KEY, EVENT_TIME, *columns]
    update = ", ".join(f"`{n}` = S.`{n}`" for n in columns)
    matched = f"WHEN MATCHED THEN UPDATE SET {update}\n" if update else ""
    return (
        f"MERGE {target} AS T\n"
        f"USING (SELECT * EXCEPT ({POSITION}) FROM {staging} WHERE TRUE\n"
        f"  QUALIFY ROW_NUMBER() OVER"
        f" (PARTITION BY {KEY}, {EVENT_TIME} ORDER BY {POSITION} DESC) = 1) AS S\n"
        f"ON T.{KEY} = S.{KEY} AND T.{EVENT_TIME} = S.{EVENT_TIME}\n"
        f"{matched}"
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(f'`{n}`' for n in names)})"
        f" VALUES ({', '.join(f'S.`{n}`' for n in names)})"
    )


def training_sql(
    plan: TrainingPlan,
    columns: dict[str, set[str]],
    ref: Callable[[str], str],
    labels: str,
) -> str:
    """The point-in-time join; `ref` turns a history table name into a table reference.
    A view never written, or a feature added since the last write, gives nulls.
    Aggregations come from `windows.window_values_sql` at each label's time."""
    spec = plan.spec
    ctes = []
    for index, join in enumerate(plan.joins):
        stored = columns.get(join.view.table)
        if stored is None:
            continue
        row_level = [f for f in join.features if f.aggregation is None]
        present = [f"h.`{f.name}`" for f in row_level if f.name in stored]
        ctes.append(
            f"v{index} AS (\n"
            f"  SELECT l.{ROW}, {', '.join(present) or 'NULL AS __none'}\n"
            f"  FROM {labels} AS l\n"
            f"  JOIN {ref(join.view.table)} AS h\n"
            f"    ON h.{KEY} = l.`{join.key_column}`\n"
            f"   AND h.{EVENT_TIME} <= l.`{spec.timestamp_column}`\n"
            f"   AND h.{EVENT_TIME} >= TIMESTAMP_SUB(l.`{spec.timestamp_column}`,"
            f" INTERVAL {micros(join.view.ttl)} MICROSECOND)\n"
            f"  WHERE TRUE\n"
            f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY l.{ROW} ORDER BY h.{EVENT_TIME} DESC) = 1\n"
            f")"
        )
        windowed = [f for f in join.features if f.aggregation is not None]
        if windowed:
            queries = (
                f"(SELECT `{join.key_column}` AS __k, `{spec.timestamp_column}` AS __t,"
                f" {ROW} AS {QUERY} FROM {labels})"
            )
            values = window_values_sql(windowed, "bigquery", ref(join.view.table), queries, stored)
            ctes.append(f"w{index} AS ({values})")
    select = [f"l.`{c}`" for c in plan.label_columns]
    joined = []
    for index, join in enumerate(plan.joins):
        if join.view.table in columns:
            joined.append(f"LEFT JOIN v{index} ON v{index}.{ROW} = l.{ROW}")
            if any(f.aggregation is not None for f in join.features):
                joined.append(f"LEFT JOIN w{index} ON w{index}.{QUERY} = l.{ROW}")
    for output in plan.outputs:
        join = plan.joins[output.join]
        name = output.feature.name
        if join.view.table in columns and output.feature.aggregation is not None:
            value = f"w{output.join}.`{name}`"
        elif name in columns.get(join.view.table, set()):
            value = f"v{output.join}.`{name}`"
        else:
            value = f"CAST(NULL AS {sql_type(output.feature.type)})"
        select.append(f"{value} AS `{output.column}`")
    with_clause = "WITH " + ",\n".join(ctes) + "\n" if ctes else ""
    return (
        f"{with_clause}SELECT {', '.join(select)}\nFROM {labels} AS l\n"
        + "".join(f"{j}\n" for j in joined)
        + f"ORDER BY l.{ROW}"
    )
