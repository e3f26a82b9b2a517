"""What Seldon's and KServe's status say serves, per version (pure), and which objects a
backend renders (the kinds the kubernetes executor retires when `spec.backend` changes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lykeion.api.deployment import ROLLOUT_BACKEND, DeploymentSpec
from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, VersionServer
from lykeion.executors.kubernetes_endpoints import (
    KSERVE_SOURCE_URI,
    RENDERED_KINDS,
    kserve_current,
    kserve_rollout,
    observe_kserve,
    observe_seldon,
    seldon_deployment_name,
)
from lykeion.serving.config import CONFIG_ENV
from tests.objects import server_config

NAME = "forward-default"
# Versions whose predictor names are prefixes of each other's (v1-0, v1-0-1, v1-0-10).
VERSIONS = ["1.0", "1.0.1", "1.0.10", "1.1", "10.0"]


def _endpoint(backend: str, weights: dict[str, int], replicas: int = 1) -> Endpoint:
    return Endpoint(
        name=NAME, namespace="ns", backend=backend,
        servers=tuple(VersionServer(v, v, server_config(v, storage_uri=f"gs://m/{v}"))
                      for v in weights),
        weights=weights, stable=next(iter(weights)), replicas=replicas,
        kserve_mode="Serverless", image="lykeion/serving:0.1.0",
    )  # fmt: skip


def _sdep(available: dict[str, int | None], state: str = "Available") -> dict[str, Any]:
    """As Seldon Core v1.16.0 reports: an entry per predictor Deployment it has seen
    (None: none yet)."""
    return {
        "status": {
            "state": state,
            "address": {"url": f"http://{NAME}.ns.svc:8000"},
            "deploymentStatus": {
                f"{NAME}-{render.predictor_name(v)}-0-model": {
                    "replicas": 1,
                    "availableReplicas": n,
                }
                for v, n in available.items()
                if n is not None
            },
        }
    }


def test_seldon_deployment_names_are_the_ones_render_predicts() -> None:
    endpoint = _endpoint("seldon", {v: 20 for v in VERSIONS})
    predicted = [n for what, n in render.seldon_names(endpoint) if what == "Deployment"]
    assert predicted == [seldon_deployment_name(endpoint, v) for v in VERSIONS]


def test_a_creating_canary_leaves_the_stable_version_available() -> None:
    # The review's case: the SeldonDeployment is Creating while 1.1's predictor starts.
    endpoint = _endpoint("seldon", {"1.0": 90, "1.1": 10})
    seen = observe_seldon(endpoint, _sdep({"1.0": 1, "1.1": None}, state="Creating"))
    assert seen.available == {"1.0": True, "1.1": False}
    assert "no Deployment forward-default-v1-1-0-model yet" in seen.messages["1.1"]
    assert "state Creating" in seen.messages["1.1"]
    seen = observe_seldon(endpoint, _sdep({"1.0": 1, "1.1": 0}, state="Creating"))
    assert seen.available == {"1.0": True, "1.1": False}
    assert "0 of 1 replica(s) available" in seen.messages["1.1"]


def test_versions_whose_names_share_a_prefix_are_told_apart() -> None:
    # The review's case: 1.0's predictor name is a prefix of 1.0.1's.
    endpoint = _endpoint("seldon", {"1.0": 50, "1.0.1": 50})
    assert observe_seldon(endpoint, _sdep({"1.0": None, "1.0.1": 1})).available == {
        "1.0": False, "1.0.1": True,
    }  # fmt: skip
    assert observe_seldon(endpoint, _sdep({"1.0": 0, "1.0.1": 2})).available == {
        "1.0": False, "1.0.1": True,
    }  # fmt: skip
    seen = observe_seldon(endpoint, _sdep({"1.0": 1, "1.0.1": 0}))
    assert seen.available == {"1.0": True, "1.0.1": False}
    assert seen.ready_replicas == 1


@given(
    st.dictionaries(
        st.sampled_from(VERSIONS), st.none() | st.integers(0, 3), min_size=1, max_size=5
    ),
    st.sampled_from(["Available", "Creating", "Failed", None]),
)
def test_seldon_availability_is_each_predictors_own(
    reported: dict[str, int | None], state: str | None
) -> None:
    endpoint = _endpoint("seldon", {v: 0 for v in reported})
    seen = observe_seldon(endpoint, _sdep(reported, state or ""))
    # Reference: a version serves when its own Deployment has an available replica,
    # whatever the others' and the SeldonDeployment's state.
    assert seen.available == {v: bool(n) for v, n in reported.items()}
    assert seen.ready_replicas == sum(n or 0 for n in reported.values())
    assert set(seen.messages) == {v for v, n in reported.items() if not n}


def _isvc(generation: int, observed: int | None, ready: str = "True") -> dict[str, Any]:
    status: dict[str, Any] = {
        "url": f"http://{NAME}.ns.example.com",
        "conditions": [{"type": "Ready", "status": ready}],
        "components": {"predictor": {"latestRolledoutRevision": "p-00001"}},
    }
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {
            "name": NAME,
            "generation": generation,
            "labels": {"lykeion.io/version": "1.1"},
        },
        "status": status,
    }


def test_kserve_ready_of_a_previous_generation_is_not_ready() -> None:
    # The review's case: the new spec is applied (generation 2); the status still says
    # Ready from generation 1.
    endpoint = _endpoint("kserve", {"1.1": 100})
    stale = observe_kserve(endpoint, _isvc(2, 1))
    assert stale.available == {"1.1": False}
    assert "has not reported on generation 2 yet" in stale.messages["1.1"]
    assert "of generation 1" in stale.messages["1.1"]
    assert observe_kserve(endpoint, _isvc(2, None)).available == {"1.1": False}
    assert observe_kserve(endpoint, _isvc(2, 2)).available == {"1.1": True}
    assert observe_kserve(endpoint, _isvc(2, 2, "False")).available == {"1.1": False}


@given(
    st.integers(1, 6), st.none() | st.integers(0, 8), st.sampled_from(["True", "False", "Unknown"])
)
def test_kserve_availability_needs_a_current_ready(
    generation: int, observed: int | None, ready: str
) -> None:
    endpoint = _endpoint("kserve", {"1.0": 90, "1.1": 10})
    isvc = _isvc(generation, observed, ready)
    current = observed is not None and observed >= generation
    assert kserve_current(isvc) is current
    seen = observe_kserve(endpoint, isvc)
    # 1.1 is the canary KServe names; 1.0 lives on as the revision rolled out last.
    assert seen.available == {"1.1": current and ready == "True", "1.0": True}


def test_kserve_runs_no_server_for_a_version_without_a_share() -> None:
    # Rolled back: 1.0 named at 100%, 1.1 still declared at 0% and not in the service.
    endpoint = _endpoint("kserve", {"1.1": 0, "1.0": 100})
    isvc = _isvc(2, 2)
    isvc["metadata"]["labels"]["lykeion.io/version"] = "1.0"
    seen = observe_kserve(endpoint, isvc)
    assert seen.available == {"1.0": True, "1.1": False}
    assert seen.unserved == frozenset({"1.1"})
    assert "does not serve 1.1 (no share)" in seen.messages["1.1"]
    # The version it names is never unserved, even while its share is still 0.
    starting = _endpoint("kserve", {"1.1": 0})
    assert observe_kserve(starting, _isvc(2, 2)).unserved == frozenset()


def _kserve_deployment(
    component: str, version: str, replicas: int, updated: int, available: int,
    generation: int = 2, observed: int = 2, uri: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One of KServe's RawDeployment Deployments as the API server reports it: `replicas`
    pods in all, `updated` of them on the template holding `version` (the predictor's: its
    storage URI `uri`, by default `gs://m/<version>`)."""
    annotations: dict[str, str] = {}
    if component == "transformer":
        config = json.dumps({"name": NAME, "version": version}, separators=(",", ":"))
        pod = {"containers": [{"name": "kserve-container",
                               "env": [{"name": CONFIG_ENV, "value": config}]}]}  # fmt: skip
    else:
        # As KServe v0.15.2 renders it: the storage URI only in the annotation; its pod
        # webhook adds the storage initializer, PVC mount or modelcar to the pods alone.
        pod = {"containers": [{"name": "kserve-container"}]}
        annotations = {KSERVE_SOURCE_URI: uri if uri is not None else f"gs://m/{version}"}
    return {
        "metadata": {"name": f"{NAME}-{component}", "generation": generation,
                     "annotations": annotations},
        "spec": {"replicas": 1,
                 "template": {"metadata": {"annotations": annotations}, "spec": pod}},
        "status": {"observedGeneration": observed, "replicas": replicas,
                   "updatedReplicas": updated, "availableReplicas": available},
    }  # fmt: skip


