"""Late rows: source rows at or behind an incremental run's re-read boundary that the
stores do not hold.

An incremental run reads event times after `boundary = watermark - allowedLateness`. A row
at or before the boundary that reaches the source afterwards is never read again by an
incremental run; only a backfill brings it in. Such rows are counted, not dropped silently:

    late = (distinct valid (key, event time) of the source at or before the boundary)
         - (history rows the offline store holds at or before the boundary)

Both sides are counts pushed down to the engines (no rows travel): the source side is the
compiled history query restricted to its row-level part (windows do not decide whether a
row is valid or which of equal (key, time) rows is kept, so they are left out), the store
side one `COUNT(*)`. The offline store holds exactly one row per valid (key, time) the runs
read, so the difference is the rows no run read. It is exact while the source only grows;
rows deleted from the source after they were read offset late ones (the count is then a
lower bound, never negative) — a backfill rebuilds both from the source as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from lykeion.api.featuremanifest import Feature, FeatureManifestSpec
from lykeion.features.compile import ERROR, Range, history_sql

if TYPE_CHECKING:
    from lykeion.features.offline.base import OfflineStore
    from lykeion.features.view import FeatureView

_VALID_MARK = "lykeion_row"


def row_level(spec: FeatureManifestSpec) -> FeatureManifestSpec:
    """`spec` without its aggregations (they never make a row invalid); a manifest of
    aggregations alone keeps one constant feature, so the query still has a column."""
    kept = [f for f in spec.features if f.aggregation is None]
    if not kept:
        kept = [Feature(name=_VALID_MARK, type="bool", expression="TRUE")]
    return spec.model_copy(update={"features": kept})


def source_rows_sql(spec: FeatureManifestSpec, boundary: datetime, data_root: str | None) -> str:
    """DuckDB SQL counting the distinct valid (key, event time) of the source at or before
    `boundary`: one row, one column `n`."""
    history = history_sql(row_level(spec), "duckdb", Range(None, boundary), data_root)
    return f"SELECT COUNT(*) AS n FROM ({history}) AS h WHERE h.{ERROR} IS NULL"


def count_late_rows(
    spec: FeatureManifestSpec,
    view: FeatureView,
    boundary: datetime,
    offline: OfflineStore,
    data_root: str | None,
) -> int | None:
    """Source rows at or before `boundary` the offline store does not hold (see the module
    docstring), or None when the source is not one DuckDB reads (a BigQuery source)."""
    if spec.source.file is None:
        return None
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        row = con.execute(source_rows_sql(spec, boundary, data_root)).fetchone()
    finally:
        con.close()
    in_source = int(row[0]) if row else 0
    return max(0, in_source - offline.count_history(view, boundary))
