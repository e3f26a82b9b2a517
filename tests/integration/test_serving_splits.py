"""Splits Seldon's and KServe's admission accepts, through the operator with the
`kubernetes` executor and the real API server holding their real CRDs.

The issue's cases, each with the right value: a canary not yet admitted leaves Seldon one
predictor at 100 (never 90); the declared split comes back as the canary becomes available;
KServe's canary is the version that is not serving, whatever the list order; what KServe
cannot express or fetch is a `ServingRejected` condition naming why; a version declared at
0% gets nothing when the other goes down, and the Deployment says so. Seldon's and KServe's
status is set here as their controllers would; their webhooks' traffic rule is restated
in `render.seldon_accepts` (the cluster tests run the controllers themselves).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lykeion.executors import kubernetes_render as render
from lykeion.handlers.training import training_name
from lykeion.kube import api_client
from lykeion.local.controlplane import ControlPlane
from tests.support import (
    Cluster,
    Operator,
    finish_job,
    load,
    materialize_example,
    training_result,
    wait_for,
    wait_job,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "forward"
NS = "default"
NAME = "forward-default"
SELDON = ("machinelearning.seldon.io", "v1", NS, "seldondeployments", NAME)
KSERVE = ("serving.kserve.io", "v1beta1", NS, "inferenceservices", NAME)


@pytest.fixture(scope="module")
def k8s_operator_env() -> dict[str, str]:
    # A canary split needs KServe's Knative mode (RawDeployment refuses it: unit tests).
    return {"LYKEION_KSERVE_DEPLOYMENT_MODE": "Serverless"}


def _model(cluster: Cluster, version: str) -> str:
    """Create Model `version`; return its training Job's name (not finished yet)."""
    model = copy.deepcopy(load(EXAMPLES / "model.yaml")[0])
    model["metadata"]["name"] = f"{NAME}-{version}"
    model["spec"]["version"] = version
    cluster.create(model, NS)
    return training_name(f"{NAME}-{version}", 1)


def _train(api: client.ApiClient, cluster: Cluster, job: str, version: str, uri: str) -> None:
    finish_job(api, wait_job(api, job).metadata.name, training_result(version, uri))
    cluster.wait_condition("Model", NS, f"{NAME}-{version}", "True", timeout=60)


def _predictors(custom: client.CustomObjectsApi) -> list[tuple[str, int]]:
    sdep = custom.get_namespaced_custom_object(*SELDON)
    assert render.seldon_accepts(sdep) is None  # the webhook's rule holds for every render
    return [(p["labels"]["lykeion.io/version"], p["traffic"]) for p in sdep["spec"]["predictors"]]


def _seldon_status(custom: client.CustomObjectsApi, available: dict[str, int]) -> None:
    """As Seldon's controller reports: the model Deployment of each predictor."""
    deployments = {
        f"{NAME}-{render.predictor_name(v)}-0-model": {"availableReplicas": n, "replicas": 1}
        for v, n in available.items()
    }
    custom.patch_namespaced_custom_object_status(
        *SELDON,
        {"status": {"state": "Available", "address": {"url": f"http://{NAME}.{NS}.svc:8000"},
                    "deploymentStatus": deployments}},
    )  # fmt: skip


def _traffic(cluster: Cluster) -> dict[str, int]:
    status = (cluster.get("Deployment", NS, NAME) or {}).get("status") or {}
    return {t["version"]: t["traffic"] for t in status.get("traffic", [])}


def _current(cluster: Cluster) -> bool:
    """The Deployment's status is of its current spec (not the one before a patch)."""
    body = cluster.get("Deployment", NS, NAME) or {}
    return bool(
        (body.get("status") or {}).get("observedGeneration") == body["metadata"]["generation"]
    )


def _until(what: str, check: Any) -> Any:
    def attempt() -> Any:
        try:
            return check()
        except (AssertionError, client.ApiException, KeyError):
            return None

    return wait_for(attempt, timeout=60, what=what)


