"""Window values at any time, from the history's partial aggregates, in one SQL for both
the training set and the online store (DuckDB and BigQuery dialects).

The value of an aggregation over window `w` at time `t` for key `k` is the aggregate of
the partials of `k`'s history rows with event time in (t - w, t]: open at the start,
closed at `t` (at microsecond precision [t - w + 1us, t]). count is the number of
non-null values (0 in an empty window), sum, mean, min and max are taken over the
non-null values (null when there is none; NaN when min or max meets one), last is the
newest non-null value; DuckDB's float sums are exact (`exact_sum_parts`). A key with no
history row at or before `t` is unknown: every aggregation is null. TTL does not apply.

Query times and history rows of the queried keys are united and one windowed aggregate
per partial runs over the union, ordered by `__o` = 2 x microseconds since the epoch, + 1
for a query row, with the frame `RANGE BETWEEN 2w - 1 PRECEDING AND CURRENT ROW`: a
query at `t` sees the history rows in [t - w + 1us, t], those at `t` itself included.
No query ties with a history row (nor two history rows: one per key and time), so the
order of the rows a window adds up — and so a float sum's rounding — never depends on
how the engine ordered peers: the same query over the same history gives the same bits.
That is `window_values_sql`, BigQuery's plan. DuckDB runs `window_values_join_sql`, the
same values by a bucketed range join: each window function over the union costs about
what the union's sort does, so 5 windowed features cost 3.5x an ASOF join, where the
join pairs each query only with its key's rows within twice the longest window and
filters per feature (benchmarks/features.py; a property test holds the two plans equal).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from lykeion.features.compile import Dialect, extreme, sql_type
from lykeion.features.view import EVENT_TIME, KEY, FeatureDef, FeatureView

QUERY = "__q"
"""Query id column (int64), unique per query row."""
STEP = "_step"
"""The time a row of `online_sql` holds at."""


def micros(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)


def _ident(name: str, dialect: Dialect) -> str:
    return f'"{name}"' if dialect == "duckdb" else f"`{name}`"


def _epoch_us(expr: str, dialect: Dialect) -> str:
    return f"epoch_us({expr})" if dialect == "duckdb" else f"UNIX_MICROS({expr})"


def _cast(expr: str, type_: str, dialect: Dialect) -> str:
    target = sql_type(type_, dialect)
    function = "TRY_CAST" if dialect == "duckdb" else "SAFE_CAST"
    return f"{function}({expr} AS {target})"


def window_values_sql(
    features: Sequence[FeatureDef],
    dialect: Dialect,
    history: str,
    queries: str,
    present: set[str] | None = None,
) -> str:
    """SELECT `__q` and one column per aggregation in `features` (named as the feature),
    the value at each query's time.

    `history`: a relation with `entity_key`, `event_time` and the features' partial
    columns (`FeatureDef.parts`); `queries`: one with `__k` (key), `__t` (timestamp) and
    `__q`. Queries with a null key or time are not answered (no row). `present` is the
    set of history columns stored; a feature missing a part gives nulls."""
    present = present if present is not None else {n for f in features for n, _ in f.parts()}
    answered = [f for f in features if all(name in present for name, _ in f.parts())]
    parts = [part for f in answered for part in f.parts()]
    h_cols = ", ".join(_ident(name, dialect) for name, _ in parts)
    q_cols = ", ".join(
        f"CAST(NULL AS {sql_type(type_, dialect)}) AS {_ident(name, dialect)}"
        for name, type_ in parts
    )
    int64 = sql_type("int64", dialect)
    union = (
        f"SELECT {KEY} AS __k, {EVENT_TIME} AS __t, CAST(NULL AS {int64}) AS {QUERY}"
        f"{', ' + h_cols if h_cols else ''}\n"
        f"    FROM {history} WHERE {KEY} IN (SELECT __k FROM {queries})\n"
        f"    UNION ALL\n"
        f"    SELECT __k, __t, {QUERY}{', ' + q_cols if q_cols else ''} FROM {queries}\n"
        f"    WHERE __k IS NOT NULL AND __t IS NOT NULL"
    )
    seen = (
        f"COUNT(CASE WHEN {QUERY} IS NULL THEN 1 END) OVER (PARTITION BY __k ORDER BY __o"
        f" RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __seen"
    )
    # Only count tells an empty window (0) from an unknown key (null): the others are
    # null in both cases.
    counts = any(f.aggregation and f.aggregation.function == "count" for f in answered)
    inner = [QUERY, seen] if counts else [QUERY]
    outer = [QUERY]
    for feature in features:
        column = _ident(feature.name, dialect)
        if feature not in answered:
            outer.append(f"CAST(NULL AS {sql_type(feature.type, dialect)}) AS {column}")
            continue
        assert feature.aggregation is not None
        function = feature.aggregation.function
        span = micros(feature.aggregation.window)
        # __o is 2 * micros (+1 for a query): (t - w, t] is [2t - 2w + 2, 2t + 1].
        over = (
            f"OVER (PARTITION BY __k ORDER BY __o"
            f" RANGE BETWEEN {2 * span - 1} PRECEDING AND CURRENT ROW)"
        )
        # Part names (n, sum, min, max, last) have no underscore.
        names = {name.rsplit("_", 1)[1]: _ident(name, dialect) for name, _ in feature.parts()}
        tag = f"__w_{feature.name}"
        if "n" in names:
            inner.append(f"SUM({names['n']}) {over} AS {tag}_n")
        if function == "count":
            value = f"CASE WHEN __seen > 0 THEN COALESCE({tag}_n, 0) END"
        elif function in ("sum", "mean"):
            inner.append(f"SUM({names['sum']}) {over} AS {tag}_sum")
            total = f"{tag}_sum" if function == "sum" else f"{tag}_sum / {tag}_n"
            value = f"CASE WHEN {tag}_n > 0 THEN {total} END"
        elif function in ("min", "max"):
            inner.append(
                f"{extreme(function.upper(), names[function], feature.type, over, dialect)}"
                f" AS {tag}_v"
            )
            value = f"{tag}_v"
        else:
            inner.append(f"LAST_VALUE({names['last']} IGNORE NULLS) {over} AS {tag}_v")
            value = f"{tag}_v"
        outer.append(f"{_cast(value, feature.type, dialect)} AS {column}")
    return (
        f"SELECT {', '.join(outer)} FROM (\n"
        f"  SELECT {', '.join(inner)} FROM (\n"
        f"    SELECT *, {_epoch_us('__t', dialect)} * 2"
        f" + CASE WHEN {QUERY} IS NULL THEN 0 ELSE 1 END AS __o FROM (\n    {union}\n    ) AS u\n"
        f"  ) AS o\n"
        f") AS w WHERE {QUERY} IS NOT NULL"
    )


EXACT_BELOW = 2**42
"""Exact float sums take values and totals of magnitude below 2^42 (about 4.4e12)."""
_SPLIT = 2**53
_ULP = "5.421010862427522e-20"  # 2^-64, exactly
LIMB_PREFIX = "__exact_"
"""Stored limbs of a float sum's partial (`limb_columns`)."""


