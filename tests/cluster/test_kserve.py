"""KServe v0.15.2's own controller and admission webhooks (RawDeployment) run what Lykeion
renders for `backend: kserve`, on the one-node cluster: the InferenceService is defaulted
and admitted by KServe's webhooks, its predictor is KServe's MLServer runtime on the
registered version's files (fetched by the storage container), its transformer the
Lykeion server, KServe's own status drives the Deployment's conditions, and tritonclient
(V2) through the transformer's Service gets the `lykeion` backend's predictions.

A canary's lifecycle goes through the same controller, as far as RawDeployment can carry
it: 1.0; a 90/10 canary, which Lykeion refuses before rendering (`ServingRejected`: raw,
KServe v0.15.2 ignores `canaryTrafficPercent`, and the canary's Deployment would replace
the stable one's), leaving the InferenceService untouched; promotion of 1.1 to 100% while
its servers cannot start (their pods unschedulable: a taint on the node), then can;
rollback with 1.1 kept at 0% (idle, not down); deletion. At each step the
InferenceService names one version (label, the transformer's configuration, the
predictor's storage URI) with no `canaryTrafficPercent`,
KServe's webhooks admitted it, its controller rolled it into its Deployments and its own
status drives the Deployment's conditions, and the predictions through the transformer's
Service equal the reference.

What is not checked here: a split through KServe's data plane. `canaryTrafficPercent` and
which revision is the canary are honoured only in Serverless mode (Knative's routes), which
needs Knative; RawDeployment ignores the field. Lykeion's choice of the canary by meaning
(`kserve_canary`) is covered by the unit tests of the rendering, not by counting answers."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from lykeion.cluster import NodeCluster
from lykeion.executors.kubernetes_endpoints import KSERVE_SOURCE_URI
from lykeion.serving_controllers import ServingController
from tests.cluster import serving
from tests.cluster.serving import (
    DEPLOYMENT,
    KEYS,
    NS,
    caller_token,
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
    serving.wait_isvc_ready(installed, 300, kserve)
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


def _server_config(component: dict[str, Any]) -> dict[str, Any]:
    """The Lykeion server's configuration in a KServe component (the transformer)."""
    (container,) = component["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    config: dict[str, Any] = json.loads(env["LYKEION_SERVER_CONFIG"])
    return config


def _named(
    installed: NodeCluster, api: Cluster, version: str, what: str
) -> dict[str, Any]:  # fmt: skip
    """The InferenceService, checked to name `version` alone: its label, the transformer's
    server configuration, the predictor's storage URI (`version`'s Model's artifact), no
    `canaryTrafficPercent` (RawDeployment: one version per InferenceService)."""
    isvc = _isvc(installed, NAME)
    spec = isvc["spec"]
    assert isvc["metadata"]["labels"]["lykeion.io/version"] == version, what
    assert _server_config(spec["transformer"])["version"] == version, what
    model = api.get("Model", NS, f"{NAME}-{version}") or {}
    assert spec["predictor"]["model"]["storageUri"] == model["status"]["artifactUri"], what
    for component in ("predictor", "transformer"):
        assert "canaryTrafficPercent" not in spec[component], (what, spec[component])
    assert "lykeion" not in " ".join(status_managers(isvc)), status_managers(isvc)
    return isvc


def _reconciled(installed: NodeCluster, isvc: dict[str, Any], timeout: float = 60) -> None:
    """KServe's controller rolled the InferenceService's storage URI into its predictor's
    Deployment (the pod template's `KSERVE_SOURCE_URI`, from which KServe's pod webhook
    injects the storage initializer into each pod), bounded."""
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    deadline, given = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        deployment = json.loads(installed.run_kubectl(
            "get", "deployment", "-n", NS, f"{NAME}-predictor", "-o", "json").stdout)  # fmt: skip
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        given = annotations.get(KSERVE_SOURCE_URI)
        if given == uri:
            return
        time.sleep(1)
    raise AssertionError(f"KServe's predictor Deployment does not fetch {uri}: {given}")


def test_a_kserve_canary_is_refused_in_raw_mode_then_promoted_from_unavailable_rolled_back_deleted(
    installed: NodeCluster,
    kserve: ServingController,
    lykeion_api: Cluster,
    reference_predictions: list[list[float]],
    trained_canary: str,
) -> None:
    begin = time.monotonic()
    api, reference, token = lykeion_api, flat(reference_predictions), caller_token(installed)
    old, new = "1.0", serving.CANARY
    ready = serving.condition_of

    def predictions(isvc: dict[str, Any]) -> list[float]:
        return serving.v2_predict(status_service_url(installed, isvc), token)

    # 1.0 alone.
    generation = serving.declare(installed, "kserve", [(old, 100)])
    body = serving.wait_deployment(api, installed, generation, "served 1.0",
                                   lambda b: ready(b, "Ready").get("status") == "True",
                                   300, kserve)  # fmt: skip
    serving.admitted(body)
    serving.wait_isvc_ready(installed, 300, kserve)
    isvc = _named(installed, api, old, "1.0")
    assert predictions(isvc) == pytest.approx(reference, rel=1e-6)

    # A 90/10 canary: KServe in RawDeployment mode ignores canaryTrafficPercent (its
    # canary's Deployment would replace the stable one's and take every request), so
    # Lykeion refuses the split before rendering, and 1.0 keeps serving untouched.
    generation = serving.declare(installed, "kserve", [(old, 90), (new, 10)])
    body = serving.wait_deployment(
        api, installed, generation, "refused the 90/10 split",
        lambda b: ready(b, "Available").get("reason") == "ServingRejected", 120, kserve,
    )  # fmt: skip
    refused = ready(body, "Available")["message"]
    assert "RawDeployment" in refused and "canaryTrafficPercent" in refused, refused
    assert serving.traffic_of(body) == {old: 100}
    after = _named(installed, api, old, "after the refused split")
    assert after["metadata"]["generation"] == isvc["metadata"]["generation"]
    assert predictions(after) == pytest.approx(reference, rel=1e-6)

    # Promote 1.1 to 100% while its servers cannot start (unschedulable): KServe rolls
    # the Deployments to 1.1 and reports them not ready; the old pods serve meanwhile.
    with serving.unschedulable(installed):
        generation = serving.declare(installed, "kserve", [(new, 100)])
        # Once KServe has reported on the new spec: until then Lykeion says only that.
        body = serving.wait_deployment(
            api, installed, generation, "reported 1.1 starting from KServe's status",
            lambda b: ready(b, "Available").get("reason") == "VersionsStarting"
            and "has not reported on generation" not in ready(b, "Available")["message"],
            120, kserve,
        )  # fmt: skip
        serving.admitted(body)
        isvc = _named(installed, api, new, "1.1 starting")
        _reconciled(installed, isvc)
        # KServe v0.15.2 (raw) may well say Ready here: its Deployments stay Available on
        # 1.0's pods. Lykeion then reads the rollout of those Deployments itself.
        status = _isvc(installed, NAME)["status"]
        kserve_ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        message = ready(body, "Available")["message"]
        print(f"\nKServe's Ready while 1.1 is unschedulable: {kserve_ready}; Lykeion: {message}")
        if kserve_ready["status"] == "True":
            assert "KServe reports Ready, but Deployment" in message, message
            assert f"is still rolling out {new}" in message, message
        # Lykeion's conditions say what KServe's status says (observe_kserve's words).
        assert f"1.1: InferenceService {NAME}: " in ready(body, "Available")["message"], body
        assert serving.traffic_of(body) == {new: 0}
        assert ready(body, "TrafficInEffect")["reason"] == "NoVersionServing"
        assert predictions(isvc) == pytest.approx(reference, rel=1e-6)
    body = serving.wait_deployment(
        api, installed, generation, "served 1.1",
        lambda b: ready(b, "Ready").get("status") == "True" and serving.traffic_of(b) == {new: 100},
        300, kserve,
    )  # fmt: skip
    serving.admitted(body)
    serving.wait_isvc_ready(installed, 300, kserve)
    assert predictions(_named(installed, api, new, "1.1")) == pytest.approx(reference, rel=1e-6)

    # Roll back, 1.1 kept in the spec at 0%: KServe's service names 1.0 alone, and 1.1,
    # which has no server by KServe's design, is idle rather than a version that is down.
    generation = serving.declare(installed, "kserve", [(old, 100), (new, 0)])
    body = serving.wait_deployment(
        api, installed, generation, "rolled back to 1.0",
        lambda b: ready(b, "Ready").get("status") == "True"
        and serving.traffic_of(b) == {old: 100, new: 0},
        300, kserve,
    )  # fmt: skip
    serving.admitted(body)
    assert "1.1 declared at 0%" in ready(body, "Available")["message"], body
    serving.wait_isvc_ready(installed, 300, kserve)
    isvc = _named(installed, api, old, "rolled back")
    _reconciled(installed, isvc)
    assert predictions(isvc) == pytest.approx(reference, rel=1e-6)

    # Delete: the InferenceService goes with the Deployment, and what KServe made with it.
    serving.gone_with_children(
        installed, "inferenceservices.serving.kserve.io",
        f"serving.kserve.io/inferenceservice={NAME}", 120, kserve,
    )  # fmt: skip
    for kind in ("deployment", "service"):
        for component in ("predictor", "transformer"):
            found = installed.run_kubectl(
                "get", kind, "-n", NS, f"{NAME}-{component}", "--ignore-not-found", "-o", "name"
            ).stdout  # fmt: skip
            assert found == "", found
    record_timing(installed, "kserve: canary lifecycle", time.monotonic() - begin)
