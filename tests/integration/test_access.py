"""Access by Kubernetes identity against the real kube-apiserver: ServiceAccount tokens
(TokenRequest), Roles and RoleBindings; the Feature API, the Catalog API and the model
server review them with TokenReview and SubjectAccessReview."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from starlette.exceptions import StarletteDeprecationWarning

from lykeion.access import AccessReviewer, ApiServer
from lykeion.feature_api import ServedViews, create_app
from lykeion.feature_api.catalog import Catalog
from lykeion.features.view import FeatureView
from lykeion.local.controlplane import ControlPlane
from lykeion.serving.app import ModelServer
from lykeion.serving.app import create_app as create_model_app
from lykeion.serving.config import ServerConfig, TrainedFeature
from lykeion.serving.enrich import Enricher
from lykeion.serving.model import Prediction
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.integration.test_feature_api import command_line
from tests.objects import manifest
from tests.support import Cluster

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ROLE_RULES = [
    {"apiGroups": ["lykeion.io"], "resources": ["featuremanifests", "featuremanifests/data"],
     "verbs": ["get"]},
    {"apiGroups": ["lykeion.io"], "resources": ["deployments/predict"], "verbs": ["create"]},
]  # fmt: skip


@dataclass(frozen=True)
class Tenants:
    """Namespace `a` (manifest `riders`, Deployment `forward-default`) and `b` (manifest
    `drivers`); tokens of: a reader bound in `a`, a stranger without a binding in `a`, a
    reader bound in `b` only, and the control plane's admin."""

    a: str
    b: str
    reader: str
    stranger: str
    other: str
    admin: str


def _token(core: client.CoreV1Api, namespace: str, name: str) -> str:
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    request = {"spec": {"expirationSeconds": 3600}}
    answer = core.create_namespaced_service_account_token(name, namespace, request)
    return str(answer.status.token)


def _grant(rbac: client.RbacAuthorizationV1Api, namespace: str, account: str) -> None:
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "lykeion-reader"},
                                            "rules": ROLE_RULES})  # fmt: skip
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"lykeion-reader-{account}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "lykeion-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def tenants(control_plane: ControlPlane, api: client.ApiClient) -> Tenants:
    cluster = Cluster(api)
    a, b = cluster.new_namespace("access-a"), cluster.new_namespace("access-b")
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    reader, stranger, other = (_token(core, a, "reader"), _token(core, a, "stranger"),
                               _token(core, b, "reader"))  # fmt: skip
    _grant(rbac, a, "reader")
    _grant(rbac, b, "reader")
    return Tenants(a, b, reader, stranger, other, control_plane.token)


def _manifest(namespace: str, name: str, entity: str) -> dict[str, Any]:
    body = manifest(name, entity, {"age": "int64"})
    body["metadata"]["namespace"] = namespace
    return body


@pytest.fixture(scope="module")
def bodies(tenants: Tenants) -> list[dict[str, Any]]:
    return [_manifest(tenants.a, "riders", "rider"), _manifest(tenants.b, "drivers", "driver")]


@pytest.fixture(scope="module")
def views(bodies: list[dict[str, Any]]) -> list[FeatureView]:
    return [FeatureView.from_body(body) for body in bodies]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, views: list[FeatureView]) -> Iterator[Any]:
    real = SqliteOnlineStore(tmp_path_factory.mktemp("access") / "online.db")
    written = datetime.now(UTC) - timedelta(minutes=1)
    real.write(views[0], [OnlineRow("r1", written, {"age": 30})])
    real.write(views[1], [OnlineRow("d1", written, {"age": 50})])
    yield real
    real.close()


def reviewer(control_plane: ControlPlane) -> AccessReviewer:
    """Reviews sent with the control plane's kubeconfig, as `lykectl up` runs them."""
    return AccessReviewer(ApiServer.from_kubeconfig(control_plane.kubeconfig), ttl=30.0)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def feature_api(
    control_plane: ControlPlane, store: Any, views: list[FeatureView], bodies: list[Any]
) -> Iterator[TestClient]:
    catalog = Catalog()
    catalog.rebuild(bodies, [], [])
    app = create_app(store, ServedViews(views), catalog, reviewer(control_plane))
    with TestClient(app) as http:
        yield http


def query(http: TestClient, text: str, token: str | None) -> tuple[int, Any]:
    answer = http.post("/graphql", json={"query": text}, headers=bearer(token) if token else {})
    return answer.status_code, answer.json()