def exact_sum_parts(value: str) -> tuple[str, str]:
    """DuckDB expressions splitting the float64 `value` into two BIGINT limbs `hi`, `lo`
    of its sign with value = hi * 2^-11 + lo * 2^-64 exactly and |lo| < 2^53. Both are
    null when `value` is null, or when it is not a finite multiple of 2^-64 below 2^42
    in magnitude (every float64 from 2^-12 to 2^42 in magnitude is such a multiple, as
    is any value with at most 64 binary places). Limbs are integers, so their sums are
    exact in any order; `_exact_sum` rounds the total once. On the magnitude, every step
    is exact: scaling by a power of two, floor, a fraction's subtraction (of a number
    not below its floor) and its scaling."""
    scaled = f"(abs({value}) * 2048.0)"
    places = f"(({scaled} - floor({scaled})) * {float(_SPLIT)!r})"
    fits = (
        f"isfinite({value}) AND abs({value}) < {float(EXACT_BELOW)!r}"
        f" AND {places} = floor({places})"
    )
    return (
        f"CASE WHEN {fits} THEN CAST(sign({value}) * floor({scaled}) AS BIGINT) END",
        f"CASE WHEN {fits} THEN CAST(sign({value}) * {places} AS BIGINT) END",
    )


def limb_columns(feature: FeatureDef) -> tuple[str, str] | None:
    """The history columns a store may keep `exact_sum_parts` of a sum's or mean's
    partial sum in (BIGINT; `window_values_join_sql` reads them when present, else
    computes them); None for other features."""
    if feature.aggregation is None or feature.aggregation.function not in ("sum", "mean"):
        return None
    return f"{LIMB_PREFIX}{feature.name}_hi", f"{LIMB_PREFIX}{feature.name}_lo"


