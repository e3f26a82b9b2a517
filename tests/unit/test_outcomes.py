"""The live metric of `spec.rollout.labels` (`serving/outcomes.py`) held to a brute-force
reference of its definition on random data: logged requests joined to delayed outcomes by
key and time, then the gate's metric, through a real request log and a real CSV file."""

from __future__ import annotations

import csv
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.api.model import LabelsSource
from lykeion.serving.outcomes import Label, LiveLabels, Logged, join

BASE = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEYS = ["k1", "k2", "k3"]

requests_strategy = st.lists(
    st.tuples(
        st.integers(0, 8),  # seconds after BASE: a coarse grid, so times coincide
        st.sampled_from(KEYS),
        st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]),  # scores, with ties
        st.sampled_from(["1.0", "1.0", "2.0"]),  # another version's rows are not counted
    ),
    min_size=1,
    max_size=30,
)
labels_strategy = st.lists(
    st.tuples(
        st.integers(0, 12), st.sampled_from(KEYS), st.one_of(st.none(), st.sampled_from([0, 1]))
    ),
    min_size=1,
    max_size=30,
)


def _reference_pairs(
    requests: list[tuple[int, str, float, str]],
    labels: list[tuple[int, str, int | None]],
    horizon: int,
    since: int,
    until: int,
) -> tuple[list[tuple[float, int]], int]:
    """The definition, by brute force: each request of 1.0 in [since, until] takes the
    earliest label of its key in [t, t + horizon] (ties: the first row); no label, no pair."""
    mine = [r for r in requests if r[3] == "1.0" and since <= r[0] <= until]
    pairs = []
    for t, key, score, _ in mine:
        candidates = [
            (u, i, target)
            for i, (u, k, target) in enumerate(labels)
            if k == key and target is not None and t <= u <= t + horizon
        ]
        if candidates:
            pairs.append((score, min(candidates)[2]))
    return pairs, len(mine)


def _reference_auc(pairs: list[tuple[float, int]]) -> float | None:
    positive = [s for s, y in pairs if y == 1]
    negative = [s for s, y in pairs if y == 0]
    if not positive or not negative:
        return None
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def _reference(metric: str, pairs: list[tuple[float, int]]) -> float | None:
    if not pairs:
        return None
    if metric == "roc_auc":
        return _reference_auc(pairs)
    if metric == "accuracy":
        return sum((1 if s >= 0.5 else 0) == y for s, y in pairs) / len(pairs)
    return math.sqrt(sum((s - y) ** 2 for s, y in pairs) / len(pairs))  # rmse


def _write(
    folder: Path,
    requests: list[tuple[int, str, float, str]],
    labels: list[tuple[int, str, int | None]],
) -> None:
    with (folder / "requests.jsonl").open("wb") as log:
        for seconds, key, score, version in requests:
            entry = {
                "time": (BASE + timedelta(seconds=seconds)).timestamp(),
                "version": version,
                "keys": {"rider_id": key},
                "features": {},
                "prediction": score,
            }
            log.write(orjson.dumps(entry) + b"\n")
        log.write(b'{"time": 1, "vers')  # a torn last line of a crashed writer
    with (folder / "labels.csv").open("w", newline="") as sink:
        writer = csv.writer(sink)
        writer.writerow(["rider_id", "label_time", "ordered_again"])
        for seconds, key, target in labels:
            moment = (BASE + timedelta(seconds=seconds)).isoformat()
            writer.writerow([key, moment, "" if target is None else target])


@settings(max_examples=100, deadline=None)
@given(
    requests=requests_strategy,
    labels=labels_strategy,
    horizon=st.integers(0, 4),
    since=st.integers(0, 6),
    metric=st.sampled_from(["roc_auc", "accuracy", "rmse"]),
)
def test_the_live_metric_equals_the_brute_force_join_and_metric(
    requests: list[tuple[int, str, float, str]],
    labels: list[tuple[int, str, int | None]],
    horizon: int,
    since: int,
    metric: str,
) -> None:
    until = 7
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _write(folder, requests, labels)
        live = LiveLabels(
            source=LabelsSource.model_validate(
                {
                    "file": {"path": "labels.csv", "format": "csv"},
                    "timestampColumn": "label_time",
                    "target": "ordered_again",
                }
            ),
            horizon_seconds=float(horizon),
            data_root=folder,
            offline_store="",
            log=folder / "requests.jsonl",
            version="1.0",
            key_types={"rider_id": "string"},
        )
        found = live.measure(
            metric,
            BASE + timedelta(seconds=since),
            BASE + timedelta(seconds=until),
            [0, 1],
        )
    pairs, count = _reference_pairs(requests, labels, horizon, since, until)
    assert (found.metric, found.requests, found.labelled) == (metric, count, len(pairs))
    expected = _reference(metric, pairs)
    if expected is None:
        assert found.value is None and found.message
    else:
        assert found.value == pytest.approx(expected, abs=1e-12)


@given(
    requests=st.lists(
        st.tuples(st.integers(0, 50), st.sampled_from(KEYS), st.floats(0, 1)), max_size=40
    ),
    labels=st.lists(
        st.tuples(st.integers(0, 60), st.sampled_from(KEYS), st.integers(0, 1)), max_size=40
    ),
    horizon=st.integers(0, 20),
)
def test_the_join_takes_the_first_label_at_or_after_each_request_within_the_horizon(
    requests: list[tuple[int, str, float]],
    labels: list[tuple[int, str, int]],
    horizon: int,
) -> None:
    logged = [Logged(t, (k,), p) for t, k, p in requests]
    outcomes = [Label(u, (k,), (i, y)) for i, (u, k, y) in enumerate(labels)]
    pairs, count = join(logged, outcomes, horizon)
    expected: list[tuple[Any, Any]] = []
    for t, key, score in requests:
        candidates = [
            (u, i, y) for i, (u, k, y) in enumerate(labels) if k == key and t <= u <= t + horizon
        ]
        if candidates:
            _, i, y = min(candidates)
            expected.append((score, (i, y)))
    assert (pairs, count) == (expected, len(requests))


def test_unreadable_labels_are_no_data_with_the_reason(tmp_path: Path) -> None:
    _write(tmp_path, [(1, "k1", 0.9, "1.0")], [])
    live = LiveLabels(
        source=LabelsSource.model_validate(
            {"file": {"path": "absent.csv", "format": "csv"}, "timestampColumn": "t", "target": "y"}
        ),
        horizon_seconds=60.0,
        data_root=tmp_path,
        offline_store="",
        log=tmp_path / "requests.jsonl",
        version="1.0",
        key_types={"rider_id": "string"},
    )
    found = live.measure("roc_auc", None, BASE + timedelta(hours=1))
    assert (found.value, found.labelled, found.requests) == (None, 0, 1)
    assert "absent.csv" in found.message and found.message.startswith("labels: ")
