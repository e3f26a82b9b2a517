"""The Feature API over HTTP (starlette's TestClient), serving from a real SQLite online store."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from graphql import get_introspection_query
from starlette.exceptions import StarletteDeprecationWarning

from lykeion.feature_api import Limits, ServedViews, create_app
from lykeion.features.view import FeatureView
from lykeion.stores.online.base import OnlineRow, OnlineStore, StoreUnavailable
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.objects import manifest

with warnings.catch_warnings():
    # starlette 1.x asks for httpx2 under its TestClient; httpx still works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TYPED = {
    "age": "int64",
    "score": "float64",
    "city": "string",
    "vip": "bool",
    "seen": "timestamp",
    "counts": "list<int64>",
    "ratios": "list<float64>",
    "labels": "list<string>",
    "flags": "list<bool>",
    "visits": "list<timestamp>",
}
BIG = 2**62 + 1  # beyond 2^53: a JSON number would lose it in JavaScript
SEEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def view_of(
    name: str = "rider-activity",
    entity: str = "rider",
    features: dict[str, str] | None = None,
    key_type: str = "string",
) -> FeatureView:
    body = manifest(name, entity, features)
    body["metadata"]["namespace"] = "default"
    body["spec"]["entity"]["keyType"] = key_type
    return FeatureView.from_body(body)


class RecordingStore:
    """The real store, recording every read it serves; `down` makes it fail like a lost
    connection (StoreUnavailable) until switched back, delegating again afterwards."""

    reads_inline = False  # exercise the thread path that network stores take

    def __init__(self, inner: OnlineStore) -> None:
        self.inner = inner
        self.reads: list[tuple[str, list[str | int], list[str]]] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("connection refused (switched off by the test)")

    def write(self, view: FeatureView, rows: Iterable[OnlineRow]) -> int:
        return self.inner.write(view, rows)

    def read(
        self,
        view: FeatureView,
        keys: Sequence[str | int],
        features: Sequence[str],
        now: datetime | None = None,
    ) -> list[dict[str, Any] | None]:
        self._check()
        self.reads.append((view.name, list(keys), list(features)))
        return self.inner.read(view, keys, features, now)

    def ping(self) -> None:
        self._check()
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def row(key: str | int, **values: Any) -> OnlineRow:
    return OnlineRow(key, datetime.now(UTC) - timedelta(minutes=1), values)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordingStore]:
    real = SqliteOnlineStore(tmp_path / "online.db")
    yield RecordingStore(real)
    real.close()


@pytest.fixture
def rider() -> FeatureView:
    return view_of(features=TYPED)


def client_for(
    store: RecordingStore, views: Sequence[FeatureView] | None, limits: Limits | None = None
) -> TestClient:
    return TestClient(create_app(store, ServedViews(views, limits)))


def gql(client: TestClient, query: str, **variables: Any) -> tuple[int, dict[str, Any]]:
    answer = client.post("/graphql", json={"query": query, "variables": variables})
    return answer.status_code, answer.json()


ALL_TYPED = " ".join(TYPED)


def typed_rows() -> list[OnlineRow]:
    """r1 with a value of every type (edge values, lists with nulls), r2 with none."""
    return [
        row(
            "r1",
            age=BIG,
            score=0.25,
            city="Zürich",
            vip=True,
            seen=SEEN,
            counts=[1, None, -(2**63)],
            ratios=[0.5, 1.0],
            labels=["a", ""],
            flags=[False, True],
            visits=[SEEN, SEEN + timedelta(hours=1)],
        ),
        row("r2", **{name: None for name in TYPED}),
    ]


def test_typed_values_per_type_with_nulls_and_lists(
    store: RecordingStore, rider: FeatureView
) -> None:
    store.write(rider, typed_rows())
    status, body = gql(
        client_for(store, [rider]),
        f'{{ a: rider(id: "r1") {{ rider_id {ALL_TYPED} }} b: rider(id: "r2") {{ {ALL_TYPED} }} }}',
    )
    assert status == 200, body
    assert body["data"]["a"] == {
        "rider_id": "r1",
        "age": str(BIG),
        "score": 0.25,
        "city": "Zürich",
        "vip": True,
        "seen": "2024-05-01T12:30:00+00:00",
        "counts": ["1", None, str(-(2**63))],
        "ratios": [0.5, 1.0],
        "labels": ["a", ""],
        "flags": [False, True],
        "visits": ["2024-05-01T12:30:00+00:00", "2024-05-01T13:30:00+00:00"],
    }
    assert body["data"]["b"] == {name: None for name in TYPED}


def test_schema_types_the_fields(store: RecordingStore, rider: FeatureView) -> None:
    status, body = gql(
        client_for(store, [rider]),
        '{ __type(name: "Rider") { fields { name type { name kind ofType { name } } } } }',
    )
    assert status == 200, body
    types = {
        f["name"]: f["type"]["name"] or f"[{f['type']['ofType']['name']}]"
        for f in body["data"]["__type"]["fields"]
    }
    assert types == {
        "rider_id": "[ID]",  # NON_NULL of ID
        "age": "Int64",
        "score": "Float64",
        "city": "String",
        "vip": "Boolean",
        "seen": "DateTime",
        "counts": "[Int64]",
        "ratios": "[Float64]",
        "labels": "[String]",
        "flags": "[Boolean]",
        "visits": "[DateTime]",
    }


def test_batched_lookup_keeps_order_and_answers_null_for_unknown_keys(
    store: RecordingStore, rider: FeatureView
) -> None:
    store.write(rider, [row("a", age=1), row("b", age=2)])
    status, body = gql(
        client_for(store, [rider]),
        "query($ids: [ID!]!) { riders(ids: $ids) { rider_id age } }",
        ids=["b", "nobody", "a", "b"],
    )
    assert status == 200, body
    assert body["data"]["riders"] == [
        {"rider_id": "b", "age": "2"},
        None,
        {"rider_id": "a", "age": "1"},
        {"rider_id": "b", "age": "2"},
    ]
    # One store read for the whole list, each key once.
    assert store.reads == [("rider-activity", ["b", "nobody", "a"], ["age"])]


def test_int64_keys_are_read_as_integers(store: RecordingStore) -> None:
    trips = view_of("trips", "driver", {"trips": "int64"}, key_type="int64")
    store.write(trips, [row(42, trips=7)])
    client = client_for(store, [trips])
    status, body = gql(
        client, '{ driver(id: 42) { driver_id trips } other: driver(id: "43") { trips } }'
    )
    assert status == 200, body
    assert body["data"] == {"driver": {"driver_id": "42", "trips": "7"}, "other": None}
    status, body = gql(client, '{ driver(id: "forty-two") { trips } }')
    assert status == 400
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "forty-two" in body["errors"][0]["message"]


# Keys a typed entity cannot hold, as issue 11 reports them: (key type, GraphQL literal,
# the same value as a JSON variable). ID variables take strings and integers.
BAD_KEYS = [
    ("string", '""', ""),
    ("int64", '""', ""),
    ("int64", '"--5"', "--5"),
    ("int64", '"\u00b2"', "\u00b2"),  # a Unicode digit, which int() refuses anyway
    ("int64", '"\u0663"', "\u0663"),  # a Unicode decimal digit, which int() takes
    ("int64", '"9223372036854775808"', "9223372036854775808"),
    ("int64", "9223372036854775808", 2**63),
    ("int64", '"1e19"', 10**19),
    ("int64", '" 5"', "5_000"),
]


@pytest.mark.parametrize(("key_type", "literal", "variable"), BAD_KEYS)
def test_bad_keys_are_400_alike_on_the_typed_plan_and_generic_paths(
    store: RecordingStore, key_type: str, literal: str, variable: Any
) -> None:
    """`rider(id:)` as a compiled plan (literal and variable), through graphql-core (a
    fragment keeps the plan out), `riders(ids:)` and the generic `features` field: one
    status, one code, a message naming the argument and element and the expected type."""
    view = view_of("riders", "rider", {"age": "int64"}, key_type=key_type)
    store.write(view, [row(5 if key_type == "int64" else "r5", age=1)])
    client = client_for(store, [view])
    variable = variable.encode().decode("unicode_escape") if isinstance(variable, str) else variable
    expected = "an int64" if key_type == "int64" else "a non-empty string"
    requests = [
        ("rider(id:)", f"{{ rider(id: {literal}) {{ age }} }}", {}),
        ("rider(id:)", "query Q($k: ID!) { rider(id: $k) { age } }", {"k": variable}),
        ("rider(id:)", f"{{ rider(id: {literal}) {{ ...F }} }} fragment F on Rider {{ age }}", {}),
        ("riders(ids:) element 1", f'{{ riders(ids: ["5", {literal}]) {{ age }} }}', {}),
        ("features(keys:) element 0",
         f'{{ features(entity: "rider", keys: [{literal}], names: ["age"]) {{ key }} }}', {}),
    ]  # fmt: skip
    for where, query, variables in requests:
        answer = client.post("/graphql", json={"query": query, "variables": variables})
        assert answer.status_code == 400, (query, answer.text)
        [error] = answer.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (query, error)
        assert error["message"].startswith(f"{where}: rider key expected {expected}"), error
    assert store.reads == []  # refused before any read


def test_int64_keys_accept_integral_numbers_and_decimal_text(store: RecordingStore) -> None:
    view = view_of("riders", "rider", {"age": "int64"}, key_type="int64")
    store.write(view, [row(2**63 - 1, age=1), row(-(2**63), age=2)])
    client = client_for(store, [view])
    status, body = gql(client, "query Q($k: ID!) { rider(id: $k) { age } }", k=2**63 - 1)
    assert (status, body) == (200, {"data": {"rider": {"age": "1"}}})
    status, body = gql(client, '{ rider(id: "-9223372036854775808") { age } }')
    assert (status, body) == (200, {"data": {"rider": {"age": "2"}}})


def test_only_the_selected_features_are_read(store: RecordingStore, rider: FeatureView) -> None:
    store.write(rider, [row("r1", age=30, score=0.5, city="Oslo")])
    client = client_for(store, [rider])
    status, body = gql(
        client,
        """
        query($withCity: Boolean!) {
          rider(id: "r1") { age ...more city @include(if: $withCity) labels @skip(if: true) }
        }
        fragment more on Rider { ... on Rider { score } rider_id __typename }
        """,
        withCity=False,
    )
    assert status == 200, body
    assert body["data"]["rider"] == {
        "age": "30",
        "score": 0.5,
        "rider_id": "r1",
        "__typename": "Rider",
    }
    assert store.reads == [("rider-activity", ["r1"], ["age", "score"])]


def test_manifests_of_one_entity_merge_into_one_type(store: RecordingStore) -> None:
    activity = view_of("rider-activity", "rider", {"age": "int64"})
    payments = view_of("rider-payments", "rider", {"spend": "float64"})
    store.write(activity, [row("r1", age=30)])
    store.write(payments, [row("r1", spend=12.5), row("r2", spend=1.0)])
    client = client_for(store, [payments, activity])

    status, body = gql(client, '{ riders(ids: ["r1", "r2", "r3"]) { rider_id age spend } }')
    assert status == 200, body
    assert body["data"]["riders"] == [
        {"rider_id": "r1", "age": "30", "spend": 12.5},
        {"rider_id": "r2", "age": None, "spend": 1.0},
        None,
    ]
    assert sorted(store.reads) == [
        ("rider-activity", ["r1", "r2", "r3"], ["age"]),
        ("rider-payments", ["r1", "r2", "r3"], ["spend"]),
    ]

    store.reads.clear()
    status, body = gql(client, '{ rider(id: "r1") { spend } }')
    assert body["data"]["rider"] == {"spend": 12.5}
    assert store.reads == [("rider-payments", ["r1"], ["spend"])]


def test_generic_features_query(store: RecordingStore, rider: FeatureView) -> None:
    store.write(rider, [row("r1", age=BIG, seen=SEEN, labels=["x"], score=None)])
    client = client_for(store, [rider])
    status, body = gql(
        client,
        """query($keys: [ID!]!, $names: [String!]!) {
             features(entity: "rider", keys: $keys, names: $names) {
               key values { name type value } } }""",
        keys=["r1", "ghost"],
        names=["seen", "age", "labels", "score"],
    )
    assert status == 200, body
    assert body["data"]["features"] == [
        {
            "key": "r1",
            "values": [
                {"name": "seen", "type": "timestamp", "value": "2024-05-01T12:30:00+00:00"},
                {"name": "age", "type": "int64", "value": str(BIG)},
                {"name": "labels", "type": "list<string>", "value": ["x"]},
                {"name": "score", "type": "float64", "value": None},
            ],
        },
        None,
    ]
    assert store.reads == [("rider-activity", ["r1", "ghost"], ["seen", "age", "labels", "score"])]


def test_generic_query_names_the_unknown_entity_or_feature(
    store: RecordingStore, rider: FeatureView
) -> None:
    client = client_for(store, [rider])
    status, body = gql(
        client, '{ features(entity: "driver", keys: ["1"], names: ["age"]) { key } }'
    )
    assert status == 400
    assert body["errors"][0]["extensions"]["code"] == "UNKNOWN_ENTITY"
    assert "'driver'" in body["errors"][0]["message"]
    assert "rider" in body["errors"][0]["message"]

    status, body = gql(
        client, '{ features(entity: "rider", keys: ["1"], names: ["age", "height"]) { key } }'
    )
    assert status == 400
    assert body["errors"][0]["extensions"]["code"] == "UNKNOWN_FEATURE"
    assert "rider.height" in body["errors"][0]["message"]
    assert store.reads == []


def test_validated_documents_are_cached_by_query_text(
    store: RecordingStore, rider: FeatureView
) -> None:
    served_views = ServedViews([rider])
    client = TestClient(create_app(store, served_views))
    query = "query One($id: ID!) { rider(id: $id) { age } }"
    for key in ("r1", "r2", "r3"):
        assert gql(client, query, id=key)[0] == 200
    assert (served_views.documents.misses, served_views.documents.hits) == (1, 2)
    assert gql(client, '{ rider(id: "r1") { height } }')[0] == 400
    assert gql(client, '{ rider(id: "r1") { height } }')[0] == 400
    assert served_views.documents.misses == 3
    assert len(served_views.documents) == 1  # invalid documents are not kept


def test_document_cache_can_be_turned_off(store: RecordingStore, rider: FeatureView) -> None:
    served_views = ServedViews([rider], Limits(document_cache_size=0))
    client = TestClient(create_app(store, served_views))
    for _ in range(2):
        assert gql(client, '{ rider(id: "r1") { age } }')[0] == 200
    assert (served_views.documents.misses, served_views.documents.hits) == (2, 0)


def test_automatic_persisted_queries(store: RecordingStore, rider: FeatureView) -> None:
    store.write(rider, [row("r1", age=5)])
    served_views = ServedViews([rider])
    client = TestClient(create_app(store, served_views))
    query = "query($id: ID!) { rider(id: $id) { age } }"
    sha = hashlib.sha256(query.encode()).hexdigest()
    persisted = {"persistedQuery": {"version": 1, "sha256Hash": sha}}

    miss = client.post("/graphql", json={"extensions": persisted, "variables": {"id": "r1"}})
    assert miss.status_code == 200
    assert miss.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    assert "no-cache" in miss.headers["cache-control"]

    register = client.post(
        "/graphql", json={"query": query, "extensions": persisted, "variables": {"id": "r1"}}
    )
    assert register.json() == {"data": {"rider": {"age": "5"}}}

    by_hash = client.post("/graphql", json={"extensions": persisted, "variables": {"id": "r1"}})
    assert by_hash.json() == {"data": {"rider": {"age": "5"}}}
    # Apollo clients send hashed queries as GET, so that CDNs may cache them.
    by_get = client.get(
        "/graphql",
        params={"extensions": json.dumps(persisted), "variables": json.dumps({"id": "r1"})},
    )
    assert by_get.json() == {"data": {"rider": {"age": "5"}}}
    assert served_views.documents.misses == 1

    wrong = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    mismatch = client.post("/graphql", json={"query": query, "extensions": wrong})
    assert mismatch.status_code == 400
    assert "does not match" in mismatch.json()["errors"][0]["message"]


def test_invalid_queries_are_not_persisted(store: RecordingStore, rider: FeatureView) -> None:
    client = client_for(store, [rider])
    query = "{ rider(id: 1) { height } }"
    persisted = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(query.encode()).hexdigest()}
    }
    assert (
        client.post("/graphql", json={"query": query, "extensions": persisted}).status_code == 400
    )
    again = client.post("/graphql", json={"extensions": persisted}).json()
    assert again["errors"][0]["message"] == "PersistedQueryNotFound"


def test_depth_limit(store: RecordingStore, rider: FeatureView) -> None:
    client = client_for(store, [rider], Limits(max_depth=2))
    assert gql(client, '{ rider(id: "r1") { age } }')[0] == 200
    status, body = gql(
        client,
        '{ features(entity: "rider", keys: ["r1"], names: ["age"]) { ...row } }'
        " fragment row on FeatureRow { values { name } }",
    )
    assert status == 400
    assert body["errors"][0]["message"] == "query depth 3 exceeds the limit of 2"
    assert body["errors"][0]["extensions"]["code"] == "DEPTH_LIMIT_EXCEEDED"


def test_introspection_is_allowed_but_bounded(store: RecordingStore, rider: FeatureView) -> None:
    client = client_for(store, [rider])
    assert gql(client, get_introspection_query(descriptions=True))[0] == 200
    nested = "name"
    for _ in range(12):
        nested = f"fields {{ type {{ {nested} }} }}"
    status, body = gql(client, f"{{ __schema {{ types {{ {nested} }} }} }}")
    assert status == 400
    assert "introspection depth" in body["errors"][0]["message"]


def test_key_limit_counts_every_field_of_the_request(
    store: RecordingStore, rider: FeatureView
) -> None:
    client = client_for(store, [rider], Limits(max_keys=3))
    assert gql(client, '{ riders(ids: ["a", "b", "c"]) { age } }')[0] == 200
    store.reads.clear()
    for query in (
        '{ riders(ids: ["a", "b", "c", "d"]) { age } }',
        '{ x: riders(ids: ["a", "b"]) { age } y: riders(ids: ["c", "d"]) { age } }',
        '{ features(entity: "rider", keys: ["a", "b", "c", "d"], names: ["age"]) { key } }',
    ):
        status, body = gql(client, query)
        assert status == 400, query
        assert body["errors"][0]["extensions"]["code"] == "TOO_MANY_KEYS"
        assert "limit is 3" in body["errors"][0]["message"]
    # A request over the limit never reads more than the limit allows.
    assert sum(len(keys) for _, keys, _ in store.reads) <= 3


def test_oversized_body_is_refused_with_413(store: RecordingStore, rider: FeatureView) -> None:
    client = client_for(store, [rider], Limits(max_body_bytes=1024))
    padding = " " * 2000
    answer = client.post("/graphql", json={"query": '{ rider(id: "r1") { age } }' + padding})
    assert answer.status_code == 413
    assert answer.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"query": "'
        for _ in range(20):
            yield b" " * 100
        yield b'"}'

    streamed = client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"query": '{ rider(id: "r1") { age }'}, "Syntax Error"),
        ({"query": '{ rider(id: "r1") { height } }'}, "Cannot query field 'height'"),
        ({"query": "{ rider { age } }"}, "of type 'ID!' is required"),
        ({"query": "query($id: ID!) { rider(id: $id) { age } }", "variables": {}}, "$id"),
        ({"query": "{ __typename }", "variables": "nope"}, "variables must be an object"),
        ({"variables": {}}, "no query"),
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_requests_are_400_with_graphql_errors(
    store: RecordingStore, rider: FeatureView, payload: Any, message: str
) -> None:
    answer = client_for(store, [rider]).post("/graphql", json=payload)
    status, body = answer.status_code, answer.json()
    assert status == 400
    assert set(body) == {"errors"}
    assert message in body["errors"][0]["message"]


def test_body_that_is_not_json_is_400(store: RecordingStore, rider: FeatureView) -> None:
    answer = client_for(store, [rider]).post(
        "/graphql", content=b"{query", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert "not valid JSON" in answer.json()["errors"][0]["message"]


def test_store_down_is_503_and_recovers_without_restart(
    store: RecordingStore, rider: FeatureView
) -> None:
    store.write(rider, [row("r1", age=9)])
    client = client_for(store, [rider])
    query = '{ rider(id: "r1") { age } }'
    assert gql(client, query) == (200, {"data": {"rider": {"age": "9"}}})

    store.down = True
    status, body = gql(client, query)
    assert status == 503
    assert body == {
        "errors": [
            {
                "message": "online store unavailable: "
                "connection refused (switched off by the test)",
                "locations": [{"line": 1, "column": 3}],
                "path": ["rider"],
                "extensions": {"code": "STORE_UNAVAILABLE"},
            }
        ]
    }
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "online store unavailable" in ready.json()["reason"]
    assert client.get("/healthz").status_code == 200

    store.down = False
    assert gql(client, query) == (200, {"data": {"rider": {"age": "9"}}})
    assert client.get("/readyz").status_code == 200


def test_readiness_waits_for_feature_definitions(store: RecordingStore, rider: FeatureView) -> None:
    served_views = ServedViews()
    client = TestClient(create_app(store, served_views))
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "not loaded" in answer.json()["reason"]
    served_views.update([rider])
    assert client.get("/readyz").json() == {"status": "ready", "entities": ["rider"]}


def test_schema_update_adds_an_entity_and_starts_a_new_document_cache(
    store: RecordingStore, rider: FeatureView
) -> None:
    served_views = ServedViews([rider])
    client = TestClient(create_app(store, served_views))
    driver = view_of("driver-trips", "driver", {"trips": "int64"})
    store.write(driver, [row("d1", trips=3)])
    query = '{ driver(id: "d1") { trips } }'

    status, body = gql(client, query)
    assert status == 400
    assert "Cannot query field 'driver'" in body["errors"][0]["message"]
    assert gql(client, '{ rider(id: "r1") { age } }')[0] == 200
    assert len(served_views.documents) == 1

    assert served_views.update([rider, driver]) is True
    assert len(served_views.documents) == 0
    assert gql(client, query) == (200, {"data": {"driver": {"trips": "3"}}})

    assert served_views.update([driver, rider]) is False  # same views: schema and cache kept
    assert len(served_views.documents) == 1

    served_views.update([driver])
    assert gql(client, '{ rider(id: "r1") { age } }')[0] == 400


def test_readiness_follows_the_store_file(tmp_path: Path, rider: FeatureView) -> None:
    path = tmp_path / "online.db"
    store = SqliteOnlineStore(path)
    store.write(rider, [row("r1", age=1)])
    client = TestClient(create_app(store, ServedViews([rider])))
    assert client.get("/readyz").status_code == 200

    path.rename(tmp_path / "elsewhere.db")  # the data went away under a running server
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "was deleted" in answer.json()["reason"]

    (tmp_path / "elsewhere.db").rename(path)
    assert client.get("/readyz").status_code == 200
    store.close()