def stored_limbs(features: Sequence[FeatureDef]) -> list[tuple[str, str]]:
    """(limb column, DuckDB expression over the partial columns) of every feature in
    `features` that has limbs: what a DuckDB history table stores beside its partials."""
    out = []
    for feature in features:
        names = limb_columns(feature)
        if names is not None:
            partial = next(name for name, _ in feature.parts() if name.endswith("_sum"))
            out += list(zip(names, exact_sum_parts(_ident(partial, "duckdb")), strict=True))
    return out


def _exact_sum(hi: str, lo: str) -> tuple[str, str]:
    """(The float64 nearest the exact total hi * 2^-11 + lo * 2^-64 of two HUGEINT limb
    sums; the condition under which it is not given: a total of 2^42 or more in
    magnitude.) With H = hi + floor(lo / 2^53) and L = lo mod 2^53 (0 <= L < 2^53,
    whatever lo's sign) the total is
    (H * 2^53 + L) * 2^-64. H * 2^53 and L are exact float64s when |H| < 2^53, so their
    IEEE addition rounds the exact total once (to nearest, ties to even: the rounding of
    `math.fsum`), and the scaling by 2^-64 is exact."""
    high = f"({hi} + ({lo} >> 53))"
    low = f"({lo} & {_SPLIT - 1})"
    value = (
        f"((CAST(CAST({high} AS BIGINT) AS DOUBLE) * {float(_SPLIT)!r}"
        f" + CAST(CAST({low} AS BIGINT) AS DOUBLE)) * {_ULP})"
    )
    return value, f"abs({high}) >= {_SPLIT}"


