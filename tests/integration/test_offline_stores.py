"""The offline store contract, run against DuckDB (embedded) and BigQuery (the emulator)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.cloud import bigquery

from lykeion.features.view import EVENT_TIME, KEY, FeatureDef, FeatureView
from lykeion.stores.offline.base import LabelSpec, OfflineStore, ResolvedFeature
from lykeion.stores.offline.bigquery import BigQueryOfflineStore
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.offline.tables import history_schema
from tests.integration.bigquery_fixture import PROJECT, bigquery_emulator  # noqa: F401

TS = pa.timestamp("us", tz="UTC")
SPEC = LabelSpec(join_key="rider_id", timestamp_column="ts", target="label")
_datasets = itertools.count()


def at(day: int, hour: int = 0, minute: int = 0, micro: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, minute, 0, micro, tzinfo=UTC)


ALL_TYPES = FeatureView(
    namespace="default",
    name="rider-all-types",
    entity="rider",
    join_key="rider_id",
    key_type="string",
    features=(
        FeatureDef("trips", "int64"),
        FeatureDef("rating", "float64"),
        FeatureDef("city", "string"),
        FeatureDef("vip", "bool"),
        FeatureDef("signup", "timestamp"),
        FeatureDef("scores", "list<int64>"),
        FeatureDef("weights", "list<float64>"),
        FeatureDef("tags", "list<string>"),
        FeatureDef("flags", "list<bool>"),
        FeatureDef("visits", "list<timestamp>"),
    ),
    ttl=timedelta(days=30),
)
RIDER = FeatureView(
    namespace="default",
    name="rider-stats",
    entity="rider",
    join_key="rider_id",
    key_type="string",
    features=(FeatureDef("trips", "int64"), FeatureDef("rating", "float64")),
    ttl=timedelta(days=2),
)
DRIVER = FeatureView(
    namespace="ops",
    name="driver-stats",
    entity="driver",
    join_key="driver_id",
    key_type="int64",
    features=(FeatureDef("online_hours", "float64"), FeatureDef("zone", "string")),
    ttl=timedelta(hours=12),
)


def history(view: FeatureView, rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=history_schema(view))


def rider_rows(*rows: tuple[str, datetime, int | None, float | None]) -> pa.Table:
    return history(
        RIDER,
        [{KEY: k, EVENT_TIME: t, "trips": trips, "rating": r} for k, t, trips, r in rows],
    )


def labels(*rows: tuple[str, datetime, Any]) -> pa.Table:
    return pa.table(
        {
            "rider_id": pa.array([r[0] for r in rows], pa.string()),
            "ts": pa.array([r[1] for r in rows], TS),
            "label": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


TRIPS = ResolvedFeature(RIDER, "trips")
RATING = ResolvedFeature(RIDER, "rating")


def trips_for(store: OfflineStore, label_rows: pa.Table) -> list[Any]:
    result = store.training_set(label_rows, SPEC, [TRIPS])
    values: list[Any] = result.table.column("rider__trips").to_pylist()
    return values


@pytest.fixture(params=["duckdb", "bigquery"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OfflineStore]:
    opened: OfflineStore
    if request.param == "duckdb":
        opened = DuckDBOfflineStore(tmp_path / "offline.duckdb")
    else:
        client: bigquery.Client = request.getfixturevalue("bigquery_emulator")
        # One dataset per test: tests never see each other's tables.
        opened = BigQueryOfflineStore(PROJECT, f"offline_{next(_datasets)}", client=client)
    yield opened
    opened.close()


ALL_TYPES_ROWS = [
    {
        KEY: "r1",
        EVENT_TIME: at(1, 8, 30, 123456),
        "trips": -(2**62),
        "rating": 4.75,
        "city": "Zürich \"quoted\" 'x'\n",
        "vip": True,
        "signup": datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "scores": [1, 2, 3],
        "weights": [0.5, -1e300],
        "tags": ["a", ""],
        "flags": [True, False],
        "visits": [at(1), at(2, 3, 4, 5)],
    },
    {
        KEY: "r1",
        EVENT_TIME: at(2),
        "trips": None,
        "rating": None,
        "city": None,
        "vip": None,
        "signup": None,
        "scores": None,
        "weights": None,
        "tags": None,
        "flags": None,
        "visits": None,
    },
    {
        KEY: "r0",
        EVENT_TIME: at(3),
        "trips": 0,
        "rating": math.inf,
        "city": "",
        "vip": False,
        "signup": at(1),
        "scores": [],
        "weights": [],
        "tags": [],
        "flags": [],
        "visits": [],
    },
]


def test_history_round_trip_by_type_with_nulls_and_lists(store: OfflineStore) -> None:
    assert store.history(ALL_TYPES).num_rows == 0
    written = store.write_history(ALL_TYPES, history(ALL_TYPES, ALL_TYPES_ROWS))
    assert written == 3

    got = store.history(ALL_TYPES)

    # Ordered by (entity_key, event_time); a null list stays null, an empty one empty.
    expected = history(ALL_TYPES, [ALL_TYPES_ROWS[2], ALL_TYPES_ROWS[0], ALL_TYPES_ROWS[1]])
    assert got.schema == expected.schema
    assert got.to_pylist() == expected.to_pylist()


def test_nan_round_trips(store: OfflineStore) -> None:
    store.write_history(RIDER, rider_rows(("r1", at(1), 1, math.nan)))
    [row] = store.history(RIDER).to_pylist()
    assert math.isnan(row["rating"])


def test_int64_keys(store: OfflineStore) -> None:
    rows = [
        {KEY: 2**40, EVENT_TIME: at(1), "online_hours": 1.5, "zone": "n"},
        {KEY: -7, EVENT_TIME: at(1), "online_hours": 2.5, "zone": "s"},
    ]
    store.write_history(DRIVER, history(DRIVER, rows))
    assert store.history(DRIVER).column(KEY).to_pylist() == [-7, 2**40]


def test_rewriting_the_same_rows_changes_nothing(store: OfflineStore) -> None:
    rows = rider_rows(("r1", at(1), 1, 1.0), ("r1", at(2), 2, 2.0), ("r2", at(1), 3, None))
    store.write_history(RIDER, rows)
    first = store.history(RIDER)

    assert store.write_history(RIDER, rows) == 3

    assert store.history(RIDER).equals(first)
    assert first.num_rows == 3


def test_generations_are_separate_tables_counted_and_dropped(store: OfflineStore) -> None:
    first, second = replace(RIDER, uid="u", generation=1), replace(RIDER, uid="u", generation=2)
    store.write_history(first, rider_rows(("r1", at(1), 1, 1.0), ("r1", at(3), 3, 3.0)))
    store.write_history(second, rider_rows(("r2", at(2), 2, 2.0)))

    assert (store.count_history(first, at(1)), store.count_history(first, at(3))) == (1, 2)
    assert store.count_history(second, at(3)) == 1
    store.drop(first)
    store.drop(first)  # absent: nothing to do

    assert store.history(first).num_rows == 0 and store.count_history(first, at(3)) == 0
    assert store.history(second).column(KEY).to_pylist() == ["r2"]


def test_rewrite_replaces_values_of_the_same_key_and_time(store: OfflineStore) -> None:
    store.write_history(RIDER, rider_rows(("r1", at(1), 1, 1.0), ("r1", at(2), 2, 2.0)))
    store.write_history(RIDER, rider_rows(("r1", at(2), 20, None), ("r1", at(3), 3, 3.0)))

    got = store.history(RIDER).to_pylist()

    assert [(r[EVENT_TIME], r["trips"], r["rating"]) for r in got] == [
        (at(1), 1, 1.0),
        (at(2), 20, None),
        (at(3), 3, 3.0),
    ]


def test_duplicates_within_one_batch_keep_the_last(store: OfflineStore) -> None:
    store.write_history(RIDER, rider_rows(("r1", at(1), 1, 1.0), ("r1", at(1), 2, 2.0)))
    assert [r["trips"] for r in store.history(RIDER).to_pylist()] == [2]


def test_a_view_that_gains_a_feature_gets_the_column(store: OfflineStore) -> None:
    store.write_history(RIDER, rider_rows(("r1", at(1), 1, 1.0)))
    grown = replace(RIDER, features=(*RIDER.features, FeatureDef("city", "string")))
    # Before any write of the new feature, it reads as null.
    assert store.history(grown).column("city").to_pylist() == [None]
    label_rows = labels(("r1", at(1, 1), 0))
    city = ResolvedFeature(grown, "city")
    assert store.training_set(label_rows, SPEC, [city]).table.column(city.column).to_pylist() == [
        None
    ]

    store.write_history(
        grown,
        history(grown, [{KEY: "r1", EVENT_TIME: at(2), "trips": 2, "rating": 2.0, "city": "x"}]),
    )

    assert store.history(grown).column("city").to_pylist() == [None, "x"]
    assert store.history(RIDER).column("trips").to_pylist() == [1, 2]


# Point-in-time correctness. History of r1: trips 1 at day 1, 2 at day 2, 3 at day 3 noon.
POINT_IN_TIME = rider_rows(("r1", at(1), 1, 0.1), ("r1", at(2), 2, 0.2), ("r1", at(3, 12), 3, 0.3))


def test_label_at_a_history_timestamp_uses_that_row(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    assert trips_for(store, labels(("r1", at(2), 0), ("r1", at(3, 12), 0))) == [2, 3]


def test_label_between_two_rows_uses_the_earlier(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    got = trips_for(store, labels(("r1", at(2, 0, 0, 1), 0), ("r1", at(3, 11, 59), 0)))
    assert got == [2, 2]


def test_label_before_any_history_is_null_and_kept(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    result = store.training_set(labels(("r1", at(1) - timedelta(microseconds=1), 7)), SPEC, [TRIPS])
    assert result.rows == 1
    assert result.table.to_pylist() == [
        {
            "rider_id": "r1",
            "ts": at(1) - timedelta(microseconds=1),
            "label": 7,
            "rider__trips": None,
        }
    ]


def test_entity_without_history_is_null(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    assert trips_for(store, labels(("nobody", at(2), 0), ("r1", at(2), 0))) == [None, 2]


def test_view_never_written_gives_nulls(store: OfflineStore) -> None:
    result = store.training_set(labels(("r1", at(2), 0)), SPEC, [TRIPS, RATING])
    assert result.table.column("rider__trips").to_pylist() == [None]
    assert result.table.column("rider__rating").to_pylist() == [None]


def test_ttl_expiry_is_null(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    ttl = RIDER.ttl  # 2 days after the last row at day 3 noon
    got = trips_for(
        store,
        labels(
            ("r1", at(3, 12) + ttl, 0),  # exactly TTL old: still served
            ("r1", at(3, 12) + ttl + timedelta(microseconds=1), 0),
            ("r1", at(30), 0),
        ),
    )
    assert got == [3, None, None]


def test_late_data_is_used_only_by_labels_after_its_event_time(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    label_rows = labels(("r1", at(2, 5), 0), ("r1", at(2, 7), 0), ("r1", at(3), 0))
    assert trips_for(store, label_rows) == [2, 2, 2]

    # Written after the rest, but it happened at day 2 06:00.
    store.write_history(RIDER, rider_rows(("r1", at(2, 6), 99, None)))

    assert trips_for(store, label_rows) == [2, 99, 99]


def test_two_entities_in_one_training_set_in_requested_order(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    store.write_history(
        DRIVER,
        history(
            DRIVER,
            [
                {KEY: 7, EVENT_TIME: at(2), "online_hours": 5.0, "zone": "north"},
                {KEY: 8, EVENT_TIME: at(1), "online_hours": 1.0, "zone": "south"},
            ],
        ),
    )
    label_rows = labels(("r1", at(2, 1), 1), ("r1", at(1, 1), 0), ("r1", at(2, 13), 1))
    label_rows = label_rows.append_column("driver_id", pa.array([7, 8, 7], pa.int64()))
    zone, hours = ResolvedFeature(DRIVER, "zone"), ResolvedFeature(DRIVER, "online_hours")

    result = store.training_set(label_rows, SPEC, [zone, TRIPS, hours, RATING])

    assert result.table.column_names == [
        "rider_id",
        "ts",
        "label",
        "driver__zone",
        "rider__trips",
        "driver__online_hours",
        "rider__rating",
    ]
    assert result.table.select([3, 4, 5, 6]).to_pylist() == [
        {
            "driver__zone": "north",
            "rider__trips": 2,
            "driver__online_hours": 5.0,
            "rider__rating": 0.2,
        },
        {
            "driver__zone": "south",
            "rider__trips": 1,
            "driver__online_hours": 1.0,
            "rider__rating": 0.1,
        },
        # Driver 7's row is 13h old, past its 12h TTL; the rider's is not.
        {
            "driver__zone": None,
            "rider__trips": 2,
            "driver__online_hours": None,
            "rider__rating": 0.2,
        },
    ]


def test_label_order_and_count_are_kept(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    store.write_history(RIDER, rider_rows(("r2", at(1), 10, None)))
    rows = [
        ("r2", at(5), 1),
        ("r1", at(2), 2),
        ("r2", at(1, 1), 3),
        ("r1", at(2), 2),  # a repeated label stays repeated
        ("zz", at(1), 5),
        ("r1", at(1), 6),
    ]

    result = store.training_set(labels(*rows), SPEC, [TRIPS])

    assert result.rows == result.table.num_rows == len(rows)
    assert result.table.column("label").to_pylist() == [1, 2, 3, 2, 5, 6]
    assert result.table.column("rider__trips").to_pylist() == [None, 2, 10, 2, None, 1]


def test_same_inputs_give_the_same_hash(store: OfflineStore) -> None:
    store.write_history(RIDER, POINT_IN_TIME)
    label_rows = labels(("r1", at(2), 1), ("r1", at(3), 0))

    first = store.training_set(label_rows, SPEC, [TRIPS, RATING])
    again = store.training_set(label_rows, SPEC, [TRIPS, RATING])
    reordered = store.training_set(label_rows, SPEC, [RATING, TRIPS])

    assert first.content_hash == again.content_hash
    assert first.table.equals(again.table)
    assert reordered.content_hash != first.content_hash


def test_duckdb_and_bigquery_build_identical_training_sets(
    tmp_path: Path,
    bigquery_emulator: bigquery.Client,  # noqa: F811
) -> None:
    duck = DuckDBOfflineStore(tmp_path / "offline.duckdb")
    big = BigQueryOfflineStore(PROJECT, f"offline_{next(_datasets)}", client=bigquery_emulator)
    all_types = history(ALL_TYPES, ALL_TYPES_ROWS)
    drivers = history(
        DRIVER,
        [
            {KEY: 7, EVENT_TIME: at(2), "online_hours": math.nan, "zone": "north"},
            {KEY: 8, EVENT_TIME: at(1), "online_hours": 1.0, "zone": None},
        ],
    )
    for each in (duck, big):
        each.write_history(RIDER, POINT_IN_TIME)
        each.write_history(ALL_TYPES, all_types)
        each.write_history(DRIVER, drivers)
    label_rows = labels(
        ("r1", at(2, 1), 1), ("r0", at(3), None), ("r1", at(1, 9), 0), ("r9", at(2), 1)
    ).append_column("driver_id", pa.array([7, 8, None, 7], pa.int64()))
    refs = [
        ResolvedFeature(DRIVER, "online_hours"),
        TRIPS,
        *(ResolvedFeature(ALL_TYPES, f.name) for f in ALL_TYPES.features if f.name != "trips"),
        ResolvedFeature(DRIVER, "zone"),
    ]

    from_duck = duck.training_set(label_rows, SPEC, refs)
    from_big = big.training_set(label_rows, SPEC, refs)

    assert from_duck.table.schema == from_big.table.schema
    assert from_duck.table.to_pylist().__repr__() == from_big.table.to_pylist().__repr__()
    assert from_duck.content_hash == from_big.content_hash
    assert duck.history(ALL_TYPES).to_pylist() == big.history(ALL_TYPES).to_pylist()
