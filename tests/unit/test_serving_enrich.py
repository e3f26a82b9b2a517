"""Enrichment: keys -> model inputs from a real SQLite online store, in trained order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lykeion.features.view import FeatureView
from lykeion.serving.config import TrainedFeature
from lykeion.serving.enrich import BadRequest, Enricher, FeatureMismatch
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests import objects

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _view(name: str = "rider-activity", entity: str = "rider", **features: str) -> FeatureView:
    body = objects.manifest(name, entity, features or {"age": "int64", "avg_fare": "float64"})
    body["metadata"]["namespace"] = "ns"
    body["spec"]["ttl"] = "30d"
    return FeatureView.from_body(body)


def _trained(*refs: tuple[str, str]) -> list[TrainedFeature]:
    return [TrainedFeature(ref=r, column=r.replace(".", "__"), type=t) for r, t in refs]


@pytest.fixture
def store(tmp_path: Path) -> SqliteOnlineStore:
    store = SqliteOnlineStore(tmp_path / "online.db")
    store.write(
        _view(),
        [
            OnlineRow("r1", NOW - timedelta(days=1), {"age": 30, "avg_fare": 12.5}),
            OnlineRow("r2", NOW - timedelta(days=1), {"age": 41, "avg_fare": None}),
            # Older than the 30-day TTL at NOW: served as missing.
            OnlineRow("r3", NOW - timedelta(days=45), {"age": 50, "avg_fare": 9.0}),
        ],
    )
    store.write(
        _view("driver-stats", "driver", rating="float64"),
        [OnlineRow("d1", NOW - timedelta(hours=1), {"rating": 4.8})],
    )
    return store


def test_columns_follow_the_trained_order_not_the_manifest_order(store: SqliteOnlineStore) -> None:
    enricher = Enricher(_trained(("rider.avg_fare", "float64"), ("rider.age", "int64")), [_view()])
    enriched = enricher.lookup(store, [{"rider_id": "r1"}, {"rider_id": "r2"}], NOW)
    assert list(enriched.columns) == ["rider__avg_fare", "rider__age"]
    assert enriched.columns == {"rider__avg_fare": [12.5, None], "rider__age": [30, 41]}
    assert enriched.missing == [[], ["rider.avg_fare"]]


def test_features_of_two_entities_need_both_keys(store: SqliteOnlineStore) -> None:
    views = [_view(), _view("driver-stats", "driver", rating="float64")]
    enricher = Enricher(_trained(("rider.age", "int64"), ("driver.rating", "float64")), views)
    assert enricher.key_names == ["rider_id", "driver_id"]
    enriched = enricher.lookup(store, [{"rider_id": "r1", "driver_id": "d1"}], NOW)
    assert enriched.row(0) == {"rider__age": 30, "driver__rating": 4.8}
    with pytest.raises(BadRequest, match=r"row 0: missing entity key\(s\) driver_id"):
        enricher.lookup(store, [{"rider_id": "r1"}], NOW)


def test_unknown_and_expired_keys_are_missing_unless_defaulted(store: SqliteOnlineStore) -> None:
    trained = _trained(("rider.age", "int64"), ("rider.avg_fare", "float64"))
    strict = Enricher(trained, [_view()])
    enriched = strict.lookup(store, [{"rider_id": "nobody"}, {"rider_id": "r3"}], NOW)
    assert enriched.missing == [["rider.age", "rider.avg_fare"]] * 2
    assert not enriched.complete

    lenient = Enricher(trained, [_view()], {"rider.age": "18", "rider.avg_fare": None})
    enriched = lenient.lookup(store, [{"rider_id": "nobody"}], NOW)
    assert enriched.complete
    assert enriched.row(0) == {"rider__age": 18, "rider__avg_fare": None}
    assert enriched.defaulted == [["rider.age", "rider.avg_fare"]]


def test_a_type_changed_since_training_refuses_to_serve() -> None:
    with pytest.raises(FeatureMismatch, match="trained as float64 but FeatureManifest"):
        Enricher(_trained(("rider.age", "float64")), [_view()])
    with pytest.raises(FeatureMismatch, match="defined by 0 FeatureManifests"):
        Enricher(_trained(("rider.gone", "int64")), [_view()])
    with pytest.raises(FeatureMismatch, match=r"default of rider\.age"):
        Enricher(_trained(("rider.age", "int64")), [_view()], {"rider.age": "old"})


def test_keys_are_typed_by_the_manifest(store: SqliteOnlineStore) -> None:
    enricher = Enricher(_trained(("rider.age", "int64")), [_view()])
    # A whole double (how SeldonClient sends numbers) is the same key.
    assert enricher.keys([{"rider_id": 7.0}]) == [{"rider_id": "7"}]
    with pytest.raises(BadRequest, match="expected a non-empty string"):
        enricher.keys([{"rider_id": None}])
    with pytest.raises(BadRequest, match="no rows"):
        enricher.keys([])
