from __future__ import annotations

from lykeion.object_index import Key, ObjectIndex
from tests import objects


def _with_ns(body: dict, ns: str = "ns") -> dict:  # type: ignore[type-arg]
    body["metadata"]["namespace"] = ns
    return body


def test_family_appearing_requeues_only_its_models() -> None:
    index = ObjectIndex()
    index.observe(_with_ns(objects.model("forward")))
    index.observe(_with_ns(objects.model("other")))
    assert index.observe(_with_ns(objects.family("forward"))) == {
        Key("Model", "ns", "forward-default-1.0")
    }
    # Seeing the same family again (a status update) changes nothing.
    assert index.observe(_with_ns(objects.family("forward"))) == set()
    assert index.forget("ModelFamily", "ns", "forward") == {
        Key("Model", "ns", "forward-default-1.0")
    }


def test_manifest_change_requeues_models_using_changed_features_only() -> None:
    index = ObjectIndex()
    index.observe(_with_ns(objects.model(version="1.0", features=["rider.age"])))
    index.observe(_with_ns(objects.model(version="2.0", features=["rider.drop_offs_count"])))
    first = index.observe(_with_ns(objects.manifest(features={"age": "int64"})))
    assert first == {Key("Model", "ns", "forward-default-1.0")}
    retyped = index.observe(
        _with_ns(objects.manifest(features={"age": "float64", "drop_offs_count": "int64"}))
    )
    assert retyped == {
        Key("Model", "ns", "forward-default-1.0"),
        Key("Model", "ns", "forward-default-2.0"),
    }
    assert index.definitions("ns", "rider.age") == {"rider-activity": "float64"}
    assert index.definitions("other-ns", "rider.age") == {}


def test_second_manifest_for_same_feature_requeues_the_first() -> None:
    index = ObjectIndex()
    index.observe(_with_ns(objects.manifest("first")))
    keys = index.observe(_with_ns(objects.manifest("second")))
    assert Key("FeatureManifest", "ns", "first") in keys


def test_model_changes_requeue_family_and_deployments() -> None:
    index = ObjectIndex()
    index.observe(_with_ns(objects.deployment()))
    keys = index.observe(_with_ns(objects.model()))
    assert keys == {Key("ModelFamily", "ns", "forward"), Key("Deployment", "ns", "forward-default")}
    ready = _with_ns(objects.model())
    ready["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert index.observe(ready) == keys  # readiness flip matters to deployments
    assert index.observe(ready) == set()
    assert index.model_for("ns", "forward", "default", "1.0") is not None
    assert index.model_for("ns", "forward", "default", "2.0") is None


def test_a_generation_switch_requeues_the_deployments_serving_its_features() -> None:
    index = ObjectIndex()
    index.observe(_with_ns(objects.deployment()))
    index.observe(_with_ns(objects.model(features=["rider.age"])))
    body = _with_ns(objects.manifest(features={"age": "int64"}))
    body["metadata"]["uid"] = "u-1"
    body["status"] = {"materializedGeneration": 1}
    index.observe(body)
    assert index.manifests_for("ns", ["rider.age"]) == [
        {
            "metadata": {"name": "rider-activity", "namespace": "ns", "uid": "u-1"},
            "spec": body["spec"],
            "status": {"materializedGeneration": 1},
        }
    ]
    # Another status update without a switch changes nothing for the servers ...
    assert index.observe(body) == set()
    # ... a switch to generation 2 re-renders them onto its tables (and lets waiting
    # Models train).
    body["status"] = {"materializedGeneration": 2}
    assert index.observe(body) == {
        Key("Deployment", "ns", "forward-default"),
        Key("Model", "ns", "forward-default-1.0"),
    }
    assert index.manifests_for("ns", ["rider.age"])[0]["status"] == {"materializedGeneration": 2}
