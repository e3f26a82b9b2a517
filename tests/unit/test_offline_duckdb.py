"""DuckDB offline store: what only the embedded store has, and the point-in-time rule
checked against a brute-force reference on random data."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from lykeion.features.view import EVENT_TIME, KEY, AggregationDef, FeatureDef, FeatureView
from lykeion.features.windows import stored_limbs
from lykeion.stores.offline.base import LabelSpec, ResolvedFeature
from lykeion.stores.offline.duckdb import DuckDBOfflineStore, training_sql
from lykeion.stores.offline.tables import history_schema, plan_training_set

TS = pa.timestamp("us", tz="UTC")
SPEC = LabelSpec(join_key="rider_id", timestamp_column="ts", target="label")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
RIDER = FeatureView(
    namespace="default",
    name="rider-stats",
    entity="rider",
    join_key="rider_id",
    key_type="string",
    features=(FeatureDef("trips", "int64"), FeatureDef("tags", "list<string>")),
    ttl=timedelta(minutes=30),
)
ZONE = FeatureView(
    namespace="default",
    name="rider-zone",
    entity="rider_zone",
    join_key="rider_id",
    key_type="string",
    features=(FeatureDef("zone", "string"), FeatureDef("busy", "float64")),
    ttl=timedelta(minutes=7),
)


def rows(view: FeatureView, records: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=history_schema(view))


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def store(tmp_path: Path) -> DuckDBOfflineStore:
    return DuckDBOfflineStore(tmp_path / "offline.duckdb")


def reference(
    written: dict[tuple[str, str, datetime], dict[str, Any]],
    labels: list[tuple[str | None, datetime, int]],
    refs: list[ResolvedFeature],
) -> list[dict[str, Any]]:
    """The point-in-time rule, row by row: the latest row of the entity at or before
    the label time, unless older than the view's TTL."""
    out = []
    for key, ts, label in labels:
        row: dict[str, Any] = {"rider_id": key, "ts": ts, "label": label}
        for ref in refs:
            times = [
                t for (table, k, t) in written if table == ref.view.table and k == key and t <= ts
            ]
            latest = max(times, default=None)
            if key is None or latest is None or latest < ts - ref.view.ttl:
                row[ref.column] = None
            else:
                row[ref.column] = written[(ref.view.table, key, latest)][ref.feature]
        out.append(row)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_set_matches_a_brute_force_reference(store: DuckDBOfflineStore, seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"r{i}" for i in range(8)]  # r6, r7 never get history
    written: dict[tuple[str, str, datetime], dict[str, Any]] = {}
    # Several batches in random event-time order, re-writing some (key, time) with new
    # values: late data and idempotent replacement in one go. A coarse minute grid makes
    # label times land exactly on history times often.
    for _ in range(4):
        for view in (RIDER, ZONE):
            batch: dict[tuple[str, datetime], dict[str, Any]] = {}
            for _ in range(60):
                key, t = rng.choice(keys[:6]), minute(rng.randrange(0, 120))
                values: dict[str, Any]
                if view is RIDER:
                    values = {
                        "trips": rng.choice([None, rng.randrange(100)]),
                        "tags": rng.choice([None, [], [rng.choice("abc")]]),
                    }
                else:
                    values = {
                        "zone": rng.choice([None, "n", "s"]),
                        "busy": rng.choice([None, rng.random()]),
                    }
                batch[(key, t)] = values
            records = [{KEY: k, EVENT_TIME: t, **v} for (k, t), v in batch.items()]
            rng.shuffle(records)
            store.write_history(view, rows(view, records))
            for (k, t), v in batch.items():
                written[(view.table, k, t)] = v
    labels = [(rng.choice([*keys, None]), minute(rng.randrange(-5, 130)), i) for i in range(400)]
    refs = [
        ResolvedFeature(ZONE, "busy"),
        ResolvedFeature(RIDER, "trips"),
        ResolvedFeature(RIDER, "tags"),
        ResolvedFeature(ZONE, "zone"),
    ]
    table = pa.table(
        {
            "rider_id": pa.array([k for k, _, _ in labels], pa.string()),
            "ts": pa.array([t for _, t, _ in labels], TS),
            "label": pa.array([i for _, _, i in labels], pa.int64()),
        }
    )

    result = store.training_set(table, SPEC, refs)

    expected = reference(written, labels, refs)
    assert result.table.to_pylist() == expected
    # The reference must exercise every case, or agreeing with it proves little.
    assert any(t in {wt for (_, _, wt) in written} for _, t, _ in labels)
    trips = [r["rider__trips"] for r in expected]
    assert None in trips and any(v is not None for v in trips)
    assert result.content_hash == store.training_set(table, SPEC, refs).content_hash


