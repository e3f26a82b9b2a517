"""Training-set statistics and PSI held to a brute-force reference of their definitions
(`serving/drift.py`), on random data."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.serving.drift import (
    DECILES,
    EPSILON,
    TOP,
    DriftMonitor,
    FeatureStatistics,
    TrainingStatistics,
    profile,
    psi,
)
from lykeion.training.statistics import training_statistics

floats = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 2.5]),  # ties, so edges repeat
)
ints = st.one_of(st.none(), st.integers(-(2**53), 2**53), st.integers(0, 5))
strings = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]), st.text(max_size=3))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _reference_edges(values: list[float]) -> list[float]:
    """The smallest value x with 10 * count(v <= x) >= k * n, for k = 1..9, deduplicated."""
    n = len(values)
    found: list[float] = []
    for k in range(1, DECILES):
        x = min(v for v in values if DECILES * sum(1 for w in values if w <= v) >= k * n)
        if x not in found:
            found.append(x)
    return sorted(found)


def _reference_bin(edges: list[float], value: float) -> int:
    return sum(1 for e in edges if e < value)


@settings(max_examples=150, deadline=None)
@given(st.lists(floats, max_size=60))
def test_numeric_statistics_equal_the_definition(values: list[float | None]) -> None:
    stats = profile("float64", values)
    assert stats is not None
    present = [float(v) for v in values if not _missing(v)]
    assert stats.count == len(values)
    assert stats.null_rate == pytest.approx(
        (len(values) - len(present)) / len(values) if values else 0
    )
    edges = _reference_edges(present) if present else []
    assert stats.edges == edges
    assert stats.proportions is not None and len(stats.proportions) == len(edges) + 1
    for index, share in enumerate(stats.proportions):
        inside = sum(1 for v in present if _reference_bin(edges, v) == index)
        assert share == pytest.approx(inside / len(present) if present else 0.0)


@settings(max_examples=80, deadline=None)
@given(st.lists(ints, max_size=60))
def test_int64_and_timestamp_statistics_bin_by_the_same_rule(values: list[int | None]) -> None:
    stats = profile("int64", values)
    assert stats is not None
    present = [float(v) for v in values if v is not None]
    assert stats.edges == (_reference_edges(present) if present else [])
    base = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [None if v is None else base + timedelta(seconds=v % 10**6) for v in values]
    timed = profile("timestamp", moments)
    assert timed is not None
    seconds = [m.timestamp() for m in moments if m is not None]
    assert timed.edges == (_reference_edges(seconds) if seconds else [])


@settings(max_examples=100, deadline=None)
@given(st.lists(strings, max_size=80))
def test_categorical_statistics_equal_the_definition(values: list[str | None]) -> None:
    stats = profile("string", values)
    assert stats is not None and stats.top is not None
    present = [v for v in values if v is not None]
    counts = {v: present.count(v) for v in set(present)}
    ranked = sorted(counts, key=lambda v: (-counts[v], v))[:TOP]
    assert list(stats.top) == ranked
    for value in ranked:
        assert stats.top[value] == pytest.approx(counts[value] / len(present))
    rest = sum(counts[v] for v in counts if v not in ranked)
    assert stats.other == pytest.approx(rest / len(present) if present else 0.0)


def _reference_psi(expected: list[float], observed: list[float]) -> float:
    total = 0.0
    for t, s in zip(expected, observed, strict=True):
        t, s = max(t, EPSILON), max(s, EPSILON)
        total += (s - t) * math.log(s / t)
    return total


def _reference_category(stats: FeatureStatistics, value: Any) -> int:
    last = stats.categories() - 1
    if stats.edges is not None:
        if _missing(value):
            return last
        return _reference_bin(stats.edges, float(value))
    if value is None:
        return last
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    top = list(stats.top or {})
    return top.index(text) if text in top else last - 1


@settings(max_examples=60, deadline=None)
@given(
    training=st.lists(floats, min_size=1, max_size=50),
    served=st.lists(st.lists(floats, min_size=1, max_size=7), max_size=30),
    window=st.integers(1, 40),
    labels=st.lists(strings, min_size=1, max_size=50),
    words=st.lists(st.lists(strings, min_size=1, max_size=7), max_size=30),
)
def test_psi_over_the_window_equals_the_brute_force_reference(
    training: list[float | None],
    served: list[list[float | None]],
    window: int,
    labels: list[str | None],
    words: list[list[str | None]],
) -> None:
    numeric, categorical = profile("float64", training), profile("string", labels)
    assert numeric is not None and categorical is not None
    monitor = DriftMonitor(
        {"x": "e.x", "w": "e.w"},
        TrainingStatistics(rows=1, features={"e.x": numeric, "e.w": categorical}),
        window=window,
        min_served=1,
    )
    for batch in served:
        monitor.observe({"x": batch})
    for batch in words:
        monitor.observe({"w": batch})
    found = monitor.analysis()
    for ref, stats, stream in (
        ("e.x", numeric, [v for b in served for v in b]),
        ("e.w", categorical, [v for b in words for v in b]),
    ):
        assert found[ref]["served"] == len(stream)
        last = stream[-window:]
        if not last:
            assert found[ref]["psi"] is None
            continue
        categories = [_reference_category(stats, v) for v in last]
        observed = [categories.count(c) / len(last) for c in range(stats.categories())]
        expected = stats.expected().tolist()
        assert math.isclose(sum(expected), 1.0, rel_tol=1e-9) or not training
        assert found[ref]["psi"] == pytest.approx(_reference_psi(expected, observed), abs=1e-9)


@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_psi_of_a_distribution_with_itself_is_zero_and_never_negative(shares: list[float]) -> None:
    assert psi(shares, shares) == 0.0
    other = list(reversed(shares))
    assert psi(shares, other) >= 0.0


def test_too_few_served_values_report_no_psi() -> None:
    stats = profile("int64", list(range(100)))
    assert stats is not None
    monitor = DriftMonitor({"a": "e.a", "b": "e.b"}, None, window=10, min_served=5)
    assert monitor.analysis() == {
        "e.a": {"psi": None, "served": 0, "window": {}},
        "e.b": {"psi": None, "served": 0, "window": {}},
    }
    monitor = DriftMonitor(
        {"a": "e.a"}, TrainingStatistics(rows=100, features={"e.a": stats}), 10, 5
    )
    monitor.observe({"a": [1, 2, 3, 4]})
    assert monitor.analysis()["e.a"] == {
        "psi": None,
        "served": 4,
        "window": {
            "filled": 4,
            "counted": 4,
            "start": monitor.analysis()["e.a"]["window"]["start"],
        },
    }
    monitor.observe({"a": [5]})
    assert monitor.analysis()["e.a"]["psi"] is not None


def test_training_statistics_cover_each_feature_by_ref_and_round_trip_as_json() -> None:
    table = pa.table(
        {
            "rider__age": pa.array([20, 30, None, 40], pa.int64()),
            "rider__city": pa.array(["a", "b", "a", None], pa.string()),
            "rider__tags": pa.array([["x"], None, [], ["y"]], pa.list_(pa.string())),
        }
    )
    stats = training_statistics(
        table,
        {
            "rider.age": ("rider__age", "int64"),
            "rider.city": ("rider__city", "string"),
            "rider.tags": ("rider__tags", "list<string>"),
        },
    )
    assert set(stats.features) == {"rider.age", "rider.city"}  # lists are not profiled
    assert stats.features["rider.age"].null_rate == 0.25
    assert stats.features["rider.city"].top == {"a": 2 / 3, "b": 1 / 3}
    text = stats.model_dump_json(by_alias=True)
    assert '"nullRate"' in text
    assert TrainingStatistics.model_validate_json(text) == stats


@settings(max_examples=150, deadline=None)
@given(
    training=st.lists(floats, max_size=40),
    served=st.lists(
        st.tuples(st.integers(0, 20), st.lists(floats, min_size=1, max_size=6)), max_size=25
    ),
    window=st.integers(1, 30),
    since=st.integers(0, 21),
    min_served=st.integers(1, 10),
)
def test_drift_since_a_moment_counts_only_the_windows_values_served_from_then(
    training: list[float | None],
    served: list[tuple[int, list[float | None]]],
    window: int,
    since: int,
    min_served: int,
) -> None:
    """A step is judged only on values served during it: the PSI of `since` is over the
    last `window` values whose serving time is at or after `since`, none if fewer than
    `min_served`; the window reports its fill, the values counted and its oldest time."""
    stats = profile("float64", training)
    assert stats is not None
    monitor = DriftMonitor(
        {"x": "e.x"}, TrainingStatistics(rows=1, features={"e.x": stats}), window, min_served
    )
    moments = sorted(t for t, _ in served)  # serving times only move forward
    stream = []
    for moment, (_, batch) in zip(moments, served, strict=True):
        monitor.observe({"x": batch}, float(1_700_000_000 + moment))
        stream += [(1_700_000_000 + moment, v) for v in batch]
    start = datetime.fromtimestamp(1_700_000_000 + since, UTC)
    found = monitor.analysis(start)["e.x"]
    last = stream[-window:]
    mine = [v for t, v in last if t >= start.timestamp()]
    assert found["window"].get("filled", 0) == len(last)
    assert found["window"].get("counted", 0) == len(mine)
    if last:
        assert found["window"]["start"] == (
            datetime.fromtimestamp(last[0][0], UTC).isoformat().replace("+00:00", "Z")
        )
    if len(mine) < min(min_served, window):
        assert found["psi"] is None
        return
    categories = [_reference_category(stats, v) for v in mine]
    observed = [categories.count(c) / len(mine) for c in range(stats.categories())]
    assert found["psi"] == pytest.approx(
        _reference_psi(stats.expected().tolist(), observed), abs=1e-9
    )


def test_values_served_before_the_step_do_not_count() -> None:
    """The window of 100 holds 90 shifted values from before the step and 10 from it: the
    step's PSI is over its 10 (in-distribution) values, not the shifted ones."""
    stats = profile("int64", list(range(100)))
    assert stats is not None
    monitor = DriftMonitor(
        {"a": "e.a"}, TrainingStatistics(rows=100, features={"e.a": stats}), 100, 10
    )
    monitor.observe({"a": [1000] * 90}, 1_000.0)
    monitor.observe({"a": list(range(0, 100, 10))}, 2_000.0)
    whole = monitor.analysis()["e.a"]
    step = monitor.analysis(datetime.fromtimestamp(2_000.0, UTC))["e.a"]
    assert whole["psi"] > 1 and step["psi"] < 0.01
    assert step["window"] == {"filled": 100, "counted": 10, "start": "1970-01-01T00:16:40Z"}
    later = monitor.analysis(datetime.fromtimestamp(2_001.0, UTC))["e.a"]
    assert later["psi"] is None and later["window"]["counted"] == 0
