"""The example end to end in pods, with the `kubernetes` executor and the chart's settings:
the FeatureManifest's pipeline as a Job (Beam's DirectRunner in the pod), the stores on the
data volume shared by the pipeline, training and server pods (a hostPath on the node), the
training as a Job pinning its source from a git daemon in the cluster and logging to the
chart's MLflow server, the model server and router as pods behind Services, and a
prediction through the router's Service equal to the embedded platform's for the same key.

A Job that cannot get a pod says why in the condition instead of a silent `Backfilling`."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import numpy.testing
import pytest

from lykeion.cluster import BuiltImage, NodeCluster
from lykeion.kube import api_client
from lykeion.serving.__main__ import build
from lykeion.serving.config import ServerConfig
from tests.cluster.conftest import DATA_MOUNT, ROOT, WORKLOAD_NAMESPACE
from tests.cluster.pods import GIT_DAEMON
from tests.cluster.serving import caller_token, service_url
from tests.support import Cluster, load

EXAMPLE = ROOT / "examples" / "forward"
NS = WORKLOAD_NAMESPACE
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def lykeion(installed: NodeCluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield Cluster(api_client(str(installed.kubeconfig)))
    timings = installed.workdir / "timings.json"
    figures = {**(json.loads(timings.read_text()) if timings.exists() else {}), **TIMINGS}
    timings.write_text(json.dumps(figures, indent=2))
    # Shown at the end of the run (the README's figures), also under -q.
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"cluster timings (s): {json.dumps(figures)}")


def _apply(cluster: NodeCluster, path: Path, namespace: str) -> None:
    cluster.run_kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))


def _diagnose(cluster: NodeCluster) -> str:
    pods = cluster.run_kubectl("get", "pods,jobs", "-A", "-o", "wide", check=False).stdout
    logs = cluster.run_kubectl(
        "logs", "-n", "lykeion-system", "deployment/lykeion", "--tail=40", check=False
    ).stdout
    return f"{pods}\n{logs}"


GOING = {
    "Materialized": {"Backfilling", "Pending", "NotRegistered"},
    "Trained": {"Training", "WaitingForReferences"},
}
"""Reasons of a False condition that is still on its way; any other fails at once."""


def _wait(
    lykeion: Cluster, cluster: NodeCluster, kind: str, name: str, type_: str, timeout: float
) -> dict[str, Any]:
    """The condition once True; fails at once when it turns False with a reason that is
    not on its way (a failed run or training), or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    condition: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        condition = lykeion.condition(kind, NS, name, type_)
        if condition and condition["status"] == "True":
            return condition
        going = GOING.get(type_)
        if condition and going is not None and condition["reason"] not in going:
            break
        time.sleep(1)
    body = lykeion.get(kind, NS, name) or {}
    status = json.dumps(body.get("status"))
    raise AssertionError(f"{kind} {name} {type_}: {condition}\n{status}\n{_diagnose(cluster)}")


def test_a_job_that_cannot_get_a_pod_says_why_and_what_to_do(
    installed: NodeCluster, lykeion: Cluster
) -> None:
    # A namespace the chart does not know: no workload ServiceAccount there.
    installed.run_kubectl("create", "namespace", "team-b")
    _apply(installed, EXAMPLE / "family.yaml", "team-b")
    _apply(installed, EXAMPLE / "features.yaml", "team-b")
    condition = lykeion.wait_condition(
        "FeatureManifest",
        "team-b",
        "rider-activity",
        "False",
        "PodNotCreated",
        type_="Materialized",
        timeout=90,
    )
    assert 'serviceaccount "lykeion-workload" not found' in condition["message"]
    assert "workload.extraNamespaces" in condition["message"]
    ready = lykeion.condition("FeatureManifest", "team-b", "rider-activity") or {}
    assert ready["status"] == "False"
    installed.run_kubectl("delete", "namespace", "team-b", "--wait=false")


