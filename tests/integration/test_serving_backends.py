"""Seldon and KServe through the operator with the `kubernetes` executor and the real API
server holding their real CRDs: what the review of issue 16 found, each case as a test.

- Changing `spec.backend` retires the previous backend's objects of that Deployment (and
  only of that one).
- Seldon's availability is read per predictor: a canary still `Creating` leaves the stable
  version serving; versions `1.0` and `1.0.1` are told apart.
- KServe's `Ready` of a previous generation does not make the new version available.
- A KServe canary declared above 50% stays the canary on every later pass.

Seldon's and KServe's status is set here as their controllers would (Seldon Core v1.16.0's
`deploymentStatus` per Deployment; KServe v0.15.2's `observedGeneration`).
"""

from __future__ import annotations

import copy
import time
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
SELDON = ("machinelearning.seldon.io", "v1", NS, "seldondeployments")
KSERVE = ("serving.kserve.io", "v1beta1", NS, "inferenceservices")
POKE = "tests.lykeion.io/pass"
"""An annotation whose change makes the operator run one more pass."""


@pytest.fixture(scope="module")
def k8s_operator_env() -> dict[str, str]:
    # A KServe canary split needs its Knative mode (RawDeployment refuses it).
    return {"LYKEION_KSERVE_DEPLOYMENT_MODE": "Serverless"}


@pytest.fixture(scope="module")
def backends(k8s_plane: ControlPlane, k8s_operator: Operator) -> Cluster:
    """The family and its materialized features; each test trains its own segment's Models
    (a Deployment is one family/segment, so the tests do not share one)."""
    api = api_client(k8s_plane.kubeconfig)
    cluster = Cluster(api)
    materialize_example(cluster, EXAMPLES, NS)
    return cluster


def _trained_models(cluster: Cluster, segment: str, versions: list[str]) -> None:
    """Models forward-<segment>-<version>, trained (Evaluated) with a gs:// artifact."""
    jobs = []
    for version in versions:
        model = copy.deepcopy(load(EXAMPLES / "model.yaml")[0])
        model["metadata"]["name"] = f"forward-{segment}-{version}"
        model["spec"] |= {"segment": segment, "version": version}
        cluster.create(model, NS)
        jobs.append((version, training_name(f"forward-{segment}-{version}", 1)))
    for version, job in jobs:
        uri = f"gs://models/forward-{segment}/{version}"
        finish_job(
            cluster.api, wait_job(cluster.api, job).metadata.name, training_result(version, uri)
        )
    for version in versions:
        cluster.wait_condition("Model", NS, f"forward-{segment}-{version}", "True", timeout=60)


def _deployment(segment: str, backend: str, versions: dict[str, int]) -> dict[str, Any]:
    body = copy.deepcopy(load(EXAMPLES / "deployment.yaml")[0])
    body["metadata"]["name"] = f"forward-{segment}"
    body["spec"] |= {
        "segment": segment,
        "backend": backend,
        "versions": [{"version": v, "traffic": t} for v, t in versions.items()],
    }
    return body


def _traffic(cluster: Cluster, name: str) -> dict[str, tuple[int, bool, bool]]:
    """Version -> (traffic, available, stable) as the Deployment's status reports."""
    status = (cluster.get("Deployment", NS, name) or {}).get("status") or {}
    return {
        t["version"]: (t["traffic"], t["available"], bool(t.get("stable")))
        for t in status.get("traffic", [])
    }


