"""The operator sets and clears each reference condition against the real API server."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from tests import objects
from tests.support import Cluster, Operator, wait_for


@pytest.fixture(autouse=True)
def _operator(operator: Operator) -> Operator:
    return operator


def test_model_waits_for_family_and_recovers(cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.manifest(), namespace)
    cluster.create(objects.model(), namespace)
    cond = cluster.wait_condition(
        "Model", namespace, "forward-default-1.0", "False", "FamilyNotFound"
    )
    assert "ModelFamily forward does not exist" in cond["message"]
    model = cluster.get("Model", namespace, "forward-default-1.0")
    assert model is not None
    assert model["status"]["missing"] == ["family:forward"]

    cluster.create(objects.family(), namespace)
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "True")
    model = cluster.get("Model", namespace, "forward-default-1.0")
    assert model is not None
    assert model["status"]["missing"] == []
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]


def test_model_names_each_missing_feature_and_recovers(cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.family(), namespace)
    cluster.create(objects.manifest(features={"age": "int64"}), namespace)
    cluster.create(
        objects.model(features=["rider.age", "rider.drop_offs_count", "store.rating"]), namespace
    )
    cond = cluster.wait_condition(
        "Model", namespace, "forward-default-1.0", "False", "FeaturesNotDefined"
    )
    assert (
        cond["message"] == "not defined by any FeatureManifest: rider.drop_offs_count, store.rating"
    )

    # Adding one feature narrows the message; adding the other clears it.
    cluster.patch(
        "FeatureManifest",
        namespace,
        "rider-activity",
        {
            "spec": {
                "features": [
                    {"name": "age", "type": "int64", "column": "age"},
                    {"name": "drop_offs_count", "type": "int64", "column": "drop_offs"},
                ]
            }
        },
    )
    wait_for(
        lambda: (
            (cluster.condition("Model", namespace, "forward-default-1.0") or {}).get("message")
            == "not defined by any FeatureManifest: store.rating"
        ),
        what="message naming only store.rating",
    )
    cluster.create(
        objects.manifest("stores", entity="store", features={"rating": "float64"}), namespace
    )
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "True")


def test_feature_type_mismatch_is_reported(cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.family(), namespace)
    cluster.create(objects.manifest(features={"age": "float64"}), namespace)
    cluster.create(objects.model(features=["rider.age:int64"]), namespace)
    cond = cluster.wait_condition(
        "Model", namespace, "forward-default-1.0", "False", "FeatureTypeMismatch"
    )
    assert (
        "rider.age is float64 in FeatureManifest rider-activity, the model expects int64"
        in cond["message"]
    )
    cluster.patch(
        "FeatureManifest",
        namespace,
        "rider-activity",
        {"spec": {"features": [{"name": "age", "type": "int64", "column": "age"}]}},
    )
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "True")


def test_feature_defined_twice_is_a_conflict(cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.family(), namespace)
    cluster.create(objects.manifest("first", features={"age": "int64"}), namespace)
    cluster.create(objects.model(features=["rider.age"]), namespace)
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "True")
    cluster.create(objects.manifest("second", features={"age": "int64"}), namespace)
    cond = cluster.wait_condition(
        "FeatureManifest", namespace, "first", "False", "FeatureConflict", type_="Registered"
    )
    assert "rider.age (also in second)" in cond["message"]
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "False", "FeatureConflict")
    cluster.delete("FeatureManifest", namespace, "second")
    cluster.wait_condition("FeatureManifest", namespace, "first", "True", type_="Registered")
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "True")


def test_model_loses_feature_when_manifest_deleted(cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.family(), namespace)
    cluster.create(objects.manifest(), namespace)
    cluster.create(objects.model(), namespace)
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "True")
    cluster.delete("FeatureManifest", namespace, "rider-activity")
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "False", "FeaturesNotDefined")


def test_deployment_waits_for_versions(cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.family(), namespace)
    cluster.create(objects.manifest(), namespace)
    cluster.create(objects.model(version="1.0"), namespace)
    cluster.create(objects.deployment(versions={"1.0": 90, "2.0": 10}), namespace)
    cond = cluster.wait_condition(
        "Deployment", namespace, "forward-default", "False", "ModelVersionNotFound"
    )
    assert "version(s) 2.0" in cond["message"]
    cluster.create(objects.model(version="2.0"), namespace)
    cluster.wait_condition(
        "Deployment", namespace, "forward-default", "True", type_="ModelsResolved"
    )
    # Resolved is not servable: the readiness gate wants trained, evaluated Models.
    held = cluster.wait_condition(
        "Deployment", namespace, "forward-default", "False", "ModelNotEvaluated"
    )
    assert "Model forward-default-1.0 is not Evaluated" in held["message"]


def test_family_lists_versions_and_blocks_deletion(cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.family(), namespace)
    cluster.create(objects.manifest(), namespace)
    for version in ("1.0", "1.1", "2.0"):
        cluster.create(objects.model(version=version), namespace)
    cluster.create(objects.model(segment="eu", version="1.0"), namespace)
    cluster.create(objects.deployment(versions={"1.1": 100}), namespace)

    expected = [
        {"name": "default", "versions": ["1.0", "1.1", "2.0"], "deployed": ["1.1"]},
        {"name": "eu", "versions": ["1.0"], "deployed": []},
    ]

    def status() -> dict[str, object]:
        return (cluster.get("ModelFamily", namespace, "forward") or {}).get("status") or {}

    wait_for(lambda: status().get("segments") == expected, what="family status listing segments")
    assert status()["modelCount"] == 4

    cluster.delete("ModelFamily", namespace, "forward")
    cond = cluster.wait_condition("ModelFamily", namespace, "forward", "False", "DeletionBlocked")
    assert "forward-default-1.0" in cond["message"] and "forward-eu-1.0" in cond["message"]
    assert cluster.get("ModelFamily", namespace, "forward") is not None
    for name in (
        "forward-default-1.0",
        "forward-default-1.1",
        "forward-default-2.0",
        "forward-eu-1.0",
    ):
        cluster.delete("Model", namespace, name)
    wait_for(
        lambda: cluster.get("ModelFamily", namespace, "forward") is None,
        timeout=30,
        what="family gone",
    )


def test_health_and_metrics(operator: Operator, cluster: Cluster, namespace: str) -> None:
    cluster.create(objects.family(), namespace)
    cluster.wait_condition("ModelFamily", namespace, "forward", "True")
    assert operator.get("/healthz")[0] == 200
    assert operator.get("/readyz")[0] == 200
    status, text = operator.get("/metrics")
    assert status == 200
    line = next(
        x for x in text.splitlines() if x.startswith('lykeion_reconciles_total{kind="ModelFamily"}')
    )
    assert float(line.split()[-1]) >= 1


def test_status_is_not_writable_through_spec(cluster: Cluster, namespace: str) -> None:
    body = objects.family()
    body["status"] = {"modelCount": 99}
    cluster.create(body, namespace)
    stored = cluster.get("ModelFamily", namespace, "forward")
    assert stored is not None
    assert (stored.get("status") or {}).get("modelCount") != 99
    with pytest.raises(ApiException):
        cluster.create(objects.family(), namespace)


def test_a_spec_the_schema_accepts_but_the_model_refuses_is_said_in_status(
    cluster: Cluster, namespace: str
) -> None:
    # The CRD cannot say "no feature twice, whatever its type pin"; the operator parses
    # each spec once with its model, and says in status why it will not act on this one.
    cluster.create(objects.family(), namespace)
    cluster.create(objects.manifest(), namespace)
    cluster.create(objects.model(features=["rider.age", "rider.age:int64"]), namespace)
    cond = cluster.wait_condition("Model", namespace, "forward-default-1.0", "False", "SpecInvalid")
    assert "inputFeatures must not repeat a feature" in cond["message"]
    model = cluster.get("Model", namespace, "forward-default-1.0")
    assert model is not None and "missing" not in model["status"]