def _deployments(**transformer: Any) -> dict[str, dict[str, Any] | None]:
    done = {"replicas": 1, "updated": 1, "available": 1}
    return {
        f"{NAME}-predictor": _kserve_deployment("predictor", "1.1", **done),
        f"{NAME}-transformer": _kserve_deployment(
            "transformer", transformer.pop("version", "1.1"), **{**done, **transformer}
        ),
    }


def test_kserve_ready_while_its_deployments_still_roll_out_is_not_available() -> None:
    # KServe v0.15.2 (RawDeployment) copies the Deployments' Available into its Ready, and
    # a Deployment rolling onto 1.1 stays Available on 1.0's pod: 1.1 is not serving yet.
    endpoint = _endpoint("kserve", {"1.1": 100})
    assert kserve_rollout(_deployments(), "1.1", "gs://m/1.1") is None
    rolling = kserve_rollout(_deployments(replicas=2, updated=1, available=1), "1.1", "gs://m/1.1")
    assert rolling == (
        f"Deployment {NAME}-transformer is still rolling out 1.1: 1 of 1 replica(s) updated, "
        "1 of 2 pod(s) available"
    )
    pending = kserve_rollout(_deployments(replicas=2, updated=1, available=1), "1.1", None)
    assert pending == rolling
    seen = observe_kserve(endpoint, _isvc(2, 2), rolling)
    assert seen.available == {"1.1": False}
    assert seen.messages["1.1"] == f"InferenceService {NAME}: KServe reports Ready, but {rolling}"
    # Not yet rolled into the Deployments at all, or not made: not serving either.
    stale = kserve_rollout(_deployments(version="1.0"), "1.1", "gs://m/1.1")
    assert stale == f"KServe has not rolled 1.1 into Deployment {NAME}-transformer yet"
    other_uri = kserve_rollout(_deployments(), "1.1", "gs://m/other")
    assert other_uri == f"KServe has not rolled 1.1 into Deployment {NAME}-predictor yet"
    missing = kserve_rollout({f"{NAME}-predictor": None}, "1.1", "gs://m/1.1")
    assert missing == f"KServe has not made Deployment {NAME}-predictor yet"
    behind = _deployments()
    transformer = behind[f"{NAME}-transformer"]
    assert transformer is not None
    transformer["status"]["observedGeneration"] = 1
    assert kserve_rollout(behind, "1.1", "gs://m/1.1") is not None


