"""The OnlineStore contract, run against SQLite and against Google's Bigtable emulator."""

from __future__ import annotations

import dataclasses
import itertools
import math
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.cloud.bigtable.data import RowMutationEntry, SetCell

from lykeion.features.view import EVENT_TIME, KEY, AggregationDef, FeatureDef, FeatureView
from lykeion.stores.online.base import OnlineRow, OnlineStore, StoreUnavailable
from lykeion.stores.online.bigtable import FAMILY, STEPS_COLUMN, BigtableOnlineStore, table_id
from lykeion.stores.online.codec import arrow_schema, to_micros
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.integration.bigtable_fixture import (
    EMULATOR_HOST,
    Emulator,
    bigtable_emulator,  # noqa: F401
    emulator_binary,
)
from tests.previous_steps import per_aggregation_json, whole_steps_json

PROJECT = "lykeion-test"
INSTANCE = "online"
_prefixes = itertools.count()

EVERY_TYPE = (
    FeatureDef("trips", "int64"),
    FeatureDef("fare", "float64"),
    FeatureDef("city", "string"),
    FeatureDef("vip", "bool"),
    FeatureDef("last_seen", "timestamp"),
    FeatureDef("trip_ids", "list<int64>"),
    FeatureDef("fares", "list<float64>"),
    FeatureDef("cities", "list<string>"),
    FeatureDef("flags", "list<bool>"),
    FeatureDef("seen", "list<timestamp>"),
)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def make_view(
    features: tuple[FeatureDef, ...] = EVERY_TYPE,
    key_type: str = "string",
    ttl: timedelta = timedelta(days=1),
) -> FeatureView:
    return FeatureView(
        namespace="team-a",
        name="riders",
        entity="rider",
        join_key="rider_id",
        key_type=key_type,
        features=features,
        ttl=ttl,
    )


def small_view(ttl: timedelta = timedelta(days=1)) -> FeatureView:
    return make_view((FeatureDef("trips", "int64"), FeatureDef("city", "string")), ttl=ttl)


@pytest.fixture(params=["sqlite", "bigtable"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OnlineStore]:
    """A store with no tables yet: a fresh file, or a fresh table prefix on the emulator."""
    made: SqliteOnlineStore | BigtableOnlineStore
    if request.param == "sqlite":
        made = SqliteOnlineStore(tmp_path / "online.db")
    else:
        request.getfixturevalue("bigtable_emulator")
        made = BigtableOnlineStore(PROJECT, INSTANCE, table_prefix=f"t{next(_prefixes)}")
    yield made
    made.close()


def rows(*entries: tuple[str | int, datetime, dict[str, Any]]) -> list[OnlineRow]:
    return [OnlineRow(key, moment, values) for key, moment, values in entries]


def table(view: FeatureView, *entries: tuple[str | int, datetime, dict[str, Any]]) -> pa.Table:
    """The entries as the columns `write_table` takes, in the view's Arrow schema."""
    records = [{KEY: key, EVENT_TIME: moment, **values} for key, moment, values in entries]
    return pa.Table.from_pylist(records, schema=arrow_schema(view))


@pytest.mark.parametrize("key_type", ["string", "int64"])
def test_every_type_round_trips_exactly(store: OnlineStore, key_type: str) -> None:
    view = make_view(key_type=key_type)
    full = {
        "trips": 2**63 - 1,
        "fare": 0.1,
        "city": 'Zürich "Nord" \\ 東京',
        "vip": True,
        # Given in +02:00, read back as the same instant in UTC, microseconds intact.
        "last_seen": datetime(2025, 5, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=2))),
        "trip_ids": [-(2**63), 0, 7],
        "fares": [1e-300, 1.5e300, 3.0],
        "cities": ["", "a,b", "[x]"],
        "flags": [False, True],
        "seen": [datetime(2024, 1, 1, tzinfo=UTC), datetime(1999, 12, 31, 1, 2, 3, 4, tzinfo=UTC)],
    }
    falsy = {
        "trips": 0,
        "fare": 0.0,
        "city": "",
        "vip": False,
        "last_seen": datetime(1970, 1, 1, tzinfo=UTC),
        "trip_ids": [],
        "fares": [],
        "cities": [],
        "flags": [],
        "seen": [],
    }
    nulls = dict.fromkeys(full)
    null_elements = {**nulls, "trip_ids": [1, None, 3], "cities": [None]}
    keys: list[str | int] = [1, 2, 3, 4] if key_type == "int64" else ["a", "b", "c", "d"]
    written = store.write(
        view,
        rows(
            (keys[0], NOW, full),
            (keys[1], NOW, falsy),
            (keys[2], NOW, nulls),
            (keys[3], NOW, null_elements),
        ),
    )
    assert written == 4

    got = store.read(view, keys, list(full), now=NOW)

    assert got == [full, falsy, nulls, null_elements]
    first, second = got[0], got[1]
    assert first is not None and second is not None
    for entry in (first, second):
        assert type(entry["trips"]) is int
        assert type(entry["fare"]) is float
        assert type(entry["vip"]) is bool
        assert all(type(flag) is bool for flag in entry["flags"])
        assert entry["last_seen"].utcoffset() == timedelta(0)
    assert first["last_seen"] == datetime(2025, 5, 31, 21, 59, 59, 999999, tzinfo=UTC)
    assert all(moment.tzinfo is not None for moment in first["seen"])


