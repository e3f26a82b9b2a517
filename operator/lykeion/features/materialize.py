"""One materialization run: history to the offline store, latest values to the online store.

Two engines share every step that decides *what* is written (the compiled SQL, the error
split, the online rows and their steps): `duckdb` does the whole run in-process on Arrow tables (the
fast embedded path), `beam` (pipeline.py) carries the same rows through an Apache Beam
pipeline (DirectRunner here; Flink or Dataflow at scale). A differential test holds both
to identical stores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import pairwise
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import ERROR, ROWS, Range, history_sql
from lykeion.features.view import EVENT_TIME, KEY, FeatureView
from lykeion.features.windows import STEP, online_sql
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.codec import from_micros

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from lykeion.stores.offline.base import OfflineStore
    from lykeion.stores.online.base import OnlineStore

MAX_ERROR_EXAMPLES = 5


@dataclass
class RunResult:
    """What a run did; written as result.json for the operator to copy into status."""

    range_start: str | None
    range_end: str | None
    rows_read: int = 0
    rows_written: int = 0
    bad_rows: int = 0
    duplicate_rows: int = 0
    """Valid source rows at a key and time another valid row already has (all count in
    aggregations; one gives the row-level values)."""
    online_rows: int = 0
    duration_seconds: float = 0.0
    succeeded: bool = False
    message: str = ""
    errors: list[str] = field(default_factory=list)
    max_event_time: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def query_history(spec: FeatureManifestSpec, run_range: Range, data_root: str | None) -> pa.Table:
    """Run the compiled SQL in DuckDB (in memory) and return every row of the range, bad
    ones included."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        return con.sql(history_sql(spec, "duckdb", run_range, data_root)).arrow().read_all()
    finally:
        con.close()


def query_run(
    spec: FeatureManifestSpec, view: FeatureView, run_range: Range, data_root: str | None
) -> tuple[pa.Table, pa.Table]:
    """Run the compiled SQL in DuckDB (in memory): (the range's history rows, invalid ones
    included, as `history_sql` yields them; the online rows of the keys with an event in
    the range, as `windows.online_sql` yields them). The source is read once, with the
    longest window before the range start, which the online rows' windows need."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        query = history_sql(spec, "duckdb", run_range, data_root, with_lookback=True)
        con.execute(f"CREATE TEMP TABLE __read AS {query}")
        in_range = f"WHERE {EVENT_TIME} > {_literal(run_range.start)}" if run_range.start else ""
        history = con.sql(f"SELECT * FROM __read {in_range} ORDER BY {KEY}, {EVENT_TIME}")
        history_table = history.arrow().read_all()
        con.execute(
            f"CREATE TEMP VIEW __valid AS SELECT * EXCLUDE ({ERROR}, {ROWS}) FROM __read"
            f" WHERE {ERROR} IS NULL"
        )
        online = con.sql(online_sql(view, "duckdb", "__valid", run_range.start))
        return history_table, online.arrow().read_all()
    finally:
        con.close()


def _literal(moment: datetime | None) -> str:
    assert moment is not None
    return f"TIMESTAMPTZ '{moment.isoformat()}'"


def split_errors(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(rows to write without the `_error` and `_rows` columns, rows that carry an
    error)."""
    import pyarrow.compute as pc

    bad_mask = pc.is_valid(table[ERROR])
    good = table.filter(pc.invert(bad_mask)).drop_columns([ERROR, ROWS])
    return good, table.filter(bad_mask)


def read_counts(table: pa.Table) -> tuple[int, int]:
    """(source rows read, duplicates among them) of `history_sql`'s rows: a valid row
    stands for `_rows` source rows at its key and time, an invalid one for itself."""
    import pyarrow.compute as pc

    valid = pc.sum(table[ROWS]).as_py() or 0
    stored = table[ERROR].null_count
    bad = table.num_rows - stored
    return valid + bad, valid - stored


