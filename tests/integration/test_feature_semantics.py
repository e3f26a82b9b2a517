"""Training sets and online reads equal the brute-force reference (tests/reference.py) at
any time: random histories with equal timestamps, duplicates, invalid rows, NaN and ±Inf,
read at event times, window and TTL edges, and long after the last event.

DuckDB and SQLite on most examples; BigQuery and Bigtable (emulators) on fewer."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import Range
from lykeion.features.materialize import (
    materialize_duckdb,
    online_row,
    online_rows,
    query_run,
    split_errors,
)
from lykeion.features.view import FeatureView
from lykeion.stores.offline.base import LabelSpec, OfflineStore, ResolvedFeature
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.online.base import OnlineRow, OnlineStore
from lykeion.stores.online.codec import to_micros
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.integration.bigquery_fixture import PROJECT, bigquery_emulator  # noqa: F401
from tests.integration.bigtable_fixture import bigtable_emulator  # noqa: F401
from tests.reference import Column, Feature, Window, same, value_at

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(days=2)
KEYS = ["a", "b", "c"]
FEATURES: list[Feature] = [
    Column("score", "float64", "v"),
    Column("level", "int64", "s"),
    Window("n_1d", "int64", "count", "v", timedelta(days=1)),
    Window("n_s_3d", "int64", "count", "s", timedelta(days=3)),
    Window("sum_3d", "float64", "sum", "v", timedelta(days=3)),
    Window("mean_1d", "float64", "mean", "v", timedelta(days=1)),
    Window("min_3d", "float64", "min", "v", timedelta(days=3)),
    Window("max_1d", "float64", "max", "v", timedelta(days=1)),
    Window("last_3d", "float64", "last", "v", timedelta(days=3)),
]
_counter = itertools.count()


def manifest(path: Path) -> FeatureManifestSpec:
    features: list[dict[str, Any]] = []
    for f in FEATURES:
        if isinstance(f, Column):
            features.append({"name": f.name, "type": f.type, "column": f.column})
        else:
            days = f"{f.window.days}d"
            aggregation = {"function": f.function, "column": f.column, "window": days}
            features.append({"name": f.name, "type": f.type, "aggregation": aggregation})
    return FeatureManifestSpec.model_validate(
        {
            "description": "d",
            "owner": "o",
            "entity": {"name": "rider", "joinKey": "rider"},
            "source": {"file": {"path": str(path)}, "timestampColumn": "ts"},
            "ttl": f"{TTL.days}d",
            "features": features,
        }
    )


# Values add exactly (multiples of 0.5), so sums compare exactly whatever their order.
floats = st.one_of(
    st.none(),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0]),
    st.integers(-20, 20).map(lambda i: i / 2),
)
strings = st.one_of(st.none(), st.sampled_from(["1", "2", "-7", "x"]))  # "x": not an int64
# Whole hours over six days: rows often share a key and time.
hours = st.integers(0, 6 * 24).map(lambda h: T0 + timedelta(hours=h))
rows = st.lists(
    st.fixed_dictionaries(
        {
            "rider": st.one_of(st.sampled_from(KEYS), st.just(None)),
            "ts": st.one_of(hours, st.just(None)),
            "v": floats,
            "s": strings,
        }
    ),
    min_size=1,
    max_size=30,
).map(lambda rs: rs + rs[: len(rs) // 4])  # and some exact duplicates

# Times that sit on the edges: an event time, 1us either side, a window or the TTL after.
EDGES = [timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1)] + [
    d + e
    for d in (timedelta(days=1), timedelta(days=3), TTL)
    for e in (timedelta(0), timedelta(microseconds=1), -timedelta(microseconds=1))
]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, datetime]]]:
    source = draw(rows)
    times = sorted({r["ts"] for r in source if r["ts"] is not None}) or [T0]
    queries = []
    for _ in range(draw(st.integers(1, 12))):
        key = draw(st.sampled_from([*KEYS, "nobody"]))
        base = draw(st.sampled_from(times))
        offset = draw(
            st.one_of(
                st.sampled_from(EDGES),
                st.integers(-3 * 24 * 60, 200 * 24 * 60).map(lambda m: timedelta(minutes=m)),
            )
        )
        queries.append((key, base + offset))
    return source, queries


def write_source(folder: Path, source: list[dict[str, Any]]) -> Path:
    schema = pa.schema(
        [
            ("rider", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("v", pa.float64()),
            ("s", pa.string()),
        ]
    )
    path = folder / f"rides-{next(_counter)}.parquet"
    pq.write_table(pa.Table.from_pylist(source, schema=schema), path)
    return path


def expected(source: list[dict[str, Any]], key: str, t: datetime) -> dict[str, Any] | None:
    return value_at(source, "rider", "ts", FEATURES, TTL, key, t)


def assert_same(got: dict[str, Any] | None, want: dict[str, Any] | None, where: Any) -> None:
    if want is None or got is None:
        assert got == want, where
        return
    for name, value in want.items():
        assert same(got[name], value), (where, name, got[name], value)


def training_rows(
    offline: OfflineStore, view: FeatureView, queries: list[tuple[str, datetime]]
) -> list[dict[str, Any]]:
    labels = pa.table(
        {
            "rider": [k for k, _ in queries],
            "at": pa.array([t for _, t in queries], pa.timestamp("us", tz="UTC")),
            "y": list(range(len(queries))),
        }
    )
    refs = [ResolvedFeature(view, f.name) for f in FEATURES]
    return offline.training_set(labels, LabelSpec("rider", "at", "y"), refs).table.to_pylist()


def check_training(
    offline: OfflineStore,
    view: FeatureView,
    source: list[dict[str, Any]],
    queries: list[tuple[str, datetime]],
) -> None:
    for (key, t), row in zip(queries, training_rows(offline, view, queries), strict=True):
        want = expected(source, key, t)
        got = {f.name: row[f"rider__{f.name}"] for f in FEATURES}
        if want is None:
            assert all(v is None for v in got.values()), (key, t, got)
        else:
            assert_same(got, want, (key, t))


def check_online(
    online: OnlineStore, view: FeatureView, source: list[dict[str, Any]], offsets: list[timedelta]
) -> None:
    """Reads at each key's newest valid event plus `offsets` (>= 0): what a store holding
    the values from the newest event on must answer."""
    names = [f.name for f in FEATURES]
    for key in [*KEYS, "nobody"]:
        newest = [
            r["ts"]
            for r in source
            if r["rider"] == key
            and r["ts"] is not None
            and expected(source, key, r["ts"]) is not None
        ]
        base = max(newest) if newest else T0
        for offset in offsets:
            t = base + offset
            (got,) = online.read(view, [key], names, now=t)
            assert_same(got, expected(source, key, t), (key, t))


def read_offsets() -> st.SearchStrategy[list[timedelta]]:
    return st.lists(
        st.one_of(
            st.sampled_from([e for e in EDGES if e >= timedelta(0)]),
            st.integers(0, 400 * 24 * 60).map(lambda m: timedelta(minutes=m)),
        ),
        min_size=1,
        max_size=6,
    )


FAST = settings(
    max_examples=50,
    derandomize=True,
    deadline=None,
    # A failure reports its example as drawn: shrinking could take minutes of CI.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EMULATED = settings(FAST, max_examples=10)


def materialized(
    folder: Path, source: list[dict[str, Any]]
) -> tuple[FeatureManifestSpec, FeatureView, DuckDBOfflineStore, SqliteOnlineStore]:
    spec = manifest(write_source(folder, source))
    view = FeatureView.from_manifest("ns", f"m{next(_counter)}", spec)
    offline = DuckDBOfflineStore(folder / "offline.duckdb")
    online = SqliteOnlineStore(folder / f"online-{next(_counter)}.db")
    materialize_duckdb(spec, view, Range(), offline, online)
    return spec, view, offline, online


@FAST
@given(histories(), read_offsets())
def test_duckdb_training_set_and_sqlite_reads_equal_the_reference(
    tmp_path: Path,
    history: tuple[list[dict[str, Any]], list[tuple[str, datetime]]],
    offsets: list[timedelta],
) -> None:
    source, queries = history
    spec, view, offline, online = materialized(tmp_path, source)
    try:
        check_training(offline, view, source, queries)
        check_online(online, view, source, offsets)
    finally:
        online.close()
    # The Beam pipeline builds each key's online row from its rows (`online_row`), the
    # in-process engine column-wise (`online_rows`): the same rows, NaN and -0.0 kept.
    _, table = query_run(spec, view, Range(), None)
    rows = table.to_pylist()
    groups = [[r for r in rows if r["entity_key"] == k] for k in KEYS]
    by_key = [online_row(view, group) for group in groups if group]
    assert [_plain(r) for r in online_rows(view, table)] == [_plain(r) for r in by_key]


def _plain(row: OnlineRow) -> tuple[Any, ...]:
    """A row as the stores encode it (times in micros, values by repr: NaN, -0.0 kept)."""
    steps = [(to_micros(moment), repr(sorted(values.items()))) for moment, values in row.steps]
    return (row.key, to_micros(row.event_time), repr(sorted(row.values.items())), steps)


def test_bigquery_training_set_equals_the_reference(
    tmp_path: Path,
    bigquery_emulator: Any,  # noqa: F811
) -> None:
    from lykeion.stores.offline.bigquery import BigQueryOfflineStore

    @EMULATED
    @given(histories())
    def check(history: tuple[list[dict[str, Any]], list[tuple[str, datetime]]]) -> None:
        source, queries = history
        spec = manifest(write_source(tmp_path, source))
        view = FeatureView.from_manifest("ns", f"m{next(_counter)}", spec)
        table, _ = query_run(spec, view, Range(), None)
        store = BigQueryOfflineStore(
            PROJECT, f"semantics_{next(_counter)}", client=bigquery_emulator
        )
        store.write_history(view, split_errors(table)[0])
        check_training(store, view, source, queries)

    check()


def test_bigtable_reads_equal_the_reference(
    tmp_path: Path,
    bigtable_emulator: str,  # noqa: F811
) -> None:
    from lykeion.stores.online.bigtable import BigtableOnlineStore

    store = BigtableOnlineStore("lykeion-test", "semantics")

    @EMULATED
    @given(histories(), read_offsets())
    def check(
        history: tuple[list[dict[str, Any]], list[tuple[str, datetime]]],
        offsets: list[timedelta],
    ) -> None:
        source, _ = history
        spec = manifest(write_source(tmp_path, source))
        view = FeatureView.from_manifest("ns", f"m{next(_counter)}", spec)
        _, online = query_run(spec, view, Range(), None)
        store.write(view, online_rows(view, online))
        check_online(store, view, source, offsets)

    try:
        check()
    finally:
        store.close()


# -- the reported cases, each with its right value -------------------------------------

RIDES = [
    {"rider": "r1", "ts": datetime(2026, 1, d, 9, tzinfo=UTC), "v": 1.0, "s": "1"}
    for d in (1, 2, 3)
]


def _rides_7d(folder: Path) -> tuple[FeatureView, DuckDBOfflineStore, SqliteOnlineStore]:
    """Rides on Jan 1-3 counted over 7d: `count(v) over 7d` as `rides_7d`."""
    body = manifest(write_source(folder, RIDES)).model_dump(by_alias=True, exclude_none=True)
    body["features"] = [
        {
            "name": "rides_7d",
            "type": "int64",
            "aggregation": {"function": "count", "column": "v", "window": "7d"},
        }
    ]
    spec = FeatureManifestSpec.model_validate(body)
    view = FeatureView.from_manifest("ns", "rides", spec)
    offline = DuckDBOfflineStore(folder / "offline.duckdb")
    online = SqliteOnlineStore(folder / "online.db")
    materialize_duckdb(spec, view, Range(), offline, online)
    return view, offline, online


def test_a_7d_count_decays_to_zero_in_training_sets(tmp_path: Path) -> None:
    view, offline, online = _rides_7d(tmp_path)
    online.close()
    labels = [
        ("r1", datetime(2026, 1, 3, 12, tzinfo=UTC)),
        ("r1", datetime(2026, 1, 20, tzinfo=UTC)),
        ("r1", datetime(2026, 3, 15, tzinfo=UTC)),
    ]
    table = pa.table(
        {
            "rider": [k for k, _ in labels],
            "at": pa.array([t for _, t in labels], pa.timestamp("us", tz="UTC")),
            "y": [0, 0, 0],
        }
    )
    got = offline.training_set(
        table, LabelSpec("rider", "at", "y"), [ResolvedFeature(view, "rides_7d")]
    )
    assert got.table.column("rider__rides_7d").to_pylist() == [3, 0, 0]


def test_a_7d_count_decays_to_zero_online_without_a_new_run(tmp_path: Path) -> None:
    view, _, online = _rides_7d(tmp_path)
    try:
        read: Callable[[datetime], Any] = lambda t: online.read(view, ["r1"], ["rides_7d"], now=t)  # noqa: E731
        assert read(datetime(2026, 1, 3, 12, tzinfo=UTC)) == [{"rides_7d": 3}]
        assert read(datetime(2026, 1, 8, 10, tzinfo=UTC)) == [{"rides_7d": 2}]  # Jan 1 left
        assert read(datetime(2026, 1, 10, 9, tzinfo=UTC)) == [{"rides_7d": 0}]  # (t - 7d, t]
        assert read(datetime(2026, 3, 15, tzinfo=UTC)) == [{"rides_7d": 0}]
    finally:
        online.close()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_round_trip_through_sqlite(tmp_path: Path, value: float) -> None:
    source = [{"rider": "r1", "ts": T0, "v": value, "s": "1"}]
    _, view, _, online = materialized(tmp_path, source)
    try:
        (got,) = online.read(view, ["r1"], ["score", "sum_3d", "max_1d"], now=T0)
        assert got is not None
        for name in ("score", "sum_3d", "max_1d"):
            assert same(got[name], value), name
            assert isinstance(got[name], float)
    finally:
        online.close()