@pytest.mark.parametrize("key_type", ["string", "int64"])
def test_a_table_write_stores_what_a_row_write_stores(store: OnlineStore, key_type: str) -> None:
    by_rows = make_view(key_type=key_type)
    by_table = dataclasses.replace(by_rows, name="riders-columnar")
    keys: list[str | int] = [1, 2, 3, 4] if key_type == "int64" else ["a", "b", "c", "d"]
    entries = [
        (
            keys[0],
            NOW,
            {
                "trips": -(2**63),
                "fare": 5e-324,
                "city": 'Zürich "Nord" \\ 東京',
                "vip": True,
                "last_seen": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                "trip_ids": [2**63 - 1, None],
                "fares": [math.inf, -0.0, 0.1],
                "cities": ["", "[x]", None],
                "flags": [True, False],
                "seen": [NOW, datetime(1999, 12, 31, 1, 2, 3, 4, tzinfo=UTC)],
            },
        ),
        (keys[1], NOW - timedelta(hours=1), {"trips": 0, "fare": 0.0, "vip": False, "fares": []}),
        (keys[2], NOW, {}),
        (keys[3], NOW + timedelta(microseconds=1), {"city": "", "seen": [None]}),
    ]
    names = list(by_rows.feature_names)

    assert store.write(by_rows, rows(*entries)) == 4
    assert store.write_table(by_table, table(by_table, *entries)) == 4

    expected = store.read(by_rows, keys, names, now=NOW)
    got = store.read(by_table, keys, names, now=NOW)
    assert got == expected
    assert all(entry is not None for entry in got)
    assert [[type(v) for v in e.values()] for e in got if e] == [
        [type(v) for v in e.values()] for e in expected if e
    ]


def test_table_writes_follow_the_late_data_rule_and_count(store: OnlineStore) -> None:
    view = small_view()
    first = table(view, ("a", NOW, {"trips": 2, "city": "new"}), ("b", NOW, {"trips": 1}))
    assert store.write_table(view, first) == 2
    assert store.write_table(view, first) == 0

    late = table(view, ("a", NOW - timedelta(microseconds=1), {"trips": 1, "city": "old"}))
    assert store.write_table(view, late) == 0
    corrected = table(view, ("b", NOW, {"trips": 1, "city": "corrected"}))
    assert store.write_table(view, corrected) == 1
    several = table(
        view,
        ("c", NOW, {"trips": 3, "city": "newest"}),
        ("c", NOW - timedelta(hours=1), {"trips": 1, "city": "older"}),
    )
    store.write_table(view, several)
    assert store.write_table(view, table(view)) == 0

    assert store.read(view, ["a", "b", "c"], ["trips", "city"], now=NOW) == [
        {"trips": 2, "city": "new"},
        {"trips": 1, "city": "corrected"},
        {"trips": 3, "city": "newest"},
    ]


