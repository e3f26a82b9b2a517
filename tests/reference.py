"""The feature semantics in plain Python, by brute force: the definition the stores are
held to (README, "Features"). Row-level columns and aggregations; expressions excluded.

Valid rows: a non-null key and time, and every row-level value casts to its declared
type. A row-level feature at `t` for `k` is the value of the latest valid row of `k` at
or before `t` when that row is not older than `t - ttl` (of several rows at that time:
the first in value order — ascending, NaN after numbers, null last — by the row-level
features in manifest order). An aggregation over `w` at `t` takes the valid rows of `k`
with event time in (t - w, t] (all duplicates count): count the non-null values (0 when
none), sum/mean/min/max over them (null when none; min and max are NaN when a value is
NaN), last the value of the newest row with a non-null value (of several at that time:
the greatest, NaN above all). Float sums are exact (`exact_sum`): the values at one time
added first, then the window's totals per time without rounding error, rounded once. A
key with no valid row at or before `t` is unknown: every feature null (the online store
has no entry).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class Column:
    """A row-level feature copied from a source column."""

    name: str
    type: str  # int64 | float64 | string
    column: str


@dataclass(frozen=True)
class Window:
    name: str
    type: str
    function: str  # count | sum | mean | min | max | last
    column: str
    window: timedelta


Feature = Column | Window


def cast(value: Any, type_: str) -> tuple[bool, Any]:
    """(casts, value) as TRY_CAST/SAFE_CAST read the source values the tests generate:
    floats, and strings that are integers or not."""
    if value is None:
        return True, None
    if type_ == "float64":
        return True, float(value)
    if type_ == "int64":
        if isinstance(value, str):
            return (True, int(value)) if re.fullmatch(r"-?[0-9]{1,15}", value) else (False, None)
        return True, int(value)
    return True, str(value)


def _order(value: Any) -> tuple[int, int, Any]:
    if value is None:
        return (1, 0, 0)
    if isinstance(value, float) and math.isnan(value):
        return (0, 1, 0)
    return (0, 0, value)


def _nan(values: Sequence[Any]) -> bool:
    return any(isinstance(v, float) and math.isnan(v) for v in values)


def _greatest(values: Sequence[Any]) -> Any:
    return math.nan if _nan(values) else max(values)


def valid_rows(
    rows: Sequence[dict[str, Any]], key: str, time: str, features: Sequence[Feature]
) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if row[key] is None or row[time] is None:
            continue
        if all(cast(row[f.column], f.type)[0] for f in features if isinstance(f, Column)):
            out.append(row)
    return out


def value_at(
    rows: Sequence[dict[str, Any]],
    key: str,
    time: str,
    features: Sequence[Feature],
    ttl: timedelta,
    k: Any,
    t: datetime,
) -> dict[str, Any] | None:
    """Every feature of `k` at `t`, or None when `k` is unknown at `t`."""
    mine = [r for r in valid_rows(rows, key, time, features) if r[key] == k and r[time] <= t]
    if not mine:
        return None
    latest = max(r[time] for r in mine)
    columns = [f for f in features if isinstance(f, Column)]
    at_latest = [[cast(r[f.column], f.type)[1] for f in columns] for r in mine if r[time] == latest]
    chosen = min(at_latest, key=lambda values: [_order(v) for v in values])
    out: dict[str, Any] = {}
    for feature, value in zip(columns, chosen, strict=True):
        out[feature.name] = value if latest >= t - ttl else None
    for feature in features:
        if isinstance(feature, Window):
            out[feature.name] = _aggregate(feature, mine, time, t)
    return {f.name: out[f.name] for f in features}


def _aggregate(feature: Window, rows: Sequence[dict[str, Any]], time: str, t: datetime) -> Any:
    in_window = [r for r in rows if t - feature.window < r[time] <= t]
    input_type = "float64" if feature.function in ("sum", "mean") else feature.type
    if feature.function == "count":
        return sum(r[feature.column] is not None for r in in_window)
    timed = [(r[time], cast(r[feature.column], input_type)[1]) for r in in_window]
    values = [v for _, v in timed if v is not None]
    if not values:
        return None
    if feature.function in ("sum", "mean"):
        per_time: dict[datetime, float] = {}
        for moment, v in sorted(((m, v) for m, v in timed if v is not None), key=lambda p: p[0]):
            per_time[moment] = per_time.get(moment, 0.0) + v
        total = exact_sum(list(per_time.values()))
        return total if feature.function == "sum" else total / len(values)
    if feature.function == "min":
        return math.nan if _nan(values) else min(values)
    if feature.function == "max":
        return _greatest(values)
    newest = max(moment for moment, v in timed if v is not None)
    return _greatest([v for moment, v in timed if moment == newest and v is not None])


EXACT_BELOW = 2**42
UNIT = 2**64


def carried(value: float) -> bool:
    """Whether a float sum can add `value` exactly: finite, below 2^42 in magnitude and a
    multiple of 2^-64 (any float64 from 2^-12 to 2^42 in magnitude is one)."""
    return (
        math.isfinite(value)
        and abs(value) < EXACT_BELOW
        and (Fraction(value) * UNIT).denominator == 1
    )


def exact_sum(values: Sequence[float]) -> float:
    """A window's float sum, `values` in event-time order: their exact sum rounded once to
    the nearest float64 (`math.fsum`'s value) when every value is carried and the total
    is below 2^42 in magnitude (its whole 2^-11 units below 2^53); else added in order."""
    if all(carried(v) for v in values):
        units = sum(int(Fraction(v) * UNIT) for v in values)
        if abs(units >> 53) < 2**53:
            exact = float(Fraction(units, UNIT))
            assert not values or exact == math.fsum(values)
            return exact
    total = 0.0
    for value in values:
        total += value
    return total


def same(left: Any, right: Any, rel: float = 1e-9) -> bool:
    """Equal values; NaN equals NaN; floats within `rel` (sums may add in any order)."""
    if isinstance(left, float) or isinstance(right, float):
        if left is None or right is None:
            return False
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        return bool(left == right or math.isclose(left, right, rel_tol=rel, abs_tol=1e-12))
    return bool(left == right)