def test_the_pipeline_job_materializes_the_example_on_the_shared_volume(
    installed: NodeCluster, lykeion: Cluster, data_dir: Path
) -> None:
    started = time.monotonic()
    _apply(installed, EXAMPLE / "family.yaml", NS)
    _apply(installed, EXAMPLE / "features.yaml", NS)
    _wait(lykeion, installed, "FeatureManifest", "rider-activity", "Materialized", 420)
    TIMINGS["pipeline Job: apply to Materialized"] = round(time.monotonic() - started, 1)
    status = (lykeion.get("FeatureManifest", NS, "rider-activity") or {})["status"]
    run = status["runs"][-1]
    assert run["result"] == "Succeeded"
    assert run["rowsWritten"] > 10_000 and run["badRows"] == 0
    assert status["newestEventTime"] == "2026-04-30T23:44:06Z"
    # The Job's pod ran the pipeline and wrote the stores onto the node's volume.
    job = json.loads(
        installed.run_kubectl("get", "job", "-n", NS, run["name"], "-o", "json").stdout
    )
    assert job["status"]["succeeded"] == 1
    assert job["spec"]["template"]["spec"]["volumes"][-1]["hostPath"]["path"] == str(data_dir)
    assert (data_dir / "online.sqlite").stat().st_size > 0
    assert (data_dir / "offline.duckdb").stat().st_size > 0


@pytest.fixture(scope="module")
def git_source(
    installed: NodeCluster, cluster_images: dict[str, BuiltImage]
) -> Iterator[tuple[str, str, Path]]:
    """The example's MLflow project committed to a bare repository served by `git daemon`
    in a pod behind the Service `git`: (URL pinned to the commit, SHA, a work tree of it)."""
    repos = installed.workdir / "git-repos"
    work = installed.workdir / "git-work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(EXAMPLE / "mlproject", work / "mlproject")
    env = {**os.environ, "GIT_AUTHOR_NAME": "ds", "GIT_AUTHOR_EMAIL": "ds@example.com",
           "GIT_COMMITTER_NAME": "ds", "GIT_COMMITTER_EMAIL": "ds@example.com"}  # fmt: skip
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "forward"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    bare = repos / "forward.git"
    shutil.rmtree(repos, ignore_errors=True)
    repos.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    for path in [repos, *repos.rglob("*")]:
        os.chown(path, 1000, 1000)
    labels = {"app.kubernetes.io/name": "git"}
    pod_spec = {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000},
        "containers": [
            {
                "name": "git",
                "image": cluster_images["workloads"].image,
                "imagePullPolicy": "Never",
                "command": [*GIT_DAEMON, "/srv/git"],
                "ports": [{"name": "git", "containerPort": 9418}],
                "readinessProbe": {"tcpSocket": {"port": 9418}, "periodSeconds": 2},
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "repos", "mountPath": "/srv/git", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "repos", "hostPath": {"path": str(repos), "type": "Directory"}}],
    }
    installed.apply(
        [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "git", "namespace": NS, "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "git", "namespace": NS},
                "spec": {"selector": labels, "ports": [{"name": "git", "port": 9418}]},
            },
        ]
    )
    installed.run_kubectl("rollout", "status", "-n", NS, "deployment/git", "--timeout=120s")
    # The host's runs (the embedded platform) clone the same commit from the work tree: git
    # refuses a repository another user owns (safe.directory), and the bare one is uid 1000's.
    yield f"git://git.{NS}.svc:9418/forward.git#mlproject@{sha}", sha, work