def test_table_columns_are_held_to_the_manifest_types(store: OnlineStore) -> None:
    view = make_view((FeatureDef("trips", "int64"), FeatureDef("fare", "float64")))
    times = pa.array([NOW], pa.timestamp("us", tz="UTC"))

    def columns(**overrides: Any) -> pa.Table:
        return pa.table({KEY: ["a"], EVENT_TIME: times, "trips": [1]} | overrides)

    with pytest.raises(TypeError, match=r"rider\.trips"):
        store.write_table(view, columns(trips=["5"]))
    with pytest.raises(TypeError, match=r"rider\.trips"):
        store.write_table(view, columns(trips=[True]))
    with pytest.raises(TypeError, match=r"rider\.fare"):
        store.write_table(view, columns(fare=["5.0"]))
    with pytest.raises(TypeError, match="naive"):
        store.write_table(view, columns(**{EVENT_TIME: pa.array([NOW.replace(tzinfo=None)])}))
    with pytest.raises(ValueError, match="nope"):
        store.write_table(view, columns(nope=[1]))
    with pytest.raises(ValueError, match="empty"):
        store.write_table(view, columns(**{KEY: [""]}))
    with pytest.raises(ValueError, match="null"):
        store.write_table(view, columns(**{KEY: pa.array([None], pa.string())}))
    assert store.read(view, ["a"], ["trips"], now=NOW) == [None]

    # What `write` coerces, a table may carry too: integers for a float64, keys printed.
    assert store.write_table(view, columns(**{KEY: [42]}, fare=pa.array([3], pa.int8()))) == 1
    assert store.read(view, ["42"], ["trips", "fare"], now=NOW) == [{"trips": 1, "fare": 3.0}]


def test_float_special_values_round_trip(store: OnlineStore) -> None:
    view = make_view((FeatureDef("fare", "float64"), FeatureDef("fares", "list<float64>")))
    store.write(view, rows(("a", NOW, {"fare": math.inf, "fares": [-math.inf, 5e-324]})))

    assert store.read(view, ["a"], ["fare", "fares"], now=NOW) == [
        {"fare": math.inf, "fares": [-math.inf, 5e-324]}
    ]


def test_nan_round_trips_in_values_lists_steps_and_tables(store: OnlineStore) -> None:
    """SQLite turns a bound NaN into NULL; both stores must give NaN back."""
    window = AggregationDef("max", timedelta(days=1))
    view = make_view(
        (
            FeatureDef("fare", "float64"),
            FeatureDef("fares", "list<float64>"),
            FeatureDef("max_fare", "float64", window),
        )
    )
    later = NOW + timedelta(days=1)
    row = OnlineRow(
        "a",
        NOW,
        {"fare": math.nan, "fares": [math.nan, -math.inf], "max_fare": math.nan},
        ((later, {"max_fare": -math.inf}), (later + timedelta(hours=1), {"max_fare": math.nan})),
    )
    assert store.write(view, [row]) == 1
    assert store.write(view, [row]) == 0  # NaN equals NaN: nothing changed

    def read(at: datetime) -> dict[str, Any]:
        (entry,) = store.read(view, ["a"], ["fare", "fares", "max_fare"], now=at)
        assert entry is not None
        return entry

    now = read(NOW)
    assert math.isnan(now["fare"]) and math.isnan(now["max_fare"])
    assert math.isnan(now["fares"][0]) and now["fares"][1] == -math.inf
    assert read(later)["max_fare"] == -math.inf
    assert math.isnan(read(later + timedelta(hours=2))["max_fare"])

    table = pa.table(
        {
            KEY: ["b"],
            EVENT_TIME: pa.array([NOW], pa.timestamp("us", tz="UTC")),
            "fare": [math.nan],
        }
    )
    assert store.write_table(view, table) == 1
    (entry,) = store.read(view, ["b"], ["fare"], now=NOW)
    assert entry is not None and math.isnan(entry["fare"])


