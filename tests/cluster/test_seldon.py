"""Seldon Core's v1 operator (v1.16.0) and its admission webhook run what Lykeion renders for
`backend: seldon`, on the one-node cluster: the SeldonDeployment is admitted by Seldon's
validator, Seldon's controller makes the predictor's Deployment and Services (single-model
mode: `seldon.io/no-engine`, no executor), its own status drives the Deployment's
conditions, and seldon-core's SeldonClient through the predictor's Service gets the
`lykeion` backend's predictions.

A canary's lifecycle goes through the same controller: 1.0; a 90/10 canary whose 1.1
cannot start yet (its pod unschedulable: a taint on the node) then can; promotion (1.1 at
100%, 1.0 declared at 0%); rollback; 1.1 as the shadow; deletion. At each step the
SeldonDeployment was admitted by Seldon's webhook, its predictors carry the split Lykeion
means (`traffic`; never any for a version declared at 0% or one not available yet, or for
the shadow), Seldon's controller made and reported what the Deployment's conditions say,
and the predictions through Seldon's Service equal the reference.

What is not checked here: that requests are split as `traffic` says. Seldon Core v1 splits
between predictors only through Istio's or Ambassador's routes, neither of which runs on
this cluster; without them its Services do not weigh predictors. So the split is checked in
the object Seldon's controller reconciled, not by counting answers per version."""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest

from lykeion.cluster import NodeCluster
from lykeion.executors.kubernetes_render import predictor_name
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


def _predictors(sdep: dict[str, Any]) -> dict[str, tuple[int, bool]]:
    """The SeldonDeployment's predictors as Seldon's controller reconciled them: version ->
    (traffic, shadow)."""
    return {
        p["labels"]["lykeion.io/version"]: (int(p.get("traffic") or 0), bool(p.get("shadow")))
        for p in sdep["spec"]["predictors"]
    }


def _address_service(sdep: dict[str, Any]) -> str:
    """The Service Seldon's status.address names ("" before it names one)."""
    url = str(((sdep.get("status") or {}).get("address") or {}).get("url") or "")
    return url.split("//")[-1].split(".")[0]


def _predict_once_served(
    installed: NodeCluster, sdep: dict[str, Any], service: str, what: str, token: str,
    timeout: float = 60,
) -> tuple[str, list[float]]:  # fmt: skip
    """`serving.seldon_predict` through Seldon's address Service `service`, waiting up to
    `timeout` seconds while the Service refuses connections (no ready endpoint in
    kube-proxy yet: a CI run once saw it right after a promotion moved Seldon's address to
    another predictor's Service). A wait is printed with the Service's EndpointSlices as
    they were at the first refusal."""
    begin, first_refusal = time.monotonic(), ""
    while True:
        try:
            answer = serving.seldon_predict(serving.status_service_url(installed, sdep), token)
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ConnectionRefusedError):
                raise
            if time.monotonic() - begin > timeout:
                raise AssertionError(
                    f"{what}: {service} refused for {timeout}s\n{first_refusal}"
                ) from error
            if not first_refusal:
                first_refusal = installed.run_kubectl(
                    "get", "endpointslices", "-n", NS, "-l",
                    f"kubernetes.io/service-name={service}", "-o", "yaml",
                ).stdout  # fmt: skip
            time.sleep(1)
            continue
        if first_refusal:
            waited = time.monotonic() - begin
            print(f"\n{what}: {service} refused connections for {waited:.1f}s; "
                  f"its EndpointSlices then:\n{first_refusal}")  # fmt: skip
        return answer


