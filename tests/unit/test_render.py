"""Rendering per serving backend (pure); the real schemas check them in
tests/integration/test_kubernetes_operator.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from typing import Any

import pytest

from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, VersionServer
from tests.objects import server_config


def _endpoint(
    backend: str,
    weights: dict[str, int],
    shadow: str | None = None,
    stable: str | None = None,
    namespace: str = "ns",
    storage: str = "gs://models/{}",
    kserve_mode: str = "Serverless",
) -> Endpoint:
    versions = [*weights, *([shadow] if shadow else [])]
    return Endpoint(
        name="forward-default",
        namespace=namespace,
        backend=backend,
        servers=tuple(
            VersionServer(
                v,
                f"forward-default-{v.replace('.', '-')}",
                server_config(v, storage_uri=storage.format(v)),
            )
            for v in versions
        ),
        weights=weights,
        shadow=shadow,
        stable=stable,
        kserve_mode=kserve_mode,
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


def test_a_new_split_rolls_the_lykeion_router_and_the_same_split_does_not() -> None:
    """The kubelet refreshes a mounted ConfigMap only on its pod sync (a minute apart): the
    router's pod template carries a digest of its routes, so a new split reaches it with a
    new pod, and re-applying the same split changes nothing."""

    def router_template(weights: dict[str, int]) -> dict[str, Any]:
        objects = render.render(_endpoint("lykeion", weights))
        (router,) = [o for o in objects if o["metadata"]["name"] == "forward-default-router"]
        template: dict[str, Any] = router["spec"]["template"]["metadata"]
        return template

    canary = router_template({"1.0": 80, "1.1": 20})
    assert canary == router_template({"1.0": 80, "1.1": 20})
    rolled_back = router_template({"1.0": 100, "1.1": 0})
    assert rolled_back["annotations"] != canary["annotations"]
    assert set(rolled_back["annotations"]) == {render.ROUTES_DIGEST}


def test_seldon_backend_splits_traffic_across_predictors_with_a_shadow() -> None:
    (sdep,) = render.render(_endpoint("seldon", {"1.0": 75, "1.1": 25}, shadow="2.0"))
    predictors = sdep["spec"]["predictors"]
    assert [(p["name"], p["traffic"], p.get("shadow")) for p in predictors] == [
        ("v1-0", 75, None), ("v1-1", 25, None), ("v2-0", 0, True),
    ]  # fmt: skip
    graph = predictors[0]["graph"]
    container = predictors[0]["componentSpecs"][0]["spec"]["containers"][0]
    assert graph["type"] == "MODEL" and container["name"] == graph["name"]


@pytest.mark.parametrize("order", [("1.0", "1.1"), ("1.1", "1.0")])
def test_kserve_backend_enriches_in_a_transformer_and_canaries_by_meaning(
    order: tuple[str, str],
) -> None:
    # Whatever the list order, 1.0 serves now (stable): 1.1 is the canary at 20%.
    shares = {"1.0": 80, "1.1": 20}
    weights = {v: shares[v] for v in order}
    (isvc,) = render.render(_endpoint("kserve", weights, stable="1.0"))
    transformer, predictor = isvc["spec"]["transformer"], isvc["spec"]["predictor"]
    assert transformer["canaryTrafficPercent"] == predictor["canaryTrafficPercent"] == 20
    assert isvc["metadata"]["labels"]["lykeion.io/version"] == "1.1"
    config = json.loads(transformer["containers"][0]["env"][0]["value"])
    assert config["version"] == "1.1"
    assert predictor["model"] == {
        "modelFormat": {"name": "mlflow"},
        "protocolVersion": "v2",
        "storageUri": "gs://models/1.1",
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
    }
    # A rollback canary: 1.1 serves, the older 1.0 is tried at 80%.
    (back,) = render.render(_endpoint("kserve", weights, stable="1.1"))
    assert back["metadata"]["labels"]["lykeion.io/version"] == "1.0"
    assert back["spec"]["predictor"]["canaryTrafficPercent"] == 80
    (single,) = render.render(_endpoint("kserve", {"1.0": 100}))
    assert "canaryTrafficPercent" not in single["spec"]["predictor"]
    assert single["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}
    # A version declared at 0% is not in the InferenceService at all.
    (idle,) = render.render(_endpoint("kserve", {"1.0": 100, "1.1": 0}, stable="1.0"))
    assert idle["metadata"]["labels"]["lykeion.io/version"] == "1.0"
    assert "canaryTrafficPercent" not in idle["spec"]["predictor"]


@pytest.mark.parametrize(
    ("weights", "shadow", "stable", "words"),
    [
        ({"1.0": 80, "1.1": 20}, "2.0", "1.0", "no shadow"),
        ({"1.0": 50, "1.1": 25, "1.2": 25}, None, "1.0", "at most two versions"),
        # KServe's remainder would go to 1.0, rolled out last, which is no longer declared.
        ({"1.1": 90, "1.2": 10}, None, None, "none has served yet among the versions"),
        ({"1.1": 90, "1.2": 10}, None, "1.0", "that is 1.0, not one of the versions"),
    ],
)
def test_kserve_backend_refuses_what_it_cannot_express(
    weights: dict[str, int], shadow: str | None, stable: str | None, words: str
) -> None:
    with pytest.raises(render.Unrenderable, match=words):
        render.render(_endpoint("kserve", weights, shadow, stable))


def test_kserve_raw_deployment_serves_one_version_and_refuses_a_split() -> None:
    # KServe v0.15.2 reads canaryTrafficPercent only in its Knative reconciler: raw, the
    # canary would take every request while the status said 10%.
    with pytest.raises(render.Unrenderable, match="RawDeployment mode serves one version"):
        render.render(_endpoint("kserve", {"1.0": 90, "1.1": 10}, stable="1.0",
                                kserve_mode="RawDeployment"))  # fmt: skip
    (isvc,) = render.render(
        _endpoint("kserve", {"1.0": 100, "1.1": 0}, stable="1.0", kserve_mode="RawDeployment")
    )
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]


@pytest.mark.parametrize(
    ("storage", "accepted"),
    [
        ("gs://b/m/{}", True), ("s3://b/m/{}", True), ("https://h/m/{}", True),
        ("https://acct.blob.core.windows.net/c/{}", True), ("pvc://models/{}", True),
        ("hdfs://n/m/{}", True), ("webhdfs://n/m/{}", True), ("oci://r/m:{}", True),
        ("hf://org/{}", True),
        ("/data/mlruns/1/{}/artifacts", False), ("file:///data/mlruns/{}", False),
        ("mlflow-artifacts:/1/{}/artifacts", False), ("runs:/abc/{}", False),
    ],
)  # fmt: skip
def test_kserve_backend_serves_only_models_its_storage_initializer_can_fetch(
    storage: str, accepted: bool
) -> None:
    endpoint = _endpoint("kserve", {"1.0": 100}, storage=storage)
    if accepted:
        (isvc,) = render.render(endpoint)
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == storage.format("1.0")
    else:
        with pytest.raises(render.Unrenderable, match="which KServe cannot fetch"):
            render.render(endpoint)


def test_kserve_fetches_the_schemes_of_the_cluster_storage_containers_it_is_told_of() -> None:
    storage = "mlflow-artifacts:/1/{}/artifacts"
    told = replace(_endpoint("kserve", {"1.0": 100}, storage=storage),
                   kserve_storage_schemes=("mlflow-artifacts:",))  # fmt: skip
    (isvc,) = render.render(told)
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == storage.format("1.0")
    other = replace(told, kserve_storage_schemes=("runs:",))
    with pytest.raises(render.Unrenderable, match="LYKEION_KSERVE_STORAGE_SCHEMES"):
        render.render(other)


def test_names_a_backend_derives_are_checked_against_the_dns_label_limit() -> None:
    # KServe's component host label: forward-default-transformer-<namespace>.
    fits = "n" * (63 - len("forward-default-transformer-"))
    render.render(_endpoint("kserve", {"1.0": 100}, namespace=fits))
    with pytest.raises(render.Unrenderable, match=r"host label 'forward-default-transformer-n+'"
                       r": 64 characters, over the 63-character DNS label limit"):  # fmt: skip
        render.render(_endpoint("kserve", {"1.0": 100}, namespace=fits + "n"))
    # Seldon's <name>-<predictor>-svc-orch Service (it would rename it seldon-<md5>).
    fits_version = "1." + "2" * (63 - len("forward-default-v-svc-orch") - 2)
    render.render(_endpoint("seldon", {fits_version: 100}))
    with pytest.raises(render.Unrenderable, match=r"Service 'forward-default-v1-2+-svc-orch'"):
        render.render(_endpoint("seldon", {fits_version + "2": 100}))


def test_no_seldon_or_kserve_object_when_no_version_has_a_share() -> None:
    assert render.render(_endpoint("seldon", {"1.1": 0})) == []
    assert render.render(_endpoint("kserve", {"1.1": 0})) == []
    # The lykeion router then routes nowhere (it answers 503), never to the 0% version.
    objects = render.render(_endpoint("lykeion", {"1.1": 0}))
    assert json.loads(objects[2]["data"]["routes.json"])["versions"] == []


def test_seldon_backend_refuses_a_split_its_webhook_would_refuse() -> None:
    with pytest.raises(render.Unrenderable, match="Traffic must sum to 100"):
        render.render(_endpoint("seldon", {"1.0": 90, "1.1": 0, "1.2": 5}))
    with pytest.raises(render.Unrenderable, match="single predictor"):
        render.render(_endpoint("seldon", {"1.0": 90}))


def test_servers_that_review_callers_run_as_the_serving_account_with_its_token() -> None:
    endpoint = _endpoint("lykeion", {"1.0": 100})
    plain = render.render(endpoint)[0]["spec"]["template"]["spec"]
    assert plain["automountServiceAccountToken"] is False and "serviceAccountName" not in plain
    server = endpoint.servers[0]
    reviewing = dataclasses.replace(endpoint, servers=(
        VersionServer(
            server.version, server.name, server.config.model_copy(update={"access": "kubernetes"})
        ),
    ))  # fmt: skip
    pod = render.render(reviewing)[0]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == render.SERVING_ACCOUNT == "lykeion-serving"
    assert pod["automountServiceAccountToken"] is True
    # The router has no need of a token.
    router = render.render(reviewing)[-2]["spec"]["template"]["spec"]
    assert router["automountServiceAccountToken"] is False


def test_seldon_backend_puts_the_largest_share_first_whatever_the_declared_order() -> None:
    # Seldon's status.address is the first predictor's Service, the only way in without
    # Istio: a version declared first at 0% (a rollback) must not be the one it names.
    (sdep,) = render.render(_endpoint("seldon", {"1.1": 0, "1.0": 100}, shadow="2.0"))
    predictors = sdep["spec"]["predictors"]
    assert [(p["name"], p["traffic"], p.get("shadow")) for p in predictors] == [
        ("v1-0", 100, None), ("v1-1", 0, None), ("v2-0", 0, True),
    ]  # fmt: skip


def test_a_server_reads_the_fields_given_in_the_order_the_operator_always_wrote_them() -> None:
    # The compact JSON is part of the pod template: another order, or a default written
    # out, would restart every model server on an operator upgrade.
    config = server_config(
        "1.0", namespace="ns", access="off", storage_uri=None, tracking_uri="http://t",
        features=[{"ref": "rider.age", "column": "rider__age", "type": "int64"}],
        manifests=[{"metadata": {"name": "m"}, "spec": {"b": 1, "a": 2}}],
        offline_store="duckdb:///o", defaults={"rider.age": None}, skew_sample_rate=0,
        request_log="/r.jsonl",
        labels={"source": {"file": {"path": "l.csv"}}, "horizon_seconds": 60, "data_root": "/"},
    )  # fmt: skip
    endpoint = replace(_endpoint("lykeion", {"1.0": 100}), servers=(
        VersionServer("1.0", "forward-default-1-0", config),
    ))  # fmt: skip
    env = render.render(endpoint)[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["value"] == (
        '{"name":"forward-default","namespace":"ns","access":"off","version":"1.0",'
        '"model_uri":"models:/forward-default/1.0","storage_uri":null,"tracking_uri":"http://t",'
        '"features":[{"ref":"rider.age","column":"rider__age","type":"int64"}],'
        '"manifests":[{"metadata":{"name":"m"},"spec":{"b":1,"a":2}}],'
        '"online_store":"sqlite:///data/online.db","offline_store":"duckdb:///o",'
        '"defaults":{"rider.age":null},"skew_sample_rate":0.0,"request_log":"/r.jsonl",'
        '"labels":{"source":{"file":{"path":"l.csv"}},"horizon_seconds":60.0,"data_root":"/"}}'
    )
