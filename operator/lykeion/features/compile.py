"""A FeatureManifest compiled to SQL that runs where the data is: DuckDB or BigQuery.

The query yields the feature *history*: one row per (entity key, event time) with every
feature as known at that moment — row-level columns and expressions of the source row,
and trailing-window aggregations over the entity's earlier rows. Rows the stores must not
receive (null key or time, a value that does not cast to its declared type) are kept but
carry a reason in `_error`, so a run can count them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from lykeion.api.featuremanifest import Feature, FeatureManifestSpec
from lykeion.features.view import EVENT_TIME, KEY, element_type, is_list, parse_duration

Dialect = Literal["duckdb", "bigquery"]
ERROR = "_error"

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
_FUNCTIONS = {
    "count": "COUNT",
    "sum": "SUM",
    "mean": "AVG",
    "min": "MIN",
    "max": "MAX",
    "last": "LAST_VALUE",
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


def _window(feature: Feature, dialect: Dialect) -> str:
    assert feature.aggregation is not None
    seconds = int(parse_duration(feature.aggregation.window).total_seconds())
    if dialect == "duckdb":
        order = "__t"
        frame = f"RANGE BETWEEN INTERVAL {seconds} SECONDS PRECEDING AND CURRENT ROW"
    else:
        # BigQuery ranges need a numeric order key.
        order = "UNIX_MICROS(__t)"
        frame = f"RANGE BETWEEN {seconds * 1_000_000} PRECEDING AND CURRENT ROW"
    return f"OVER (PARTITION BY __k ORDER BY {order} {frame})"


def _cast(expr: str, type_: str, dialect: Dialect) -> str:
    target = sql_type(type_, dialect)
    return (
        f"TRY_CAST({expr} AS {target})" if dialect == "duckdb" else f"SAFE_CAST({expr} AS {target})"
    )


def lookback(spec: FeatureManifestSpec) -> timedelta:
    """How far before a range start the source must be read for its windows to be full."""
    windows = [parse_duration(f.aggregation.window) for f in spec.features if f.aggregation]
    return max(windows, default=timedelta(0))


def history_sql(
    spec: FeatureManifestSpec,
    dialect: Dialect = "duckdb",
    run_range: Range | None = None,
    data_root: str | None = None,
) -> str:
    """SQL yielding `entity_key, event_time, <features...>, _error` for `run_range`."""
    run_range = run_range or Range()
    key = _ident(spec.entity.join_key, dialect)
    ts = _ident(spec.source.timestamp_column, dialect)
    read_from = None
    if run_range.start is not None:
        read_from = run_range.start - lookback(spec)

    source_filters = []
    if read_from is not None:
        source_filters.append(f"__t > {_literal_time(read_from, dialect)}")
    if run_range.end is not None:
        source_filters.append(f"__t <= {_literal_time(run_range.end, dialect)}")

    per_row = []
    checks = [
        f"WHEN __k IS NULL THEN 'null key {spec.entity.join_key}'",
        f"WHEN __t IS NULL THEN 'null or invalid time {spec.source.timestamp_column}'",
    ]
    for feature in spec.features:
        if feature.aggregation is not None:
            agg = feature.aggregation
            function = _FUNCTIONS[agg.function]
            column = (
                _cast(_ident(agg.column, dialect), "float64", dialect)
                if agg.function in ("sum", "mean")
                else _ident(agg.column, dialect)
            )
            value = f"{function}({column}) {_window(feature, dialect)}"
            per_row.append(f"{_cast(value, feature.type, dialect)} AS {_out(feature.name)}")
        else:
            raw = _value(feature, dialect)
            cast = _cast(raw, feature.type, dialect)
            per_row.append(f"{cast} AS {_out(feature.name)}")
            checks.append(
                f"WHEN {raw} IS NOT NULL AND {cast} IS NULL "
                f"THEN 'feature {feature.name}: value does not cast to {feature.type}'"
            )
    error = "CASE " + " ".join(checks) + " ELSE NULL END"
    where = f"WHERE {' AND '.join(source_filters)}" if source_filters else ""
    out_filters = []
    if run_range.start is not None:
        out_filters.append(f"{EVENT_TIME} > {_literal_time(run_range.start, dialect)}")
    out_where = f"WHERE {' AND '.join(out_filters)}" if out_filters else ""
    features = ", ".join(_ident(f.name, dialect) for f in spec.features)
    renamed = ", ".join(f"{_out(f.name)} AS {_ident(f.name, dialect)}" for f in spec.features)
    # Which of two rows at the same key and time wins must not depend on read order.
    # (Arrays are not orderable in BigQuery.)
    tie_break = ", ".join(_out(f.name) for f in spec.features if not is_list(f.type))
    return f"""
WITH raw AS ({_source(spec, dialect, None if dialect != "duckdb" else data_root)}),
keyed AS (
  SELECT *, {_cast(key, spec.entity.key_type, dialect)} AS __k,
         {_cast(ts, "timestamp", dialect)} AS __t
  FROM raw
),
windowed AS (
  SELECT __k, __t, {", ".join(per_row)}, {error} AS {ERROR}
  FROM keyed {where}
),
history AS (
  SELECT __k AS {KEY}, __t AS {EVENT_TIME}, {renamed}, {ERROR},
         ROW_NUMBER() OVER (PARTITION BY __k, __t ORDER BY {tie_break or "__t"}) AS __dup
  FROM windowed
)
SELECT {KEY}, {EVENT_TIME}, {features}, {ERROR}
FROM history {out_where}
{"AND" if out_where else "WHERE"} (__dup = 1 OR {ERROR} IS NOT NULL)
ORDER BY {KEY}, {EVENT_TIME}
""".strip()
