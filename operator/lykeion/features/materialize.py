"""One materialization run: history to the offline store, latest values to the online store.

Two engines share every step that decides *what* is written (the compiled SQL, the error
split, the latest-row rule): `duckdb` does the whole run in-process on Arrow tables (the
fast embedded path), `beam` (pipeline.py) carries the same rows through an Apache Beam
pipeline (DirectRunner here; Flink or Dataflow at scale). A differential test holds both
to identical stores.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import ERROR, Range, history_sql
from lykeion.features.view import EVENT_TIME, KEY, FeatureView

if TYPE_CHECKING:
    import pyarrow as pa

    from lykeion.features.offline.base import OfflineStore
    from lykeion.features.online.base import OnlineStore

MAX_ERROR_EXAMPLES = 5
POSITION = "__position"


@dataclass
class RunResult:
    """What a run did; written as result.json for the operator to copy into status."""

    range_start: str | None
    range_end: str | None
    rows_read: int = 0
    rows_written: int = 0
    bad_rows: int = 0
    online_rows: int = 0
    duration_seconds: float = 0.0
    succeeded: bool = False
    message: str = ""
    errors: list[str] = field(default_factory=list)
    max_event_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def query_history(spec: FeatureManifestSpec, run_range: Range, data_root: str | None) -> pa.Table:
    """Run the compiled SQL in DuckDB (in memory) and return every row, bad ones included."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        return con.sql(history_sql(spec, "duckdb", run_range, data_root)).arrow().read_all()
    finally:
        con.close()


def split_errors(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows to write without the `_error` column, rows that carry an error)."""
    import pyarrow.compute as pc

    bad_mask = pc.is_valid(table[ERROR])
    good = table.filter(pc.invert(bad_mask)).drop_columns([ERROR])
    return good, table.filter(bad_mask)


def latest_table(good: pa.Table) -> pa.Table:
    """The latest row per entity, ordered by key, as columns: the row with the greatest
    event time, of several at that time the last (the SQL leaves none such; the stores'
    writes also keep the last of equals). DuckDB picks row positions, Arrow takes them."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    # Only key, time and position go through DuckDB; the values stay where they are.
    positions = good.select([KEY, EVENT_TIME]).append_column(
        POSITION, pa.array(np.arange(good.num_rows, dtype=np.int64))
    )
    con = duckdb.connect()
    try:
        con.register("good", positions)
        picked = (
            con.sql(
                f"SELECT arg_max({POSITION}, ({EVENT_TIME}, {POSITION})) AS {POSITION} "
                f"FROM good GROUP BY {KEY} ORDER BY {KEY}"
            )
            .arrow()
            .read_all()
        )
    finally:
        con.close()
    return good.take(picked.column(POSITION))


def error_examples(bad: pa.Table) -> list[str]:
    examples = bad.slice(0, MAX_ERROR_EXAMPLES).to_pylist()
    return [f"{row[KEY]!r} at {row[EVENT_TIME]}: {row[ERROR]}" for row in examples]


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def materialize_duckdb(
    spec: FeatureManifestSpec,
    view: FeatureView,
    run_range: Range,
    offline: OfflineStore,
    online: OnlineStore,
    data_root: str | None = None,
) -> RunResult:
    """The fast embedded path: SQL in DuckDB, Arrow in memory, one columnar write per
    store."""
    import pyarrow.compute as pc

    started = time.perf_counter()
    result = RunResult(iso_or_none(run_range.start), iso_or_none(run_range.end))
    table = query_history(spec, run_range, data_root)
    good, bad = split_errors(table)
    result.rows_read = table.num_rows
    result.bad_rows = bad.num_rows
    result.errors = error_examples(bad)
    result.rows_written = offline.write_history(view, good)
    result.online_rows = online.write_table(view, latest_table(good))
    if good.num_rows:
        result.max_event_time = iso_or_none(pc.max(good[EVENT_TIME]).as_py())
    result.duration_seconds = time.perf_counter() - started
    result.succeeded = True
    result.message = f"{result.rows_written} history rows, {result.online_rows} entities online"
    return result