def _custom(api: client.ApiClient, kind: tuple[str, ...], name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            *kind, name
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def _lykeion_objects(api: client.ApiClient, name: str) -> dict[str, str]:
    """'Kind/name' -> UID of the Deployments, Services and ConfigMaps labelled for the
    Lykeion Deployment `name` (what its `lykeion` backend renders)."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    selector = f"lykeion.io/deployment={name}"
    found: dict[str, str] = {}
    for kind, lister in (
        ("Deployment", apps.list_namespaced_deployment),
        ("Service", core.list_namespaced_service),
        ("ConfigMap", core.list_namespaced_config_map),
    ):
        for item in lister(NS, label_selector=selector).items:
            found[f"{kind}/{item.metadata.name}"] = item.metadata.uid
    return found


def _held(what: str, check: Any, seconds: float = 6.0) -> None:
    """`check()` holds now and for `seconds` (the operator polls every second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), what
        time.sleep(0.5)


LYKEION_RENDERED = {
    "Deployment/forward-switch-1-0", "Service/forward-switch-1-0",
    "Deployment/forward-switch-router", "Service/forward-switch",
    "ConfigMap/forward-switch-routes",
}  # fmt: skip


def test_changing_the_backend_retires_the_previous_backends_objects(backends: Cluster) -> None:
    cluster = backends
    api = cluster.api
    _trained_models(cluster, "switch", ["1.0"])
    _trained_models(cluster, "other", ["1.0"])
    cluster.create(_deployment("other", "lykeion", {"1.0": 100}), NS)
    cluster.create(_deployment("switch", "lykeion", {"1.0": 100}), NS)
    wait_for(
        lambda: set(_lykeion_objects(api, "forward-switch")) == LYKEION_RENDERED,
        timeout=60, what="the lykeion backend's objects",
    )  # fmt: skip
    other = wait_for(
        lambda: (found := _lykeion_objects(api, "forward-other")) and len(found) == 5 and found,
        timeout=60, what="the other Deployment's objects",
    )  # fmt: skip

    # lykeion -> seldon: the SeldonDeployment appears, the router, servers, Services and
    # routes ConfigMap of this Deployment go; the other Deployment's stay as they were.
    cluster.patch("Deployment", NS, "forward-switch", {"spec": {"backend": "seldon"}})
    wait_for(lambda: _custom(api, SELDON, "forward-switch"), 60, "the SeldonDeployment")
    wait_for(lambda: _lykeion_objects(api, "forward-switch") == {}, 60, "the lykeion objects gone")
    _held(
        "nothing comes back, the other Deployment's objects are untouched",
        lambda: (
            _lykeion_objects(api, "forward-switch") == {}
            and _lykeion_objects(api, "forward-other") == other
            and _custom(api, SELDON, "forward-switch") is not None
        ),
    )

    # seldon -> kserve -> lykeion: each time only the current backend's objects exist.
    cluster.patch("Deployment", NS, "forward-switch", {"spec": {"backend": "kserve"}})
    wait_for(lambda: _custom(api, KSERVE, "forward-switch"), 60, "the InferenceService")
    wait_for(
        lambda: _custom(api, SELDON, "forward-switch") is None, 60, "the SeldonDeployment gone"
    )
    cluster.patch("Deployment", NS, "forward-switch", {"spec": {"backend": "lykeion"}})
    wait_for(
        lambda: set(_lykeion_objects(api, "forward-switch")) == LYKEION_RENDERED,
        timeout=60, what="the lykeion backend's objects again",
    )  # fmt: skip
    wait_for(
        lambda: _custom(api, KSERVE, "forward-switch") is None, 60, "the InferenceService gone"
    )
    again = _lykeion_objects(api, "forward-switch")
    _held(
        "idempotent: the same objects, the other backends' absent",
        lambda: (
            _lykeion_objects(api, "forward-switch") == again
            and _custom(api, SELDON, "forward-switch") is None
            and _custom(api, KSERVE, "forward-switch") is None
            and _lykeion_objects(api, "forward-other") == other
        ),
    )


def _seldon_status(api: client.ApiClient, name: str, state: str, available: dict[str, int]) -> None:
    """As Seldon Core v1.16.0 reports: `state`, and an entry per predictor Deployment."""
    deployments = {
        f"{name}-{render.predictor_name(v)}-0-model": {"replicas": 1, "availableReplicas": n}
        for v, n in available.items()
    }
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        *SELDON, name,
        {"status": {"state": state, "address": {"url": f"http://{name}.{NS}.svc:8000"},
                    "deploymentStatus": deployments}},
    )  # fmt: skip


def test_seldon_availability_is_read_per_predictor(backends: Cluster) -> None:
    cluster = backends
    api, name = cluster.api, "forward-seldon"
    _trained_models(cluster, "seldon", ["1.0", "1.1", "1.0.1"])
    cluster.create(_deployment("seldon", "seldon", {"1.0": 90, "1.1": 10}), NS)
    wait_for(lambda: _custom(api, SELDON, name), 60, "the SeldonDeployment")

    # 1.1's predictor is still being created (the whole object is `Creating`): 1.0 serves.
    _seldon_status(api, name, "Creating", {"1.0": 1})
    held = cluster.wait_condition(
        "Deployment", NS, name, "False", "RolloutHeld", type_="TrafficInEffect", timeout=60
    )
    assert "1.0 100%, 1.1 0%" in held["message"]
    wait_for(
        lambda: _traffic(cluster, name) == {"1.0": (100, True, True), "1.1": (0, False, False)},
        timeout=60, what="1.0 serving alone, recorded as the stable version",
    )  # fmt: skip
    starting = cluster.condition("Deployment", NS, name, "Available") or {}
    assert "no Deployment forward-seldon-v1-1-0-model yet" in starting["message"]

    # 1.0 and 1.0.1: 1.0's predictor name is a prefix of 1.0.1's; only 1.0.1's is up.
    split = [{"version": "1.0", "traffic": 50}, {"version": "1.0.1", "traffic": 50}]
    cluster.patch("Deployment", NS, name, {"spec": {"versions": split}})
    _seldon_status(api, name, "Available", {"1.0": 0, "1.0.1": 1})
    wait_for(
        lambda: {v: t[:2] for v, t in _traffic(cluster, name).items()}
        == {"1.0": (0, False), "1.0.1": (100, True)},
        timeout=60, what="1.0.1 serving alone",
    )  # fmt: skip
    # 1.0 is still the recorded stable version: a canary split never swaps them.
    assert _traffic(cluster, name)["1.0"][2] is True
    # Both up: the declared split.
    _seldon_status(api, name, "Available", {"1.0": 1, "1.0.1": 1})
    cluster.wait_condition("Deployment", NS, name, "True", timeout=60)
    assert {v: t[:2] for v, t in _traffic(cluster, name).items()} == {
        "1.0": (50, True), "1.0.1": (50, True),
    }  # fmt: skip