def _store_steps(store: OnlineStore, view: FeatureView, key: str, text: str) -> None:
    """Put `text` in a row's steps as an earlier version wrote it: SQLite's TEXT, Bigtable's
    UTF-8 cell at the row's timestamp."""
    if isinstance(store, SqliteOnlineStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute(f'UPDATE "{view.table}" SET _steps = ? WHERE entity_key = ?', (text, key))
        return
    assert isinstance(store, BigtableOnlineStore)
    stamp = to_micros(NOW) - to_micros(NOW) % 1000
    cell = SetCell(FAMILY, STEPS_COLUMN, text.encode(), timestamp_micros=stamp)
    store._table(view).bulk_mutate_rows([RowMutationEntry(key.encode(), [cell])])


def test_steps_written_by_earlier_versions_read_as_before(store: OnlineStore) -> None:
    """The binary steps, the previous version's JSON and the first version's whole steps
    read alike at every edge, bit for bit."""
    week = AggregationDef("count", timedelta(days=7))
    view = make_view(
        (
            FeatureDef("city", "string"),
            FeatureDef("rides_7d", "int64", week),
            FeatureDef("spent_7d", "float64", AggregationDef("sum", timedelta(days=7))),
            FeatureDef("cities_30d", "list<string>", AggregationDef("last", timedelta(days=30))),
        ),
        ttl=timedelta(days=1000),
    )
    day = timedelta(days=1)
    values = {"city": "x", "rides_7d": 2, "spent_7d": 3.5, "cities_30d": ["a"]}
    steps = (
        (NOW + day, {"rides_7d": 1, "spent_7d": -0.0, "cities_30d": ["a"]}),
        (NOW + 2 * day, {"rides_7d": 0, "spent_7d": None, "cities_30d": ["a"]}),
        (NOW + 30 * day, {"rides_7d": 0, "spent_7d": None, "cities_30d": None}),
    )
    store.write(view, [OnlineRow("a", NOW, values, steps)])
    names = ["city", "rides_7d", "spent_7d", "cities_30d"]
    times = [NOW, NOW + day - timedelta(microseconds=1), NOW + day, NOW + 1.5 * day]
    times += [NOW + 2 * day, NOW + 30 * day, NOW + 400 * day]
    want = [
        [2, 3.5, ["a"]],
        [2, 3.5, ["a"]],
        [1, -0.0, ["a"]],
        [1, -0.0, ["a"]],
        [0, None, ["a"]],
        [0, None, None],
        [0, None, None],
    ]

    def reads() -> list[str]:
        return [repr(store.read(view, ["a"], names, now=t)) for t in times]

    expected = [repr([{"city": "x", **dict(zip(names[1:], w, strict=True))}]) for w in want]
    assert reads() == expected
    for earlier in (per_aggregation_json(view, steps, values), whole_steps_json(view, steps)):
        assert earlier is not None
        _store_steps(store, view, "a", earlier)
        assert reads() == expected


def test_int64_keys_accept_their_string_form(store: OnlineStore) -> None:
    view = make_view((FeatureDef("trips", "int64"),), key_type="int64")
    store.write(view, rows(("42", NOW, {"trips": 1})))

    assert store.read(view, [42, "42"], ["trips"], now=NOW) == [{"trips": 1}, {"trips": 1}]


def test_batched_read_keeps_key_order_and_unknown_keys_are_none(store: OnlineStore) -> None:
    view = small_view()
    store.write(view, rows(*((k, NOW, {"trips": i, "city": k * 2}) for i, k in enumerate("abcde"))))

    got = store.read(view, ["e", "zz", "a", "c", "a"], ["city", "trips"], now=NOW)

    assert got == [
        {"city": "ee", "trips": 4},
        None,
        {"city": "aa", "trips": 0},
        {"city": "cc", "trips": 2},
        {"city": "aa", "trips": 0},
    ]
    assert store.read(view, ["b"], ["city"], now=NOW) == [{"city": "bb"}]
    assert store.read(view, [], ["city"], now=NOW) == []


def test_read_of_a_view_never_written_is_all_none(store: OnlineStore) -> None:
    assert store.read(small_view(), ["a", "b"], ["trips"], now=NOW) == [None, None]


def test_unknown_feature_and_wrong_types_are_rejected(store: OnlineStore) -> None:
    view = small_view()
    with pytest.raises(KeyError, match="nope"):
        store.read(view, ["a"], ["nope"], now=NOW)
    with pytest.raises(TypeError, match=r"rider\.trips"):
        store.write(view, rows(("a", NOW, {"trips": "5", "city": "x"})))
    with pytest.raises(TypeError, match=r"rider\.trips"):
        store.write(view, rows(("a", NOW, {"trips": True, "city": "x"})))
    with pytest.raises(ValueError, match="nope"):
        store.write(view, rows(("a", NOW, {"trips": 1, "nope": 1})))
    with pytest.raises(ValueError, match="empty"):
        store.write(view, rows(("", NOW, {"trips": 1, "city": "x"})))
    assert store.read(view, ["a"], ["trips"], now=NOW) == [None]


def test_row_level_values_older_than_the_ttl_read_as_null(store: OnlineStore) -> None:
    """The key stays known (its aggregations do not expire); its row-level values do."""
    view = small_view(ttl=timedelta(hours=1))
    store.write(
        view,
        rows(
            ("stale", NOW - timedelta(hours=1, microseconds=1), {"trips": 1, "city": "x"}),
            ("edge", NOW - timedelta(hours=1), {"trips": 2, "city": "y"}),
            ("fresh", NOW - timedelta(minutes=5), {"trips": 3, "city": "z"}),
        ),
    )

    assert store.read(view, ["stale", "edge", "fresh"], ["trips"], now=NOW) == [
        {"trips": None},
        {"trips": 2},
        {"trips": 3},
    ]
    earlier = NOW - timedelta(minutes=30)
    assert store.read(view, ["stale"], ["trips"], now=earlier) == [{"trips": 1}]


def test_ttl_defaults_to_the_current_time(store: OnlineStore) -> None:
    view = small_view(ttl=timedelta(hours=1))
    now = datetime.now(UTC)
    store.write(
        view,
        rows(
            ("old", now - timedelta(hours=2), {"trips": 1, "city": "x"}),
            ("new", now, {"trips": 2, "city": "y"}),
        ),
    )

    assert store.read(view, ["old", "new"], ["trips"]) == [{"trips": None}, {"trips": 2}]


def test_late_data_never_overwrites_newer_values(store: OnlineStore) -> None:
    view = small_view()
    assert store.write(view, rows(("a", NOW, {"trips": 2, "city": "new"}))) == 1

    late = rows(("a", NOW - timedelta(microseconds=1), {"trips": 1, "city": "old"}))
    assert store.write(view, late) == 0
    assert store.read(view, ["a"], ["trips", "city"], now=NOW) == [{"trips": 2, "city": "new"}]

    newer = rows(("a", NOW + timedelta(microseconds=1), {"trips": 3, "city": None}))
    assert store.write(view, newer) == 1
    assert store.read(view, ["a"], ["trips", "city"], now=NOW) == [{"trips": 3, "city": None}]


def test_writing_the_same_rows_twice_changes_nothing(store: OnlineStore) -> None:
    view = make_view()
    batch = rows(
        ("a", NOW, {"trips": 1, "cities": ["x"], "seen": [NOW]}),
        ("b", NOW - timedelta(hours=1), {"fare": 2.5, "vip": False}),
    )
    assert store.write(view, batch) == 2
    before = store.read(view, ["a", "b"], list(view.feature_names), now=NOW)

    assert store.write(view, batch) == 0
    assert store.read(view, ["a", "b"], list(view.feature_names), now=NOW) == before


def test_equal_event_time_with_a_different_value_replaces(store: OnlineStore) -> None:
    view = small_view()
    store.write(view, rows(("a", NOW, {"trips": 1, "city": "x"})))

    assert store.write(view, rows(("a", NOW, {"trips": 1, "city": "corrected"}))) == 1
    assert store.read(view, ["a"], ["city"], now=NOW) == [{"city": "corrected"}]


def test_of_several_rows_for_one_key_in_a_write_the_newest_wins(store: OnlineStore) -> None:
    view = small_view()
    batch = rows(
        ("a", NOW, {"trips": 2, "city": "newest"}),
        ("a", NOW - timedelta(hours=1), {"trips": 1, "city": "older"}),
    )
    store.write(view, batch)

    assert store.read(view, ["a"], ["city"], now=NOW) == [{"city": "newest"}]


def test_a_view_that_gains_a_feature_keeps_old_rows_readable(store: OnlineStore) -> None:
    before = small_view()
    store.write(before, rows(("a", NOW, {"trips": 1, "city": "x"})))
    after = make_view((*before.features, FeatureDef("rating", "float64")))

    assert store.read(after, ["a"], ["trips", "city", "rating"], now=NOW) == [
        {"trips": 1, "city": "x", "rating": None}
    ]
    assert store.write(after, rows(("b", NOW, {"trips": 2, "city": "y", "rating": 4.5}))) == 1
    assert store.read(after, ["a", "b"], ["rating", "trips"], now=NOW) == [
        {"rating": None, "trips": 1},
        {"rating": 4.5, "trips": 2},
    ]
    # A writer still on the old manifest keeps working next to the new one.
    assert store.write(before, rows(("c", NOW, {"trips": 3, "city": "z"}))) == 1
    assert store.read(after, ["c"], ["rating", "trips"], now=NOW) == [{"rating": None, "trips": 3}]


def test_threads_read_while_another_writes(store: OnlineStore) -> None:
    """The Feature API reads from a thread pool while a pipeline writes."""
    view = small_view()
    keys = [f"k{i}" for i in range(20)]

    def write(version: int) -> int:
        moment = NOW + timedelta(seconds=version)
        return store.write(view, [OnlineRow(k, moment, {"trips": version}) for k in keys])

    def pipeline() -> list[int]:
        return [write(version) for version in range(1, 11)]

    def read(_: int) -> list[int]:
        entries = store.read(view, keys, ["trips"], now=NOW)
        return [entry["trips"] if entry else -1 for entry in entries]

    write(0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        reads = [pool.submit(read, n) for n in range(40)]
        assert pool.submit(pipeline).result(timeout=60) == [20] * 10
        seen = [future.result(timeout=60) for future in reads]

    assert all(0 <= trips <= 10 for versions in seen for trips in versions)
    assert read(0) == [10] * 20


def test_dropping_one_generation_leaves_the_other(store: OnlineStore) -> None:
    # A generation switch: readers of generation 2 never see 1's values, and dropping 1
    # (after the switch) changes nothing for them.
    first = dataclasses.replace(small_view(), uid="u", generation=1)
    second = dataclasses.replace(first, generation=2)
    store.write(first, rows(("a", NOW, {"trips": 1}), ("gone", NOW, {"trips": 5})))
    store.write(second, rows(("a", NOW, {"trips": 2})))

    assert store.read(second, ["a", "gone"], ["trips"], now=NOW) == [{"trips": 2}, None]
    store.drop(first)
    store.drop(first)  # absent: nothing to do

    assert store.read(first, ["a"], ["trips"], now=NOW) == [None]
    assert store.read(second, ["a"], ["trips"], now=NOW) == [{"trips": 2}]


def test_ping_answers_when_the_store_is_up(store: OnlineStore) -> None:
    store.ping()


def test_long_view_names_give_distinct_bounded_table_ids() -> None:
    long_a = FeatureView("n" * 63, "m" * 60 + "a", "e", "k", "string", (), timedelta(days=1))
    long_b = FeatureView("n" * 63, "m" * 60 + "b", "e", "k", "string", (), timedelta(days=1))

    ids = {table_id("lykeion", long_a), table_id("lykeion", long_b)}

    assert len(ids) == 2
    assert all(len(name) <= 50 for name in ids)
    assert table_id("lykeion", small_view()) == f"lykeion-{small_view().table}"
    assert small_view().table.startswith("team_a__riders__g0_")


def _fails_fast(call: Any, limit: float = 10.0) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()
    assert time.monotonic() - started < limit


def test_bigtable_down_is_unavailable_and_the_same_store_recovers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emulator = Emulator(emulator_binary()).start()
    monkeypatch.setenv(EMULATOR_HOST, emulator.host)
    store = BigtableOnlineStore(PROJECT, INSTANCE, timeout=3.0)
    view = small_view()
    values = {"trips": 1, "city": "x"}
    try:
        assert store.write(view, rows(("a", NOW, values))) == 1
        store.ping()

        emulator.stop()
        _fails_fast(store.ping)
        _fails_fast(lambda: store.read(view, ["a"], ["trips"], now=NOW))
        _fails_fast(lambda: store.write(view, rows(("b", NOW, values))))

        emulator.start()
        # gRPC reconnects with exponential backoff; bounded well under the backoff cap.
        deadline = time.monotonic() + 30
        while True:
            try:
                store.ping()
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "store did not recover within 30s"
                time.sleep(0.2)
        # The emulator keeps data in memory: the restarted one has no table at all.
        assert store.read(view, ["a"], ["trips"], now=NOW) == [None]
        assert store.write(view, rows(("a", NOW, values))) == 1
        assert store.read(view, ["a"], ["trips", "city"], now=NOW) == [values]
    finally:
        store.close()
        emulator.stop()