def window_values_join_sql(
    features: Sequence[FeatureDef],
    history: str,
    queries: str,
    present: set[str] | None = None,
    *,
    bucketed: bool = True,
) -> str:
    """DuckDB's plan for `window_values_sql`'s values, by a bucketed range join: SELECT
    `__q` and one column per aggregation in `features` for each query of `queries`
    (`__k`, `__t`, `__q`; null keys or times get no row), as if every key were known —
    the caller nulls the values of a key with no history row at or before `__t` (count
    is 0 here for an empty window, the others null).

    Each query pairs only with its key's history rows in (t - W, t], W the longest
    window: rows and queries carry the bucket floor(epoch_us / W), and a query joins its
    own bucket and the one before on (key, bucket) equality, so the join is a hash join
    whose pairs are the rows within 2W of the query, never the key's whole history. Each
    aggregation then filters its own window.

    Float sums (of sum and mean) are exact: each partial sum is split into two integer
    limbs (`exact_sum_parts`; read from `limb_columns` when `present`), the limbs add as
    integers and the total is rounded once to the nearest float64, so a sum has the same
    bits in whatever order the parallel aggregation meets the rows, and equals
    `math.fsum` of the values. A sum whose window holds a value the limbs cannot carry
    (NaN, ±Inf, 2^42 or more in magnitude, or finer than 2^-64), or whose total reaches
    2^42 in magnitude, adds in event-time order instead: an ordered aggregate, in a second
    join over the queries with such a row in (t - W, t] or such a total alone (found by a
    join with the history's uncarried rows; with none, neither join pairs a row).
    Without `bucketed` a query joins on the key alone, pairing with all its key's rows:
    cheaper when the history spans little more than 2W (no rows to skip), see
    `BUCKETS_FROM`. Measured against the window plan in benchmarks/features.py."""
    present = present if present is not None else {n for f in features for n, _ in f.parts()}
    answered = [f for f in features if all(name in present for name, _ in f.parts())]
    # The join pairs a query with its rows in (t - W, t] alone: a window of W filters none.
    longest = max((micros(f.aggregation.window) for f in answered if f.aggregation), default=0)
    inner = [f"q.{QUERY}"]  # aggregates per query
    ordered = [f"q.{QUERY}"]  # event-time ordered float sums, for the queries redone
    limbs: list[str] = []  # per history row, when not stored
    lost: list[tuple[str, str]] = []  # (tag, a history row's value the limbs do not carry)
    overflows: list[str] = []  # per query: a total the limbs cannot round
    outer = [f"a.{QUERY}"]
    for index, feature in enumerate(features):
        column = _ident(feature.name, "duckdb")
        if feature not in answered:
            outer.append(f"CAST(NULL AS {sql_type(feature.type, 'duckdb')}) AS {column}")
            continue
        assert feature.aggregation is not None
        function = feature.aggregation.function
        span = micros(feature.aggregation.window)
        since = f"h.{EVENT_TIME} > q.__t - to_microseconds({span})"
        parts = {name.rsplit("_", 1)[1]: _ident(name, "duckdb") for name, _ in feature.parts()}
        names = {part: f"h.{name}" for part, name in parts.items()}
        # CASE inside the aggregate: measured cheaper than FILTER in DuckDB 1.x.
        inside = {part: f"CASE WHEN {since} THEN {name} END" for part, name in names.items()}
        if span == longest:
            since, inside = "true", names
        tag = f"__f{index}"
        if function == "count":
            inner.append(f"COALESCE(SUM({inside['n']}), 0) AS {tag}")
            value = f"a.{tag}"
        elif function in ("sum", "mean"):
            stored = limb_columns(feature)
            assert stored is not None
            if all(name in present for name in stored):
                hi, lo = (_ident(name, "duckdb") for name in stored)
            else:
                hi, lo = f"{tag}_hi", f"{tag}_lo"
                computed = exact_sum_parts(parts["sum"])
                limbs += [f"{computed[0]} AS {hi}", f"{computed[1]} AS {lo}"]
            lost.append((tag, f"{parts['sum']} IS NOT NULL AND {hi} IS NULL"))
            window = "" if since == "true" else f"CASE WHEN {since} THEN "
            inner += [
                f"SUM({window}h.{hi}{' END' if window else ''}) AS {tag}_hi",
                f"SUM({window}h.{lo}{' END' if window else ''}) AS {tag}_lo",
            ]
            if function == "mean":
                inner.append(f"SUM({inside['n']}) AS {tag}_n")
            only = "" if since == "true" else f" FILTER (WHERE {since})"
            ordered += [
                f"SUM({names['sum']} ORDER BY h.{EVENT_TIME}){only} AS {tag}",
                f"bool_or(h.__lost{tag}){only} AS {tag}_lost",
            ]
            total, overflow = _exact_sum(f"a.{tag}_hi", f"a.{tag}_lo")
            overflows.append(overflow)
            # No carried value and none lost: an empty window (null).
            total = (
                f"CASE WHEN r.{tag}_lost OR {overflow} THEN r.{tag}"
                f" WHEN a.{tag}_hi IS NOT NULL THEN {total} END"
            )
            value = (
                total
                if function == "sum"
                else f"CASE WHEN a.{tag}_n > 0 THEN {total} / a.{tag}_n END"
            )
        elif function in ("min", "max"):
            extremum = extreme(function.upper(), inside[function], feature.type, "", "duckdb")
            inner.append(f"{extremum} AS {tag}")
            value = f"a.{tag}"
        else:
            last = names["last"]
            window = "" if since == "true" else f" AND {since}"
            inner.append(
                f"arg_max({last}, h.{EVENT_TIME}) FILTER (WHERE {last} IS NOT NULL{window})"
                f" AS {tag}"
            )
            value = f"a.{tag}"
        outer.append(f"{_cast(value, feature.type, 'duckdb')} AS {column}")
    if not answered:
        return (
            f"SELECT {', '.join(o.replace('a.', 'q.', 1) for o in outer)} FROM {queries} AS q"
            " WHERE q.__k IS NOT NULL AND q.__t IS NOT NULL"
        )
    # floor(epoch_us / W) exactly, also before 1970: x - floor_mod(x, W) is a multiple of W.
    bucket = "((epoch_us({t}) - ((epoch_us({t}) % {w}) + {w}) % {w}) // {w})"
    columns = [KEY, EVENT_TIME, *(_ident(n, "duckdb") for f in answered for n, _ in f.parts())]
    columns += [
        _ident(name, "duckdb")
        for f in answered
        for name in (limb_columns(f) or ())
        if name in present
    ]
    if bucketed:
        columns.append(f"{bucket.format(t=EVENT_TIME, w=longest)} AS __b")
        ctes = [
            f"__qb AS (SELECT __k, __t, {QUERY}, {bucket.format(t='__t', w=longest)} AS __b"
            f" FROM {queries} AS q0 WHERE __k IS NOT NULL AND __t IS NOT NULL)"
        ]
    else:
        ctes = [
            f"__qb AS (SELECT __k, __t, {QUERY} FROM {queries} AS q0"
            f" WHERE __k IS NOT NULL AND __t IS NOT NULL)"
        ]
    rows = f"SELECT {', '.join(columns)} FROM {history}"
    if limbs:
        rows = f"SELECT *, {', '.join(limbs)} FROM ({rows}) AS h0"
    within = f"h.{EVENT_TIME} <= q.__t AND h.{EVENT_TIME} > q.__t - to_microseconds({longest})"

    def pairs(join: str, history_rows: str, only: str = "") -> str:
        """FROM clause pairing each query (of __qb, `only` those) with its rows."""
        if not bucketed:
            return (
                f"FROM (SELECT * FROM __qb{only}) AS q\n"
                f"  {join} ({history_rows}) AS h ON h.{KEY} = q.__k AND {within}"
            )
        return (
            f"FROM (\n"
            f"    SELECT __k, __t, {QUERY}, __b AS __j FROM __qb{only} UNION ALL\n"
            f"    SELECT __k, __t, {QUERY}, __b - 1 FROM __qb{only}\n"
            f"  ) AS q {join} ({history_rows}) AS h"
            f" ON h.{KEY} = q.__k AND h.__b = q.__j AND {within}"
        )

    join = pairs("LEFT JOIN", rows)
    ctes.append(f"__a AS (\n  SELECT {', '.join(inner)}\n  {join}\n  GROUP BY q.{QUERY}\n)")
    if not lost:
        return f"WITH {', '.join(ctes)}\nSELECT {', '.join(outer)} FROM __a AS a"
    flags = ", ".join(f"{condition} AS __lost{tag}" for tag, condition in lost)
    flagged = f"SELECT *, {flags} FROM ({rows}) AS h1"
    any_lost = " OR ".join(f"__lost{tag}" for tag, _ in lost)
    # The rows no limb carries (none, usually), and the queries with one in (t - W, t].
    ctes.append(f"__lost AS (SELECT {KEY}, {EVENT_TIME} FROM ({flagged}) AS h2 WHERE {any_lost})")
    ctes.append(
        f"__redo AS (\n  SELECT q.{QUERY} FROM __qb AS q JOIN __lost AS h"
        f" ON h.{KEY} = q.__k AND {within}\n"
        f"  UNION SELECT a.{QUERY} FROM __a AS a WHERE {' OR '.join(overflows)}\n)"
    )
    only = f" WHERE {QUERY} IN (SELECT {QUERY} FROM __redo)"
    ctes.append(
        f"__r AS (\n  SELECT {', '.join(ordered)}\n  {pairs('JOIN', flagged, only)}\n"
        f"  GROUP BY q.{QUERY}\n)"
    )
    return (
        f"WITH {', '.join(ctes)}\nSELECT {', '.join(outer)}"
        f" FROM __a AS a LEFT JOIN __r AS r ON r.{QUERY} = a.{QUERY}"
    )


