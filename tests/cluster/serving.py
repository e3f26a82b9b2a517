"""Seldon Core's and KServe's own controllers on the session's one-node cluster, and what
the tests through them share: the example trained in the cluster, the `lykeion` backend's
predictions as the reference, the clients nobody here wrote.

Imported by conftest.py (session fixtures `kserve`, `seldon`, `trained_example`,
`reference_predictions`, `clients_python`)."""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from lykeion.cluster import BuiltImage, NodeCluster
from lykeion.kube import api_client
from lykeion.serving_controllers import (
    ServingController,
    controller_binaries,
    kserve_controller,
    seldon_controller,
)
from tests.cluster.conftest import NAMESPACE, RELEASE, ROOT, WORKLOAD_NAMESPACE
from tests.cluster.pods import GIT_DAEMON
from tests.support import Cluster, load

EXAMPLE = ROOT / "examples" / "forward"
NS = WORKLOAD_NAMESPACE
KEYS = ["r42", "r7", "r150"]
TRACKING_URI = f"http://{RELEASE}-mlflow.{NAMESPACE}.svc:5000"
"""The chart's MLflow server (mlflow.server.enabled), where the registered versions are."""
TIMINGS: dict[str, float] = {}


def record_timing(cluster: NodeCluster, what: str, seconds: float) -> None:
    """Add a figure to the session's timings.json (the README's numbers)."""
    TIMINGS[what] = round(seconds, 1)
    path = cluster.workdir / "timings.json"
    figures = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**figures, **TIMINGS}, indent=2))


def _started(controller: ServingController, cluster: NodeCluster) -> ServingController:
    begin = time.monotonic()
    controller.start()
    record_timing(cluster, f"{controller.name}: start to admitting", time.monotonic() - begin)
    return controller


@pytest.fixture(scope="session")
def kserve(
    installed: NodeCluster, cluster_images: dict[str, BuiltImage]
) -> Iterator[ServingController]:
    """KServe's manager (RawDeployment) with its webhooks, CRDs, config and runtimes."""
    binaries = controller_binaries()
    controller = kserve_controller(
        installed, binaries.kserve, cluster_images["serving"].image, TRACKING_URI
    )
    yield _started(controller, installed)
    assert controller.stop() == []


@pytest.fixture(scope="session")
def seldon(installed: NodeCluster) -> Iterator[ServingController]:
    """Seldon Core's v1 operator with its webhook, CRD, config and settings."""
    controller = seldon_controller(installed, controller_binaries().seldon)
    yield _started(controller, installed)
    assert controller.stop() == []


@pytest.fixture(scope="session")
def lykeion_api(installed: NodeCluster) -> Cluster:
    return Cluster(api_client(str(installed.kubeconfig)))


def diagnose(cluster: NodeCluster, *controllers: ServingController) -> str:
    """Pods, the Lykeion operator's log and the controllers' logs, for a failure message."""
    pods = cluster.run_kubectl("get", "pods,svc,deploy", "-n", NS, "-o", "wide", check=False)
    events = cluster.run_kubectl(
        "get", "events", "-n", NS, "--sort-by=.lastTimestamp", check=False
    ).stdout[-3000:]
    logs = cluster.run_kubectl(
        "logs", "-n", NAMESPACE, f"deployment/{RELEASE}", "--tail=40", check=False
    ).stdout
    tails = "\n".join(f"--- {c.name}:\n{c.log_tail(3000)}" for c in controllers)
    return f"{pods.stdout}\n{events}\n{logs}\n{tails}"


