"""The training contract through the real operator: a Model that names only its source and
features trains from the project's lykeion.yaml; a spec that also declares them wins and the
status says so; neither is a `TrainingUndeclared` condition naming both places."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import Cluster, Operator, load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "forward"
TIMEOUT = 240
LYKECTL = str(Path(sys.executable).parent / "lykectl")


@pytest.fixture
def features(cluster: Cluster, operator: Operator, namespace: str) -> str:
    cluster.create(load(EXAMPLES / "family.yaml")[0], namespace)
    cluster.create(load(EXAMPLES / "features.yaml")[0], namespace)
    cluster.wait_condition("FeatureManifest", namespace, "rider-activity", "True", timeout=90)
    return namespace


def _project(tmp_path: Path, contract: bool = True) -> Path:
    """A copy of the example's MLproject, with or without its lykeion.yaml."""
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES / "mlproject", project)
    if not contract:
        (project / "lykeion.yaml").unlink()
    return project


def _model(version: str, project: Path, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "lykeion.io/v1alpha1",
        "kind": "Model",
        "metadata": {"name": f"forward-default-{version}"},
        "spec": {
            "family": "forward",
            "segment": "default",
            "version": version,
            "description": "from the project's contract",
            "source": {"url": f"file://{project}"},
            "inputFeatures": ["rider.age", "rider.drop_offs_count"],
            "training": {"requests": 1},
            **spec,
        },
    }


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return (cluster.get("Model", namespace, name) or {}).get("status") or {}


def test_source_and_features_alone_train_from_the_project_file(
    cluster: Cluster, features: str, tmp_path: Path
) -> None:
    namespace, project = features, _project(tmp_path)
    cluster.create(_model("1.0", project), namespace)
    cluster.wait_condition("Model", namespace, "forward-default-1.0", "True", timeout=TIMEOUT)
    status = _status(cluster, namespace, "forward-default-1.0")
    contract = status["contract"]
    assert contract["labels"]["target"] == "ordered_again"
    assert contract["evaluation"] == {"metric": "roc_auc", "threshold": 0.6, "higherIsBetter": True}
    assert contract["parameters"] == {"c": "0.5"}
    assert contract["origins"] == {
        "labels": "project",
        "evaluation": "project",
        "parameters": {"c": "project"},
        "projectFile": f"file://{project}/lykeion.yaml@{status['sourceSha']}",
        "overridden": [],
    }
    assert status["trainingSet"]["rows"] == 900
    evaluated = cluster.condition("Model", namespace, "forward-default-1.0", "Evaluated")
    assert evaluated is not None and "roc_auc=" in evaluated["message"]
    assert ">= 0.6" in evaluated["message"]


def test_the_spec_wins_over_the_project_file_and_status_says_so(
    cluster: Cluster, features: str, tmp_path: Path
) -> None:
    namespace, project = features, _project(tmp_path)
    gate = {"metric": "roc_auc", "threshold": 0.99, "higherIsBetter": True}
    body = _model("2.0", project, evaluation=gate)
    body["spec"]["source"]["parameters"] = {"c": "2.0"}
    cluster.create(body, namespace)
    # The spec's stricter gate is the one applied: the project's 0.6 would have passed.
    failed = cluster.wait_condition(
        "Model", namespace, "forward-default-2.0", "False", "GateFailed", type_="Evaluated",
        timeout=TIMEOUT,
    )  # fmt: skip
    assert "< 0.99" in failed["message"]
    contract = _status(cluster, namespace, "forward-default-2.0")["contract"]
    assert contract["evaluation"] == gate and contract["parameters"] == {"c": "2.0"}
    assert contract["origins"]["evaluation"] == "spec"
    assert contract["origins"]["labels"] == "project"
    assert contract["origins"]["overridden"] == ["evaluation", "parameters.c"]


def test_neither_is_training_undeclared_naming_both_places(
    cluster: Cluster, features: str, tmp_path: Path
) -> None:
    namespace, project = features, _project(tmp_path, contract=False)
    cluster.create(_model("3.0", project), namespace)
    trained = cluster.wait_condition(
        "Model", namespace, "forward-default-3.0", "False", "TrainingUndeclared", type_="Trained",
        timeout=TIMEOUT,
    )  # fmt: skip
    for place in ("spec.training.labels", "spec.evaluation", f"{project}/lykeion.yaml"):
        assert place in trained["message"]
    ready = cluster.condition("Model", namespace, "forward-default-3.0")
    assert ready is not None and ready["reason"] == "TrainingUndeclared"


def test_a_scaffolded_project_trains_and_deploys_as_it_is(
    cluster: Cluster, features: str, tmp_path: Path
) -> None:
    namespace, project = features, tmp_path / "forward-new"
    done = subprocess.run(
        [LYKECTL, "init", str(project)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in project.iterdir()) == [
        "MLproject", "README.md", "lykeion.yaml", "train.py",
    ]  # fmt: skip
    cluster.create(_model("4.0", project), namespace)
    cluster.wait_condition("Model", namespace, "forward-default-4.0", "True", timeout=TIMEOUT)
    status = _status(cluster, namespace, "forward-default-4.0")
    assert status["contract"]["origins"]["labels"] == "project"
    assert status["metrics"]["eval_roc_auc"] >= 0.6
    assert status["metrics"]["train_rows"] > 0

    # Deployed as it is: the endpoint answers keys with the scaffold's predictions.
    deployment = {
        "apiVersion": "lykeion.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": "forward-default"},
        "spec": {
            "family": "forward",
            "segment": "default",
            "versions": [{"version": "4.0", "traffic": 100}],
        },
    }
    cluster.create(deployment, namespace)
    cluster.wait_condition("Deployment", namespace, "forward-default", "True", timeout=TIMEOUT)
    endpoint = (cluster.get("Deployment", namespace, "forward-default") or {})["status"]["endpoint"]
    body = json.dumps({"keys": [{"rider_id": "r1"}, {"rider_id": "r42"}]}).encode()
    request = urllib.request.Request(
        f"{endpoint}/predict", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.headers["x-lykeion-version"] == "4.0"
        served = json.loads(answer.read())
    assert len(served["predictions"]) == 2