def test_history_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "offline.duckdb"
    DuckDBOfflineStore(path).write_history(
        RIDER, rows(RIDER, [{KEY: "r1", EVENT_TIME: minute(1), "trips": 1, "tags": ["a"]}])
    )
    assert DuckDBOfflineStore(path).history(RIDER).column("tags").to_pylist() == [["a"]]


def test_the_file_is_not_held_between_calls(store: DuckDBOfflineStore) -> None:
    store.write_history(
        RIDER, rows(RIDER, [{KEY: "r1", EVENT_TIME: minute(1), "trips": 1, "tags": None}])
    )
    # Another process (here: connection) can open the file for writing in between.
    with duckdb.connect(str(store.path)) as other:
        assert other.execute(f'SELECT count(*) FROM "{RIDER.table}"').fetchall() == [(1,)]


def test_stored_schema_uses_native_types_and_a_primary_key(store: DuckDBOfflineStore) -> None:
    view = replace(
        RIDER,
        features=(
            *RIDER.features,
            FeatureDef("seen", "list<timestamp>"),
            FeatureDef("vip", "bool"),
        ),
    )
    store.write_history(view, rows(view, []))
    with duckdb.connect(str(store.path)) as con:
        columns = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = ? ORDER BY ordinal_position",
            [view.table],
        ).fetchall()
        constraints = con.execute(
            "SELECT constraint_type, constraint_column_names FROM duckdb_constraints()"
            " WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [view.table],
        ).fetchall()
    assert columns == [
        ("entity_key", "VARCHAR"),
        ("event_time", "TIMESTAMP WITH TIME ZONE"),
        ("trips", "BIGINT"),
        ("tags", "VARCHAR[]"),
        ("seen", "TIMESTAMP WITH TIME ZONE[]"),
        ("vip", "BOOLEAN"),
    ]
    assert constraints == [("PRIMARY KEY", ["entity_key", "event_time"])]


