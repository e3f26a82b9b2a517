"""The skew check's comparison and its isolation from predictions: a full queue drops
samples (counted), an offline store that does not answer is counted, never a mismatch."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from lykeion.features.view import FeatureView
from lykeion.serving.config import TrainedFeature
from lykeion.serving.enrich import Enriched, Enricher
from lykeion.serving.recompute import InProcess, RecomputeFailed, Recomputer
from lykeion.serving.skew import Sample, SkewChecker, same
from lykeion.stores.offline.base import ResolvedFeature
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from tests import objects

VALUES = {
    "int64": st.integers(-(2**63), 2**63 - 1),
    "float64": st.floats(allow_nan=True, allow_infinity=True),
    "string": st.text(max_size=5),
    "bool": st.booleans(),
    "timestamp": st.datetimes(timezones=st.just(UTC)),
    "list<float64>": st.lists(st.one_of(st.none(), st.floats(allow_nan=True)), max_size=4),
}


@given(st.sampled_from(sorted(VALUES)).flatmap(lambda t: st.tuples(st.just(t), VALUES[t])))
def test_a_value_equals_itself_nan_included(case: tuple[str, Any]) -> None:
    type_, value = case
    assert same(type_, value, value)
    assert same(type_, value, None) is False
    assert same(type_, None, None)


@given(st.integers(-(2**53), 2**53), st.integers(-(2**53), 2**53))
def test_numbers_are_equal_only_when_equal_and_of_the_declared_type(a: int, b: int) -> None:
    assert same("int64", a, b) == (a == b)
    assert same("float64", float(a), float(b)) == (a == b)
    assert not same("int64", a, float(a))  # a float where int64 is declared is skew
    assert not same("float64", float(a), a)
    assert not same("bool", bool(a), int(bool(a)))
    assert not same("int64", 1, True)


def test_nan_is_not_a_null_and_lists_compare_element_by_element() -> None:
    nan = math.nan
    assert same("float64", nan, float("nan"))
    assert not same("float64", nan, None)
    assert not same("float64", nan, 1.0)
    assert same("list<float64>", [1.0, nan, None], [1.0, nan, None])
    assert not same("list<float64>", [1.0], [1.0, 2.0])
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    assert not same("timestamp", moment, moment + timedelta(microseconds=1))


def _checker(offline: Path, queue_size: int = 2) -> tuple[SkewChecker, Enricher]:
    body = objects.manifest(features={"age": "int64"})
    view = FeatureView.from_body(body)
    enricher = Enricher(
        [TrainedFeature(ref="rider.age", column="rider__age", type="int64")], [view]
    )
    refs = [ResolvedFeature(i.view, i.feature) for i in enricher.inputs]
    checker = SkewChecker(
        enricher.inputs,
        InProcess(lambda: DuckDBOfflineStore(offline, lock_wait_seconds=0.0), refs),
        CollectorRegistry(),
        rate=1.0,
        queue_size=queue_size,
        interval=0.05,
    )
    return checker, enricher


def _served(*ages: int | None) -> Enriched:
    return Enriched({"rider__age": list(ages)}, [[] for _ in ages], [[] for _ in ages])


def test_a_full_queue_drops_samples_and_counts_them(tmp_path: Path) -> None:
    checker, _ = _checker(tmp_path / "offline.duckdb", queue_size=2)  # worker not started
    for _ in range(5):
        checker.offer([{"rider_id": "r1"}], _served(3), datetime.now(UTC))
    assert checker.dropped == 3
    assert checker.analysis()["rider.age"] == {"checked": 0, "mismatches": 0, "lastMismatch": None}


def test_an_unavailable_offline_store_is_counted_not_a_mismatch(tmp_path: Path) -> None:
    blocked = tmp_path / "a-directory"
    blocked.mkdir()  # DuckDB cannot open a directory as its database file
    checker, _ = _checker(blocked)
    checker.start()
    try:
        checker.offer([{"rider_id": "r1"}, {"rider_id": "r2"}], _served(3, 4), datetime.now(UTC))
    finally:
        checker.stop()
    assert checker.unavailable == 2
    assert checker.analysis()["rider.age"]["mismatches"] == 0


def test_a_key_the_offline_store_never_saw_is_a_mismatch_when_served_a_value(
    tmp_path: Path,
) -> None:
    checker, _ = _checker(tmp_path / "offline.duckdb")
    moment = datetime.now(UTC)
    # No history table yet: the offline value is null, so a served 3 is skew, a null is not.
    checker.check([])
    checker.check(
        [
            Sample([{"rider_id": "r1"}], [{"rider.age": 3}], moment),
            Sample([{"rider_id": "r2"}], [{"rider.age": None}], moment),
        ]
    )
    found = checker.analysis()["rider.age"]
    assert (found["checked"], found["mismatches"]) == (2, 1)
    assert found["lastMismatch"]["key"] == {"rider_id": "r1"}
    assert (found["lastMismatch"]["served"], found["lastMismatch"]["offline"]) == (3, None)


def test_the_child_process_recomputes_what_the_store_computes_in_process(
    tmp_path: Path,
) -> None:
    import pyarrow as pa

    from lykeion.serving.recompute import TIME

    body = objects.manifest(features={"age": "int64", "name": "string"})
    view = FeatureView.from_body(body)
    path = tmp_path / "offline.duckdb"
    store = DuckDBOfflineStore(path)
    day = datetime(2026, 5, 1, tzinfo=UTC)
    store.write_history(
        view,
        pa.table(
            {
                "entity_key": pa.array(["r1", "r1", "r2"]),
                "event_time": pa.array(
                    [day, day + timedelta(days=2), day], pa.timestamp("us", tz="UTC")
                ),
                "age": pa.array([30, 31, None], pa.int64()),
                "name": pa.array(["a", "b", "c"]),
            }
        ),
    )
    labels = pa.table(
        {
            "rider_id": pa.array(["r1", "r1", "r2", "nobody"]),
            TIME: pa.array(
                [day + timedelta(days=1), day + timedelta(days=3), day, day],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    refs = ["rider.age", "rider.name"]
    child = Recomputer(f"duckdb://{path}", [body], refs)
    try:
        found = child(labels)
    finally:
        child.close()
    assert found == {"rider.age": [30, 31, None, None], "rider.name": ["a", "b", "c", None]}
    local = InProcess(
        lambda: DuckDBOfflineStore(path),
        [ResolvedFeature(view, "age"), ResolvedFeature(view, "name")],
    )
    assert local(labels) == found

    blocked = tmp_path / "a-directory"
    blocked.mkdir()
    failing = Recomputer(f"duckdb://{blocked}", [body], refs)
    try:
        for _ in range(2):  # the child answers a failure and stays for the next request
            with pytest.raises(RecomputeFailed, match="IO"):
                failing(labels)
        assert failing._process is not None and failing._process.poll() is None
    finally:
        failing.close()
