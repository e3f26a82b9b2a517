"""Late rows: source rows at or behind an incremental run's re-read boundary that the
stores do not hold.

An incremental run reads event times after `boundary = watermark - allowedLateness`. A row
at or before the boundary that reaches the source afterwards is never read again by an
incremental run; only a backfill brings it in. Such rows are counted, not dropped silently:

    late = (distinct valid (key, event time) of the source at or before the boundary)
         - (history rows the offline store holds at or before the boundary)

Both sides are counts pushed down to the engines (no rows travel): the source side is the
compiled history query restricted to its row-level part (windows do not decide whether a
row is valid or which of equal (key, time) rows is kept, so they are left out) — DuckDB's
dialect for a file source, run in process; BigQuery's for a BigQuery source, run as a
query job where the source lives — the store
side one `COUNT(*)`. The offline store holds exactly one row per valid (key, time) the runs
read, so the difference is the rows no run read. It is exact while the source only grows;
rows deleted from the source after they were read offset late ones (the count is then a
lower bound, never negative) — a backfill rebuilds both from the source as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from lykeion.api.featuremanifest import Feature, FeatureManifestSpec
from lykeion.features.compile import ERROR, Dialect, Range, history_sql

if TYPE_CHECKING:
    from google.cloud import bigquery

    from lykeion.features.view import FeatureView
    from lykeion.stores.offline.base import OfflineStore

_VALID_MARK = "lykeion_row"


def row_level(spec: FeatureManifestSpec) -> FeatureManifestSpec:
    """`spec` without its aggregations (they never make a row invalid); a manifest of
    aggregations alone keeps one constant feature, so the query still has a column."""
    kept = [f for f in spec.features if f.aggregation is None]
    if not kept:
        kept = [Feature(name=_VALID_MARK, type="bool", expression="TRUE")]
    return spec.model_copy(update={"features": kept})


def source_rows_sql(
    spec: FeatureManifestSpec,
    boundary: datetime,
    data_root: str | None,
    dialect: Dialect = "duckdb",
) -> str:
    """SQL counting the distinct valid (key, event time) of the source at or before
    `boundary`: one row, one column `n`. `dialect` "bigquery" needs a BigQuery source."""
    history = history_sql(row_level(spec), dialect, Range(None, boundary), data_root)
    return f"SELECT COUNT(*) AS n FROM ({history}) AS h WHERE h.{ERROR} IS NULL"


def bigquery_project(spec: FeatureManifestSpec, beam_args: Sequence[str] = ()) -> str | None:
    """The project a BigQuery source's count runs (and is billed) in: the pipeline's
    `--project`, else the source table's project, else None (the client's default)."""
    for index, arg in enumerate(beam_args):
        if arg.startswith("--project="):
            return arg.split("=", 1)[1]
        if arg == "--project" and index + 1 < len(beam_args):
            return beam_args[index + 1]
    source = spec.source.bigquery
    if source is not None and source.table is not None:
        return source.table.split(".", 1)[0]
    return None


def _count_in_source(
    spec: FeatureManifestSpec,
    boundary: datetime,
    data_root: str | None,
    client: bigquery.Client | None,
    project: str | None,
) -> int:
    if spec.source.bigquery is not None:
        from google.cloud import bigquery

        client = client or bigquery.Client(project=project)
        rows = list(client.query(source_rows_sql(spec, boundary, None, "bigquery")).result())
        return int(rows[0]["n"]) if rows else 0
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        row = con.execute(source_rows_sql(spec, boundary, data_root)).fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def count_late_rows(
    spec: FeatureManifestSpec,
    view: FeatureView,
    boundary: datetime,
    offline: OfflineStore,
    data_root: str | None,
    *,
    client: bigquery.Client | None = None,
    project: str | None = None,
) -> int:
    """Source rows at or before `boundary` the offline store does not hold (see the module
    docstring). A file source is counted by DuckDB in process; a BigQuery source by a
    query job of `client` (default: a client of `project`, see `bigquery_project`).
    Errors of either engine are raised as they are (the run reports them)."""
    in_source = _count_in_source(spec, boundary, data_root, client, project)
    return max(0, in_source - offline.count_history(view, boundary))