def _kserve_status(api: client.ApiClient, name: str, generation: int) -> None:
    """As KServe reports once it reconciled `generation`: Ready, the revision it rolled
    out last (the stable version's)."""
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        *KSERVE, name,
        {"status": {"url": f"http://{name}.{NS}.example.com", "observedGeneration": generation,
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "components": {"predictor": {"latestRolledoutRevision": "p-00001"}}}},
    )  # fmt: skip


def test_kserve_needs_a_current_ready_and_keeps_its_canary(backends: Cluster) -> None:
    cluster = backends
    api, name = cluster.api, "forward-kserve"
    _trained_models(cluster, "kserve", ["1.0", "1.1"])
    cluster.create(_deployment("kserve", "kserve", {"1.0": 100}), NS)
    isvc = wait_for(lambda: _custom(api, KSERVE, name), 60, "the InferenceService")
    _kserve_status(api, name, isvc["metadata"]["generation"])
    cluster.wait_condition("Deployment", NS, name, "True", timeout=60)

    # 30/70: the canary (1.1) is declared above half. Its InferenceService generation is
    # new; the Ready in status is the previous generation's: 1.1 is not available yet.
    split = [{"version": "1.0", "traffic": 30}, {"version": "1.1", "traffic": 70}]
    cluster.patch("Deployment", NS, name, {"spec": {"versions": split}})

    def canary() -> dict[str, Any] | None:
        found = _custom(api, KSERVE, name)
        if not found or found["metadata"]["labels"]["lykeion.io/version"] != "1.1":
            return None
        return found

    isvc = wait_for(canary, 60, "the InferenceService naming 1.1")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 70
    assert isvc["metadata"]["generation"] > isvc["status"]["observedGeneration"]
    held = cluster.wait_condition(
        "Deployment", NS, name, "False", "RolloutHeld", type_="TrafficInEffect", timeout=60
    )
    assert "1.0 100%, 1.1 0%" in held["message"]
    starting = cluster.condition("Deployment", NS, name, "Available") or {}
    assert f"has not reported on generation {isvc['metadata']['generation']}" in starting["message"]
    ready = cluster.condition("Deployment", NS, name, "Ready") or {}
    assert ready.get("status") == "False"

    # KServe reports on the new generation: the declared split, 1.0 recorded as stable.
    _kserve_status(api, name, isvc["metadata"]["generation"])
    cluster.wait_condition("Deployment", NS, name, "True", timeout=60)
    assert _traffic(cluster, name) == {"1.0": (30, True, True), "1.1": (70, True, False)}

    # Every later pass keeps 1.1 the canary at 70 (never 1.0 at 30 while status says 30/70).
    def kept() -> bool:
        found = _custom(api, KSERVE, name) or {}
        return (
            found["metadata"]["labels"]["lykeion.io/version"] == "1.1"
            and found["spec"]["predictor"]["canaryTrafficPercent"] == 70
            and found["metadata"]["generation"] == isvc["metadata"]["generation"]
            and _traffic(cluster, name) == {"1.0": (30, True, True), "1.1": (70, True, False)}
        )

    # A Ready Deployment is reconciled again on events (and a minute's recheck): an
    # annotation is one, so each poke is one more pass over the status the last one wrote.
    for n in range(3):
        cluster.patch("Deployment", NS, name, {"metadata": {"annotations": {POKE: str(n)}}})
        _held("1.1 stays the canary at 70%, 1.0 the stable version", kept, seconds=3)