def test_a_changed_feature_type_is_refused(store: DuckDBOfflineStore) -> None:
    store.write_history(RIDER, rows(RIDER, []))
    changed = replace(RIDER, features=(FeatureDef("trips", "float64"), RIDER.features[1]))
    with pytest.raises(ValueError, match="trips is stored as BIGINT"):
        store.write_history(changed, rows(changed, []))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({KEY: ["r1"], EVENT_TIME: pa.array([T0], TS), "trips": [1]}), "missing"),
        (
            pa.table(
                {
                    KEY: ["r1"],
                    EVENT_TIME: pa.array([T0], TS),
                    "trips": [1],
                    "tags": [["a"]],
                    "x": [1],
                }
            ),
            "unexpected",
        ),
        (
            pa.table({KEY: [None], EVENT_TIME: pa.array([T0], TS), "trips": [1], "tags": [["a"]]}),
            "entity_key must not be null",
        ),
        (
            pa.table(
                {KEY: ["r1"], EVENT_TIME: pa.array([T0], TS), "trips": [1], "tags": [["a", None]]}
            ),
            "null elements",
        ),
    ],
)
def test_bad_history_rows_are_refused_before_writing(
    store: DuckDBOfflineStore, table: pa.Table, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        store.write_history(RIDER, table)
    assert store.history(RIDER).num_rows == 0


def test_compatible_input_types_are_normalized(store: DuckDBOfflineStore) -> None:
    naive = pa.timestamp("ns")
    store.write_history(
        RIDER,
        pa.table(
            {
                KEY: pa.array(["r1"], pa.large_string()),
                EVENT_TIME: pa.array([minute(5).replace(tzinfo=None)], naive),
                "trips": pa.array([3], pa.int32()),
                "tags": pa.array([["a"]], pa.list_(pa.large_string())),
            }
        ),
    )
    labels = pa.table(
        {
            "rider_id": pa.array(["r1"], pa.large_string()),
            "ts": pa.array([minute(6).replace(tzinfo=None)], pa.timestamp("ms")),
            "label": pa.array([1.5], pa.float32()),
        }
    )

    result = store.training_set(labels, SPEC, [ResolvedFeature(RIDER, "trips")])

    assert result.table.schema == pa.schema(
        [
            ("rider_id", pa.string()),
            ("ts", TS),
            ("label", pa.float64()),
            ("rider__trips", pa.int64()),
        ]
    )
    assert result.table.to_pylist() == [
        {"rider_id": "r1", "ts": minute(6), "label": 1.5, "rider__trips": 3}
    ]


def test_requests_that_cannot_be_answered_are_refused(store: DuckDBOfflineStore) -> None:
    labels = pa.table(
        {"rider_id": ["r1"], "ts": pa.array([T0], TS), "label": [1]},
    )
    trips = ResolvedFeature(RIDER, "trips")
    with pytest.raises(ValueError, match="repeat columns"):
        store.training_set(labels, SPEC, [trips, trips])
    with pytest.raises(KeyError, match="nope"):
        store.training_set(labels, SPEC, [ResolvedFeature(RIDER, "nope")])
    with pytest.raises(ValueError, match="no column 'label'"):
        store.training_set(labels.drop_columns(["label"]), SPEC, [trips])
    int_keys = replace(RIDER, key_type="int64")
    with pytest.raises(ValueError, match="has int64 keys"):
        store.training_set(labels, SPEC, [ResolvedFeature(int_keys, "trips")])


def test_join_sql_is_one_asof_join_per_view() -> None:
    labels = pa.table({"rider_id": ["r1"], "ts": pa.array([T0], TS), "label": [1]})
    refs = [
        ResolvedFeature(RIDER, "trips"),
        ResolvedFeature(ZONE, "zone"),
        ResolvedFeature(RIDER, "tags"),
    ]
    plan = plan_training_set(labels, SPEC, refs)

    sql = training_sql(plan, {RIDER.table: {"entity_key", "event_time", "trips", "tags"}})

    assert sql.count("ASOF LEFT JOIN") == 1  # ZONE was never written: a typed NULL instead
    assert 'CAST(NULL AS VARCHAR) AS "rider_zone__zone"' in sql
    assert "to_microseconds(1800000000)" in sql


def test_a_call_waits_out_another_process_holding_the_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "offline.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]);"
            " print('held', flush=True); time.sleep(1.5); con.close()",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # Another process holds the lock now: a call without patience fails at once...
        with pytest.raises(duckdb.IOException, match="lock"):
            DuckDBOfflineStore(path, lock_wait_seconds=0).history(RIDER)
        # ...and one with it gets the file once the holder lets go.
        assert DuckDBOfflineStore(path, lock_wait_seconds=30).history(RIDER).num_rows == 0
    finally:
        holder.wait(timeout=30)


SPENDS = FeatureView(
    namespace="default",
    name="rider-spend",
    entity="rider",
    join_key="rider_id",
    key_type="string",
    features=(
        FeatureDef("spend_1d", "float64", AggregationDef("sum", timedelta(days=1))),
        FeatureDef("avg_1d", "float64", AggregationDef("mean", timedelta(days=1))),
    ),
    ttl=timedelta(days=1),
)


def spends(values: list[float], start: int = 0) -> pa.Table:
    records = [
        {
            KEY: "r1",
            EVENT_TIME: minute(start + i),
            "__agg_spend_1d_n": 1,
            "__agg_spend_1d_sum": v,
            "__agg_avg_1d_n": 1,
            "__agg_avg_1d_sum": v,
        }
        for i, v in enumerate(values)
    ]
    return rows(SPENDS, records)


def test_float_sums_limbs_are_stored_and_filled_in_for_older_tables(
    store: DuckDBOfflineStore,
) -> None:
    """The history keeps each sum's exact limbs beside its partial; a table written
    before they were stored gets them at its next write, from its partials. Either way
    the training set's sum is the exactly rounded one (`math.fsum`), not the sum in
    order, which differs for these values."""
    first, second = [1e12, 0.1, -1e12, 0.2, 1e-3], [3.3, -2.2e11]
    values = first + second
    assert math.fsum(values) != sum(values)
    store.write_history(SPENDS, spends(first))
    limbs = [name for name, _ in stored_limbs(SPENDS.aggregations)]
    with duckdb.connect(str(store.path)) as con:
        assert set(limbs) <= {r[0] for r in con.sql(f'DESCRIBE "{SPENDS.table}"').fetchall()}
        for name in limbs:  # as written by a version that did not store them
            con.execute(f'ALTER TABLE "{SPENDS.table}" DROP COLUMN "{name}"')
    store.write_history(SPENDS, spends(second, start=len(first)))
    with duckdb.connect(str(store.path)) as con:
        nulls = con.sql(
            f'SELECT count(*) FROM "{SPENDS.table}" WHERE '
            + " OR ".join(f'"{name}" IS NULL' for name in limbs)
        ).fetchall()
    assert nulls == [(0,)]
    labels = pa.table(
        {
            "rider_id": ["r1"],
            "ts": pa.array([minute(len(values))], TS),
            "label": [1],
        }
    )
    refs = [ResolvedFeature(SPENDS, f.name) for f in SPENDS.features]
    (row,) = store.training_set(labels, SPEC, refs).table.to_pylist()
    assert row["rider__spend_1d"] == math.fsum(values)
    assert row["rider__avg_1d"] == math.fsum(values) / len(values)