def _predictor(uri: str) -> dict[str, dict[str, Any] | None]:
    done = {"replicas": 1, "updated": 1, "available": 1}
    return {f"{NAME}-predictor": _kserve_deployment("predictor", "1.1", **done, uri=uri)}


@pytest.mark.parametrize("scheme", render.KSERVE_SCHEMES)
def test_kserve_rollout_finds_each_schemes_uri_where_kserve_renders_it(scheme: str) -> None:
    # KServe v0.15.2 records every scheme's URI only in the pod template's annotation:
    # `pvc://` (a volume mount) and `oci://` (a modelcar) get no storage initializer.
    uri = f"{scheme}models/forward/1.1"
    assert kserve_rollout(_predictor(uri), "1.1", uri) is None
    assert kserve_rollout(_predictor(uri + "0"), "1.1", uri) is not None


@given(
    scheme=st.sampled_from(render.KSERVE_SCHEMES),
    path=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20),
    suffix=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=5),
)
def test_kserve_rollout_matches_the_storage_uri_exactly(
    scheme: str, path: str, suffix: str
) -> None:
    # Non-ASCII URIs included; a URI that is a prefix of the one held (gs://m/1.1 while
    # the Deployment holds gs://m/1.10), or one the held URI is a prefix of, is not it.
    uri = scheme + path
    rolled_out = f"KServe has not rolled 1.1 into Deployment {NAME}-predictor yet"
    assert kserve_rollout(_predictor(uri), "1.1", uri) is None
    assert kserve_rollout(_predictor(uri + suffix), "1.1", uri) == rolled_out
    assert kserve_rollout(_predictor(uri), "1.1", uri + suffix) == rolled_out


def test_kserve_rollout_does_not_take_a_version_prefix_for_the_version() -> None:
    assert kserve_rollout(_predictor("gs://m/1.10"), "1.1", "gs://m/1.1") is not None
    assert kserve_rollout(_predictor("gs://m/é/1.1"), "1.1", "gs://m/é/1.1") is None


@pytest.mark.parametrize("backend", ["lykeion", "seldon", "kserve"])
def test_every_kind_a_backend_renders_is_one_the_executor_can_retire(backend: str) -> None:
    endpoint = _endpoint(backend, {"1.0": 100})
    kinds = {m["kind"] for m in render.render(endpoint)}
    assert kinds == set(RENDERED_KINDS[backend])
    for manifest in render.render(endpoint):
        # The labels the executor finds them by.
        labels = manifest["metadata"]["labels"]
        assert labels["lykeion.io/deployment"] == NAME
        assert labels["app.kubernetes.io/managed-by"] == "lykeion"


@pytest.mark.parametrize("backend", ["seldon", "kserve"])
def test_a_rollout_is_refused_on_backends_without_per_version_servers(backend: str) -> None:
    spec = {"family": "forward", "segment": "default", "backend": backend,
            "versions": [{"version": "1.1", "traffic": 100}], "rollout": {}}  # fmt: skip
    with pytest.raises(ValidationError, match=r"spec\.rollout needs backend lykeion"):
        DeploymentSpec.model_validate(spec)
    assert "use backend lykeion for analysed rollouts" in ROLLOUT_BACKEND
    DeploymentSpec.model_validate({**spec, "backend": "lykeion"})
    DeploymentSpec.model_validate({**spec, "rollout": None})