RIDER = '{ rider(id: "r1") { age } }'
RIDER_GENERIC = '{ features(entity: "rider", keys: ["r1"], names: ["age"]) { key } }'
RIDER_BY_CORE = '{ rider(id: "r1") { ...F } } fragment F on Rider { age }'


def test_no_token_is_401_and_health_stays_open(feature_api: TestClient) -> None:
    status, body = query(feature_api, RIDER, None)
    assert status == 401, body
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "bearer token" in body["errors"][0]["message"]
    status, body = query(feature_api, RIDER, "not-a-token")
    assert status == 401 and "not accepted" in body["errors"][0]["message"], body
    assert feature_api.get("/healthz").status_code == 200
    assert feature_api.get("/readyz").status_code == 200
    assert feature_api.get("/catalog/search", params={"q": "age"}).status_code == 401


@pytest.mark.parametrize("text", [RIDER, RIDER_GENERIC, RIDER_BY_CORE],
                         ids=["plan", "generic", "graphql-core"])  # fmt: skip
def test_a_bound_service_account_reads_and_others_get_403(
    feature_api: TestClient, tenants: Tenants, text: str
) -> None:
    status, body = query(feature_api, text, tenants.reader)
    assert status == 200, body
    for token in (tenants.stranger, tenants.other):
        status, body = query(feature_api, text, token)
        assert status == 403, body
        [error] = body["errors"]
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert "may not get featuremanifests/data.lykeion.io 'riders'" in error["message"]
    status, body = query(feature_api, '{ driver(id: "d1") { age } }', tenants.other)
    assert (status, body) == (200, {"data": {"driver": {"age": "50"}}})
    status, body = query(feature_api, text, tenants.admin)  # the embedded platform's token
    assert status == 200, body


def test_the_catalog_lists_only_what_the_caller_may_read(
    feature_api: TestClient, tenants: Tenants
) -> None:
    def refs(token: str) -> set[tuple[str, str]]:
        answer = feature_api.get("/catalog/search", params={"q": "age"}, headers=bearer(token))
        assert answer.status_code == 200, answer.text
        return {(hit["namespace"], hit["ref"]) for hit in answer.json()["results"]}

    assert refs(tenants.admin) == {(tenants.a, "rider.age"), (tenants.b, "driver.age")}
    assert refs(tenants.reader) == {(tenants.a, "rider.age")}
    assert refs(tenants.other) == {(tenants.b, "driver.age")}
    assert refs(tenants.stranger) == set()
    hidden = feature_api.get("/catalog/features/rider.age", headers=bearer(tenants.other))
    assert hidden.status_code == 404
    shown = feature_api.get("/catalog/features/rider.age", headers=bearer(tenants.reader))
    assert shown.status_code == 200


class SumModel:
    """A model in plain Python: each row's prediction is the sum of its inputs."""

    uri = "memory://sum"
    output = None

    def __init__(self, features: list[TrainedFeature]) -> None:
        self.features = features

    def predict(self, columns: Mapping[str, list[Any]]) -> Prediction:
        rows = list(zip(*columns.values(), strict=True))
        return Prediction([float(sum(row)) for row in rows], "FP64", [len(rows)])

    def ready(self) -> str | None:
        return None


@pytest.fixture(scope="module")
def model_server(
    control_plane: ControlPlane, store: Any, views: list[FeatureView], tenants: Tenants
) -> Iterator[TestClient]:
    trained = [TrainedFeature(ref="rider.age", column="rider__age", type="int64")]
    config = ServerConfig(name="forward-default", version="1", model_uri="memory://sum",
                          online_store="sqlite://unused", namespace=tenants.a,
                          access="kubernetes")  # fmt: skip
    server = ModelServer(config, SumModel(trained), Enricher(trained, views[:1]), store)
    with TestClient(create_model_app(server, reviewer(control_plane))) as http:
        yield http


