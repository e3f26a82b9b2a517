"""Plans answer plain entity lookups exactly as graphql-core's executor does, or not at all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from graphql import execute

from lykeion.feature_api import Limits, ServedViews
from lykeion.feature_api.reads import RequestContext
from lykeion.features.view import FeatureView
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.unit.test_feature_api import TYPED, client_for, gql, row, typed_rows, view_of

ALL = " ".join(TYPED)


@pytest.fixture
def served(tmp_path: Path) -> tuple[SqliteOnlineStore, ServedViews]:
    rider = view_of(features=TYPED)
    trips = view_of("rider-trips", features={"trips": "int64"})
    account = view_of(
        "accounts", entity="account", features={"balance": "float64"}, key_type="int64"
    )
    store = SqliteOnlineStore(tmp_path / "online.db")
    store.write(rider, [*typed_rows(), row("r3", age=7, city="Bern", counts=[])])
    store.write(trips, [row("r1", trips=12), row("r4", trips=3)])
    store.write(account, [row(10, balance=1.5), row(-(2**63), balance=-2.0)])
    return store, ServedViews([rider, trips, account], Limits(max_keys=20))


def both(
    served: tuple[SqliteOnlineStore, ServedViews],
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> tuple[dict[str, Any] | None, Any]:
    """(the plan's data, graphql-core's data) for one request on fresh contexts."""
    store, served_views = served
    snapshot = served_views.snapshot
    prepared = snapshot.documents.get(query)
    assert prepared.plan is not None, f"no plan for {query}"
    max_keys = served_views.limits.max_keys
    planned = asyncio.run(
        prepared.plan.run(RequestContext(store, max_keys), variables, operation_name)
    )

    async def executed() -> Any:
        outcome = execute(
            snapshot.schema,
            prepared.document,
            context_value=RequestContext(store, max_keys),
            variable_values=variables,
            operation_name=operation_name,
        )
        result = await outcome  # type: ignore[misc]
        assert not result.errors, result.errors
        return result.data

    return planned, asyncio.run(executed())


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (f'{{ rider(id: "r1") {{ rider_id {ALL} }} }}', None),
        (f'{{ a: rider(id: "r2") {{ {ALL} }} b: rider(id: "nobody") {{ age }} }}', None),
        (
            "query($ids: [ID!]!) { riders(ids: $ids) { rider_id age trips counts } }",
            {"ids": ["r4", "r1", "x", "r1", "r3"]},
        ),
        (
            "query Q($id: ID!) { rider(id: $id) { __typename key: rider_id t: trips } }",
            {"id": "r1"},
        ),
        (
            '{ riders(ids: "r3") { city } '
            'accounts(ids: [10, "-9223372036854775808", 11]) { account_id balance } }',
            None,
        ),
        ("query($ids: [ID!]!) { accounts(ids: $ids) { balance } }", {"ids": [10, "10", 3]}),
        ('{ riders(ids: ["r1", "r2"]) { rider_id } }', None),
        ('{ rider(id: "r4") { rider_id } riders(ids: []) { age } }', None),
    ],
)
def test_plans_answer_what_graphql_core_answers(
    served: tuple[SqliteOnlineStore, ServedViews],
    query: str,
    variables: dict[str, Any] | None,
) -> None:
    planned, executed = both(served, query, variables)
    assert planned is not None
    assert planned == executed
    assert list(planned) == list(executed)  # response keys in the document's order
    for key, value in planned.items():
        rows = value if isinstance(value, list) else [value]
        expected = executed[key] if isinstance(executed[key], list) else [executed[key]]
        for mine, theirs in zip(rows, expected, strict=True):
            assert mine is None or list(mine) == list(theirs)


@pytest.mark.parametrize(
    ("query", "variables", "operation_name"),
    [
        # graphql-core coerces a lone value into the list: the plan leaves that to it.
        ("query($ids: [ID!]!) { riders(ids: $ids) { age } }", {"ids": "r1"}, None),
        ("query($ids: [ID!]!) { riders(ids: $ids) { age } }", {"ids": [True]}, None),
        ("query($id: ID!) { rider(id: $id) { age } }", {}, None),
        ("query A($id: ID!) { rider(id: $id) { age } }", {"id": "r1"}, "B"),
        ('{ accounts(ids: ["ten"]) { balance } }', None, None),  # not an int64 key
        ("{ riders(ids: [" + ", ".join(['"r1"'] * 21) + "]) { age } }", None, None),
    ],
)
def test_plans_give_up_where_graphql_core_must_word_the_answer(
    served: tuple[SqliteOnlineStore, ServedViews],
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> None:
    store, served_views = served
    prepared = served_views.snapshot.documents.get(query)
    assert prepared.plan is not None
    context = RequestContext(store, served_views.limits.max_keys)
    assert asyncio.run(prepared.plan.run(context, variables, operation_name)) is None


@pytest.mark.parametrize(
    "query",
    [
        '{ rider(id: "r1") { ...F } } fragment F on Rider { age }',
        '{ rider(id: "r1") { ... on Rider { age } } }',
        'query($skip: Boolean!) { rider(id: "r1") { age @skip(if: $skip) } }',
        'query($id: ID! = "r1") { rider(id: $id) { age } }',
        '{ features(entity: "rider", keys: ["r1"], names: ["age"]) { key } }',
        '{ rider(id: "r1") { age age } }',
        '{ a: rider(id: "r1") { age } a: rider(id: "r1") { city } }',
        '{ __typename rider(id: "r1") { age } }',
        "{ __schema { queryType { name } } }",
        'query A { rider(id: "r1") { age } } query B { rider(id: "r2") { age } }',
    ],
)
def test_other_documents_run_through_graphql_core(
    served: tuple[SqliteOnlineStore, ServedViews], query: str
) -> None:
    _, served_views = served
    assert served_views.snapshot.documents.get(query).plan is None


def test_http_answers_are_the_same_whichever_path_runs(tmp_path: Path) -> None:
    from tests.unit.test_feature_api import RecordingStore

    rider = view_of(features=TYPED)
    store = RecordingStore(SqliteOnlineStore(tmp_path / "online.db"))
    store.write(rider, [row("r1", age=3, city="Bern"), row("r2", age=4)])
    client = client_for(store, [rider])
    planned = "query($ids: [ID!]!) { riders(ids: $ids) { rider_id age city } }"
    general = "query($ids: [ID!]!) { riders(ids: $ids) { ... on Rider { rider_id age city } } }"
    for ids in (["r1", "r2", "r9"], "r1"):  # a lone key: the plan gives up, graphql-core wraps it
        answers = [gql(client, query, ids=ids) for query in (planned, general)]
        assert answers[0] == answers[1]
        assert answers[0][0] == 200
    assert gql(client, planned, ids="r1")[1]["data"]["riders"] == [
        {"rider_id": "r1", "age": "3", "city": "Bern"}
    ]
    store.down = True
    down = [gql(client, query, ids=["r1"]) for query in (planned, general)]
    assert down[0] == down[1]
    assert down[0][0] == 503


def test_a_plan_reads_each_manifest_once_with_only_the_selected_features(
    served: tuple[SqliteOnlineStore, ServedViews],
) -> None:
    store, _ = served
    reads: list[tuple[str, list[str | int], list[str]]] = []
    inner_read = store.read

    def recording(view: FeatureView, keys: Any, features: Any, now: Any = None) -> Any:
        reads.append((view.name, list(keys), list(features)))
        return inner_read(view, keys, features, now)

    store.read = recording  # type: ignore[method-assign]
    query = '{ riders(ids: ["r1", "r3", "r1"]) { trips age city } }'
    planned, _ = both(served, query)
    assert planned is not None
    assert sorted(reads[:2]) == [
        ("rider-activity", ["r1", "r3"], ["age", "city"]),
        ("rider-trips", ["r1", "r3"], ["trips"]),
    ]
    assert len(reads) == 4  # two by the plan, two by graphql-core in `both`
