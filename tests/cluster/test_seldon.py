"""Seldon Core's v1 operator (v1.16.0) and its admission webhook run what Lykeion renders for
`backend: seldon`, on the one-node cluster: the SeldonDeployment is admitted by Seldon's
validator, Seldon's controller makes the predictor's Deployment and Services (single-model
mode: `seldon.io/no-engine`, no executor), its own status drives the Deployment's
conditions, and seldon-core's SeldonClient through the predictor's Service gets the
`lykeion` backend's predictions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lykeion.cluster import NodeCluster
from lykeion.serving_controllers import ServingController
from tests.cluster import serving
from tests.cluster.serving import DEPLOYMENT, KEYS, NS, flat
from tests.support import Cluster

NAME = DEPLOYMENT


def test_seldon_webhook_refuses_a_lone_predictor_without_all_traffic(
    installed: NodeCluster, seldon: ServingController
) -> None:
    # Seldon's validator: one predictor carries 100 (or nothing), several sum to 100. The
    # CRD schema cannot say this; only the running webhook refuses it.
    sdep = {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": {"name": "lone", "namespace": NS},
        "spec": {"predictors": [{
            "name": "main", "traffic": 90,
            "graph": {"name": "model", "type": "MODEL", "implementation": "SKLEARN_SERVER",
                      "modelUri": "gs://seldon-models/sklearn/iris", "children": []},
        }]},
    }  # fmt: skip
    done = installed.run_kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=json.dumps(sdep), check=False
    )
    assert done.returncode != 0
    # Seldon's validator's own words (the API server passes its Status through).
    assert "Traffic must sum be 100 for a single predictor when set" in done.stderr


def _sdep(cluster: NodeCluster, name: str) -> dict[str, Any]:
    return serving.served_object(cluster, "seldondeployment", name)


def test_the_example_through_seldon_predicts_as_the_lykeion_backend(
    installed: NodeCluster,
    seldon: ServingController,
    lykeion_api: Cluster,
    reference_predictions: list[list[float]],
    clients_python: str,
) -> None:
    ready, _ = serving.serve_ready(installed, lykeion_api, "seldon", seldon)
    assert ready["status"] == "True"

    sdep = _sdep(installed, NAME)
    # Seldon's controller wrote this status; no test did.
    assert sdep["status"]["state"] == "Available"
    managers = serving.status_managers(sdep)
    assert managers and all("lykeion" not in m for m in managers), managers
    (deployment,) = sdep["status"]["deploymentStatus"].values()
    assert deployment["availableReplicas"] == 1
    # Single-model mode: the predictor's pod runs the Lykeion server and no executor.
    pods = json.loads(installed.run_kubectl(
        "get", "pods", "-n", NS, "-l", f"seldon-deployment-id={NAME}", "-o", "json").stdout
    )["items"]  # fmt: skip
    assert pods and all([c["name"] for c in p["spec"]["containers"]] == ["model"] for p in pods), [
        [c["name"] for c in p["spec"]["containers"]] for p in pods
    ]

    # The Service Seldon names in its status (status.address.url), reached from the node.
    url = serving.status_service_url(installed, sdep)
    token = serving.caller_token(installed)
    # SeldonClient's "seldon" gateway sends no headers (the caller's token): its "istio"
    # gateway does, at /seldon/<namespace>/<deployment>/api/v1.0/predictions.
    what = "seldon: SeldonClient through the Service"
    extra = ("--namespace", NS, "--deployment", NAME)
    result = serving.timed_client(installed, what, clients_python, url, token, "seldon", *extra)
    assert result["meta"]["tags"]["lykeion.version"] == "1.0"
    assert len(result["values"]) == len(KEYS)
    assert flat(result["values"]) == pytest.approx(flat(reference_predictions), rel=1e-9)
