"""A FeatureManifest compiled to SQL that runs where the data is: DuckDB or BigQuery.

The query yields the feature *history*: one row per (entity key, event time) with the
row-level columns and expressions of that moment's source row and, per aggregation, the
partial aggregates of that moment's rows (count, sum, min, max, last). A window's value at
any time is then the aggregate of the partials in the window (`windows.py`), computed at
the label's or the read's time, never only at event times. Rows the stores must not
receive (null key or time, a value that does not cast to its declared type) are kept but
carry a reason in `_error`, so a run can count them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from lykeion.api.featuremanifest import Feature, FeatureManifestSpec
from lykeion.features.view import (
    EVENT_TIME,
    KEY,
    element_type,
    feature_def,
    is_list,
    parse_duration,
)

Dialect = Literal["duckdb", "bigquery"]
ERROR = "_error"
ROWS = "_rows"
"""Valid source rows a history row stands for: 1 + the duplicates of its key and time."""

# The scalar types per dialect, spelled as each engine reports them back (DuckDB's
# DESCRIBE, BigQuery's standard SQL names): the offline stores compare stored columns
# with these.
_DUCKDB_TYPES = {
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP WITH TIME ZONE",
}
_BIGQUERY_TYPES = {
    "int64": "INT64",
    "float64": "FLOAT64",
    "string": "STRING",
    "bool": "BOOL",
    "timestamp": "TIMESTAMP",
}


@dataclass(frozen=True)
class Range:
    """Event times in (start, end]; None means unbounded on that side."""

    start: datetime | None = None
    end: datetime | None = None


def sql_type(type_: str, dialect: Dialect) -> str:
    names = _DUCKDB_TYPES if dialect == "duckdb" else _BIGQUERY_TYPES
    inner = names[element_type(type_)]
    if not is_list(type_):
        return inner
    return f"{inner}[]" if dialect == "duckdb" else f"ARRAY<{inner}>"


def _literal_time(moment: datetime, dialect: Dialect) -> str:
    text = moment.isoformat()
    return f"TIMESTAMPTZ '{text}'" if dialect == "duckdb" else f"TIMESTAMP '{text}'"


def _source(spec: FeatureManifestSpec, dialect: Dialect, data_root: str | None) -> str:
    source = spec.source
    if source.file is not None:
        if dialect != "duckdb":
            raise ValueError("file sources are read by DuckDB; load them into BigQuery first")
        path = source.file.path
        if data_root and not path.startswith(("/", "gs://", "s3://", "http://", "https://")):
            path = f"{data_root.rstrip('/')}/{path}"
        if source.file.format == "parquet":
            # Parquet columns carry their types; `keyed` casts the key and time.
            return f"SELECT * FROM read_parquet({_text(path)})"
        # A CSV reader guesses types from a sample of values: `007` may become 7, a
        # format seen late fails the whole read. Columns whose declared type is text,
        # and the time, are read as text and cast per row by `keyed` and the features.
        types = ", ".join(f"{_text(name)}: 'VARCHAR'" for name in _text_columns(spec))
        return f"SELECT * FROM read_csv({_text(path)}, types = {{{types}}})"
    assert source.bigquery is not None
    if source.bigquery.query is not None:
        return source.bigquery.query
    table = source.bigquery.table
    if dialect == "bigquery":
        return f"SELECT * FROM `{table}`"
    return f"SELECT * FROM {table}"


def _text(value: str) -> str:
    """A DuckDB string literal."""
    return "'" + value.replace("'", "''") + "'"


def _text_columns(spec: FeatureManifestSpec) -> list[str]:
    """CSV columns read as VARCHAR: the join key (cast to its declared `keyType` per row,
    a bad value counted as a bad row), the timestamp and the columns that `string`
    row-level features read — those two unless a min/max aggregation orders them, as
    text order is not time or number order."""
    ordered = {
        f.aggregation.column
        for f in spec.features
        if f.aggregation is not None and f.aggregation.function in ("min", "max")
    }
    text = [spec.source.timestamp_column]
    text += [f.column for f in spec.features if f.column is not None and f.type == "string"]
    return list(dict.fromkeys([spec.entity.join_key, *(c for c in text if c not in ordered)]))


def _value(feature: Feature, dialect: Dialect) -> str:
    """The uncast value expression of a row-level feature."""
    if feature.column is not None:
        return _ident(feature.column, dialect)
    assert feature.expression is not None
    return f"({feature.expression})"


def _ident(name: str, dialect: Dialect) -> str:
    return f'"{name}"' if dialect == "duckdb" else f"`{name}`"


def _out(name: str) -> str:
    """Computed values get their own names, so that a source column of the same name is
    never confused with the computed feature (DuckDB resolves lateral aliases)."""
    return f"__f_{name}"


def _cast(expr: str, type_: str, dialect: Dialect) -> str:
    target = sql_type(type_, dialect)
    return (
        f"TRY_CAST({expr} AS {target})" if dialect == "duckdb" else f"SAFE_CAST({expr} AS {target})"
    )


def lookback(spec: FeatureManifestSpec) -> timedelta:
    """How far before a range start the source must be read for its windows to be full."""
    windows = [parse_duration(f.aggregation.window) for f in spec.features if f.aggregation]
    return max(windows, default=timedelta(0))


def _is_nan(expr: str, dialect: Dialect) -> str:
    return f"isnan({expr})" if dialect == "duckdb" else f"IS_NAN({expr})"


def nan(dialect: Dialect) -> str:
    return "CAST('NaN' AS DOUBLE)" if dialect == "duckdb" else "CAST('NaN' AS FLOAT64)"


def value_order(expr: str, type_: str, dialect: Dialect) -> list[str]:
    """ORDER BY items that sort values alike in DuckDB and BigQuery: ascending, NaN after
    every number (DuckDB sorts it last, BigQuery first), null last."""
    items = [f"{expr} ASC NULLS LAST"]
    if type_ == "float64":
        items.insert(0, f"{_is_nan(expr, dialect)} ASC NULLS LAST")
    return items


def extreme(function: str, expr: str, type_: str, over: str, dialect: Dialect) -> str:
    """MIN or MAX `over` a window, NaN when any value is NaN. MAX needs no help: DuckDB
    sorts NaN above every number and BigQuery's MAX returns NaN. DuckDB's MIN skips NaN
    (as does the BigQuery emulator, which runs on DuckDB): MIN gets an explicit check."""
    plain = f"{function}({expr}) {over}"
    if type_ != "float64" or function == "MAX":
        return plain
    nans = f"SUM(CASE WHEN {_is_nan(expr, dialect)} THEN 1 ELSE 0 END) {over}"
    return f"CASE WHEN {nans} > 0 THEN {nan(dialect)} ELSE {plain} END"


def _inputs(feature: Feature, dialect: Dialect) -> str:
    """The value an aggregation takes from a source row: count counts the column's
    non-null values; sum and mean read it as float64; min, max and last as the feature's
    type (a value that does not cast is skipped like a null)."""
    assert feature.aggregation is not None
    column = _ident(feature.aggregation.column, dialect)
    function = feature.aggregation.function
    if function == "count":
        return column
    return _cast(column, "float64" if function in ("sum", "mean") else feature.type, dialect)


def _partials(feature: Feature, dialect: Dialect) -> list[tuple[str, str]]:
    """(history column, SQL over the rows of one key and time) per partial aggregate."""
    assert feature.aggregation is not None
    value = f"__i_{feature.name}"
    over = "OVER (PARTITION BY __k, __t)"
    out = []
    for column, _type in feature_def(feature).parts():
        part = column.rsplit("_", 1)[1]
        if part == "n":
            out.append((column, f"COUNT({value}) {over}"))
        elif part == "sum":
            out.append((column, f"SUM({value}) {over}"))
        elif part in ("min", "max"):
            out.append((column, extreme(part.upper(), value, feature.type, over, dialect)))
        elif is_list(feature.type):
            # Lists are not orderable in BigQuery: of two at one time, either may be last.
            out.append((column, f"ANY_VALUE({value}) {over}"))
        else:
            # Of several rows at one time the last is the greatest value (NaN above all
            # numbers): a rule both engines follow, whatever order they read rows in.
            out.append((column, extreme("MAX", value, feature.type, over, dialect)))
    return out


def history_sql(
    spec: FeatureManifestSpec,
    dialect: Dialect = "duckdb",
    run_range: Range | None = None,
    data_root: str | None = None,
    *,
    with_lookback: bool = False,
) -> str:
    """SQL yielding the history rows of `run_range`: `entity_key, event_time`, the view's
    history columns (`FeatureView.history_columns`), `_error` and `_rows`.

    A valid source row has a non-null key and time and row-level values that all cast to
    their declared types. Valid rows give one history row per (key, time): the row-level
    values of one of them — the first in the order of `value_order` over the features, so
    the pick never depends on read order — and the partial aggregates of all of them
    (`_rows` says how many there were: 1 + duplicates). Each invalid row is yielded alone
    with its reason in `_error` (and `_rows` null), to be counted and never stored.
    With `with_lookback` the rows of the longest window before the range start are
    yielded too (what the online store's windows at the range's times need)."""
    run_range = run_range or Range()
    key = _ident(spec.entity.join_key, dialect)
    ts = _ident(spec.source.timestamp_column, dialect)
    read_from = run_range.start
    if read_from is not None and with_lookback:
        read_from = read_from - lookback(spec)

    source_filters = []
    if read_from is not None:
        source_filters.append(f"__t > {_literal_time(read_from, dialect)}")
    if run_range.end is not None:
        source_filters.append(f"__t <= {_literal_time(run_range.end, dialect)}")

    row_level = [f for f in spec.features if f.aggregation is None]
    aggregations = [f for f in spec.features if f.aggregation is not None]
    per_row = []
    checks = [
        f"WHEN __k IS NULL THEN 'null key {spec.entity.join_key}'",
        f"WHEN __t IS NULL THEN 'null or invalid time {spec.source.timestamp_column}'",
    ]
    for feature in row_level:
        raw = _value(feature, dialect)
        cast = _cast(raw, feature.type, dialect)
        per_row.append(f"{cast} AS {_out(feature.name)}")
        checks.append(
            f"WHEN {raw} IS NOT NULL AND {cast} IS NULL "
            f"THEN 'feature {feature.name}: value does not cast to {feature.type}'"
        )
    per_row += [f"{_inputs(f, dialect)} AS __i_{f.name}" for f in aggregations]
    error = "CASE " + " ".join(checks) + " ELSE NULL END"
    where = f"WHERE {' AND '.join(source_filters)}" if source_filters else ""

    partials = [part for f in aggregations for part in _partials(f, dialect)]
    types = dict(part for f in aggregations for part in feature_def(f).parts())
    order = [
        item
        for f in row_level
        if not is_list(f.type)
        for item in value_order(_out(f.name), f.type, dialect)
    ]
    # Arrays are not orderable in BigQuery: rows differing only in a list tie.
    valid_columns = [
        *(f"{_out(f.name)} AS {_ident(f.name, dialect)}" for f in row_level),
        *(f"{sql} AS {_ident(name, dialect)}" for name, sql in partials),
    ]
    error_columns = [
        *(f"{_out(f.name)} AS {_ident(f.name, dialect)}" for f in row_level),
        *(
            f"CAST(NULL AS {sql_type(types[name], dialect)}) AS {_ident(name, dialect)}"
            for name, _ in partials
        ),
    ]
    out_filter = ""
    if run_range.start is not None and not with_lookback:
        out_filter = f"{EVENT_TIME} > {_literal_time(run_range.start, dialect)}"
    int64 = sql_type("int64", dialect)
    return f"""
