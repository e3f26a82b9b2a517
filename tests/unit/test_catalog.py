"""The feature catalog: full-text search and lineage, rebuilt from plain objects."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from lykeion.feature_api import ServedViews, create_app
from lykeion.feature_api.catalog import Catalog, fts_query
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.objects import deployment, manifest, model

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def feature_manifest(
    name: str,
    entity: str,
    features: dict[str, str],
    description: str,
    owner: str,
    tags: list[str],
    namespace: str = "default",
    descriptions: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = manifest(name, entity, features)
    body["metadata"]["namespace"] = namespace
    body["spec"].update(description=description, owner=owner, tags=tags)
    for feature in body["spec"]["features"]:
        if descriptions and feature["name"] in descriptions:
            feature["description"] = descriptions[feature["name"]]
    if status:
        body["status"] = status
    return body


RIDER = feature_manifest(
    "rider-activity",
    "rider",
    {"age": "int64", "drop_offs_count": "int64", "home_city": "string"},
    "Rider activity aggregated from the rides table",
    "mobility-team@example.com",
    ["pii", "rides"],
    descriptions={"drop_offs_count": "Number of completed drop offs in the last 30 days"},
    status={
        "watermark": "2024-05-01T00:00:00Z",
        "lastRunTime": "2024-05-01T00:05:00Z",
        "rowsWritten": 1200,
        "runs": [{"name": "rider-activity-1", "result": "Succeeded"}, {"result": "Failed"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Registered",
                "message": "",
                "lastTransitionTime": "2024-05-01T00:05:00Z",
            }
        ],
    },
)
STORE = feature_manifest(
    "store-sales",
    "store",
    {"revenue": "float64", "rider_visits": "int64"},
    "Weekly sales per store",
    "retail@example.com",
    ["finance"],
)
OTHER_NAMESPACE = feature_manifest(
    "rider-activity",
    "rider",
    {"age": "string"},
    "Another team's riders",
    "elsewhere@example.com",
    [],
    namespace="team-b",
)


def in_namespace(body: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    body["metadata"]["namespace"] = namespace
    return body


@pytest.fixture
def catalog() -> Catalog:
    catalog = Catalog()
    models = [
        model("forward", "default", "1.0", ["rider.age", "rider.drop_offs_count"]),
        model("forward", "default", "2.0", ["rider.age:int64", "store.revenue"]),
        model("forward", "eu", "1.0", ["rider.age:string"]),
        in_namespace(model("forward", "default", "1.0", ["rider.age"]), "team-b"),
    ]
    deployments = [
        deployment("forward", "default", {"2.0": 100}),
        deployment("forward", "eu", {"1.0": 100}),
    ]
    deployments[0]["spec"]["shadow"] = "1.0"
    deployments[0]["status"] = {"endpoint": "http://forward-default.default.svc/predict"}
    assert catalog.rebuild([RIDER, STORE, OTHER_NAMESPACE], models, deployments) == 6
    assert catalog.problems == []
    return catalog


def refs(hits: list[dict[str, Any]]) -> list[str]:
    return [f"{hit['namespace']}/{hit['ref']}" for hit in hits]


def test_search_by_a_description_word(catalog: Catalog) -> None:
    hits = catalog.search("completed")
    assert refs(hits) == ["default/rider.drop_offs_count"]
    assert hits[0]["description"] == "Number of completed drop offs in the last 30 days"
    # The manifest's description covers all its features; every term must match.
    assert refs(catalog.search("weekly sales")) == [
        "default/store.revenue",
        "default/store.rider_visits",
    ]
    assert catalog.search("weekly rides") == []


def test_search_by_tag_and_by_owner(catalog: Catalog) -> None:
    assert refs(catalog.search("tag:finance")) == [
        "default/store.revenue",
        "default/store.rider_visits",
    ]
    assert len(catalog.search("tag:pii")) == 3
    assert catalog.search("tag:rider") == []  # a name, not a tag
    assert refs(catalog.search("owner:elsewhere@example.com")) == ["team-b/rider.age"]
    assert len(catalog.search("mobility-team")) == 3


def test_search_ranks_names_above_descriptions_and_matches_prefixes(catalog: Catalog) -> None:
    hits = catalog.search("rider")
    # Entity `rider` and the feature name `rider_visits` outrank a mere description hit.
    assert {h["ref"] for h in hits[:5]} >= {"rider.age", "rider.home_city", "store.rider_visits"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert refs(catalog.search("drop")) == ["default/rider.drop_offs_count"]
    assert refs(catalog.search("feature:drop_offs_count")) == ["default/rider.drop_offs_count"]
    assert refs(catalog.search("entity:store revenue")) == ["default/store.revenue"]


def test_search_text_is_never_fts_syntax() -> None:
    assert fts_query('age OR "x" NEAR(') == '"age"* AND "OR"* AND """x"""* AND "NEAR("*'
    assert fts_query("tag:pii -") == 'tags : "pii"*'
    assert fts_query("- :") is None
    assert Catalog().search('") OR *') == []


def test_lineage_feature_to_models_to_deployments(catalog: Catalog) -> None:
    (age,) = catalog.feature("rider.age", namespace="default")
    assert age["type"] == "int64"
    assert age["manifest"]["name"] == "rider-activity"
    assert age["freshness"] == {
        "watermark": "2024-05-01T00:00:00Z",
        "lastRunTime": "2024-05-01T00:05:00Z",
        "rowsWritten": 1200,
        "lastRunResult": "Failed",
    }
    assert age["manifest"]["ready"] is True
    lineage = {
        (m["segment"], m["version"]): (
            m["typeMatches"],
            [(d["name"], d["role"], d["traffic"]) for d in m["deployments"]],
        )
        for m in age["models"]
    }
    assert lineage == {
        ("default", "1.0"): (True, [("forward-default", "shadow", 0)]),
        ("default", "2.0"): (True, [("forward-default", "live", 100)]),
        ("eu", "1.0"): (False, [("forward-eu", "live", 100)]),  # pinned to string: a mismatch
    }
    live = next(m for m in age["models"] if m["version"] == "2.0")["deployments"][0]
    assert live["endpoint"] == "http://forward-default.default.svc/predict"

    (home_city,) = catalog.feature("rider.home_city")
    assert home_city["models"] == []

    # The same reference in another namespace has its own definition and lineage.
    both = catalog.feature("rider.age")
    assert [(d["manifest"]["namespace"], len(d["models"])) for d in both] == [
        ("default", 3),
        ("team-b", 1),
    ]


def test_invalid_objects_are_left_out_and_reported() -> None:
    broken = manifest("broken")
    broken["spec"]["features"] = []
    bad_model = model()
    del bad_model["spec"]["family"]
    catalog = Catalog()
    assert catalog.rebuild([broken, RIDER], [bad_model], []) == 3
    assert len(catalog.problems) == 2
    assert catalog.problems[0].startswith("Model default/forward-default-1.0 left out")
    assert catalog.problems[1].startswith("FeatureManifest default/broken left out")


def test_rebuild_replaces_everything(catalog: Catalog) -> None:
    catalog.rebuild([STORE], [], [])
    assert refs(catalog.search("rider")) == ["default/store.rider_visits"]
    assert catalog.feature("rider.age") == []
    assert catalog.feature("store.revenue")[0]["models"] == []


def test_catalog_routes(catalog: Catalog, tmp_path: Path) -> None:
    store = SqliteOnlineStore(tmp_path / "online.db")
    client = TestClient(create_app(store, ServedViews([]), catalog))
    found = client.get("/catalog/search", params={"q": "tag:finance", "limit": 1})
    assert found.status_code == 200
    assert found.json()["results"][0]["ref"] == "store.revenue"
    assert client.get("/catalog/search").status_code == 400
    assert client.get("/catalog/search", params={"q": "x", "limit": 0}).status_code == 400

    detail = client.get("/catalog/features/rider.drop_offs_count")
    assert detail.status_code == 200
    (definition,) = detail.json()["definitions"]
    assert [m["version"] for m in definition["models"]] == ["1.0"]
    scoped = client.get("/catalog/features/rider.age", params={"namespace": "team-b"})
    assert [d["type"] for d in scoped.json()["definitions"]] == ["string"]
    assert client.get("/catalog/features/rider.height").status_code == 404
    assert client.get("/catalog/features/not-a-ref").status_code == 400
    store.close()