def wait_condition(
    api: Cluster, cluster: NodeCluster, kind: str, name: str, type_: str, timeout: float,
    *controllers: ServingController, generation: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """The condition once True for `generation` or a later one, or fail after `timeout`
    seconds with what the cluster says."""
    deadline = time.monotonic() + timeout
    condition: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        condition = api.condition(kind, NS, name, type_)
        if (
            condition
            and condition["status"] == "True"
            and int(condition.get("observedGeneration") or 0) >= generation
        ):
            return condition
        time.sleep(1)
    status = json.dumps((api.get(kind, NS, name) or {}).get("status"))
    raise AssertionError(
        f"{kind} {name} {type_}: {condition}\n{status}\n{diagnose(cluster, *controllers)}"
    )


def _git_source(cluster: NodeCluster, image: str) -> str:
    """The example's MLflow project served by `git daemon` in the cluster (as
    test_example.py does): its pinned URL."""
    repos, work = cluster.workdir / "git-repos", cluster.workdir / "git-work"
    env = {"GIT_AUTHOR_NAME": "ds", "GIT_AUTHOR_EMAIL": "ds@example.com",
           "GIT_COMMITTER_NAME": "ds", "GIT_COMMITTER_EMAIL": "ds@example.com",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    if not (repos / "forward.git").exists():
        import os
        import shutil

        shutil.copytree(EXAMPLE / "mlproject", work / "mlproject")
        for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "f"]):
            subprocess.run(["git", *args], cwd=work, env=env, check=True)
        repos.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repos / "forward.git")],
                       check=True)  # fmt: skip
        for path in [repos, *repos.rglob("*")]:
            os.chown(path, 1000, 1000)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    labels = {"app.kubernetes.io/name": "git"}
    container = {
        "name": "git", "image": image, "imagePullPolicy": "Never",
        "command": [*GIT_DAEMON, "/srv/git"],
        "ports": [{"name": "git", "containerPort": 9418}],
        "readinessProbe": {"tcpSocket": {"port": 9418}, "periodSeconds": 2},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsUser": 1000,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "repos", "mountPath": "/srv/git", "readOnly": True}],
    }  # fmt: skip
    cluster.apply([
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "git", "namespace": NS, "labels": labels},
         "spec": {"selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "automountServiceAccountToken": False, "containers": [container],
                      "volumes": [{"name": "repos", "hostPath": {"path": str(repos),
                                                                  "type": "Directory"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "git", "namespace": NS},
         "spec": {"selector": labels, "ports": [{"name": "git", "port": 9418}]}},
    ])  # fmt: skip
    cluster.run_kubectl("rollout", "status", "-n", NS, "deployment/git", "--timeout=120s")
    return f"git://git.{NS}.svc:9418/forward.git#mlproject@{sha}"


@pytest.fixture(scope="session")
def trained_example(
    installed: NodeCluster, cluster_images: dict[str, BuiltImage], lykeion_api: Cluster,
    data_dir: Path,
) -> str:  # fmt: skip
    """The example's features materialized and its Model 1.0 trained and evaluated in the
    cluster (reused when test_example.py made them in this session); its name."""
    model_name = "forward-default-1.0"
    begin = time.monotonic()
    if lykeion_api.get("Model", NS, model_name) is None:
        for path in ("family.yaml", "features.yaml"):
            installed.run_kubectl("apply", "--server-side", "-n", NS, "-f", str(EXAMPLE / path))
        model = copy.deepcopy(load(EXAMPLE / "model.yaml")[0])
        model["spec"]["source"]["url"] = _git_source(installed, cluster_images["workloads"].image)
        model["spec"]["training"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
        lykeion_api.create(model, NS)
    wait_condition(lykeion_api, installed, "Model", model_name, "Evaluated", 900)
    record_timing(installed, "example pipeline + training (when not already done)",
                  time.monotonic() - begin)  # fmt: skip
    return model_name


def caller_token(cluster: NodeCluster, prefix: str = "") -> str:
    """A token of ServiceAccount `<prefix>caller`, allowed (Role `<prefix>predict`, bound
    by `<prefix>caller-predict`) to predict with the namespace's Lykeion Deployments."""
    account, role = f"{prefix}caller", f"{prefix}predict"
    cluster.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": account, "namespace": NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": role, "namespace": NS},
         "rules": [{"apiGroups": ["lykeion.io"], "resources": ["deployments/predict"],
                    "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"{account}-predict", "namespace": NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NS}]},
    ])  # fmt: skip
    return cluster.run_kubectl("create", "token", account, "-n", NS).stdout.strip()


def service_url(cluster: NodeCluster, name: str) -> str:
    """http://<ClusterIP>:<port> of Service `name` (its port named `http`, else its first),
    reached from the node through kube-proxy."""
    service = json.loads(cluster.run_kubectl("get", "service", "-n", NS, name, "-o", "json").stdout)
    ports = service["spec"]["ports"]
    port = next((p for p in ports if p.get("name") == "http"), ports[0])["port"]
    return f"http://{service['spec']['clusterIP']}:{port}"


@pytest.fixture(scope="session")
def reference_predictions(
    installed: NodeCluster, lykeion_api: Cluster, trained_example: str
) -> list[list[float]]:
    """The `lykeion` backend's predictions for KEYS: the example's Deployment through its
    router's Service."""
    installed.run_kubectl(
        "apply", "--server-side", "-n", NS, "-f", str(EXAMPLE / "deployment.yaml")
    )
    wait_condition(lykeion_api, installed, "Deployment", DEPLOYMENT, "Ready", 300)
    body = json.dumps({"keys": [{"rider_id": k} for k in KEYS]}).encode()
    request = urllib.request.Request(
        service_url(installed, DEPLOYMENT) + "/predict", body,
        {"content-type": "application/json", "authorization": f"Bearer {caller_token(installed)}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        predictions: list[list[float]] = json.loads(answer.read())["predictions"]
    assert len(predictions) == len(KEYS)
    return predictions


@pytest.fixture(scope="session")
def clients_python() -> str:
    """The serving-clients venv's python (seldon-core's SeldonClient, tritonclient);
    `$LYKEION_SERVING_CLIENTS_PYTHON` as .ci/run exports it, else the install script."""
    import os

    given = os.environ.get("LYKEION_SERVING_CLIENTS_PYTHON")
    if given:
        return given
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-serving-clients.sh")],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def call_clients(
    python: str, url: str, model: str, token: str, protocols: str, *extra: str
) -> dict[str, Any]:
    """tests/compat/serving_clients.py with `protocols` (and `extra` arguments) against
    `url`: its JSON answer."""
    done = subprocess.run(
        [python, str(ROOT / "tests" / "compat" / "serving_clients.py"), "--url", url,
         "--model", model, "--key-name", "rider_id", "--keys", ",".join(KEYS),
         "--protocols", protocols, "--bearer-token", token, *extra],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def flat(rows: Any) -> list[float]:
    """Nested lists of numbers as one flat list of floats."""
    if isinstance(rows, list):
        return [x for row in rows for x in flat(row)]
    return [float(rows)]


DEPLOYMENT = "forward-default"
"""The example's Deployment (one per family and segment: its name is theirs)."""


def declare(
    cluster: NodeCluster, backend: str, versions: list[tuple[str, int]], shadow: str | None = None
) -> int:
    """The example's Deployment declared with `versions` ((version, percent) in order) and
    `shadow` on `backend` (server-side apply by one field manager, kubectl's, the same as
    test_example.py's: what a step leaves out, e.g. the shadow, goes); returns the
    generation to wait for."""
    body = copy.deepcopy(load(EXAMPLE / "deployment.yaml")[0])
    body["metadata"] = {"name": DEPLOYMENT, "namespace": NS}
    body["spec"]["backend"] = backend
    body["spec"]["versions"] = [{"version": v, "traffic": t} for v, t in versions]
    if shadow is not None:
        body["spec"]["shadow"] = shadow
    # Two cores for the whole node, shared with the lykeion backend's and the other
    # serving system's pods: a tenth of one per server.
    body["spec"]["resources"] = {"cpu": "100m", "memory": "1Gi"}
    # The field manager of `kubectl apply --server-side` (kubectl's default), as
    # test_example.py applies the example: one owner, so a version a step leaves out is
    # removed, not kept without its `traffic` by a second owner of the list entry.
    cluster.run_kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump(body)
    )
    got = cluster.run_kubectl(
        "get", "deployments.lykeion.io", "-n", NS, DEPLOYMENT,
        "-o", "jsonpath={.metadata.generation}",
    )  # fmt: skip
    return int(got.stdout)


def serve_with(cluster: NodeCluster, backend: str) -> int:
    """The example's Deployment (version 1.0, all traffic) moved onto `backend` (`declare`);
    returns the generation to wait for. Moving retires the earlier backend's objects (the
    operator deletes what it rendered for it); the reference predictions were taken
    before, once per session."""
    return declare(cluster, backend, [("1.0", 100)])


def serve_ready(
    cluster: NodeCluster, api: Cluster, backend: str, controller: ServingController
) -> tuple[dict[str, Any], float]:
    """The example's Deployment moved onto `backend` (`serve_with`) and its Ready condition
    once True for that generation (7 minutes at most; a failure shows `controller`'s log),
    with the move's start (`time.monotonic()`); records `<backend>: Deployment apply to
    Ready`."""
    begin = time.monotonic()
    generation = serve_with(cluster, backend)
    ready = wait_condition(
        api, cluster, "Deployment", DEPLOYMENT, "Ready", 420, controller, generation=generation
    )
    record_timing(cluster, f"{backend}: Deployment apply to Ready", time.monotonic() - begin)
    return ready, begin


def served_object(cluster: NodeCluster, resource: str, name: str) -> dict[str, Any]:
    """The serving system's object (`inferenceservice`, `seldondeployment`) `name` in NS,
    managed fields included."""
    done = cluster.run_kubectl(
        "get", resource, "-n", NS, name, "-o", "json", "--show-managed-fields"
    )
    return dict(json.loads(done.stdout))


def wait_isvc_ready(
    cluster: NodeCluster, timeout: float, kserve: ServingController
) -> dict[str, Any]:
    """The example's InferenceService once KServe's own conditions are all True (its
    components' and its Ready), or fail after `timeout` seconds with what the cluster says."""
    deadline = time.monotonic() + timeout
    conditions: dict[str, str] = {}
    while time.monotonic() < deadline:
        isvc = served_object(cluster, "inferenceservice", DEPLOYMENT)
        status = isvc.get("status") or {}
        conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
        if conditions and all(v == "True" for v in conditions.values()):
            return isvc
        time.sleep(2)
    raise AssertionError(
        f"InferenceService {DEPLOYMENT}: {conditions}\n{diagnose(cluster, kserve)}"
    )


def status_managers(obj: dict[str, Any]) -> set[str]:
    """The field managers that wrote `obj`'s status subresource."""
    return {
        m["manager"] for m in obj["metadata"]["managedFields"] if m.get("subresource") == "status"
    }


def status_service_url(cluster: NodeCluster, obj: dict[str, Any]) -> str:
    """`service_url` of the Service a serving object names in its status.address.url."""
    service = urlsplit(obj["status"]["address"]["url"]).hostname or ""
    return service_url(cluster, service.split(".")[0])


def timed_client(
    cluster: NodeCluster, what: str, python: str, url: str, token: str, protocol: str,
    *extra: str,
) -> dict[str, Any]:  # fmt: skip
    """`call_clients` with the one `protocol` for DEPLOYMENT: its answer; records how long
    it took as `what`."""
    begin = time.monotonic()
    answers = call_clients(python, url, DEPLOYMENT, token, protocol, *extra)
    record_timing(cluster, what, time.monotonic() - begin)
    result: dict[str, Any] = answers[protocol]
    return result


# -- a canary's lifecycle through a serving system's controller ---------------------------

CANARY = "1.1"


@pytest.fixture(scope="session")
def trained_canary(installed: NodeCluster, lykeion_api: Cluster, trained_example: str) -> str:
    """Model 1.1 trained and evaluated in the cluster: the example's Model 1.0 again (same
    pinned source, parameters and data), so either version's predictions equal the
    reference and a step's predictions hold whichever version the Service reaches; which
    version a serving system runs is read from its object and pods. Its name."""
    name = f"{DEPLOYMENT}-{CANARY}"
    begin = time.monotonic()
    if lykeion_api.get("Model", NS, name) is None:
        first = lykeion_api.get("Model", NS, trained_example)
        assert first is not None
        spec = {**copy.deepcopy(first["spec"]), "version": CANARY}
        lykeion_api.create(
            {"apiVersion": first["apiVersion"], "kind": "Model",
             "metadata": {"name": name, "namespace": NS}, "spec": spec},
            NS,
        )  # fmt: skip
    wait_condition(lykeion_api, installed, "Model", name, "Evaluated", 600)
    record_timing(installed, f"Model {CANARY} training (when not already done)",
                  time.monotonic() - begin)  # fmt: skip
    return name


HOLD_TAINT = "lykeion.io/test-hold=canary:NoSchedule"
"""Keeps new pods off the node (running ones stay): a version's server that cannot start."""


@contextlib.contextmanager
def unschedulable(cluster: NodeCluster) -> Iterator[None]:
    """While inside, no new pod is scheduled onto the session's one node (a `NoSchedule`
    taint; pods already running go on serving); removed on the way out, whatever happens,
    and the scheduler then places the pending pods."""
    cluster.run_kubectl("taint", "nodes", cluster.node_name, HOLD_TAINT)
    try:
        yield
    finally:
        cluster.run_kubectl("taint", "nodes", cluster.node_name, f"{HOLD_TAINT}-", check=False)


def condition_of(body: dict[str, Any], type_: str) -> dict[str, Any]:
    """Condition `type_` of a Lykeion object's status ({} when absent)."""
    found = (body.get("status") or {}).get("conditions") or []
    return next((dict(c) for c in found if c["type"] == type_), {})


def traffic_of(body: dict[str, Any]) -> dict[str, int]:
    """The Deployment's traffic in effect (`status.traffic`): version -> percent."""
    return {t["version"]: int(t["traffic"]) for t in (body.get("status") or {}).get("traffic", [])}


def wait_deployment(
    api: Cluster, cluster: NodeCluster, generation: int, what: str,
    done: Callable[[dict[str, Any]], bool], timeout: float, *controllers: ServingController,
) -> dict[str, Any]:  # fmt: skip
    """The example's Deployment once its status is of `generation` (every condition's
    observedGeneration) and `done(body)` holds; fails after `timeout` seconds saying
    `what` was awaited, with the status and what the cluster says."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get("Deployment", NS, DEPLOYMENT) or {}
        conditions = (body.get("status") or {}).get("conditions") or []
        current = conditions and all(
            int(c.get("observedGeneration") or 0) >= generation for c in conditions
        )
        if current and done(body):
            return body
        time.sleep(1)
    raise AssertionError(
        f"Deployment {DEPLOYMENT} (generation {generation}) never {what}:\n"
        f"{json.dumps(body.get('status'), indent=1)}\n{diagnose(cluster, *controllers)}"
    )


def admitted(body: dict[str, Any]) -> None:
    """Nothing Lykeion rendered for the Deployment's current spec was refused: no
    `ServingRejected` (the reason a webhook's or a schema's refusal, or a split Lykeion
    itself refuses to render, is reported with)."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        assert condition.get("reason") != "ServingRejected", condition


def _post(url: str, token: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, json.dumps(body).encode(),
        {"content-type": "application/json", "authorization": f"Bearer {token}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def seldon_body(keys: list[str]) -> dict[str, Any]:
    """A Seldon v1 protocol request of `keys` (one row per key, as SeldonClient sends)."""
    return {"data": {"names": ["rider_id"], "ndarray": [[k] for k in keys]}}


def v2_body(keys: list[str]) -> dict[str, Any]:
    """A V2 (Open Inference Protocol) request of `keys` (one BYTES input)."""
    return {"inputs": [{"name": "rider_id", "shape": [len(keys)], "datatype": "BYTES",
                        "data": keys}]}  # fmt: skip


SELDON_PATH = f"/seldon/{NS}/{DEPLOYMENT}/api/v1.0/predictions"
"""Seldon's gateway path of the Deployment (SeldonClient's `istio` gateway's)."""
V2_PATH = f"/v2/models/{DEPLOYMENT}/infer"


def seldon_predict(url: str, token: str) -> tuple[str, list[float]]:
    """KEYS through a Seldon Service at `url` (its v1 protocol): the version that answered
    (`meta.tags`) and the predictions, flat."""
    answer = _post(url + SELDON_PATH, token, seldon_body(KEYS))
    return str(answer["meta"]["tags"]["lykeion.version"]), flat(answer["data"]["ndarray"])


def v2_predict(url: str, token: str) -> list[float]:
    """KEYS through a V2 endpoint at `url` (KServe's transformer Service): the predictions,
    flat."""
    answer = _post(url + V2_PATH, token, v2_body(KEYS))
    (output,) = answer["outputs"]
    return flat(output["data"])


def gone_with_children(
    cluster: NodeCluster, resource: str, selector: str, timeout: float,
    *controllers: ServingController,
) -> None:  # fmt: skip
    """Delete the example's Deployment and wait until the serving system's object
    (`resource`, named like it) and the Deployments, ReplicaSets and Services its
    controller made (`selector`) are gone, and their pods terminating or gone: owner
    references alone remove them (nothing here deletes them)."""
    cluster.run_kubectl("delete", "deployments.lykeion.io", "-n", NS, DEPLOYMENT,
                        "--wait=true", "--timeout=120s")  # fmt: skip
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while time.monotonic() < deadline:
        objects = cluster.run_kubectl(
            "get", f"{resource},deployments,replicasets,services", "-n", NS,
            "-l", selector, "-o", "name",
        ).stdout.split()  # fmt: skip
        own = cluster.run_kubectl(
            "get", resource, "-n", NS, "--field-selector", f"metadata.name={DEPLOYMENT}",
            "-o", "name",
        ).stdout.split()  # fmt: skip
        pods = json.loads(cluster.run_kubectl(
            "get", "pods", "-n", NS, "-l", selector, "-o", "json").stdout)["items"]  # fmt: skip
        running = [
            p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
        ]
        left = [*objects, *own, *running]
        if not left:
            return
        time.sleep(1)
    raise AssertionError(f"left after deletion: {left}\n{diagnose(cluster, *controllers)}")