WITH raw AS ({_source(spec, dialect, None if dialect != "duckdb" else data_root)}),
keyed AS (
  SELECT *, {_cast(key, spec.entity.key_type, dialect)} AS __k,
         {_cast(ts, "timestamp", dialect)} AS __t
  FROM raw
),
checked AS (
  SELECT __k, __t, {", ".join([*per_row, f"{error} AS {ERROR}"])}
  FROM keyed {where}
),
valid AS (
  SELECT __k AS {KEY}, __t AS {EVENT_TIME}, {"".join(c + ", " for c in valid_columns)}
         CAST(NULL AS {sql_type("string", dialect)}) AS {ERROR},
         COUNT(*) OVER (PARTITION BY __k, __t) AS {ROWS}
  FROM checked
  WHERE {ERROR} IS NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY __k, __t ORDER BY {", ".join(order) or "__t"}) = 1
),
invalid AS (
  SELECT __k AS {KEY}, __t AS {EVENT_TIME}, {"".join(c + ", " for c in error_columns)}
         {ERROR}, CAST(NULL AS {int64}) AS {ROWS}
  FROM checked
  WHERE {ERROR} IS NOT NULL
)
SELECT * FROM (SELECT * FROM valid UNION ALL SELECT * FROM invalid) AS h
{"WHERE " + out_filter if out_filter else ""}
ORDER BY {KEY}, {EVENT_TIME}
""".strip()
