"""What only the SQLite online store promises: its file layout, threads, processes, outages.

The behaviour it shares with Bigtable is in tests/integration/test_online_stores.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from lykeion.features.view import EVENT_TIME, KEY, AggregationDef, FeatureDef, FeatureView
from lykeion.stores.online.base import OnlineRow, StoreUnavailable
from lykeion.stores.online.codec import arrow_schema
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.previous_steps import per_aggregation_json

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def make_view(*features: FeatureDef, key_type: str = "string") -> FeatureView:
    return FeatureView(
        namespace="team-a",
        name="riders",
        entity="rider",
        join_key="rider_id",
        key_type=key_type,
        features=features or (FeatureDef("trips", "int64"), FeatureDef("city", "string")),
        ttl=timedelta(days=1),
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "online.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteOnlineStore]:
    opened = SqliteOnlineStore(path)
    yield opened
    opened.close()


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows straight from the file, through a connection the store knows nothing of."""
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_layout_is_one_table_per_view_keyed_by_entity(store: SqliteOnlineStore, path: Path) -> None:
    view = make_view(
        FeatureDef("vip", "bool"),
        FeatureDef("seen", "timestamp"),
        FeatureDef("cities", "list<string>"),
        key_type="int64",
    )
    store.write(view, [OnlineRow(7, NOW, {"vip": True, "seen": NOW, "cities": ["a", "b"]})])

    table = view.table
    assert table.startswith("team_a__riders__g0_")
    columns = raw(path, f'PRAGMA table_info("{table}")')
    assert [(c[1], c[2], c[5]) for c in columns] == [
        ("entity_key", "INTEGER", 1),
        ("event_time", "INTEGER", 0),
        ("vip", "INTEGER", 0),
        ("seen", "INTEGER", 0),
        ("cities", "TEXT", 0),
        ("_steps", "BLOB", 0),
    ]
    micros = int((NOW - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    assert raw(path, f'SELECT * FROM "{table}"') == [(7, micros, 1, micros, '["a","b"]', None)]
    assert json.loads(str(raw(path, f'SELECT cities FROM "{table}"')[0][0])) == ["a", "b"]
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]


def test_a_table_write_stores_the_cells_a_row_write_stores(path: Path) -> None:
    every_type = (
        FeatureDef("trips", "int64"),
        FeatureDef("fare", "float64"),
        FeatureDef("city", "string"),
        FeatureDef("vip", "bool"),
        FeatureDef("seen", "timestamp"),
        FeatureDef("trip_ids", "list<int64>"),
        FeatureDef("fares", "list<float64>"),
        FeatureDef("cities", "list<string>"),
        FeatureDef("flags", "list<bool>"),
        FeatureDef("seens", "list<timestamp>"),
    )
    values = {
        "trips": 2**63 - 1,
        "fare": 0.1,
        "city": "é",
        "vip": False,
        "seen": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "trip_ids": [1, None],
        "fares": [1.0, float("inf"), 2.5],
        "cities": ["a", None],
        "flags": [True],
        "seens": [NOW, None],
    }
    entries = [("a", NOW, values), ("b", NOW - timedelta(days=1), {"fare": 1.0}), ("c", NOW, {})]
    records = [{KEY: key, EVENT_TIME: moment, **v} for key, moment, v in entries]
    cells = []
    for columnar in (False, True):
        view = make_view(*every_type, key_type="string")
        store = SqliteOnlineStore(path.with_suffix(f".{columnar}.db"))
        try:
            if columnar:
                store.write_table(view, pa.Table.from_pylist(records, schema=arrow_schema(view)))
            else:
                store.write(view, [OnlineRow(*entry) for entry in entries])
        finally:
            store.close()
        names = ["entity_key", "event_time", *view.feature_names]
        typed = ", ".join(f'"{n}", typeof("{n}")' for n in names)
        cells.append(
            raw(path.with_suffix(f".{columnar}.db"), f'SELECT {typed} FROM "{view.table}"')
        )

    assert cells[1] == cells[0]
    assert len(cells[0]) == 3


def test_data_survives_reopening_and_table_creation_is_idempotent(path: Path) -> None:
    view = make_view()
    first = SqliteOnlineStore(path)
    first.write(view, [OnlineRow("a", NOW, {"trips": 1, "city": "x"})])
    first.close()

    second = SqliteOnlineStore(path)
    try:
        assert second.read(view, ["a"], ["trips", "city"], now=NOW) == [{"trips": 1, "city": "x"}]
        assert second.write(view, [OnlineRow("b", NOW, {"trips": 2, "city": "y"})]) == 1
    finally:
        second.close()


def test_a_gained_feature_becomes_a_column(store: SqliteOnlineStore, path: Path) -> None:
    view = make_view()
    store.write(view, [OnlineRow("a", NOW, {"trips": 1, "city": "x"})])
    grown = make_view(*view.features, FeatureDef("tags", "list<string>"))

    store.write(grown, [OnlineRow("b", NOW, {"trips": 2, "city": "y", "tags": ["t"]})])

    names = [c[1] for c in raw(path, f'PRAGMA table_info("{view.table}")')]
    assert names == ["entity_key", "event_time", "trips", "city", "_steps", "tags"]
    # Another store on the same file (another process) that saw the old schema still reads.
    other = SqliteOnlineStore(path)
    try:
        assert other.read(grown, ["a", "b"], ["tags"], now=NOW) == [{"tags": None}, {"tags": ["t"]}]
    finally:
        other.close()


def test_a_table_of_an_earlier_version_reads_its_json_steps_and_takes_binary_ones(
    store: SqliteOnlineStore, path: Path
) -> None:
    """Tables created before the binary steps declare `_steps` TEXT and hold JSON text:
    those rows read as before, and rows written now (a BLOB in the TEXT column) read too."""
    week = AggregationDef("count", timedelta(days=7))
    view = make_view(FeatureDef("city", "string"), FeatureDef("rides_7d", "int64", week))
    with sqlite3.connect(path) as conn:
        conn.execute(
            f'CREATE TABLE "{view.table}" (entity_key TEXT PRIMARY KEY NOT NULL, '
            'event_time INTEGER NOT NULL, "city" TEXT, "rides_7d" INTEGER, _steps TEXT) '
            "WITHOUT ROWID"
        )
    steps = ((NOW + timedelta(days=1), {"rides_7d": 1}), (NOW + timedelta(days=2), {"rides_7d": 0}))
    rows = [OnlineRow(key, NOW, {"city": "x", "rides_7d": 2}, steps) for key in ("old", "new")]
    store.write(view, rows)
    with sqlite3.connect(path) as conn:
        conn.execute(
            f'UPDATE "{view.table}" SET _steps = ? WHERE entity_key = ?',
            (per_aggregation_json(view, steps, rows[0].values), "old"),
        )
    kinds = raw(path, f'SELECT entity_key, typeof(_steps) FROM "{view.table}" ORDER BY 1')
    assert kinds == [("new", "blob"), ("old", "text")]

    for days, rides in ((0, 2), (1, 1), (1.5, 1), (2, 0), (400, 0)):
        at = NOW + timedelta(days=days)
        want = {"city": "x" if days <= 1 else None, "rides_7d": rides}  # TTL 1d
        assert store.read(view, ["old", "new"], ["city", "rides_7d"], now=at) == [want, want]


def test_reads_are_chunked_and_keep_order_past_the_chunk_size(store: SqliteOnlineStore) -> None:
    view = make_view(FeatureDef("trips", "int64"), key_type="int64")
    store.write(view, [OnlineRow(k, NOW, {"trips": k * 10}) for k in range(1200)])

    keys = [*range(1199, -1, -1), 5000]
    got = store.read(view, keys, ["trips"], now=NOW)

    assert got[:-1] == [{"trips": k * 10} for k in keys[:-1]]
    assert got[-1] is None


def test_chunked_reads_take_each_rows_own_steps(store: SqliteOnlineStore) -> None:
    """Past the chunk size, with steps only on some rows, and with and without an
    aggregation asked for (a read of row-level features only leaves the steps unread)."""
    week = AggregationDef("count", timedelta(days=7))
    view = make_view(FeatureDef("trips", "int64"), FeatureDef("n_7d", "int64", week))
    hour = timedelta(hours=1)
    rows = [
        OnlineRow(str(k), NOW, {"trips": k, "n_7d": 2}, ((NOW + (k % 3 + 1) * hour, {"n_7d": k}),))
        if k % 2
        else OnlineRow(str(k), NOW, {"trips": k, "n_7d": 2})
        for k in range(1200)
    ]
    store.write(view, rows)
    keys = [str(k) for k in range(1199, -1, -1)]

    got = store.read(view, keys, ["trips", "n_7d"], now=NOW + 2 * hour)

    def n_7d(k: int) -> int:
        return k if k % 2 and k % 3 <= 1 else 2

    assert got == [{"trips": int(k), "n_7d": n_7d(int(k))} for k in keys]
    assert store.read(view, keys, ["trips"], now=NOW + hour) == [{"trips": int(k)} for k in keys]


def test_bulk_write_counts_inserted_and_replaced_rows(store: SqliteOnlineStore) -> None:
    view = make_view()
    first = [OnlineRow(f"k{i}", NOW, {"trips": i, "city": "x"}) for i in range(1000)]
    assert store.write(view, first) == 1000

    mixed = [
        *(
            OnlineRow(f"k{i}", NOW + timedelta(seconds=1), {"trips": i, "city": "y"})
            for i in range(10)
        ),
        *(
            OnlineRow(f"k{i}", NOW - timedelta(seconds=1), {"trips": -1, "city": "z"})
            for i in range(10, 20)
        ),
        OnlineRow("new", NOW, {"trips": 0, "city": None}),
    ]
    assert store.write(view, mixed) == 11
    assert store.read(view, ["k0", "k10"], ["city"], now=NOW) == [{"city": "y"}, {"city": "x"}]


def test_bulk_table_write_counts_inserted_and_replaced_rows(store: SqliteOnlineStore) -> None:
    view = make_view()
    keys = [f"k{i}" for i in range(1000)]

    def columns(keys: list[str], moment: datetime, city: str) -> pa.Table:
        times = pa.array([moment] * len(keys), pa.timestamp("us", tz="UTC"))
        return pa.table({KEY: keys, EVENT_TIME: times, "city": [city] * len(keys)})

    assert store.write_table(view, columns(keys, NOW, "x")) == 1000
    assert store.write_table(view, columns(keys, NOW, "x")) == 0
    newer = columns(keys[:10], NOW + timedelta(seconds=1), "y")
    older = columns(keys[10:20], NOW - timedelta(seconds=1), "z")
    assert (
        store.write_table(view, pa.concat_tables([newer, older, columns(["new"], NOW, "w")])) == 11
    )
    assert store.read(view, ["k0", "k10", "new"], ["city", "trips"], now=NOW) == [
        {"city": "y", "trips": None},
        {"city": "x", "trips": None},
        {"city": "w", "trips": None},
    ]


def test_a_failed_write_leaves_nothing_behind(store: SqliteOnlineStore) -> None:
    view = make_view()
    store.write(view, [OnlineRow("a", NOW, {"trips": 1, "city": "x"})])

    with pytest.raises(TypeError):
        store.write(
            view,
            [
                OnlineRow("b", NOW, {"trips": 2, "city": "y"}),
                OnlineRow("c", NOW, {"trips": "three", "city": "z"}),
            ],
        )

    assert store.read(view, ["a", "b"], ["trips"], now=NOW) == [{"trips": 1}, None]


def test_naive_times_are_rejected(store: SqliteOnlineStore) -> None:
    view = make_view(FeatureDef("seen", "timestamp"))
    with pytest.raises(TypeError, match="naive"):
        store.write(view, [OnlineRow("a", NOW.replace(tzinfo=None), {"seen": None})])
    with pytest.raises(TypeError, match="naive"):
        store.write(view, [OnlineRow("a", NOW, {"seen": NOW.replace(tzinfo=None)})])


def test_reserved_column_names_cannot_be_features(store: SqliteOnlineStore) -> None:
    view = make_view(FeatureDef("event_time", "timestamp"))
    with pytest.raises(ValueError, match="reserved"):
        store.read(view, ["a"], ["event_time"], now=NOW)


def test_threads_read_while_another_writes(store: SqliteOnlineStore) -> None:
    view = make_view(FeatureDef("version", "int64"))
    keys = [f"k{i}" for i in range(50)]
    store.write(view, [OnlineRow(k, NOW, {"version": 0}) for k in keys])
    done = threading.Event()

    def writer() -> None:
        for version in range(1, 101):
            moment = NOW + timedelta(seconds=version)
            store.write(view, [OnlineRow(k, moment, {"version": version}) for k in keys])
        done.set()

    def reader() -> int:
        """Checks that a reader never sees a key go back in time; returns reads made."""
        last = dict.fromkeys(keys, 0)
        reads = 0
        while not done.is_set() or reads == 0:
            for key, entry in zip(keys, store.read(view, keys, ["version"], now=NOW), strict=True):
                assert entry is not None
                assert entry["version"] >= last[key]
                last[key] = entry["version"]
            reads += 1
        return reads

    with ThreadPoolExecutor(max_workers=9) as pool:
        readers = [pool.submit(reader) for _ in range(8)]
        pool.submit(writer).result(timeout=60)
        assert all(r.result(timeout=60) > 0 for r in readers)

    assert store.read(view, keys, ["version"], now=NOW) == [{"version": 100}] * 50


def test_two_stores_on_one_file_write_concurrently(path: Path) -> None:
    """As two pipeline workers (processes) would: the busy timeout serializes them."""
    view = make_view(FeatureDef("trips", "int64"))
    stores = [SqliteOnlineStore(path), SqliteOnlineStore(path)]

    def write(index: int) -> int:
        return sum(
            stores[index].write(view, [OnlineRow(f"s{index}-{n}", NOW, {"trips": n})])
            for n in range(200)
        )

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            assert list(pool.map(write, [0, 1])) == [200, 200]
        got = stores[0].read(view, ["s0-199", "s1-199"], ["trips"], now=NOW)
        assert got == [{"trips": 199}, {"trips": 199}]
    finally:
        for opened in stores:
            opened.close()


def test_ping_fails_once_the_file_is_deleted(store: SqliteOnlineStore, path: Path) -> None:
    store.write(make_view(), [OnlineRow("a", NOW, {"trips": 1, "city": "x"})])
    store.ping()

    path.unlink()

    with pytest.raises(StoreUnavailable, match="was deleted"):
        store.ping()


def test_a_replaced_file_is_served_and_a_deleted_one_is_unavailable(
    store: SqliteOnlineStore, path: Path
) -> None:
    store.ping()
    path.unlink()
    with pytest.raises(StoreUnavailable, match="was deleted"):
        store.ping()
    # Another database takes its place (a restored copy): the store serves that one.
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE other (x)")
    other.close()
    store.ping()
    with sqlite3.connect(path) as other:
        tables = {row[0] for row in other.execute("SELECT name FROM sqlite_master")}
    other.close()
    assert tables == {"other"}


def test_a_path_that_cannot_hold_a_database_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    with pytest.raises(StoreUnavailable):
        SqliteOnlineStore(blocker / "online.db")


def test_a_store_whose_file_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    directory = tmp_path / "online.db"
    directory.mkdir()
    store = SqliteOnlineStore(directory)
    try:
        with pytest.raises(StoreUnavailable):
            store.ping()
        with pytest.raises(StoreUnavailable):
            store.read(make_view(), ["a"], ["trips"], now=NOW)
    finally:
        store.close()


def test_a_closed_store_is_unavailable(path: Path) -> None:
    store = SqliteOnlineStore(path)
    store.ping()
    store.close()

    with pytest.raises(StoreUnavailable, match="closed"):
        store.ping()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.read(make_view(), ["a"], ["trips"], now=NOW)
