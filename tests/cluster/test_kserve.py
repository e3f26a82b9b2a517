"""KServe v0.15.2's own controller and admission webhooks (RawDeployment) run what Lykeion
renders for `backend: kserve`, on the one-node cluster: the InferenceService is defaulted
and admitted by KServe's webhooks, its predictor is KServe's MLServer runtime on the
registered version's files (fetched by the storage container), its transformer the
Lykeion server, KServe's own status drives the Deployment's conditions, and tritonclient
(V2) through the transformer's Service gets the `lykeion` backend's predictions."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from lykeion.cluster import NodeCluster
from lykeion.serving_controllers import ServingController
from tests.cluster.serving import (
    DEPLOYMENT,
    KEYS,
    NS,
    caller_token,
    diagnose,
    flat,
    record_timing,
    serve_ready,
    served_object,
    status_managers,
    status_service_url,
    timed_client,
)
from tests.support import Cluster

NAME = DEPLOYMENT


def _isvc(cluster: NodeCluster, name: str) -> dict[str, Any]:
    return served_object(cluster, "inferenceservice", name)


def _isvc_ready(cluster: NodeCluster, name: str, timeout: float, kserve: ServingController) -> None:
    """KServe's own Ready (its components' conditions all True), bounded."""
    deadline = time.monotonic() + timeout
    conditions: dict[str, str] = {}
    while time.monotonic() < deadline:
        status = _isvc(cluster, name).get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if conditions and all(v == "True" for v in conditions.values()):
            return
        time.sleep(2)
    raise AssertionError(f"InferenceService {name}: {conditions}\n{diagnose(cluster, kserve)}")


def test_kserve_webhook_refuses_what_its_validator_refuses(
    installed: NodeCluster, kserve: ServingController
) -> None:
    # A name the CRD schema accepts (a DNS-1123 subdomain) but KServe's validator does not
    # (it must be a DNS-1035 label): only the running webhook can refuse it.
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "1forward", "namespace": NS},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "mlflow"},
                                         "storageUri": "mlflow-artifacts:/0/m"}}},
    }  # fmt: skip
    done = installed.run_kubectl(
        "create", "--dry-run=server", "-f", "-", stdin=json.dumps(isvc), check=False
    )
    assert done.returncode != 0
    assert 'admission webhook "inferenceservice.kserve-webhook-server.validator"' in done.stderr


def test_the_example_through_kserve_predicts_as_the_lykeion_backend(
    installed: NodeCluster,
    kserve: ServingController,
    lykeion_api: Cluster,
    reference_predictions: list[list[float]],
    clients_python: str,
) -> None:
    ready, begin = serve_ready(installed, lykeion_api, "kserve", kserve)
    assert ready["status"] == "True"

    # Lykeion's Ready came sooner than KServe's: measured here, the InferenceService's own
    # conditions turned True only once MLServer had loaded the model.
    _isvc_ready(installed, NAME, 300, kserve)
    record_timing(installed, "kserve: Deployment apply to KServe Ready", time.monotonic() - begin)
    isvc = _isvc(installed, NAME)
    # KServe's mutating webhook defaulted what Lykeion rendered (RawDeployment, from the
    # ConfigMap); its controller wrote the status, no test did.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["status"]["deploymentMode"] == "RawDeployment"
    conditions = {c["type"]: c["status"] for c in isvc["status"]["conditions"]}
    assert conditions["PredictorReady"] == conditions["TransformerReady"] == "True"
    managers = status_managers(isvc)
    assert managers and all("lykeion" not in m for m in managers), managers
    # The predictor is KServe's MLServer runtime with its MLflow implementation, on the
    # files the storage container fetched; the transformer is the Lykeion server.
    pods = json.loads(
        installed.run_kubectl(
            "get", "pods", "-n", NS, "-l", f"serving.kserve.io/inferenceservice={NAME}",
            "-o", "json",
        ).stdout
    )["items"]  # fmt: skip
    by_component = {p["metadata"]["labels"].get("component"): p["spec"] for p in pods}
    predictor = by_component["predictor"]
    assert [c["name"] for c in predictor["initContainers"]] == ["storage-initializer"]
    env = {e["name"]: e.get("value") for e in predictor["containers"][0]["env"]}
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_mlflow.MLflowRuntime"
    assert env["MLSERVER_MODEL_URI"] == "/mnt/models"
    transformer = by_component["transformer"]["containers"][0]
    assert transformer["command"][:3] == ["python", "-m", "lykeion.serving"]
    assert f"{NAME}-predictor.{NS}" in transformer["args"]

    token = caller_token(installed)
    # The Service KServe names in its status (status.address.url), reached from the node.
    url = status_service_url(installed, isvc)
    what = "kserve: tritonclient through the Service"
    result = timed_client(installed, what, clients_python, url, token, "v2")
    assert (result["live"], result["server_ready"], result["ready"]) == (True, True, True)
    (output,) = result["outputs"].values()
    assert len(output) == len(KEYS)
    assert flat(output) == pytest.approx(flat(reference_predictions), rel=1e-9)
