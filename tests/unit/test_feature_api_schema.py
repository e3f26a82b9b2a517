"""Feature API building blocks on plain data: entity grouping, naming, scalars, depth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from graphql import FragmentDefinitionNode, GraphQLError, OperationDefinitionNode, parse

from lykeion.feature_api.entities import group_views, plural, type_name
from lykeion.feature_api.limits import Depth, measure_depth
from lykeion.feature_api.scalars import Int64, datetime_text, json_value
from lykeion.features.view import FeatureView
from tests.objects import manifest


def view(
    name: str,
    entity: str = "rider",
    features: dict[str, str] | None = None,
    namespace: str = "default",
    join_key: str | None = None,
    key_type: str = "string",
) -> FeatureView:
    body = manifest(name, entity, features)
    body["metadata"]["namespace"] = namespace
    body["spec"]["entity"].update(joinKey=join_key or f"{entity}_id", keyType=key_type)
    return FeatureView.from_body(body)


@pytest.mark.parametrize(
    ("entity", "single", "many", "type_"),
    [
        ("rider", "rider", "riders", "Rider"),
        ("city", "city", "cities", "City"),
        ("address", "address", "addresses", "Address"),
        ("day", "day", "days", "Day"),
        ("rider_trip", "rider_trip", "rider_trips", "RiderTrip"),
    ],
)
def test_names(entity: str, single: str, many: str, type_: str) -> None:
    assert (entity, plural(entity), type_name(entity)) == (single, many, type_)


def test_views_of_one_entity_merge_first_definition_wins() -> None:
    entities = group_views(
        [
            view("b-payments", features={"spend": "float64", "age": "string"}),
            view("a-activity", features={"age": "int64"}),
            view("c-other", namespace="team-b", features={"rides": "int64"}),
        ]
    )
    rider = entities.by_name["rider"]
    assert {name: served.view.name for name, served in rider.features.items()} == {
        "age": "a-activity",
        "spend": "b-payments",
        "rides": "c-other",
    }
    assert rider.features["age"].feature.type == "int64"
    assert [v.name for v in rider.views] == ["a-activity", "b-payments", "c-other"]
    assert entities.conflicts == (
        "FeatureManifest default/b-payments: rider.age is left out, "
        "already defined by FeatureManifest default/a-activity",
    )


def test_a_manifest_keying_the_entity_differently_is_left_out() -> None:
    entities = group_views(
        [
            view("a", features={"age": "int64"}),
            view("b", features={"spend": "float64"}, key_type="int64"),
            view("c", features={"rides": "int64"}, join_key="user_id"),
        ]
    )
    assert list(entities.by_name["rider"].features) == ["age"]
    assert len(entities.conflicts) == 2
    assert "keys rider by rider_id (int64)" in entities.conflicts[0]
    assert "keys rider by user_id (string)" in entities.conflicts[1]


def test_names_the_schema_reserves_are_avoided() -> None:
    entities = group_views(
        [
            view("a", entity="feature", features={"x": "int64"}),  # plural is the generic field
            view("b", entity="query", features={"x": "int64"}),  # type name Query is taken
            view("c", entity="rider", features={"rider_id": "string", "x": "int64"}),
        ]
    )
    assert "feature" not in entities.by_name
    assert entities.by_name["query"].type_name == "QueryEntity"
    assert list(entities.by_name["rider"].features) == ["x"]
    assert any("features is taken" in c for c in entities.conflicts)
    assert any("rider.rider_id is the join key" in c for c in entities.conflicts)


def test_int64_is_a_decimal_string_both_ways() -> None:
    assert Int64.serialize(2**63 - 1) == "9223372036854775807"
    assert Int64.parse_value("-9223372036854775808") == -(2**63)
    for bad in (2**63, True, 1.5):
        with pytest.raises(GraphQLError):
            Int64.serialize(bad)


def test_datetimes_are_iso_8601_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert (
        datetime_text(datetime(2024, 5, 1, 14, 0, tzinfo=plus_two)) == "2024-05-01T12:00:00+00:00"
    )
    assert datetime_text(datetime(2024, 5, 1, 12, 0)) == "2024-05-01T12:00:00+00:00"


def test_json_form_of_each_type() -> None:
    when = datetime(2024, 5, 1, tzinfo=UTC)
    assert json_value("int64", 2**60) == str(2**60)
    assert json_value("float64", 3) == 3.0
    assert json_value("bool", False) is False
    assert json_value("timestamp", when) == "2024-05-01T00:00:00+00:00"
    assert json_value("list<int64>", [1, None]) == ["1", None]
    assert json_value("list<timestamp>", [when]) == ["2024-05-01T00:00:00+00:00"]
    assert json_value("string", None) is None
    assert json_value("float64", float("nan")) == "NaN"  # a value, not an error
    with pytest.raises(GraphQLError):
        json_value("float64", "1.5")


def depth_of(query: str) -> Depth:
    document = parse(query)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    (operation,) = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return measure_depth(operation.selection_set, fragments)


def test_depth_follows_fragments_and_keeps_introspection_apart() -> None:
    assert depth_of("{ a { b { c } } d }") == Depth(3, 0)
    assert depth_of("{ a { ...f } } fragment f on T { b { ... on T { c { d } } } }") == Depth(4, 0)
    assert depth_of("{ a __schema { types { name } } }") == Depth(1, 3)
    assert depth_of("{ a { __typename } }") == Depth(2, 0)
    # A fragment cycle (refused by the standard rules) does not loop.
    assert depth_of("{ ...f } fragment f on Query { a { ...f } }") == Depth(1, 0)
