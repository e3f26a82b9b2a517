"""The latest row per entity that materialization writes online, picked as columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from lykeion.features.materialize import latest_table
from lykeion.features.view import EVENT_TIME, KEY

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def history(*rows: tuple[str, datetime, float | None, list[int] | None]) -> pa.Table:
    keys, times, scores, ids = zip(*rows, strict=True) if rows else ([], [], [], [])
    return pa.table(
        {
            KEY: pa.array(keys, pa.string()),
            EVENT_TIME: pa.array(times, TS),
            "score": pa.array(scores, pa.float64()),
            "ids": pa.array(ids, pa.list_(pa.int64())),
        }
    )


def test_each_entity_keeps_its_row_at_the_greatest_event_time_ordered_by_key() -> None:
    hour = timedelta(hours=1)
    good = history(
        ("b", NOW, 1.0, [1]),
        ("a", NOW - hour, 2.0, None),
        ("b", NOW + hour, None, [2, 3]),
        ("a", NOW - 2 * hour, 3.0, [4]),
        ("c", NOW, 4.0, []),
    )

    latest = latest_table(good)

    assert latest.schema == good.schema
    assert latest.to_pylist() == [
        {KEY: "a", EVENT_TIME: NOW - hour, "score": 2.0, "ids": None},
        {KEY: "b", EVENT_TIME: NOW + hour, "score": None, "ids": [2, 3]},
        {KEY: "c", EVENT_TIME: NOW, "score": 4.0, "ids": []},
    ]


def test_of_rows_at_the_same_time_the_last_wins_whole() -> None:
    # Never split: one row's values, not the latest non-null value of each column.
    good = pa.concat_tables(
        [
            history(("a", NOW, 1.0, [1])),
            history(("a", NOW, None, [2])),
            history(("a", NOW, 3.0, None)),
        ]
    )

    assert latest_table(good).to_pylist() == [
        {KEY: "a", EVENT_TIME: NOW, "score": 3.0, "ids": None}
    ]


def test_no_history_gives_an_empty_table() -> None:
    empty = history()
    assert latest_table(empty).num_rows == 0
    assert latest_table(empty).schema == empty.schema
