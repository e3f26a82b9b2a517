"""The embedded offline store: one DuckDB database file.

One table per feature view (`view.table`): `entity_key` (VARCHAR or BIGINT), `event_time`
(TIMESTAMPTZ), one column per row-level feature (`T[]` for `list<T>`) and per partial
aggregate of an aggregation (`FeatureView.history_columns`), and a primary key on
(entity_key, event_time) that makes re-writes replace rows instead of adding them.

A database file rather than Parquet files: the primary key gives idempotent writes and
late data for free (`INSERT OR REPLACE`), where Parquet would need a rewrite of every
file an incoming key falls into. Parquet stays one `COPY ... TO` away for export.

Every call opens the file and closes it again. DuckDB lets one process at a time open a
file for writing, and the embedded platform runs pipelines and trainings as separate
processes: holding the file for the store's lifetime would lock the others out.

Training sets are built by one SQL statement: the labels (an Arrow table, scanned in
place) `ASOF LEFT JOIN` each view's history on the entity key and
`event_time <= label time`, which picks the latest row at or before the label; a value
whose row is older than the view's TTL is nulled. Aggregations are computed at each
label's time from the history's partial aggregates (`features/windows.py`). Session
time zone is UTC, so timestamps come back as `timestamp[us, tz=UTC]`, as from BigQuery.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from lykeion.features.compile import sql_type as compiled_type
from lykeion.features.view import EVENT_TIME, KEY, FeatureView
from lykeion.features.windows import (
    BUCKETS_FROM,
    QUERY,
    limb_columns,
    longest_window,
    stored_limbs,
    window_values_join_sql,
)
from lykeion.stores.offline.base import LabelSpec, ResolvedFeature, TrainingSet
from lykeion.stores.offline.tables import (
    POSITION,
    ROW,
    TrainingPlan,
    conform_history,
    empty_history,
    finish,
    history_schema,
    micros,
    plan_training_set,
    with_positions,
)

_INCOMING = "__lykeion_incoming"
LABELS_RELATION = "__lykeion_labels"
"""The name under which a training set's statement reads its labels."""


def sql_type(type_: str) -> str:
    return compiled_type(type_, "duckdb")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def training_sql(
    plan: TrainingPlan,
    columns: dict[str, set[str]],
    spans: dict[str, timedelta] | None = None,
) -> str:
    """The point-in-time join. `columns` holds the stored columns of each history table
    that exists: a view never written, or a feature added since the last write, gives
    nulls rather than an error. `spans`: each history table's time span (newest minus
    oldest event); the windows' range join is bucketed for a table spanning more than
    `windows.BUCKETS_FROM` longest windows (all are when not given).

    Row-level features: an ASOF join picks the latest history row at or before the
    label's time, nulled past the TTL. Aggregations: `windows.window_values_join_sql` at
    the label's time over the same history (DuckDB's plan of `window_values_sql`: a
    bucketed range join measured faster than the window over the union), nulled for a
    key the ASOF join finds no row of."""
    spec = plan.spec
    ts = f"l.{quote(spec.timestamp_column)}"
    select = [f"l.{quote(c)}" for c in plan.label_columns]
    ctes = []
    joins = []
    for index, join in enumerate(plan.joins):
        stored = columns.get(join.view.table)
        if stored is None:
            continue
        alias = f"v{index}"
        present = [f.name for f in join.features if f.aggregation is None and f.name in stored]
        windowed = [f for f in join.features if f.aggregation is not None]
        if present or windowed:
            # The latest row at or before the label: row-level values, and whether the
            # key is known at all (windowed values of an unknown key are null).
            fields = ", ".join(quote(c) for c in [KEY, EVENT_TIME, *present])
            joins.append(
                f"ASOF LEFT JOIN (SELECT {fields} FROM {quote(join.view.table)}) AS {alias}\n"
                f"  ON {alias}.{KEY} = l.{quote(join.key_column)} AND {alias}.{EVENT_TIME} <= {ts}"
            )
        if windowed:
            queries = (
                f"(SELECT {quote(join.key_column)} AS __k, {quote(spec.timestamp_column)} AS __t,"
                f" {ROW} AS {QUERY} FROM {LABELS_RELATION})"
            )
            span = (spans or {}).get(join.view.table)
            bucketed = span is None or span > BUCKETS_FROM * longest_window(windowed)
            values = window_values_join_sql(
                windowed, quote(join.view.table), queries, stored, bucketed=bucketed
            )
            ctes.append(f"w{index} AS ({values})")
            joins.append(f"LEFT JOIN w{index} ON w{index}.{QUERY} = l.{ROW}")
    for output in plan.outputs:
        join = plan.joins[output.join]
        stored = columns.get(join.view.table, set())
        name = quote(output.feature.name)
        if join.view.table in columns and output.feature.aggregation is not None:
            value = (
                f"CASE WHEN v{output.join}.{EVENT_TIME} IS NOT NULL THEN w{output.join}.{name} END"
            )
        elif output.feature.name in stored:
            # The ASOF match is the latest row at or before the label; past the TTL it
            # is too old to have been served, so the feature is null.
            alias = f"v{output.join}"
            value = (
                f"CASE WHEN {alias}.{EVENT_TIME} >= {ts} - to_microseconds({micros(join.view.ttl)})"
                f" THEN {alias}.{name} END"
            )
        else:
            value = f"CAST(NULL AS {sql_type(output.feature.type)})"
        select.append(f"{value} AS {quote(output.column)}")
    with_clause = "WITH " + ",\n".join(ctes) + "\n" if ctes else ""
    return (
        f"{with_clause}SELECT {', '.join(select)}\nFROM {LABELS_RELATION} AS l\n"
        + "".join(f"{j}\n" for j in joins)
        + f"ORDER BY l.{ROW}"
    )


