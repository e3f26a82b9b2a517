"""The model server builds the frame the training gave the model, type for type: what the
MLflow project reads from the training set's Parquet file (pandas.read_parquet) equals
what the server builds from the values the online store returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lykeion.features.view import FeatureDef, FeatureView
from lykeion.serving.config import TrainedFeature
from lykeion.serving.enrich import Enricher
from lykeion.serving.frames import model_frame, typed_table
from lykeion.stores.offline.tables import arrow_type
from lykeion.stores.online.base import OnlineRow
from tests.unit.test_feature_api_floats import KeptRows

TYPES = [
    "int64",
    "float64",
    "string",
    "bool",
    "timestamp",
    "list<int64>",
    "list<float64>",
    "list<string>",
    "list<bool>",
    "list<timestamp>",
]
INT64 = st.one_of(st.sampled_from([-(2**63), 2**63 - 1, 0]), st.integers(-(2**63), 2**63 - 1))
FLOAT64 = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0]),
    st.floats(allow_nan=True, allow_infinity=True),
)
STRING = st.one_of(st.from_regex(r"\A0[0-9]{0,5}\Z"), st.text(max_size=8))
TIMESTAMP = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "int64": INT64,
    "float64": FLOAT64,
    "string": STRING,
    "bool": st.booleans(),
    "timestamp": TIMESTAMP,
}


def values_of(type_: str, nullable: bool) -> st.SearchStrategy[Any]:
    if type_.startswith("list<"):
        inner = st.lists(SCALARS[type_[5:-1]], max_size=3)
        return st.one_of(st.none(), inner) if nullable else inner
    return st.one_of(st.none(), SCALARS[type_]) if nullable else SCALARS[type_]


@st.composite
def columns(draw: st.DrawFn, nullable: bool) -> dict[str, list[Any]]:
    rows = draw(st.integers(1, 4))
    return {
        f"c{i}": draw(st.lists(values_of(t, nullable), min_size=rows, max_size=rows))
        for i, t in enumerate(TYPES)
    }


DECLARED = {f"c{i}": t for i, t in enumerate(TYPES)}


def training_frame(tmp_path: Path, data: dict[str, Sequence[Any]]) -> pd.DataFrame:
    """What the project reads: the training set (declared Arrow types) through Parquet."""
    schema = pa.schema([pa.field(name, arrow_type(DECLARED[name])) for name in data])
    pq.write_table(pa.table(data, schema=schema), tmp_path / "train.parquet")
    return pd.read_parquet(tmp_path / "train.parquet")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=columns(nullable=True))
def test_served_frame_equals_the_training_frame(tmp_path: Path, data: dict[str, list[Any]]) -> None:
    served = model_frame(typed_table(data, DECLARED))
    pd.testing.assert_frame_equal(served, training_frame(tmp_path, data))
    # NaN stays NaN (not a null turned into NaN somewhere else): same bits per value.
    for value, got in zip(data["c1"], served["c1"], strict=True):
        if value is not None:
            assert got == value or (math.isnan(got) and math.isnan(value))


def test_declared_types_give_these_dtypes() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    data = {
        "c0": [2**63 - 1],
        "c1": [math.nan],
        "c2": ["007"],
        "c3": [True],
        "c4": [at],
        "c5": [[1, 2]],
    }
    frame = model_frame(typed_table(data, DECLARED))
    assert str(frame["c0"].dtype) == "int64" and frame["c0"][0] == 2**63 - 1
    assert str(frame["c1"].dtype) == "float64" and math.isnan(frame["c1"][0])
    assert frame["c2"][0] == "007"
    assert str(frame["c3"].dtype) == "bool"
    assert str(frame["c4"].dtype) == "datetime64[us, UTC]" and frame["c4"][0] == at
    assert frame["c5"][0].tolist() == [1, 2]


def test_the_enricher_passes_a_nan_value_as_a_value() -> None:
    """A stored NaN is a value: not missing (422), not defaulted."""
    view = FeatureView(
        "default",
        "rider-stats",
        "rider",
        "rider_id",
        "string",
        (FeatureDef("rating", "float64"), FeatureDef("trips", "int64")),
        timedelta(days=1),
    )
    store = KeptRows()
    seen = datetime.now(UTC)
    store.write(view, [OnlineRow("r1", seen, {"rating": math.nan, "trips": 3})])
    enricher = Enricher(
        [
            TrainedFeature(ref="rider.rating", column="rider__rating", type="float64"),
            TrainedFeature(ref="rider.trips", column="rider__trips", type="int64"),
        ],
        [view],
        {"rider.rating": "0.5"},
    )
    enriched = enricher.lookup(store, [{"rider_id": "r1"}])  # type: ignore[arg-type]
    assert enriched.complete and enriched.defaulted == [[]]
    frame = model_frame(
        typed_table(enriched.columns, {"rider__rating": "float64", "rider__trips": "int64"})
    )
    assert math.isnan(frame["rider__rating"][0]) and frame["rider__trips"][0] == 3
