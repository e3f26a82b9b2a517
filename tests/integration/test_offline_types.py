"""Values of every declared type come back from the offline stores as they were written —
NaN, ±infinity, subnormals, int64 extremes, numeric-looking string keys with leading zeros,
null and empty lists included — through the history and through training sets.
Random rows (Hypothesis); DuckDB always, BigQuery on the emulator with a small budget."""

from __future__ import annotations

import itertools
import math
import struct
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from google.cloud import bigquery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lykeion.features.view import EVENT_TIME, KEY, FeatureDef, FeatureView
from lykeion.stores.offline.base import LabelSpec, OfflineStore, ResolvedFeature
from lykeion.stores.offline.bigquery import BigQueryOfflineStore
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.offline.tables import history_schema
from tests.integration.bigquery_fixture import PROJECT, bigquery_emulator  # noqa: F401

TYPES = ["int64", "float64", "string", "bool", "timestamp"]
FEATURES = tuple(FeatureDef(f"v_{t}", t) for t in TYPES) + tuple(
    FeatureDef(f"l_{t}", f"list<{t}>") for t in TYPES
)
_datasets = itertools.count()

INT64 = st.one_of(st.sampled_from([-(2**63), 2**63 - 1, 0, -1]), st.integers(-(2**63), 2**63 - 1))
FLOAT64 = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]),
    st.floats(allow_nan=False, allow_infinity=True),
)
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6)
STRING = st.one_of(st.from_regex(r"\A0[0-9]{0,5}\Z"), TEXT)
# BigQuery's TIMESTAMP range; microseconds, UTC.
TIMESTAMP = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "int64": INT64,
    "float64": FLOAT64,
    "string": STRING,
    "bool": st.booleans(),
    "timestamp": TIMESTAMP,
}
STRING_KEY = st.one_of(st.from_regex(r"\A0[0-9]{1,8}\Z"), st.from_regex(r"\A[0-9]{1,19}\Z"), TEXT)
KEYS = {"string": STRING_KEY.filter(bool), "int64": INT64}


def view_of(key_type: str) -> FeatureView:
    return FeatureView(
        namespace="default",
        name=f"typed-{key_type}-{uuid.uuid4().hex[:8]}",
        entity="rider",
        join_key="rider_id",
        key_type=key_type,
        features=FEATURES,
        ttl=timedelta(days=1),
    )


def value(feature: FeatureDef) -> st.SearchStrategy[Any]:
    if feature.type.startswith("list<"):
        return st.one_of(st.none(), st.lists(SCALARS[feature.type[5:-1]], max_size=3))
    return st.one_of(st.none(), SCALARS[feature.type])


@st.composite
def histories(draw: st.DrawFn, key_type: str) -> list[dict[str, Any]]:
    keys = draw(st.lists(KEYS[key_type], min_size=1, max_size=3, unique=True))
    rows = []
    for key in keys:
        times = draw(st.lists(TIMESTAMP, min_size=1, max_size=2, unique=True))
        for moment in times:
            row = {KEY: key, EVENT_TIME: moment}
            row.update({f.name: draw(value(f)) for f in FEATURES})
            rows.append(row)
    return rows


def canonical(item: Any) -> Any:
    """Equality that tells NaN from null and compares every other float bit for bit —
    except the sign of zero: DuckDB stores -0.0 as 0.0 (they compare equal in IEEE 754
    and in every SQL engine), so a zero is a zero."""
    if isinstance(item, float):
        return "NaN" if math.isnan(item) else struct.pack(">d", item + 0.0)
    if isinstance(item, list):
        return [canonical(x) for x in item]
    if isinstance(item, dict):
        return {k: canonical(v) for k, v in item.items()}
    return item


def order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r[KEY], r[EVENT_TIME]))


def round_trip(store: OfflineStore, view: FeatureView, rows: list[dict[str, Any]]) -> None:
    written = pa.Table.from_pylist(rows, schema=history_schema(view))
    assert store.write_history(view, written) == len(rows)

    history = store.history(view)
    assert history.schema == history_schema(view)
    assert canonical(history.to_pylist()) == canonical(order(rows))

    # A label at each row's own time and key gets exactly that row's values back.
    key_type = history_schema(view).field(KEY).type
    labels = pa.table(
        {
            "rider_id": pa.array([r[KEY] for r in rows], key_type),
            "ts": pa.array([r[EVENT_TIME] for r in rows], pa.timestamp("us", tz="UTC")),
            "label": pa.array(range(len(rows)), pa.int64()),
        }
    )
    refs = [ResolvedFeature(view, f.name) for f in FEATURES]
    result = store.training_set(labels, LabelSpec("rider_id", "ts", "label"), refs)
    got = result.table.to_pylist()
    expected = [
        {
            "rider_id": r[KEY],
            "ts": r[EVENT_TIME],
            "label": i,
            **{f"rider__{f.name}": r[f.name] for f in FEATURES},
        }
        for i, r in enumerate(rows)
    ]
    assert canonical(got) == canonical(expected)


@pytest.mark.parametrize("key_type", ["string", "int64"])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_duckdb_round_trips_every_type(tmp_path: Path, key_type: str, data: st.DataObject) -> None:
    rows = data.draw(histories(key_type))
    store = DuckDBOfflineStore(tmp_path / f"{uuid.uuid4().hex}.duckdb")
    round_trip(store, view_of(key_type), rows)


@pytest.mark.parametrize("key_type", ["string", "int64"])
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_bigquery_round_trips_every_type(
    bigquery_emulator: bigquery.Client,  # noqa: F811
    key_type: str,
    data: st.DataObject,
) -> None:
    rows = data.draw(histories(key_type))
    store = BigQueryOfflineStore(
        PROJECT, f"typed_{next(_datasets)}_{uuid.uuid4().hex[:6]}", client=bigquery_emulator
    )
    round_trip(store, view_of(key_type), rows)