def test_splits_are_ones_the_backends_accept_and_honour(
    k8s_plane: ControlPlane, k8s_operator: Operator
) -> None:
    api = api_client(k8s_plane.kubeconfig)
    cluster = Cluster(api)
    custom = client.CustomObjectsApi(api)
    materialize_example(cluster, EXAMPLES, NS)
    _train(api, cluster, _model(cluster, "1.0"), "1.0", "gs://models/forward-default/1")
    canary_job = _model(cluster, "1.1")  # not trained yet: not admitted

    # 90/10 with the canary not admitted: one predictor carrying 100, never 90.
    deployment = copy.deepcopy(load(EXAMPLES / "deployment.yaml")[0])
    deployment["spec"] |= {
        "backend": "seldon",
        "versions": [{"version": "1.0", "traffic": 90}, {"version": "1.1", "traffic": 10}],
    }
    deployment["spec"].pop("rollout", None)
    cluster.create(deployment, NS)
    _until("one predictor at 100", lambda: _predictors(custom) == [("1.0", 100)] or None)
    _seldon_status(custom, {"1.0": 1})
    held = cluster.wait_condition(
        "Deployment", NS, NAME, "False", "RolloutHeld", type_="TrafficInEffect", timeout=60
    )
    assert "1.0 100%, 1.1 0%" in held["message"]

    # Admitted, not yet available: rendered at 0 (100/0); available: the declared 90/10.
    _train(api, cluster, canary_job, "1.1", "gs://models/forward-default/2")
    _until("1.1 rendered at 0", lambda: _predictors(custom) == [("1.0", 100), ("1.1", 0)] or None)
    _seldon_status(custom, {"1.0": 1, "1.1": 1})
    _until("90/10", lambda: _predictors(custom) == [("1.0", 90), ("1.1", 10)] or None)
    cluster.wait_condition("Deployment", NS, NAME, "True", timeout=60)
    assert _traffic(cluster) == {"1.0": 90, "1.1": 10}

    # KServe, the list reversed: 1.0 serves 90%, so 1.1 is the canary at 10.
    reversed_ = [{"version": "1.1", "traffic": 10}, {"version": "1.0", "traffic": 90}]
    cluster.patch("Deployment", NS, NAME, {"spec": {"backend": "kserve", "versions": reversed_}})

    def canary() -> Any:
        isvc = custom.get_namespaced_custom_object(*KSERVE)
        assert isvc["metadata"]["labels"]["lykeion.io/version"] == "1.1"
        assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == "gs://models/forward-default/2"
        return isvc

    isvc = _until("the InferenceService naming 1.1 as the canary", canary)
    # As KServe reports it: 1.0 is the revision rolled out last, the canary's is Ready.
    custom.patch_namespaced_custom_object_status(
        *KSERVE,
        {"status": {"url": f"http://{NAME}.{NS}.example.com",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "observedGeneration": isvc["metadata"]["generation"],
                    "components": {"predictor": {"latestRolledoutRevision": "p-00001"}}}},
    )  # fmt: skip
    _until(
        "90/10 through KServe",
        lambda: (_current(cluster) and _traffic(cluster) == {"1.0": 90, "1.1": 10}) or None,
    )

    # A shadow KServe cannot express: refused by name, the InferenceService left as it was.
    cluster.patch(
        "Deployment", NS, NAME,
        {"spec": {"versions": [{"version": "1.0", "traffic": 100}], "shadow": "1.1"}},
    )  # fmt: skip
    refused = cluster.wait_condition(
        "Deployment", NS, NAME, "False", "ServingRejected", type_="Available", timeout=60
    )
    assert "KServe has no shadow traffic (shadow 1.1)" in refused["message"]
    assert canary()["spec"]["predictor"]["canaryTrafficPercent"] == 10
    # Nothing was applied: the status still reports the split KServe serves.
    assert _traffic(cluster) == {"1.0": 90, "1.1": 10}

    # A model KServe's storage initializer cannot fetch: refused, naming the location.
    _train(api, cluster, _model(cluster, "2.0"), "2.0", "mlflow-artifacts:/1/r20/artifacts")
    cluster.patch(
        "Deployment", NS, NAME,
        {"spec": {"versions": [{"version": "2.0", "traffic": 100}], "shadow": None}},
    )  # fmt: skip
    refused = _until(
        "the storage refusal",
        lambda: (
            c
            if (c := cluster.condition("Deployment", NS, NAME, "Available"))
            and "mlflow-artifacts:/1/r20/artifacts" in c["message"]
            else None
        ),
    )
    assert refused["reason"] == "ServingRejected"
    assert "which KServe cannot fetch" in refused["message"]
    assert canary()["spec"]["predictor"]["canaryTrafficPercent"] == 10

    # 1.0 goes down while 1.1 is declared at 0%: 1.1 gets nothing, and the Deployment says so.
    zero = [{"version": "1.0", "traffic": 100}, {"version": "1.1", "traffic": 0}]
    cluster.patch("Deployment", NS, NAME, {"spec": {"backend": "seldon", "versions": zero}})
    _until("100/0", lambda: _predictors(custom) == [("1.0", 100), ("1.1", 0)] or None)
    _seldon_status(custom, {"1.0": 0, "1.1": 1})
    none = cluster.wait_condition(
        "Deployment", NS, NAME, "False", "NoVersionServing", type_="TrafficInEffect", timeout=60
    )
    assert "1.0 (100%)" in none["message"]
    assert "declared at 0%, 1.1 receive(s) no traffic" in none["message"]
    assert _traffic(cluster) == {"1.0": 0, "1.1": 0}
    assert _predictors(custom) == [("1.0", 100), ("1.1", 0)]
    ready = cluster.condition("Deployment", NS, NAME, "Ready")
    assert ready is not None and ready["status"] == "False"

    # No admitted version has a share (3.0 has no Model): Seldon cannot route "nothing", so
    # its object is withdrawn rather than left routing to 1.1, declared at 0%.
    gone = [{"version": "3.0", "traffic": 100}, {"version": "1.1", "traffic": 0}]
    cluster.patch("Deployment", NS, NAME, {"spec": {"versions": gone}})

    def withdrawn() -> bool:
        try:
            custom.get_namespaced_custom_object(*SELDON)
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_for(withdrawn, timeout=60, what="the SeldonDeployment withdrawn")
    none = _until(
        "TrafficInEffect naming 3.0",
        lambda: (
            c
            if (c := cluster.condition("Deployment", NS, NAME, "TrafficInEffect"))
            and "3.0 (100%)" in c["message"]
            else None
        ),
    )
    assert none["reason"] == "NoVersionServing"
    assert "3.0 (100%): not admitted: no Model for version 3.0" in none["message"]
    assert _traffic(cluster) == {"3.0": 0, "1.1": 0}