def test_predicting_needs_the_right_on_the_deployment(
    model_server: TestClient, tenants: Tenants
) -> None:
    plain = {"rider_id": "r1"}
    v2 = {"inputs": [{"name": "rider_id", "shape": [1], "datatype": "BYTES", "data": ["r1"]}]}
    seldon = {"jsonData": {"rider_id": ["r1"]}}
    calls = [("/predict", plain), ("/v2/models/forward-default/infer", v2),
             ("/api/v1.0/predictions", seldon)]  # fmt: skip
    for path, body in calls:
        answer = model_server.post(path, json=body)
        assert answer.status_code == 401, answer.text
        for token in (tenants.stranger, tenants.other):
            answer = model_server.post(path, json=body, headers=bearer(token))
            assert answer.status_code == 403, answer.text
            text = answer.text
            assert "may not create deployments/predict.lykeion.io 'forward-default'" in text
        for token in (tenants.reader, tenants.admin):
            answer = model_server.post(path, json=body, headers=bearer(token))
            assert answer.status_code == 200, answer.text
    # The protocol's own error objects.
    assert model_server.post("/predict", json=plain).json()["error"]
    assert model_server.post("/api/v1.0/predictions", json=seldon).json()["status"]["code"] == 401
    for open_path in ("/healthz", "/ready", "/v2/health/live", "/v2/health/ready", "/metrics"):
        assert model_server.get(open_path).status_code == 200, open_path
    assert model_server.get("/v2/models/forward-default").status_code == 401


def test_answers_are_cached_within_the_ttl(
    control_plane: ControlPlane, tenants: Tenants, store: Any, views: list[FeatureView]
) -> None:
    access = reviewer(control_plane)
    app = create_app(store, ServedViews(views), None, access)
    with TestClient(app) as http:
        for _ in range(5):
            assert query(http, RIDER, tenants.reader)[0] == 200
            assert query(http, RIDER, tenants.stranger)[0] == 403
            assert query(http, RIDER, "bad")[0] == 401
    # Three tokens reviewed once each, two SubjectAccessReviews: 5 of 25 checks.
    assert access.reviews == 5


def test_reviews_run_with_a_kubeconfig_of_client_certificates_too(tmp_path: Path) -> None:
    """A kubeconfig with inline (`-data`) material is written to files for httpx."""
    import base64

    config = tmp_path / "kubeconfig"
    pem = base64.b64encode(b"not a certificate").decode()
    config.write_text(
        "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1', "
        "insecure-skip-tls-verify: true}}]\n"
        f"users: [{{name: u, user: {{client-certificate-data: {pem}, client-key-data: {pem}}}}}]\n"
    )
    api = ApiServer.from_kubeconfig(config)
    assert api.verify is False and api.client_cert is not None
    assert Path(api.client_cert[0]).read_bytes() == b"not a certificate"


def test_lykectl_sends_its_kubeconfig_token_to_a_feature_api_process(
    control_plane: ControlPlane, tenants: Tenants, bodies: list[dict[str, Any]], tmp_path: Path
) -> None:
    """`python -m lykeion.feature_api --access kubernetes` as `lykectl up` runs it, and
    `lykectl features read` with the admin's kubeconfig, a stranger's, and none."""
    store = SqliteOnlineStore(tmp_path / "online.db")
    written = datetime.now(UTC) - timedelta(minutes=1)
    store.write(FeatureView.from_body(bodies[0]), [OnlineRow("r1", written, {"age": 30})])
    store.close()
    (tmp_path / "manifests.yaml").write_text(yaml.safe_dump_all(bodies))
    stranger = yaml.safe_load(control_plane.kubeconfig.read_text())
    stranger["users"][0]["user"]["token"] = tenants.stranger
    (tmp_path / "stranger").write_text(yaml.safe_dump(stranger))
    args = [
        "--online", f"sqlite://{tmp_path / 'online.db'}",
        "--manifest", str(tmp_path / "manifests.yaml"),
        "--access", "kubernetes", "--access-kubeconfig", str(control_plane.kubeconfig),
    ]  # fmt: skip

    def read(url: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig),
               "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # fmt: skip
        return subprocess.run(
            [sys.executable, "-c", "from lykectl.cli import main; main()",
             "features", "read", "rider", "--keys", "r1",
             "--features", "age", "--api-url", url, "-o", "json"],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip

    with command_line(args, tmp_path / "server.log") as url:
        admin = read(url, control_plane.kubeconfig)
        assert admin.returncode == 0, admin.stderr
        assert "30" in admin.stdout
        refused = read(url, tmp_path / "stranger")
        assert refused.returncode == 1
        assert "403" in refused.stderr and "featuremanifests/data" in refused.stderr
        anonymous = read(url, tmp_path / "none")
        assert anonymous.returncode == 1 and "401" in anonymous.stderr, anonymous.stderr
