"""NaN and the infinities are values, served as the strings "NaN", "Infinity" and
"-Infinity" (scalar `Float64`) on every path of the Feature API: typed fields through
graphql-core, the compiled plans, and the generic `features` field."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLError, execute
from hypothesis import given
from hypothesis import strategies as st

from lykeion.feature_api import Limits, ServedViews
from lykeion.feature_api.reads import RequestContext
from lykeion.feature_api.scalars import Float64, float64_json, json_value
from lykeion.features.view import FeatureView
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.unit.test_feature_api import client_for, gql, view_of

FLOATS = {"score": "float64", "ratios": "list<float64>"}
# key -> (score, ratios) and their documented JSON forms
VALUES: dict[str, tuple[Any, Any]] = {
    "nan": (math.nan, [math.nan, 1.0]),
    "inf": (math.inf, [math.inf, -math.inf, None]),
    "minus": (-math.inf, []),
    "plain": (-0.25, [2.5, -1e308, 5e-324]),
}
EXPECTED = {
    "nan": ("NaN", ["NaN", 1.0]),
    "inf": ("Infinity", ["Infinity", "-Infinity", None]),
    "minus": ("-Infinity", []),
    "plain": (-0.25, [2.5, -1e308, 5e-324]),
}


class KeptRows:
    """An online store that keeps every float as written, NaN included, in memory.

    (SQLite stores NaN as NULL until its row format carries it; that is the online
    stores' half of the case. This is the Feature API's: what a store answers is served.)
    """

    reads_inline = True

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str | int], dict[str, Any]] = {}

    def write(self, view: FeatureView, rows: Iterable[OnlineRow]) -> int:
        count = 0
        for row in rows:
            self.rows[(view.name, row.key)] = dict(row.values)
            count += 1
        return count

    def read(
        self,
        view: FeatureView,
        keys: Sequence[str | int],
        features: Sequence[str],
        now: datetime | None = None,
    ) -> list[dict[str, Any] | None]:
        found = [self.rows.get((view.name, key)) for key in keys]
        return [None if row is None else {f: row.get(f) for f in features} for row in found]

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def served() -> tuple[KeptRows, FeatureView]:
    view = view_of("rider-floats", features=FLOATS)
    store = KeptRows()
    seen = datetime.now(UTC) - timedelta(minutes=1)
    store.write(
        view,
        [OnlineRow(k, seen, {"score": s, "ratios": r}) for k, (s, r) in VALUES.items()],
    )
    return store, view


def test_float64_json_forms() -> None:
    assert float64_json(math.nan) == "NaN"
    assert float64_json(math.inf) == "Infinity"
    assert float64_json(-math.inf) == "-Infinity"
    assert float64_json(3) == 3.0
    assert math.copysign(1.0, float64_json(-0.0)) == -1.0  # type: ignore[arg-type]
    with pytest.raises(GraphQLError):
        float64_json(True)
    with pytest.raises(GraphQLError):
        float64_json("NaN")  # a string is not a float64 value, whatever it says
    assert json_value("list<float64>", [math.nan, None, 1]) == ["NaN", None, 1.0]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float64_survives_its_json_form(value: float) -> None:
    """What a client reads back (JSON text, then `Float64`'s input parsing) is the value."""
    text = json.dumps(float64_json(value))
    back = Float64.parse_value(json.loads(text))
    assert (math.isnan(back) and math.isnan(value)) or (
        back == value and math.copysign(1, back) == math.copysign(1, value)
    )


QUERIES = {
    # A plain lookup: answered by a compiled plan.
    "plan": '{ riders(ids: ["nan", "inf", "minus", "plain"]) { rider_id score ratios } }',
    # A fragment: graphql-core resolves and serializes it.
    "graphql-core": '{ riders(ids: ["nan", "inf", "minus", "plain"]) { ...F } }'
    " fragment F on Rider { rider_id score ratios }",
}


@pytest.mark.parametrize("path", list(QUERIES))
def test_typed_fields_serve_nan_and_infinities(path: str) -> None:
    store, view = served()
    served_views = ServedViews([view], Limits(max_keys=20))
    prepared = served_views.snapshot.documents.get(QUERIES[path])
    assert (prepared.plan is not None) == (path == "plan")
    status, body = gql(client_for(store, [view]), QUERIES[path])  # type: ignore[arg-type]
    assert status == 200, body
    assert "errors" not in body
    assert body["data"]["riders"] == [
        {"rider_id": key, "score": score, "ratios": ratios}
        for key, (score, ratios) in EXPECTED.items()
    ]


def test_plan_and_graphql_core_answer_the_same() -> None:
    store, view = served()
    served_views = ServedViews([view], Limits(max_keys=20))
    prepared = served_views.snapshot.documents.get(QUERIES["plan"])
    assert prepared.plan is not None
    planned = asyncio.run(prepared.plan.run(RequestContext(store, 20), None, None))  # type: ignore[arg-type]

    async def executed() -> Any:
        outcome = execute(
            served_views.snapshot.schema,
            prepared.document,
            context_value=RequestContext(store, 20),  # type: ignore[arg-type]
        )
        result = await outcome  # type: ignore[misc]
        assert not result.errors, result.errors
        return result.data

    assert planned == asyncio.run(executed())


def test_generic_field_serves_nan_and_infinities() -> None:
    store, view = served()
    status, body = gql(
        client_for(store, [view]),  # type: ignore[arg-type]
        """query($keys: [ID!]!) {
             features(entity: "rider", keys: $keys, names: ["score", "ratios"]) {
               key values { name type value } } }""",
        keys=list(VALUES),
    )
    assert status == 200, body
    assert body["data"]["features"] == [
        {
            "key": key,
            "values": [
                {"name": "score", "type": "float64", "value": score},
                {"name": "ratios", "type": "list<float64>", "value": ratios},
            ],
        }
        for key, (score, ratios) in EXPECTED.items()
    ]


def test_infinities_from_the_sqlite_store(tmp_path: Path) -> None:
    """The embedded store keeps ±infinity today; the API serves them as documented."""
    view = view_of("rider-floats", features=FLOATS)
    store = SqliteOnlineStore(tmp_path / "online.db")
    seen = datetime.now(UTC) - timedelta(minutes=1)
    store.write(
        view,
        [
            OnlineRow("inf", seen, {"score": math.inf, "ratios": [-math.inf]}),
            OnlineRow("minus", seen, {"score": -math.inf, "ratios": [math.inf, 0.5]}),
        ],
    )
    try:
        for query in (
            '{ riders(ids: ["inf", "minus"]) { score ratios } }',
            '{ riders(ids: ["inf", "minus"]) { ...F } } fragment F on Rider { score ratios }',
        ):
            status, body = gql(client_for(store, [view]), query)  # type: ignore[arg-type]
            assert status == 200, body
            assert body["data"]["riders"] == [
                {"score": "Infinity", "ratios": ["-Infinity"]},
                {"score": "-Infinity", "ratios": ["Infinity", 0.5]},
            ]
    finally:
        store.close()