def online_row(view: FeatureView, rows: Sequence[dict[str, Any]]) -> OnlineRow:
    """One key's rows of `windows.online_sql` (any order) as the row the online store
    keeps: the values at the key's newest event time, then the aggregations' later steps,
    each kept only when a value changes (bit for bit: NaN equals NaN, -0.0 is not 0.0)."""
    ordered = sorted(rows, key=itemgetter(STEP))
    first = ordered[0]
    names = [f.name for f in view.aggregations]
    steps = [(row[STEP], {name: row[name] for name in names}) for row in _changes(ordered, names)]
    values = {name: first[name] for name in view.feature_names}
    return OnlineRow(first[KEY], first[EVENT_TIME], values, tuple(steps))


def _changes(ordered: Sequence[dict[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """The rows after the first whose values of `names` differ from the row before."""
    kept = []
    previous = _identity(ordered[0], names)
    for row in ordered[1:]:
        identity = _identity(row, names)
        if identity != previous:
            kept.append(row)
            previous = identity
    return kept


def _identity(row: dict[str, Any], names: Sequence[str]) -> tuple[Any, ...]:
    return tuple(v.hex() if isinstance(v, float) else v for v in map(row.__getitem__, names))


def online_rows(view: FeatureView, table: pa.Table) -> list[OnlineRow]:
    """`online_row` for each key of an `online_sql` result ordered by key and step,
    column-wise: the first row of each key and the rows whose aggregations changed are
    found by comparing each row with the one before (bit for bit, as `online_row` does);
    only those become Python values."""
    import numpy as np
    import pyarrow as pa

    if not table.num_rows:
        return []
    keys = table.column(KEY).to_pylist()
    first = np.ones(table.num_rows, dtype=bool)
    first[1:] = [a != b for a, b in zip(keys[1:], keys[:-1], strict=True)]
    changed = np.zeros(table.num_rows, dtype=bool)
    aggregations = [f.name for f in view.aggregations]
    for name in aggregations:
        changed[1:] |= _differs_from_previous(table.column(name))
    kept = np.flatnonzero(first | changed)
    picked = table.take(pa.array(kept))
    columns = {name: picked.column(name).to_pylist() for name in view.feature_names}
    for name in (EVENT_TIME, STEP):
        micros = picked.column(name).cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        columns[name] = micros.to_pylist()
    starts = [*np.flatnonzero(first[kept]).tolist(), len(kept)]
    positions = kept.tolist()
    out: list[OnlineRow] = []
    for start, end in pairwise(starts):
        values = {name: columns[name][start] for name in view.feature_names}
        steps = tuple(
            (from_micros(columns[STEP][i]), {name: columns[name][i] for name in aggregations})
            for i in range(start + 1, end)
        )
        moment = from_micros(columns[EVENT_TIME][start])
        out.append(OnlineRow(keys[positions[start]], moment, values, steps))
    return out


def _differs_from_previous(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """Row i+1 vs row i, for i in 0..n-2: null-ness or value differs; floats by bits
    (-0.0 is not 0.0) with every NaN alike."""
    import numpy as np
    import pyarrow as pa

    array = column.combine_chunks()
    valid = np.asarray(array.is_valid())
    if pa.types.is_floating(array.type):
        values = np.asarray(array.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
        bits = np.where(np.isnan(values), np.nan, values).view(np.int64)
        differs = bits[1:] != bits[:-1]
    else:
        items = array.to_pylist()
        differs = np.array([a != b for a, b in zip(items[1:], items[:-1], strict=True)], bool)
    return np.asarray(differs | (valid[1:] != valid[:-1]))


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
    table, latest = query_run(spec, view, run_range, data_root)
    good, bad = split_errors(table)
    result.rows_read, result.duplicate_rows = read_counts(table)
    result.bad_rows = bad.num_rows
    result.errors = error_examples(bad)
    result.rows_written = offline.write_history(view, good)
    result.online_rows = online.write(view, online_rows(view, latest))
    if good.num_rows:
        result.max_event_time = iso_or_none(pc.max(good[EVENT_TIME]).as_py())
    result.duration_seconds = time.perf_counter() - started
    result.succeeded = True
    result.message = f"{result.rows_written} history rows, {result.online_rows} entities online"
    return result