def _step(
    installed: NodeCluster, api: Cluster, seldon: ServingController, generation: int,
    what: str, done: Callable[[dict[str, Any]], bool], predictors: dict[str, tuple[int, bool]],
    token: str, reference: list[float], timeout: float = 240,
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Wait for the step (`serving.wait_deployment`), then check what every step must
    hold: admitted; Seldon reconciled exactly `predictors`, no version declared at 0% (or
    a shadow) with traffic; its controller, not a test, wrote its status; the predictions
    through its Service (its status.address: the first predictor's) equal the reference,
    answered by the version with the largest share. Returns the Lykeion Deployment and the
    SeldonDeployment."""
    body = serving.wait_deployment(api, installed, generation, what, done, timeout, seldon)
    serving.admitted(body)
    sdep = _sdep(installed, NAME)
    assert _predictors(sdep) == predictors, (what, sdep["spec"]["predictors"])
    declared = {v["version"]: v["traffic"] for v in body["spec"]["versions"]}
    for version, (traffic, shadow) in predictors.items():
        if shadow or declared.get(version, 0) == 0:
            assert traffic == 0, (what, version, traffic)
    assert sum(t for t, shadow in predictors.values() if not shadow) == 100, predictors
    managers = serving.status_managers(sdep)
    assert managers and all("lykeion" not in m for m in managers), managers
    # Seldon's address is its first predictor's Service (without Istio or Ambassador the
    # only way in, whatever the traffic says): the version with the largest share.
    first = sdep["spec"]["predictors"][0]["labels"]["lykeion.io/version"]
    assert predictors[first][0] == max(t for t, _ in predictors.values()), (what, first)
    service = f"{NAME}-{predictor_name(first)}"
    deadline = time.monotonic() + 60
    while _address_service(sdep) != service and time.monotonic() < deadline:
        time.sleep(1)  # Seldon's status may lag its spec by a reconcile
        sdep = _sdep(installed, NAME)
    version, predictions = _predict_once_served(installed, sdep, service, what, token)
    assert version == first, (what, version, sdep["status"].get("address"))
    assert predictions == pytest.approx(reference, rel=1e-6), what
    return body, sdep


def test_a_canary_through_seldon_from_unavailable_to_promoted_rolled_back_shadowed_deleted(
    installed: NodeCluster,
    seldon: ServingController,
    lykeion_api: Cluster,
    reference_predictions: list[list[float]],
    trained_canary: str,
) -> None:
    begin = time.monotonic()
    api, reference, token = (
        lykeion_api,
        flat(reference_predictions),
        serving.caller_token(installed),
    )
    old, new = "1.0", serving.CANARY
    ready = serving.condition_of

    # 1.0 alone.
    generation = serving.declare(installed, "seldon", [(old, 100)])
    _step(installed, api, seldon, generation, "served 1.0",
          lambda b: ready(b, "Ready").get("status") == "True",
          {old: (100, False)}, token, reference)  # fmt: skip

    # A 90/10 canary whose server cannot start yet (its pod unschedulable): Seldon gets 1.1
    # as a predictor at 0% (rendered, not yet available) and 1.0 keeps all traffic.
    with serving.unschedulable(installed):
        generation = serving.declare(installed, "seldon", [(old, 90), (new, 10)])
        canary_deployment = f"{NAME}-{predictor_name(new)}-0-model"
        # Waited for from the conditions, which say what Seldon's own status says: its
        # controller made 1.1's Deployment, whose pod cannot be scheduled.
        starting = f"Deployment {canary_deployment} has 0 of"
        body, sdep = _step(
            installed, api, seldon, generation, "reported 1.1's Deployment starting",
            lambda b: ready(b, "Available").get("reason") == "VersionsStarting"
            and starting in ready(b, "Available").get("message", ""),
            {old: (100, False), new: (0, False)}, token, reference,
        )  # fmt: skip
        status = sdep["status"]["deploymentStatus"]
        assert int(status[canary_deployment].get("availableReplicas") or 0) == 0, status
        assert int(status[f"{NAME}-{predictor_name(old)}-0-model"]["availableReplicas"]) == 1
        assert serving.traffic_of(body) == {old: 100, new: 0}
        assert ready(body, "TrafficInEffect")["reason"] == "RolloutHeld"
    # Scheduled now: the declared split once Seldon reports 1.1's Deployment available.
    _step(installed, api, seldon, generation, "served the 90/10 canary",
          lambda b: ready(b, "Ready").get("status") == "True"
          and serving.traffic_of(b) == {old: 90, new: 10},
          {old: (90, False), new: (10, False)}, token, reference)  # fmt: skip

    # Promote: 1.1 takes everything, 1.0 stays declared at 0% (a predictor with no traffic).
    generation = serving.declare(installed, "seldon", [(new, 100), (old, 0)])
    _step(installed, api, seldon, generation, "promoted 1.1",
          lambda b: ready(b, "Ready").get("status") == "True"
          and serving.traffic_of(b) == {new: 100, old: 0},
          {new: (100, False), old: (0, False)}, token, reference)  # fmt: skip

    # Roll back, 1.1 declared first at 0% (as a rollback often reads).
    generation = serving.declare(installed, "seldon", [(new, 0), (old, 100)])
    _step(installed, api, seldon, generation, "rolled back to 1.0",
          lambda b: ready(b, "Ready").get("status") == "True"
          and serving.traffic_of(b) == {old: 100, new: 0},
          {old: (100, False), new: (0, False)}, token, reference)  # fmt: skip

    # 1.1 as the shadow: Seldon's shadow predictor, no traffic of its own.
    generation = serving.declare(installed, "seldon", [(old, 100)], shadow=new)
    body, _ = _step(installed, api, seldon, generation, "shadowed 1.1",
                    lambda b: ready(b, "Ready").get("status") == "True",
                    {old: (100, False), new: (0, True)}, token, reference)  # fmt: skip
    assert {t["version"]: t.get("shadow", False) for t in body["status"]["traffic"]} == {
        old: False, new: True,
    }  # fmt: skip

    # Delete: the SeldonDeployment goes with the Deployment, and what Seldon made with it.
    serving.gone_with_children(
        installed, "seldondeployments.machinelearning.seldon.io",
        f"seldon-deployment-id={NAME}", 120, seldon,
    )  # fmt: skip
    serving.record_timing(installed, "seldon: canary lifecycle", time.monotonic() - begin)
