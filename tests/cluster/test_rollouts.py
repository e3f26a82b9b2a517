"""Rollouts judged through pods: the operator in its pod reads the model servers' `/metrics`
and `/analysis` through their Services and moves the router's split, while callers' requests
go through the router's Service (kube-proxy, router pod, server pods) with a token.

- a bad canary (1.1, trained without serving defaults, so every key it is asked for lacks
  `rider.avg_fare` and gets a 422) is set back to 0% with `RolledBack` naming
  `missingFeatures`, and 1.0 answers every request again;
- a healthy canary (1.2, as 1.0) walks the steps to 100%.

Own segment (`rollout`), so the session's other tests keep the example's Deployment; its
objects are deleted after the module. The Models train from the example's source, the
features are the example's (`trained_example`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lykeion.cluster import NodeCluster
from tests.cluster.serving import (
    NS,
    caller_token,
    diagnose,
    record_timing,
    service_url,
    wait_condition,
)
from tests.integration.test_rollouts import EXAMPLE, Traffic
from tests.support import Cluster, load, wait_for

pytestmark = pytest.mark.timeout(900)
SEGMENT = "rollout"
NAME = f"forward-{SEGMENT}"
INTERVAL = 4.0
ROLLOUT = {
    "steps": [20, 50, 100],
    "interval": f"{INTERVAL:.0f}s",
    # Few requests per window; latency on a shared node is noise, not the subject. Nor
    # drift: the example's riders are served after their 30-day windows closed (null
    # `rider.avg_fare`, far from training), as in tests/integration/test_rollouts.py.
    "checks": {"minRequests": 5, "maxLatencyRatio": 100, "maxDriftPsi": 1000},
}
VERSIONS = ("1.0", "1.1", "1.2")


@pytest.fixture(scope="module")
def trained(
    installed: NodeCluster, lykeion_api: Cluster, trained_example: str
) -> Iterator[Cluster]:
    """Models 1.0, 1.1 (no serving defaults) and 1.2 of segment `rollout`, created at once
    from the example's pinned source (its family's MLflow experiment exists by now: they
    do not race to create it); deleted with the Deployment after the module."""
    source = (lykeion_api.get("Model", NS, trained_example) or {})["spec"]["source"]
    (model,) = load(EXAMPLE / "model.yaml")
    for version in VERSIONS:
        body = copy.deepcopy(model)
        body["metadata"] = {"name": f"{NAME}-{version}"}
        body["spec"] |= {"segment": SEGMENT, "version": version, "source": source}
        # Two cores for the whole node: half of one per training.
        body["spec"]["training"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
        if version == "1.1":
            del body["spec"]["serving"]
        lykeion_api.create(body, NS)
    yield lykeion_api
    # Free the node's CPU for the session's later tests; the collector removes the pods.
    delete = ("delete", "-n", NS, "--ignore-not-found", "--wait=true", "--timeout=120s")
    installed.run_kubectl(*delete, "deployments.lykeion.io", NAME, check=False)
    installed.run_kubectl(
        *delete, "models.lykeion.io", *(f"{NAME}-{v}" for v in VERSIONS), check=False
    )


def _deployment(version: str) -> dict[str, Any]:
    """The Deployment declaring `version` at 100% with the rollout (server-side applied by
    one manager, so each apply replaces the last)."""
    return {
        "apiVersion": "lykeion.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "family": "forward",
            "segment": SEGMENT,
            "versions": [{"version": version, "traffic": 100}],
            "replicas": 1,
            "backend": "lykeion",
            # A tenth of a core per server: the node has two for everything.
            "resources": {"cpu": "100m", "memory": "1Gi"},
            "rollout": ROLLOUT,
        },
    }


def _status(api: Cluster) -> dict[str, Any]:
    return (api.get("Deployment", NS, NAME) or {}).get("status") or {}


def _in_effect(api: Cluster) -> dict[str, int]:
    return {t["version"]: t["traffic"] for t in _status(api).get("traffic", [])}


@pytest.fixture(scope="module")
def serving(installed: NodeCluster, trained: Cluster) -> tuple[str, dict[str, str]]:
    """1.0 serving all traffic (a new Deployment has nothing to compare with: it serves at
    once); (the router Service's URL from the node, the caller's headers)."""
    for version in ("1.0", "1.1"):
        wait_condition(trained, installed, "Model", f"{NAME}-{version}", "Evaluated", 600)
    installed.apply([_deployment("1.0")])
    wait_condition(trained, installed, "Deployment", NAME, "Ready", 300)
    state = _status(trained)["rollout"]
    assert (state["phase"], state["stable"], state.get("canary")) == ("Promoted", "1.0", None)
    token = caller_token(installed, prefix="rollout-")
    return service_url(installed, NAME), {"authorization": f"Bearer {token}"}


def _steady(traffic: Traffic, since: float, version: str, count: int = 20) -> float | None:
    """When the last answer after `since` other than a 200 of `version` came (`since` when
    none did), once `count` answers in a row since then were 200s of `version`; else None."""
    after = [(t, v, s) for t, v, s in traffic.answers if t > since]
    other = [t for t, v, s in after if (v, s) != (version, 200)]
    last = other[-1] if other else since
    return last if len([a for a in after if a[0] > last]) >= count else None


def test_a_bad_canary_is_rolled_back_by_the_operator_in_its_pod_naming_the_check(
    installed: NodeCluster, trained: Cluster, serving: tuple[str, dict[str, str]]
) -> None:
    api, (url, headers) = trained, serving
    with Traffic(url, headers=headers) as traffic:
        declared = time.monotonic()
        installed.apply([_deployment("1.1")])
        try:
            back = api.wait_condition(
                "Deployment", NS, NAME, "True", type_="RolledBack", timeout=240
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{json.dumps(_status(api))}\n"
                                 f"{diagnose(installed)}") from None  # fmt: skip
        rolled = time.monotonic()
        # The router answers with 1.0 alone once its new pod (the new split) is Ready.
        switched = wait_for(lambda: _steady(traffic, rolled, "1.0"), 120, "1.0 alone again")
    bad = [(t, s) for t, v, s in traffic.answers if v == "1.1"]
    assert bad and {s for _, s in bad} == {422}, bad[:5]
    took = rolled - bad[0][0]
    record_timing(installed, "rollout: bad canary declared to RolledBack", rolled - declared)
    record_timing(installed, "rollout: first 422 through the Service to RolledBack", took)
    record_timing(installed, "rollout: RolledBack to 1.0 alone through the Service",
                  switched - rolled)  # fmt: skip
    lost = [s for _, v, s in traffic.answers if s not in (200, 422)]
    print(f"{len(bad)} answers of 1.1 (422), {len(lost)} requests lost {sorted(set(lost))}")
    # Judged as soon as the canary answered minRequests, then one poll of the operator.
    assert took <= 2 * INTERVAL + 6, f"rolled back {took:.1f}s after the first bad answer"
    # A router pod's start, not the kubelet's ConfigMap sync (a minute apart).
    assert switched - rolled <= 30, f"1.1 still answered {switched - rolled:.1f}s after"

    assert back["reason"] == "MissingFeatures", back
    assert back["message"].startswith("1.1: missingFeatures "), back
    assert "requests refused" in back["message"] and "traffic back to 1.0" in back["message"]
    state = _status(api)["rollout"]
    assert (state["phase"], state["stable"], state["canary"], state["weight"]) == (
        "RolledBack", "1.0", "1.1", 0,
    )  # fmt: skip
    failing = {c["name"]: c for c in state["checks"]}["missingFeatures"]
    assert failing["result"] == "Fail" and failing["value"] >= 1.0
    assert [d["action"] for d in state["decisions"]][-2:] == ["Start", "RollBack"]
    assert _in_effect(api) == {"1.0": 100, "1.1": 0}
    # spec is untouched (GitOps stays clean), and the endpoint stays Ready.
    spec = (api.get("Deployment", NS, NAME) or {})["spec"]
    assert spec["versions"] == [{"version": "1.1", "traffic": 100}]
    assert (api.condition("Deployment", NS, NAME) or {})["status"] == "True"


def test_a_healthy_canary_walks_the_steps_to_100(
    installed: NodeCluster, trained: Cluster, serving: tuple[str, dict[str, str]]
) -> None:
    api, (url, headers) = trained, serving
    wait_condition(api, installed, "Model", f"{NAME}-1.2", "Evaluated", 600)
    seen: list[tuple[str | None, int]] = []

    def promoted() -> bool:
        state = _status(api).get("rollout") or {}
        step = (state.get("canary"), int(state.get("weight", 0)))
        if not seen or seen[-1] != step:
            seen.append(step)
        return state.get("phase") == "Promoted" and state.get("stable") == "1.2"

    with Traffic(url, headers=headers) as traffic:
        declared = time.monotonic()
        installed.apply([_deployment("1.2")])
        try:
            wait_for(promoted, 180, "1.2 promoted")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{json.dumps(_status(api))}\n"
                                 f"{diagnose(installed)}") from None  # fmt: skip
        record_timing(installed, "rollout: healthy canary declared to Promoted",
                      time.monotonic() - declared)  # fmt: skip
    state = _status(api)["rollout"]
    actions = [(d["action"], d["canary"], d["weight"]) for d in state["decisions"]]
    assert actions[-3:] == [("Start", "1.2", 20), ("Advance", "1.2", 50), ("Promote", "1.2", 0)]
    assert ("1.2", 50) in seen
    wait_for(lambda: _in_effect(api) == {"1.2": 100}, 60, "1.2 alone")
    # Both steps were taken on real answers of 1.2 through the Service, none an error.
    answered = [s for _, v, s in traffic.answers if v == "1.2"]
    assert len(answered) >= 2 * 5 and set(answered) == {200}
    rolled = api.condition("Deployment", NS, NAME, "RolledBack")
    assert rolled is not None and (rolled["status"], rolled["reason"]) == ("False", "Promoted")
