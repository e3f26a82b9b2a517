"""A Model applied to the real API server trains for real: local executor, real MLflow
server, registry, evaluation gate, reproducibility, and one training per request."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from lykeion.handlers.training import training_name
from lykeion.local.tracking_server import TrackingServer
from lykeion.serving import drift
from tests.support import Cluster, Operator, load, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "forward"
TIMEOUT = 240


def _model(version: str = "1.0", requests: int = 1, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(load(EXAMPLES / "model.yaml")[0])
    body["metadata"]["name"] = f"forward-default-{version}"
    body["spec"]["version"] = version
    body["spec"]["training"]["requests"] = requests
    for path, value in changes.items():
        node = body["spec"]
        *parents, leaf = path.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    # Defaults may only name input features (a CEL rule): keep those still listed.
    names = {ref.split(":")[0] for ref in body["spec"]["inputFeatures"]}
    defaults = body["spec"].get("serving", {}).get("defaults", [])
    body["spec"].setdefault("serving", {})["defaults"] = [
        d for d in defaults if d["feature"] in names
    ]
    return body


@pytest.fixture
def features(cluster: Cluster, operator: Operator, namespace: str) -> str:
    cluster.create(load(EXAMPLES / "family.yaml")[0], namespace)
    cluster.create(load(EXAMPLES / "features.yaml")[0], namespace)
    cluster.wait_condition("FeatureManifest", namespace, "rider-activity", "True", timeout=90)
    return namespace


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return (cluster.get("Model", namespace, name) or {}).get("status") or {}


def test_model_trains_registers_and_passes_its_gate(
    cluster: Cluster, features: str, tracking_server: TrackingServer
) -> None:
    namespace = features
    cluster.create(_model(), namespace)
    ready = cluster.wait_condition(
        "Model", namespace, "forward-default-1.0", "True", timeout=TIMEOUT
    )
    assert ready["reason"] == "Ready"
    status = _status(cluster, namespace, "forward-default-1.0")
    assert (
        cluster.condition("Model", namespace, "forward-default-1.0", "Evaluated")["reason"]
        == "GatePassed"
    )  # type: ignore[index]
    assert status["observedTrainingRequests"] == 1
    assert status["trainingSet"]["rows"] == 900 and len(status["trainingSet"]["hash"]) == 64
    # The dot of the Model's name cannot be in a Job name: a hash of the exact name is.
    assert status["lastTraining"]["name"] == training_name("forward-default-1.0", 1)
    assert status["lastTraining"]["name"].startswith("forward-default-1-0-")
    assert 0 < status["lastTraining"]["projectSeconds"] < status["lastTraining"]["durationSeconds"]
    assert [f["ref"] for f in status["features"]] == [
        "rider.age",
        "rider.drop_offs_count",
        "rider.avg_fare",
    ]

    client = MlflowClient(tracking_server.url)
    name, version = status["modelUri"].removeprefix("models:/").split("/")
    # One registered model per namespace, family and segment: tenants never share one.
    assert name == f"{namespace}.forward.default"
    registered = client.get_model_version(name, version)
    assert registered.tags["lykeion.version"] == "1.0"
    assert registered.tags["lykeion.training_set.sha256"] == status["trainingSet"]["hash"]
    assert client.get_model_version_by_alias(name, "candidate").version == version
    # Where serving systems fetch the files from (KServe's storageUri).
    assert status["artifactUri"] == client.get_model_version_download_uri(name, version)
    run = client.get_run(status["mlflowRunId"])
    assert run.data.metrics["eval_roc_auc"] == pytest.approx(status["metrics"]["eval_roc_auc"])
    assert run.inputs.dataset_inputs[0].dataset.digest == status["trainingSet"]["hash"][:36]
    # The training set's per-feature statistics, as the model server loads them for drift.
    statistics = drift.load(tracking_server.url, status["mlflowRunId"])
    assert statistics is not None and statistics.rows == 900
    assert set(statistics.features) == {f["ref"] for f in status["features"]}
    assert all(s.count == 900 and s.edges for s in statistics.features.values())


def test_retraining_the_same_spec_reproduces_hash_and_metrics(
    cluster: Cluster, features: str
) -> None:
    namespace = features
    cluster.create(_model(version="2.0"), namespace)
    cluster.wait_condition("Model", namespace, "forward-default-2.0", "True", timeout=TIMEOUT)
    first = _status(cluster, namespace, "forward-default-2.0")
    cluster.patch(
        "Model", namespace, "forward-default-2.0", {"spec": {"training": {"requests": 2}}}
    )
    wait_for(
        lambda: (
            _status(cluster, namespace, "forward-default-2.0").get("observedTrainingRequests") == 2
        ),
        TIMEOUT,
        "second training",
    )
    second = _status(cluster, namespace, "forward-default-2.0")
    assert second["mlflowRunId"] != first["mlflowRunId"]
    assert second["trainingSet"] == first["trainingSet"]
    assert second["metrics"]["eval_roc_auc"] == first["metrics"]["eval_roc_auc"]
    assert second["sourceSha"] == first["sourceSha"]


def test_gate_failure_is_reported_and_not_a_candidate(cluster: Cluster, features: str) -> None:
    namespace = features
    cluster.create(_model(version="3.0", evaluation__threshold=0.99), namespace)
    cond = cluster.wait_condition(
        "Model",
        namespace,
        "forward-default-3.0",
        "False",
        "GateFailed",
        type_="Evaluated",
        timeout=TIMEOUT,
    )
    assert "< 0.99" in cond["message"]
    ready = cluster.condition("Model", namespace, "forward-default-3.0")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "GateFailed")


def test_missing_source_is_a_condition(cluster: Cluster, features: str) -> None:
    namespace = features
    cluster.create(
        _model(version="4.0", source__url="file://examples/forward/nothing-here"), namespace
    )
    cond = cluster.wait_condition(
        "Model",
        namespace,
        "forward-default-4.0",
        "False",
        "SourceNotFound",
        type_="Trained",
        timeout=TIMEOUT,
    )
    assert "nothing-here" in cond["message"]


def test_unresolved_features_never_start_a_training(
    cluster: Cluster, features: str, operator: Operator
) -> None:
    namespace = features
    cluster.create(_model(version="5.0", inputFeatures=["rider.age", "rider.unknown"]), namespace)
    cond = cluster.wait_condition(
        "Model", namespace, "forward-default-5.0", "False", "WaitingForReferences", type_="Trained"
    )
    assert "family and features" in cond["message"]
    runs = Path(operator.extra_env["LYKEION_STATE_DIR"]) / namespace
    assert not (runs / training_name("forward-default-5.0", 1)).exists()


def test_operator_restart_during_training_trains_once(
    cluster: Cluster, features: str, operator: Operator, tracking_server: TrackingServer
) -> None:
    namespace = features
    cluster.create(_model(version="6.0"), namespace)
    wait_for(
        lambda: _status(cluster, namespace, "forward-default-6.0").get("currentTraining"),
        60,
        "training start",
    )
    operator.kill()
    operator.start()
    cluster.wait_condition("Model", namespace, "forward-default-6.0", "True", timeout=TIMEOUT)
    client = MlflowClient(tracking_server.url)
    experiment = client.get_experiment_by_name(f"{namespace}.forward.default")
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`lykeion.model` = 'forward-default-6.0'"
    )
    assert len(runs) == 1
    folders = list(
        (Path(operator.extra_env["LYKEION_STATE_DIR"]) / namespace).glob("forward-default-6-0-*")
    )
    assert [f.name for f in folders] == [training_name("forward-default-6.0", 1)]


def test_two_namespaces_train_the_same_family_and_segment_side_by_side(
    cluster: Cluster, features: str, operator: Operator, tracking_server: TrackingServer
) -> None:
    # The same family, segment, version and feature names in two namespaces: two
    # experiments, two registered models, each version with its own `candidate` alias.
    other = cluster.new_namespace(f"{features}-b")
    cluster.create(load(EXAMPLES / "family.yaml")[0], other)
    cluster.create(load(EXAMPLES / "features.yaml")[0], other)
    cluster.wait_condition("FeatureManifest", other, "rider-activity", "True", timeout=TIMEOUT)
    for namespace in (features, other):
        cluster.create(_model(version="7.0"), namespace)
    client = MlflowClient(tracking_server.url)
    registered = {}
    for namespace in (features, other):
        cluster.wait_condition("Model", namespace, "forward-default-7.0", "True", timeout=TIMEOUT)
        status = _status(cluster, namespace, "forward-default-7.0")
        registered[namespace] = status["registeredModel"]
        candidate = client.get_model_version_by_alias(status["registeredModel"], "candidate")
        assert candidate.version == status["registeredVersion"]
        assert candidate.tags["lykeion.model"] == "forward-default-7.0"
        run = client.get_run(status["mlflowRunId"])
        assert run.data.tags["lykeion.namespace"] == namespace
        experiment = client.get_experiment(run.info.experiment_id)
        assert experiment.name == f"{namespace}.forward.default"
    assert registered == {
        features: f"{features}.forward.default",
        other: f"{other}.forward.default",
    }
