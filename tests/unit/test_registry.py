from __future__ import annotations

from lykeion.registry import Key, Registry
from tests import objects


def _with_ns(body: dict, ns: str = "ns") -> dict:  # type: ignore[type-arg]
    body["metadata"]["namespace"] = ns
    return body


def test_family_appearing_requeues_only_its_models() -> None:
    registry = Registry()
    registry.observe(_with_ns(objects.model("forward")))
    registry.observe(_with_ns(objects.model("other")))
    assert registry.observe(_with_ns(objects.family("forward"))) == {
        Key("Model", "ns", "forward-default-1.0")
    }
    # Seeing the same family again (a status update) changes nothing.
    assert registry.observe(_with_ns(objects.family("forward"))) == set()
    assert registry.forget("ModelFamily", "ns", "forward") == {
        Key("Model", "ns", "forward-default-1.0")
    }


def test_manifest_change_requeues_models_using_changed_features_only() -> None:
    registry = Registry()
    registry.observe(_with_ns(objects.model(version="1.0", features=["rider.age"])))
    registry.observe(_with_ns(objects.model(version="2.0", features=["rider.drop_offs_count"])))
    first = registry.observe(_with_ns(objects.manifest(features={"age": "int64"})))
    assert first == {Key("Model", "ns", "forward-default-1.0")}
    retyped = registry.observe(
        _with_ns(objects.manifest(features={"age": "float64", "drop_offs_count": "int64"}))
    )
    assert retyped == {
        Key("Model", "ns", "forward-default-1.0"),
        Key("Model", "ns", "forward-default-2.0"),
    }
    assert registry.definitions("ns", "rider.age") == {"rider-activity": "float64"}
    assert registry.definitions("other-ns", "rider.age") == {}


def test_second_manifest_for_same_feature_requeues_the_first() -> None:
    registry = Registry()
    registry.observe(_with_ns(objects.manifest("first")))
    keys = registry.observe(_with_ns(objects.manifest("second")))
    assert Key("FeatureManifest", "ns", "first") in keys


def test_model_changes_requeue_family_and_deployments() -> None:
    registry = Registry()
    registry.observe(_with_ns(objects.deployment()))
    keys = registry.observe(_with_ns(objects.model()))
    assert keys == {Key("ModelFamily", "ns", "forward"), Key("Deployment", "ns", "forward-default")}
    ready = _with_ns(objects.model())
    ready["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert registry.observe(ready) == keys  # readiness flip matters to deployments
    assert registry.observe(ready) == set()
    assert registry.model_for("ns", "forward", "default", "1.0") is not None
    assert registry.model_for("ns", "forward", "default", "2.0") is None
