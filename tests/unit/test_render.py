"""Rendering per serving backend (pure); the real schemas check them in
tests/integration/test_kubernetes_operator.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lykeion.executors.base import Endpoint, VersionServer
from lykeion.serving import render


def _endpoint(backend: str, weights: dict[str, int], shadow: str | None = None) -> Endpoint:
    versions = [*weights, *([shadow] if shadow else [])]
    return Endpoint(
        name="forward-default",
        namespace="ns",
        backend=backend,
        servers=tuple(
            VersionServer(
                v,
                f"forward-default-{v.replace('.', '-')}",
                {"version": v, "storage_uri": f"gs://models/{v}"},
            )
            for v in versions
        ),
        weights=weights,
        shadow=shadow,
        replicas=2,
        image="lykeion/serving:0.1.0",
    )


def test_lykeion_backend_renders_a_server_per_version_and_a_router() -> None:
    objects = render.render(_endpoint("lykeion", {"1.0": 90, "1.1": 10}, shadow="2.0"))
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert names == [
        ("Deployment", "forward-default-1-0"), ("Service", "forward-default-1-0"),
        ("Deployment", "forward-default-1-1"), ("Service", "forward-default-1-1"),
        ("Deployment", "forward-default-2-0"), ("Service", "forward-default-2-0"),
        ("ConfigMap", "forward-default-routes"), ("Deployment", "forward-default-router"),
        ("Service", "forward-default"),
    ]  # fmt: skip
    routes = json.loads(objects[6]["data"]["routes.json"])
    assert routes["versions"] == [
        {"version": "1.0", "url": "http://forward-default-1-0.ns.svc", "weight": 90},
        {"version": "1.1", "url": "http://forward-default-1-1.ns.svc", "weight": 10},
    ]
    assert routes["shadow"]["version"] == "2.0"
    container = objects[0]["spec"]["template"]["spec"]["containers"][0]
    assert json.loads(container["env"][0]["value"])["version"] == "1.0"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert objects[0]["spec"]["replicas"] == 2


def test_seldon_backend_splits_traffic_across_predictors_with_a_shadow() -> None:
    (sdep,) = render.render(_endpoint("seldon", {"1.0": 75, "1.1": 25}, shadow="2.0"))
    predictors = sdep["spec"]["predictors"]
    assert [(p["name"], p["traffic"], p.get("shadow")) for p in predictors] == [
        ("v1-0", 75, None), ("v1-1", 25, None), ("v2-0", 0, True),
    ]  # fmt: skip
    graph = predictors[0]["graph"]
    container = predictors[0]["componentSpecs"][0]["spec"]["containers"][0]
    assert graph["type"] == "MODEL" and container["name"] == graph["name"]


def test_kserve_backend_enriches_in_a_transformer_and_canaries_the_newest_version() -> None:
    (isvc,) = render.render(_endpoint("kserve", {"1.0": 80, "1.1": 20}))
    transformer, predictor = isvc["spec"]["transformer"], isvc["spec"]["predictor"]
    assert transformer["canaryTrafficPercent"] == predictor["canaryTrafficPercent"] == 20
    config = json.loads(transformer["containers"][0]["env"][0]["value"])
    assert config["version"] == "1.1"
    assert predictor["model"] == {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": "v2",
        "storageUri": "gs://models/1.1",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
    }
    (single,) = render.render(_endpoint("kserve", {"1.0": 100}))
    assert "canaryTrafficPercent" not in single["spec"]["predictor"]


@pytest.mark.parametrize(
    ("weights", "shadow", "words"),
    [
        ({"1.0": 80, "1.1": 20}, "2.0", "no shadow"),
        ({"1.0": 50, "1.1": 25, "1.2": 25}, None, "at most two"),
    ],
)
def test_kserve_backend_refuses_what_it_cannot_express(
    weights: dict[str, int], shadow: str | None, words: str
) -> None:
    with pytest.raises(render.Unrenderable, match=words):
        render.render(_endpoint("kserve", weights, shadow))


def test_servers_that_review_callers_run_as_the_serving_account_with_its_token() -> None:
    endpoint = _endpoint("lykeion", {"1.0": 100})
    plain = render.render(endpoint)[0]["spec"]["template"]["spec"]
    assert plain["automountServiceAccountToken"] is False and "serviceAccountName" not in plain
    server = endpoint.servers[0]
    reviewing = dataclasses.replace(endpoint, servers=(
        VersionServer(server.version, server.name, {**server.config, "access": "kubernetes"}),
    ))  # fmt: skip
    pod = render.render(reviewing)[0]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == render.SERVING_ACCOUNT == "lykeion-serving"
    assert pod["automountServiceAccountToken"] is True
    # The router has no need of a token.
    router = render.render(reviewing)[-2]["spec"]["template"]["spec"]
    assert router["automountServiceAccountToken"] is False
