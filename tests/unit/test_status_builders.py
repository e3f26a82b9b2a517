"""Each kind's pure desired_status, on plain data."""

from __future__ import annotations

from typing import Any

from lykeion.api.kinds import kind_of
from lykeion.handlers import deployments, families, features, models
from lykeion.object_index import ObjectIndex
from lykeion.runtime import Resource
from tests import objects


def _index(*bodies: dict[str, Any]) -> ObjectIndex:
    index = ObjectIndex()
    for body in bodies:
        body["metadata"].setdefault("namespace", "default")
        index.observe(body)
    return index


def _parsed(body: dict[str, Any]) -> Resource[Any, Any]:
    """`body` as the runtime hands it to a status builder: its spec and status parsed once."""
    kind = kind_of(body)
    return Resource.parse(body, kind.spec, kind.status)


def _by_type(update: Any) -> dict[str, Any]:
    return {c.type: c for c in update.checks}


def test_model_ready_when_family_and_typed_features_exist() -> None:
    index = _index(objects.family(), objects.manifest())
    update = models.desired_status(
        _parsed(objects.model(features=["rider.age:int64", "rider.drop_offs_count"])), index
    )
    checks = _by_type(update)
    assert checks["Ready"].ok and checks["FamilyResolved"].ok and checks["FeaturesResolved"].ok
    assert update.fields == {"missing": []}


def test_model_reports_family_first_and_lists_all_missing() -> None:
    index = _index(objects.manifest(features={"age": "int64"}))
    update = models.desired_status(
        _parsed(objects.model(features=["rider.age", "rider.x", "store.y"])), index
    )
    checks = _by_type(update)
    assert checks["Ready"].reason == "FamilyNotFound"
    assert (
        checks["FeaturesResolved"].message == "not defined by any FeatureManifest: rider.x, store.y"
    )
    assert update.fields["missing"] == ["family:forward", "feature:rider.x", "feature:store.y"]


def test_model_type_pin_mismatch() -> None:
    index = _index(objects.family(), objects.manifest(features={"age": "float64"}))
    checks = _by_type(
        models.desired_status(_parsed(objects.model(features=["rider.age:int64"])), index)
    )
    assert checks["Ready"].reason == "FeatureTypeMismatch"


def test_feature_manifest_registers_sorted_typed_features() -> None:
    body = objects.manifest(features={"zeta": "string", "age": "int64"})
    update = features.desired_status(
        _parsed(body), _index(objects.manifest(features={"zeta": "string", "age": "int64"}))
    )
    assert update.fields == {
        "features": ["rider.age:int64", "rider.zeta:string"],
        "featureCount": 2,
    }
    assert _by_type(update)["Ready"].ok


def test_deployment_names_missing_versions_including_shadow() -> None:
    index = _index(objects.model(version="1.0"))
    body = objects.deployment(versions={"1.0": 100})
    body["spec"]["shadow"] = "3.0"
    checks = _by_type(deployments.desired_status(_parsed(body), index))
    assert checks["Ready"].reason == "ModelVersionNotFound"
    assert "version(s) 3.0" in checks["Ready"].message


def test_family_status_groups_versions_numerically() -> None:
    index = _index(
        objects.model(version="1.10"),
        objects.model(version="1.9"),
        objects.deployment(versions={"1.9": 100}),
    )
    update = families.desired_status(
        _parsed(objects.family() | {"metadata": {"name": "forward", "namespace": "default"}}),
        index,
    )
    assert update.fields["segments"] == [
        {"name": "default", "versions": ["1.9", "1.10"], "deployed": ["1.9"]}
    ]
    assert update.fields["modelCount"] == 2


def test_family_being_deleted_with_models_is_blocked() -> None:
    index = _index(objects.model())
    body = objects.family()
    body["metadata"] |= {"namespace": "default", "deletionTimestamp": "2026-01-01T00:00:00Z"}
    ready = _by_type(families.desired_status(_parsed(body), index))["Ready"]
    assert (ready.ok, ready.reason) == (False, "DeletionBlocked")
    assert "forward-default-1.0" in ready.message
