"""Each image built from the Dockerfile runs its entry point in a pod (uid 1000, read-only
root filesystem) and gets past its imports."""

from __future__ import annotations

import json

import pytest

from lykeion.cluster import BuiltImage, NodeCluster
from tests import objects
from tests.cluster.pods import restricted_pod, run_pod

IMPORT_FAILURES = ("ModuleNotFoundError", "ImportError")


def test_operator_image(node_cluster: NodeCluster, cluster_images: dict[str, BuiltImage]) -> None:
    # The console script imports the whole operator (kopf, handlers, executors) first.
    image = cluster_images["operator"].image
    done = run_pod(
        node_cluster,
        restricted_pod("operator-help", image, ["lykeion-operator", "--help"], "default"),
    )
    assert done.phase == "Succeeded", done.logs
    assert "--executor" in done.logs


@pytest.mark.parametrize("target", ["training", "workloads"])
def test_training_entry_point(
    node_cluster: NodeCluster, cluster_images: dict[str, BuiltImage], target: str
) -> None:
    # train() imports MLflow, DuckDB (the training-set builder), scikit-learn and the source
    # pinning before it reads the Model: an empty spec fails validation after the imports.
    image = cluster_images[target].image
    command = [
        "sh",
        "-c",
        "git --version && exec python -m lykeion.training.run --model-json '{\"spec\": {}}' "
        "--manifests-json '[]' --offline duckdb:///tmp/offline.duckdb "
        "--tracking-uri file:///tmp/mlruns --cache-dir /tmp/cache",
    ]
    done = run_pod(node_cluster, restricted_pod(f"train-{target}", image, command, "default"))
    assert done.logs.startswith("git version "), done.logs
    result = json.loads(done.message)
    assert result["reason"] == "TrainingFailed"
    assert result["message"].startswith("ValidationError"), result["message"]
    assert not any(f in done.logs for f in IMPORT_FAILURES), done.logs


def test_pipeline_entry_point(
    node_cluster: NodeCluster, cluster_images: dict[str, BuiltImage]
) -> None:
    # The Beam pipeline is imported only when it runs: it runs, on a source that is absent.
    body = objects.manifest()
    body["metadata"]["namespace"] = "default"
    command = [
        "python",
        "-m",
        "lykeion.features.run",
        "--manifest-json",
        json.dumps(body),
        "--offline",
        "duckdb:///tmp/offline.duckdb",
        "--online",
        "sqlite:///tmp/online.db",
        "--data-root",
        "/tmp",
        "--",
        "--runner=DirectRunner",
    ]
    image = cluster_images["workloads"].image
    done = run_pod(node_cluster, restricted_pod("pipeline", image, command, "default"))
    result = json.loads(done.message)
    assert result["succeeded"] is False
    # the Beam step that reads the source ran, and found no file
    assert "rides.csv" in result["message"] and "ReadHistory" in result["message"], result
    assert not any(f in done.logs for f in IMPORT_FAILURES), done.logs
    assert "apache_beam" in done.logs  # the failure came from inside the Beam pipeline


@pytest.mark.parametrize("module", ["lykeion.serving", "lykeion.serving.router"])
def test_serving_entry_points(
    node_cluster: NodeCluster, cluster_images: dict[str, BuiltImage], module: str
) -> None:
    image = cluster_images["serving"].image
    name = module.replace(".", "-").replace("_", "-")
    done = run_pod(
        node_cluster, restricted_pod(name, image, ["python", "-m", module, "--help"], "default")
    )
    assert done.phase == "Succeeded", done.logs
    assert "--port" in done.logs