def test_the_training_job_pins_the_git_source_logs_to_mlflow_in_the_cluster_and_passes_the_gate(
    installed: NodeCluster, lykeion: Cluster, data_dir: Path, git_source: tuple[str, str, Path]
) -> None:
    url, sha, _ = git_source
    _wait(lykeion, installed, "FeatureManifest", "rider-activity", "Materialized", 420)
    model = copy.deepcopy(load(EXAMPLE / "model.yaml")[0])
    model["spec"]["source"]["url"] = url
    # Two cores for the whole node: half of one for the training.
    model["spec"]["training"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
    started = time.monotonic()
    lykeion.create(model, NS)
    _wait(lykeion, installed, "Model", "forward-default-1.0", "Trained", 600)
    TIMINGS["training Job: create to Trained"] = round(time.monotonic() - started, 1)
    evaluated = _wait(lykeion, installed, "Model", "forward-default-1.0", "Evaluated", 60)
    assert evaluated["reason"] == "GatePassed"
    status = (lykeion.get("Model", NS, "forward-default-1.0") or {})["status"]
    assert status["sourceSha"] == sha
    assert status["lastTraining"]["gatePassed"] is True
    assert status["trainingSet"]["rows"] > 100
    # Logged to and registered in the chart's MLflow server: its database on the volume.
    with sqlite3.connect(data_dir / "mlflow.db") as db:
        versions = db.execute(
            "SELECT name, version, run_id FROM model_versions WHERE name = ?",
            (status["registeredModel"],),
        ).fetchall()
        runs = db.execute(
            "SELECT status FROM runs WHERE run_uuid = ?", (status["mlflowRunId"],)
        ).fetchall()
    assert (status["registeredModel"], int(status["registeredVersion"])) in {
        (n, int(v)) for n, v, _ in versions
    }
    assert runs == [("FINISHED",)]
    # The run's artifacts are on the shared volume, where the model servers read them.
    assert any((data_dir / "mlartifacts").rglob("MLmodel"))


def _predict(url: str, token: str, keys: list[str]) -> dict[str, Any]:
    body = json.dumps({"keys": [{"rider_id": k} for k in keys]}).encode()
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url + "/predict", body, headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.headers["x-lykeion-version"] == "1.0"
        result: dict[str, Any] = json.loads(answer.read())
        return result


def _embedded_prediction(
    tmp: Path, manifest: dict[str, Any], model: dict[str, Any], config: dict[str, Any],
    repository: Path, sha: str, keys: list[str],
) -> list[Any]:  # fmt: skip
    """What the embedded platform gives for `keys`: the same processes the local executor
    runs (the pipeline with the in-process engine, held equal to Beam's by the pipeline
    tests; the training from the same commit), on this host's own stores and MLflow, then
    the model server's code over them."""
    python, root = sys.executable, str(ROOT)
    offline, online = f"duckdb://{tmp / 'offline.duckdb'}", f"sqlite://{tmp / 'online.sqlite'}"
    subprocess.run(
        [python, "-m", "lykeion.features.run",
         "--manifest-json", json.dumps({k: v for k, v in manifest.items() if k != "status"}),
         "--offline", offline, "--online", online, "--engine", "duckdb", "--data-root", root,
         "--generation", str(manifest["status"]["materializedGeneration"]),
         "--end", manifest["status"]["runs"][-1]["end"], "--result", str(tmp / "pipeline.json")],
        check=True, capture_output=True,
    )  # fmt: skip
    body = {"metadata": model["metadata"], "spec": copy.deepcopy(model["spec"])}
    body["spec"]["source"]["url"] = f"file://{repository}#mlproject@{sha}"
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    done = subprocess.run(
        [python, "-m", "lykeion.training.run",
         "--model-json", json.dumps(body), "--manifests-json", json.dumps([manifest]),
         "--offline", offline, "--tracking-uri", tracking, "--cache-dir", str(tmp / "sources"),
         "--artifact-root", str(tmp / "mlartifacts"), "--data-root", root,
         "--result", str(tmp / "training.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    trained = json.loads((tmp / "training.json").read_text())
    assert trained.get("succeeded"), (trained, done.stderr[-2000:])
    assert trained["source_revision"] == sha
    local = ServerConfig.model_validate(
        {**config, "access": "off", "online_store": online, "tracking_uri": tracking,
         "model_uri": trained["model_uri"], "storage_uri": None}
    )  # fmt: skip
    server = build(local)
    prediction, _ = server.predict([{"rider_id": k} for k in keys])
    return list(prediction.values)


def test_the_model_server_and_router_serve_behind_services_as_the_embedded_platform_does(
    installed: NodeCluster,
    lykeion: Cluster,
    git_source: tuple[str, str, Path],
    tmp_path: Path,
) -> None:
    _, sha, repository = git_source
    _wait(lykeion, installed, "Model", "forward-default-1.0", "Evaluated", 600)
    started = time.monotonic()
    _apply(installed, EXAMPLE / "deployment.yaml", NS)
    _wait(lykeion, installed, "Deployment", "forward-default", "Ready", 300)
    TIMINGS["server and router pods: apply to Ready"] = round(time.monotonic() - started, 1)
    status = (lykeion.get("Deployment", NS, "forward-default") or {})["status"]
    assert status["endpoint"] == f"http://forward-default.{NS}.svc"
    pods = json.loads(
        installed.run_kubectl(
            "get", "pods", "-n", NS, "-l", "lykeion.io/deployment=forward-default", "-o", "json"
        ).stdout
    )["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)

    # Through the router's Service: its ClusterIP, reached from the node (kube-proxy).
    token = caller_token(installed)
    keys = ["r42", "r7", "r150"]
    url = service_url(installed, "forward-default")
    started = time.monotonic()
    served = _predict(url, token, keys)
    TIMINGS["first prediction through the router's Service"] = round(time.monotonic() - started, 2)
    assert len(served["predictions"]) == len(keys)
    # Without a token: the servers review callers (access on, the chart's default).
    with pytest.raises(urllib.error.HTTPError) as refused:
        _predict(url, "", keys)
    assert refused.value.code == 401, refused.value.read()

    server = next(p for p in pods if "router" not in p["metadata"]["name"])
    env = {e["name"]: e["value"] for e in server["spec"]["containers"][0]["env"]}
    config = json.loads(env["LYKEION_SERVER_CONFIG"])
    assert config["online_store"] == f"sqlite://{DATA_MOUNT}/online.sqlite"
    manifest = lykeion.get("FeatureManifest", NS, "rider-activity") or {}
    model = lykeion.get("Model", NS, "forward-default-1.0") or {}
    started = time.monotonic()
    embedded = _embedded_prediction(tmp_path, manifest, model, config, repository, sha, keys)
    TIMINGS["embedded pipeline + training + prediction on the host"] = round(
        time.monotonic() - started, 1
    )
    numpy.testing.assert_allclose(
        numpy.array(served["predictions"], dtype=float),
        numpy.array(embedded, dtype=float),
        rtol=1e-9,
    )


def _stored_tables(data_dir: Path) -> set[str]:
    """The tables in the embedded stores on the data volume (offline DuckDB, online SQLite)."""
    import duckdb

    names: set[str] = set()
    offline = duckdb.connect(str(data_dir / "offline.duckdb"), read_only=True)
    try:
        names |= {f"offline:{row[0]}" for row in offline.execute("SHOW TABLES").fetchall()}
    finally:
        offline.close()
    online = sqlite3.connect(f"file:{data_dir / 'online.sqlite'}?mode=ro", uri=True)
    try:
        rows = online.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        names |= {f"online:{row[0]}" for row in rows}
    finally:
        online.close()
    return names


def test_deleting_a_manifest_drops_its_tables_in_a_job_and_lets_it_go(
    installed: NodeCluster, lykeion: Cluster, data_dir: Path
) -> None:
    from lykeion.features.view import FeatureView
    from tests.support import wait_for

    name = "courier-activity"
    body = copy.deepcopy(load(EXAMPLE / "features.yaml")[0])
    body["metadata"]["name"] = name
    body["spec"]["entity"]["name"] = "courier"  # features of its own: no conflict
    body["spec"].pop("schedule", None)
    lykeion.create(body, NS)
    _wait(lykeion, installed, "FeatureManifest", name, "Materialized", 420)
    manifest = lykeion.get("FeatureManifest", NS, name) or {}
    table = FeatureView.from_body(manifest, manifest["status"]["materializedGeneration"]).table
    assert {"offline", "online"} <= {
        t.split(":")[0] for t in _stored_tables(data_dir) if table in t
    }

    started = time.monotonic()
    lykeion.delete("FeatureManifest", NS, name)
    wait_for(lambda: lykeion.get("FeatureManifest", NS, name) is None, 300, f"{name} gone")
    TIMINGS["drop Job: delete to gone"] = round(time.monotonic() - started, 1)
    assert not [t for t in _stored_tables(data_dir) if table in t]
    # The drop ran in a Job of the workloads image (unowned: it outlives the manifest).
    job = json.loads(
        installed.run_kubectl("get", "job", "-n", NS, f"{name}-drop-a1", "-o", "json").stdout
    )
    assert job["status"]["succeeded"] == 1
    assert job["metadata"]["labels"]["lykeion.io/owner-uid"] == manifest["metadata"]["uid"]