LOCK_WAIT_SECONDS = 120.0
"""How long a call waits for another process's hold on the file (a pipeline run writing,
a training reading) before it fails."""


class DuckDBOfflineStore:
    def __init__(self, path: str | Path, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        self.path = Path(path)
        self.lock_wait_seconds = lock_wait_seconds

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """A connection to the file. DuckDB lets one process at a time hold it, and every
        call here holds it only for that call, so a conflicting lock is waited out (with
        backoff, up to `lock_wait_seconds`) instead of failing the run or training; past
        that the IOException is raised as is."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_wait_seconds
        pause = 0.02
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 1.0)
        con.execute("SET TimeZone = 'UTC'")
        return con

    @staticmethod
    def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str] | None:
        """Stored column name -> SQL type, or None when the table does not exist."""
        # DESCRIBE answers in under a millisecond where information_schema takes ~15 ms.
        try:
            rows = con.execute(f"DESCRIBE {quote(table)}").fetchall()
        except duckdb.CatalogException:
            return None
        return {str(row[0]): str(row[1]) for row in rows}

    def _ensure_table(
        self, con: duckdb.DuckDBPyConnection, view: FeatureView, stored: dict[str, str] | None
    ) -> None:
        limbs = stored_limbs(view.aggregations)
        wanted = {
            KEY: sql_type(view.key_type),
            EVENT_TIME: sql_type("timestamp"),
            **{name: sql_type(type_) for name, type_ in view.history_columns},
            **{name: "BIGINT" for name, _ in limbs},
        }
        if stored is None:
            columns = [
                f"{KEY} {wanted[KEY]} NOT NULL",
                f"{EVENT_TIME} {wanted[EVENT_TIME]} NOT NULL",
            ]
            columns += [f"{quote(name)} {wanted[name]}" for name in list(wanted)[2:]]
            con.execute(
                f"CREATE TABLE {quote(view.table)} ({', '.join(columns)},"
                f" PRIMARY KEY ({KEY}, {EVENT_TIME}))"
            )
            return
        computed = dict(limbs)
        partial_of = {
            limb: next(n for n, _ in f.parts() if n.endswith("_sum"))
            for f in view.aggregations
            for limb in limb_columns(f) or ()
        }
        for name, type_ in wanted.items():
            if name not in stored:
                con.execute(f"ALTER TABLE {quote(view.table)} ADD COLUMN {quote(name)} {type_}")
                if name in computed and partial_of[name] in stored:
                    # A table written before its limbs were stored: from its partials (a
                    # partial added in this pass is all null, and so are its limbs).
                    con.execute(f"UPDATE {quote(view.table)} SET {quote(name)} = {computed[name]}")
            elif stored[name] != type_:
                # Changing a feature's type in place would rewrite history under the
                # models trained on it; that is a new feature (or a new manifest).
                raise ValueError(
                    f"{view.table}.{name} is stored as {stored[name]}, the view says {type_}"
                )

    def write_history(self, view: FeatureView, table: pa.Table) -> int:
        incoming = with_positions(conform_history(view, table), POSITION)
        names = ", ".join(quote(n) for n in history_schema(view).names)
        with self._connect() as con:
            # Read before the transaction: a failed DESCRIBE would abort it. The file lock
            # keeps other writers out meanwhile.
            stored = self._columns(con, view.table)
            con.begin()
            self._ensure_table(con, view, stored)
            con.register(_INCOMING, incoming)
            # A batch may repeat a (key, time): its last row wins, as a later write would.
            limbs = stored_limbs(view.aggregations)
            into = ", ".join([names, *(quote(name) for name, _ in limbs)])
            values = ", ".join([names, *(expression for _, expression in limbs)])
            con.execute(
                f"INSERT OR REPLACE INTO {quote(view.table)} ({into})"
                f" SELECT {values} FROM {_INCOMING}"
                f" QUALIFY row_number() OVER"
                f" (PARTITION BY {KEY}, {EVENT_TIME} ORDER BY {POSITION} DESC) = 1"
            ).fetchall()
            con.unregister(_INCOMING)
            con.commit()
        return table.num_rows

    def history(self, view: FeatureView) -> pa.Table:
        schema = history_schema(view)
        with self._connect() as con:
            stored = self._columns(con, view.table)
            if stored is None:
                return empty_history(view)
            select = [
                quote(name)
                if name in stored
                else f"CAST(NULL AS {sql_type(type_)}) AS {quote(name)}"
                for name, type_ in view.history_columns
            ]
            result = con.sql(
                f"SELECT {', '.join([KEY, EVENT_TIME, *select])} FROM {quote(view.table)}"
                f" ORDER BY {KEY}, {EVENT_TIME}"
            ).to_arrow_table()
        return result.cast(schema)

    def count_history(self, view: FeatureView, until: datetime) -> int:
        with self._connect() as con:
            if self._columns(con, view.table) is None:
                return 0
            row = con.execute(
                f"SELECT count(*) FROM {quote(view.table)} WHERE {EVENT_TIME} <= ?", [until]
            ).fetchone()
        return int(row[0]) if row else 0

    def drop(self, view: FeatureView) -> None:
        with self._connect() as con:
            con.execute(f"DROP TABLE IF EXISTS {quote(view.table)}")

    def training_set(
        self, labels: pa.Table, spec: LabelSpec, features: Sequence[ResolvedFeature]
    ) -> TrainingSet:
        plan = plan_training_set(labels, spec, features)
        with self._connect() as con:
            statement = self._training_statement(con, plan)
            con.register(LABELS_RELATION, plan.labels)
            result = con.sql(statement).to_arrow_table()
            con.unregister(LABELS_RELATION)
        return finish(plan, result)

    def training_statement(
        self, labels: pa.Table, spec: LabelSpec, features: Sequence[ResolvedFeature]
    ) -> tuple[pa.Table, str]:
        """The statement `training_set` runs for these arguments, and the labels it reads
        as `LABELS_RELATION` (the label rows with their row number): for timing the
        statement alone (benchmarks/features.py)."""
        plan = plan_training_set(labels, spec, features)
        with self._connect() as con:
            return plan.labels, self._training_statement(con, plan)

    def _training_statement(self, con: duckdb.DuckDBPyConnection, plan: TrainingPlan) -> str:
        columns: dict[str, set[str]] = {}
        spans: dict[str, timedelta] = {}
        for join in plan.joins:
            stored = self._columns(con, join.view.table)
            if stored is not None:
                columns[join.view.table] = set(stored)
            if stored is not None and any(f.aggregation for f in join.features):
                ((span,),) = con.execute(
                    f"SELECT max({EVENT_TIME}) - min({EVENT_TIME}) FROM {quote(join.view.table)}"
                ).fetchall()
                if span is not None:
                    spans[join.view.table] = span
        return training_sql(plan, columns, spans)

    def close(self) -> None:
        """Nothing to release: connections live for one call."""