BUCKETS_FROM = 4
"""The DuckDB training set buckets its range join when the history spans more than this
many longest windows: below, two buckets hold about all of a key's rows and the doubled
probe costs more than it skips (benchmarks/features.py: 60 days of history, 30-day
windows)."""


def longest_window(features: Sequence[FeatureDef]) -> timedelta:
    """The longest window of `features`' aggregations (0 when none)."""
    spans = [f.aggregation.window for f in features if f.aggregation is not None]
    return max(spans, default=timedelta(0))


def _literal_time(moment: datetime, dialect: Dialect) -> str:
    text = moment.isoformat()
    return f"TIMESTAMPTZ '{text}'" if dialect == "duckdb" else f"TIMESTAMP '{text}'"


def _plus(expr: str, us: int, dialect: Dialect) -> str:
    if dialect == "duckdb":
        return f"({expr} + to_microseconds({us}))"
    return f"TIMESTAMP_ADD({expr}, INTERVAL {us} MICROSECOND)"


def online_sql(
    view: FeatureView,
    dialect: Dialect,
    history: str,
    after: datetime | None = None,
    *,
    define: str | None = None,
) -> str:
    """The online store's rows for the keys whose newest history row in `history` is
    later than `after` (all keys when None): per key, its newest event time `L` and one
    row per step `_step` — `L` itself, then each time an event leaves a window if no new
    event comes (`e + w` for every event `e` in (L - w, L]). Columns: `entity_key`,
    `event_time` (= L), `_step`, the row-level features of the row at L, and the
    aggregations at `_step` computed by the training set's SQL (`window_values_sql`;
    DuckDB's plan of it, `window_values_join_sql`, in DuckDB).
    `history` (a table, or the name given to the query `define`) must hold every valid
    history row of those keys within the longest window before L."""
    windows = sorted({micros(f.aggregation.window) for f in view.aggregations if f.aggregation})
    having = f" HAVING MAX({EVENT_TIME}) > {_literal_time(after, dialect)}" if after else ""
    steps = ["SELECT __k, __l AS __t FROM __last"]
    for span in windows:
        steps.append(
            f"SELECT h.{KEY}, {_plus(f'h.{EVENT_TIME}', span, dialect)} FROM {history} AS h"
            f" JOIN __last ON h.{KEY} = __last.__k"
            f" WHERE h.{EVENT_TIME} > {_plus('__last.__l', -span, dialect)}"
        )
    row_cols = "".join(f", h.{_ident(f.name, dialect)}" for f in view.row_features)
    agg_cols = "".join(f", v.{_ident(f.name, dialect)}" for f in view.aggregations)
    if dialect == "duckdb":
        # Every step is at or after the key's newest event: the key is known.
        values = window_values_join_sql(view.aggregations, history, "__queries")
    else:
        values = window_values_sql(view.aggregations, dialect, history, "__queries")
    defined = f"{history} AS ({define}),\n" if define else ""
    return f"""
WITH {defined}__last AS (
  SELECT {KEY} AS __k, MAX({EVENT_TIME}) AS __l FROM {history} GROUP BY {KEY}{having}
),
__steps AS (
  {" UNION ALL ".join(steps)}
),
__queries AS (
  SELECT __k, __t, ROW_NUMBER() OVER (ORDER BY __k, __t) AS {QUERY}
  FROM (SELECT DISTINCT __k, __t FROM __steps) AS s
),
__values AS ({values})
SELECT q.__k AS {KEY}, __last.__l AS {EVENT_TIME}, q.__t AS {STEP}{row_cols}{agg_cols}
FROM __queries AS q
JOIN __last ON __last.__k = q.__k
JOIN {history} AS h ON h.{KEY} = q.__k AND h.{EVENT_TIME} = __last.__l
JOIN __values AS v ON v.{QUERY} = q.{QUERY}
ORDER BY {KEY}, {STEP}
""".strip()
