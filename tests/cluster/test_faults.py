"""Faults in the one-node cluster, with the chart installed and the operator in its pod:

- the operator pod killed mid-training: its Deployment restarts it, the new operator finds
  the training Job by its name and the Model's UID, exactly one Job exists and the training
  completes;
- a training pod killed at its `spec.training.resources` memory limit: `Trained=False`
  with reason `OOMKilled`, the limit and the end of the pod's log in the message;
- a model server that crashes at start (its model's files are gone from the store): the
  previous version keeps all traffic (`TrafficInEffect=False`, `RolloutHeld`) and the
  crash is said (`Available=False`, `VersionsCrashed`);
- `replicas: 2`: two ready server pods behind the version's Service;
- a docker_env project: its entry point runs in the image it names (the serving image, which
  lacks Beam) as the init container of the training's second Job, and the
  Lykeion image evaluates and registers.

Small objects, so the file takes a few minutes: the example's features (materialized once
per session), the example's project at half a core, and a project that allocates until the
kernel kills it. The sources are a git repository on the data volume (`file://` URL pinned
to its commit), owned by the pods' user.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from lykectl.scaffold import mlproject
from lykeion.cluster import BuiltImage, NodeCluster
from lykeion.kube import api_client
from tests.cluster.conftest import DATA_MOUNT, NAMESPACE, RELEASE, ROOT, WORKLOAD_NAMESPACE
from tests.cluster.serving import caller_token, service_url
from tests.support import Cluster, load, wait_for

EXAMPLE = ROOT / "examples" / "forward"
NS = WORKLOAD_NAMESPACE
SEGMENT = "faults"
DEPLOYMENT = f"forward-{SEGMENT}"
OOM_LIMIT = "1Gi"
OOM_PROJECT = {
    "MLproject": mlproject("allocate", "python allocate.py", python_env=None),
    "allocate.py": """import sys

# Touched memory (bytes(n) would be zero pages the kernel does not count), 64 MiB at a time.
held = []
for step in range(64):
    held.append(b"\\x01" * (64 << 20))
    print(f"allocated {64 * (step + 1)} MiB", flush=True)
sys.exit("still alive after 4 GiB: the memory limit did not hold")
""",
}


IN_IMAGE_MLPROJECT = """name: in-image
docker_env:
  image: {image}
  environment: [["PROJECT_MODE", "in-image"]]
entry_points:
  main:
    parameters:
      train: path
      test: path
      target: string
      features: string
    command: "python train.py --train {{train}} --target {{target}}"
"""
IN_IMAGE_TRAIN = """import argparse
import importlib.util
import os

import mlflow
import pandas as pd


class Rate(mlflow.pyfunc.PythonModel):
    def __init__(self, rate):
        self.rate = rate

    def predict(self, context, model_input, params=None):
        return [self.rate] * len(model_input)


parser = argparse.ArgumentParser()
parser.add_argument("--train")
parser.add_argument("--target")
args = parser.parse_args()
train = pd.read_parquet(args.train)
with mlflow.start_run():  # the platform's run (MLFLOW_RUN_ID)
    mlflow.log_params({
        "beam_here": importlib.util.find_spec("apache_beam") is not None,
        "mode": os.environ["PROJECT_MODE"],
    })
    mlflow.pyfunc.log_model(name="model", python_model=Rate(float(train[args.target].mean())))
"""


@pytest.fixture(scope="module")
def lykeion(installed: NodeCluster) -> Iterator[Cluster]:
    yield Cluster(api_client(str(installed.kubeconfig)))
    # The node has two cores: the servers and Jobs of these faults would hold the CPU the
    # session's later tests (Seldon's, KServe's) request. Their owners go; the garbage
    # collector removes the rest, waited for here.
    delete = ("delete", "-n", NS, "--ignore-not-found", "--wait=true", "--timeout=120s")
    installed.run_kubectl(*delete, "deployments.lykeion.io", DEPLOYMENT, check=False)
    models = [f"forward-{SEGMENT}-1.0", f"forward-{SEGMENT}-2.0", "forward-oom-1.0",
              "forward-image-1.0"]  # fmt: skip
    installed.run_kubectl(*delete, "models.lykeion.io", *models, check=False)

    def pods_gone() -> bool:
        got = installed.run_kubectl("get", "pods", "-n", NS, "-o", "json", check=False)
        names = [p["metadata"]["name"] for p in json.loads(got.stdout or "{}").get("items", [])]
        prefixes = (f"forward-{SEGMENT}-", "forward-oom-", "forward-image-")
        return not [n for n in names if n.startswith(prefixes)]

    wait_for(pods_gone, 180, "the fault tests' pods gone")


def _diagnose(cluster: NodeCluster) -> str:
    pods = cluster.run_kubectl("get", "pods,jobs", "-A", "-o", "wide", check=False).stdout
    logs = cluster.run_kubectl(
        "logs", "-n", NAMESPACE, f"deployment/{RELEASE}", "--tail=40", check=False
    ).stdout
    return f"{pods}\n{logs}"


def _settled(
    lykeion: Cluster, cluster: NodeCluster, kind: str, name: str, type_: str,
    going: set[str], timeout: float,
) -> dict[str, Any]:  # fmt: skip
    """The condition of the object's current generation once its reason is not one of
    `going` (still on its way)."""
    deadline = time.monotonic() + timeout
    condition: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        body = lykeion.get(kind, NS, name) or {}
        conditions = (body.get("status") or {}).get("conditions") or []
        condition = next((dict(c) for c in conditions if c["type"] == type_), None)
        if condition and condition.get("observedGeneration") != body["metadata"]["generation"]:
            condition = None  # what the operator said about an earlier spec
        if condition and condition["status"] == "True":
            return condition
        if condition and condition["reason"] not in going:
            return condition
        time.sleep(1)
    status = json.dumps((lykeion.get(kind, NS, name) or {}).get("status"))
    raise AssertionError(f"{kind} {name} {type_}: {condition}\n{status}\n{_diagnose(cluster)}")


def _true(
    lykeion: Cluster, cluster: NodeCluster, kind: str, name: str, type_: str, timeout: float
) -> dict[str, Any]:
    going = {"Backfilling", "Pending", "NotRegistered", "Training", "WaitingForReferences",
             "NotTrained", "VersionsStarting", "NoVersionServing"}  # fmt: skip
    condition = _settled(lykeion, cluster, kind, name, type_, going, timeout)
    if condition["status"] != "True":
        status = json.dumps((lykeion.get(kind, NS, name) or {}).get("status"))
        raise AssertionError(f"{kind} {name} {type_}: {condition}\n{status}\n{_diagnose(cluster)}")
    return condition


@pytest.fixture(scope="module")
def features(installed: NodeCluster, lykeion: Cluster) -> None:
    """The example's family and features in the workload namespace, materialized (applied
    again when the example's tests ran first: the same objects, nothing changes)."""
    for path in (EXAMPLE / "family.yaml", EXAMPLE / "features.yaml"):
        installed.run_kubectl("apply", "--server-side", "-n", NS, "-f", str(path))
    _true(lykeion, installed, "FeatureManifest", "rider-activity", "Materialized", 420)


@pytest.fixture(scope="module")
def source(data_dir: Path, cluster_images: dict[str, BuiltImage]) -> Iterator[str]:
    """A git repository on the data volume holding the example's project (`mlproject`), the
    allocating one (`allocate`) and one whose docker_env names the serving image
    (`in-image`); yields its URL in the pods without the `#dir@SHA`."""
    repository = data_dir / "fault-sources"
    shutil.rmtree(repository, ignore_errors=True)
    shutil.copytree(EXAMPLE / "mlproject", repository / "mlproject")
    (repository / "allocate").mkdir()
    for name, text in OOM_PROJECT.items():
        (repository / "allocate" / name).write_text(text)
    (repository / "in-image").mkdir()
    image = cluster_images["serving"].image
    (repository / "in-image" / "MLproject").write_text(IN_IMAGE_MLPROJECT.format(image=image))
    (repository / "in-image" / "train.py").write_text(IN_IMAGE_TRAIN)
    env = {**os.environ, "GIT_AUTHOR_NAME": "ds", "GIT_AUTHOR_EMAIL": "ds@example.com",
           "GIT_COMMITTER_NAME": "ds", "GIT_COMMITTER_EMAIL": "ds@example.com"}  # fmt: skip
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "faults"]):
        subprocess.run(["git", *args], cwd=repository, env=env, check=True)
    # The pods' user clones it: git refuses a repository another user owns.
    for path in [repository, *repository.rglob("*")]:
        os.chown(path, 1000, 1000, follow_symlinks=False)
    sha = subprocess.run(
        ["git", "-c", f"safe.directory={repository}", "rev-parse", "HEAD"],
        cwd=repository, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    yield f"file://{DATA_MOUNT}/fault-sources#{{}}@{sha}"


def _model(version: str, url: str, segment: str = SEGMENT, memory: str = "2Gi") -> dict[str, Any]:
    model = copy.deepcopy(load(EXAMPLE / "model.yaml")[0])
    model["metadata"]["name"] = f"forward-{segment}-{version}"
    model["spec"] |= {"segment": segment, "version": version}
    model["spec"]["source"]["url"] = url
    # Two cores for the whole node: half of one for a training.
    model["spec"]["training"]["resources"] = {"cpu": "500m", "memory": memory}
    return model


def _jobs(cluster: NodeCluster, model: dict[str, Any]) -> list[dict[str, Any]]:
    selector = f"lykeion.io/owner-uid={model['metadata']['uid']}"
    got = cluster.run_kubectl("get", "jobs", "-n", NS, "-l", selector, "-o", "json")
    items: list[dict[str, Any]] = json.loads(got.stdout)["items"]
    return items


def _operator_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    got = cluster.run_kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=operator", "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(got.stdout)["items"]
    return items


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_the_operator_killed_mid_training_comes_back_and_one_training_job_completes(
    installed: NodeCluster, lykeion: Cluster, features: None, source: str
) -> None:
    created = lykeion.create(_model("1.0", source.format("mlproject")), NS)
    name = created["metadata"]["name"]

    # The training Job's pod runs: kill the operator (no grace, as a crashed node would).
    def running() -> dict[str, Any] | None:
        jobs = _jobs(installed, created)
        return jobs[0] if jobs and (jobs[0].get("status") or {}).get("active") else None

    job = wait_for(running, 120, "the training Job's pod running")
    (before,) = _operator_pods(installed)
    installed.run_kubectl(
        "delete", "pod", "-n", NAMESPACE, before["metadata"]["name"],
        "--grace-period=0", "--force", "--wait=false",
    )  # fmt: skip
    killed = time.monotonic()

    def replaced() -> dict[str, Any] | None:
        pods = [
            p
            for p in _operator_pods(installed)
            if p["metadata"]["uid"] != before["metadata"]["uid"]
        ]
        return pods[0] if pods and _ready(pods[0]) else None

    wait_for(replaced, 120, "a new operator pod Ready")
    back = round(time.monotonic() - killed, 1)

    _true(lykeion, installed, "Model", name, "Trained", 600)
    _true(lykeion, installed, "Model", name, "Evaluated", 60)
    jobs = _jobs(installed, created)
    assert [j["metadata"]["name"] for j in jobs] == [job["metadata"]["name"]], jobs
    assert jobs[0]["status"].get("succeeded") == 1
    assert jobs[0]["metadata"]["uid"] == job["metadata"]["uid"]  # the same Job, not a new one
    status = (lykeion.get("Model", NS, name) or {})["status"]
    assert status["lastTraining"]["name"] == job["metadata"]["name"]
    assert status["observedTrainingRequests"] == 1
    print(f"operator pod replaced and Ready {back}s after the kill")


def test_a_training_pod_over_its_memory_limit_is_oomkilled_and_says_so_with_its_log(
    installed: NodeCluster, lykeion: Cluster, features: None, source: str
) -> None:
    model = _model("1.0", source.format("allocate"), segment="oom", memory=OOM_LIMIT)
    del model["spec"]["source"]["parameters"]  # the allocating project takes none of them
    created = lykeion.create(model, NS)
    name = created["metadata"]["name"]
    going = {"Training", "WaitingForReferences"}
    trained = _settled(lykeion, installed, "Model", name, "Trained", going, 300)
    assert (trained["status"], trained["reason"]) == ("False", "OOMKilled"), trained
    message = trained["message"]
    assert f"memory limit {OOM_LIMIT}" in message, message
    assert "spec.training.resources.memory" in message
    # The log tail: the project's own lines, up to where the kernel stopped it.
    assert "allocated 64 MiB" in message, message
    assert "still alive" not in message
    evaluated = lykeion.condition("Model", NS, name, "Evaluated") or {}
    assert evaluated["reason"] == "NotTrained"
    (job,) = _jobs(installed, created)
    assert (job.get("status") or {}).get("failed") == 1


def _versions_answering(url: str, token: str, requests: int) -> dict[str, int]:
    """Which version answered each of `requests` predictions (the router's header)."""
    body = json.dumps({"keys": [{"rider_id": "r42"}]}).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    counts: dict[str, int] = {}
    for _ in range(requests):
        request = urllib.request.Request(url + "/predict", body, headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            version = str(answer.headers["x-lykeion-version"])
            assert len(json.loads(answer.read())["predictions"]) == 1
        counts[version] = counts.get(version, 0) + 1
    return counts


def _deployment(versions: dict[str, int], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "lykeion.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": NS},
        "spec": {
            "family": "forward",
            "segment": SEGMENT,
            "versions": [{"version": v, "traffic": t} for v, t in versions.items()],
            "replicas": replicas,
            "backend": "lykeion",
        },
    }


def test_a_server_that_crashes_at_start_leaves_the_previous_version_all_traffic(
    installed: NodeCluster, lykeion: Cluster, features: None, source: str, data_dir: Path
) -> None:
    _true(lykeion, installed, "Model", f"forward-{SEGMENT}-1.0", "Evaluated", 600)
    second = lykeion.create(_model("2.0", source.format("mlproject")), NS)
    # Version 1.0 serves while 2.0 trains.
    installed.apply([_deployment({"1.0": 100})])
    _true(lykeion, installed, "Deployment", DEPLOYMENT, "Ready", 300)
    _true(lykeion, installed, "Model", second["metadata"]["name"], "Evaluated", 600)
    # 2.0's files vanish from the store after registration: its server cannot load it.
    # (the chart's MLflow server keeps artifacts at mlartifacts/ on the volume; the status
    # names the version's as mlflow-artifacts:/<path>)
    status = (lykeion.get("Model", NS, second["metadata"]["name"]) or {})["status"]
    where = urlparse(status["artifactUri"])
    assert where.scheme == "mlflow-artifacts", status["artifactUri"]
    mlmodel = data_dir / "mlartifacts" / where.path.lstrip("/") / "MLmodel"
    mlmodel.unlink()

    installed.apply([_deployment({"1.0": 50, "2.0": 50})])
    crashed = _settled(
        lykeion, installed, "Deployment", DEPLOYMENT, "Available", {"VersionsStarting"}, 180
    )
    assert (crashed["status"], crashed["reason"]) == ("False", "VersionsCrashed"), crashed
    assert "2.0: pod" in crashed["message"] and "crashed" in crashed["message"]
    traffic = lykeion.condition("Deployment", NS, DEPLOYMENT, "TrafficInEffect") or {}
    assert (traffic["status"], traffic["reason"]) == ("False", "RolloutHeld"), traffic
    status = (lykeion.get("Deployment", NS, DEPLOYMENT) or {})["status"]
    assert {t["version"]: t["traffic"] for t in status["traffic"]} == {"1.0": 100, "2.0": 0}
    # Every request through the router's Service is answered, by 1.0.
    token = caller_token(installed, prefix="fault-")
    assert _versions_answering(service_url(installed, DEPLOYMENT), token, 20) == {"1.0": 20}


def test_two_replicas_are_two_ready_pods_behind_the_service(
    installed: NodeCluster, lykeion: Cluster, features: None
) -> None:
    _true(lykeion, installed, "Model", f"forward-{SEGMENT}-1.0", "Evaluated", 600)
    installed.apply([_deployment({"1.0": 100}, replicas=2)])

    def two_ready() -> dict[str, Any] | None:
        body = lykeion.get("Deployment", NS, DEPLOYMENT) or {}
        status = body.get("status") or {}
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions", []) if c["type"] == "Ready"), {}
        )
        current = ready.get("observedGeneration") == body["metadata"]["generation"]
        up = current and ready.get("status") == "True" and status.get("readyReplicas") == 2
        return status if up else None

    try:
        wait_for(two_ready, 300, "Deployment Ready with 2 ready replicas")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{_diagnose(installed)}") from None
    server = f"{DEPLOYMENT}-1-0"
    got = installed.run_kubectl(
        "get", "pods", "-n", NS, "-l", f"lykeion.io/version={server}", "-o", "json"
    )
    pods = [
        p for p in json.loads(got.stdout)["items"] if not p["metadata"].get("deletionTimestamp")
    ]
    assert len(pods) == 2 and all(_ready(p) for p in pods), [p["status"] for p in pods]
    # Both behind the version's Service: its EndpointSlice lists the two pods, ready.
    got = installed.run_kubectl(
        "get",
        "endpointslices",
        "-n",
        NS,
        "-l",
        f"kubernetes.io/service-name={server}",
        "-o",
        "json",
    )
    endpoints = [e for s in json.loads(got.stdout)["items"] for e in s.get("endpoints") or []]
    ready = {e["targetRef"]["name"] for e in endpoints if (e.get("conditions") or {}).get("ready")}
    assert ready == {p["metadata"]["name"] for p in pods}
    # The Service answers, and the 2.0 of the previous test is gone with its objects.
    token = caller_token(installed, prefix="fault-")
    assert _versions_answering(service_url(installed, DEPLOYMENT), token, 10) == {"1.0": 10}
    gone = installed.run_kubectl("get", "service,deployment", "-n", NS, f"{DEPLOYMENT}-2-0",
                                 check=False)  # fmt: skip
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout


def test_a_docker_env_project_runs_its_entry_point_in_its_own_image(
    installed: NodeCluster,
    lykeion: Cluster,
    features: None,
    source: str,
    data_dir: Path,
    cluster_images: dict[str, BuiltImage],
) -> None:
    model = _model("1.0", source.format("in-image"), segment="image")
    del model["spec"]["source"]["parameters"]  # the project takes none of them
    # After the tests above, their servers hold most of the node's two cores: a small CPU
    # request schedules (it is no limit; memory is the one limit).
    model["spec"]["training"]["resources"]["cpu"] = "100m"
    created = lykeion.create(model, NS)
    name = created["metadata"]["name"]
    _true(lykeion, installed, "Model", name, "Trained", 600)
    status = (lykeion.get("Model", NS, name) or {})["status"]
    project = status["lastTraining"]["project"]
    image = cluster_images["serving"].image
    assert project["image"] == image
    # Two Jobs, both succeeded: the Lykeion image's, then the one with the project's image
    # as its init container.
    jobs = {j["metadata"]["name"]: j for j in _jobs(installed, created)}
    assert set(jobs) == {status["lastTraining"]["name"], project["job"]}, sorted(jobs)
    assert all((j.get("status") or {}).get("succeeded") == 1 for j in jobs.values())
    second = jobs[project["job"]]["spec"]["template"]["spec"]
    assert [c["image"] for c in second["initContainers"]] == [image]
    workloads = cluster_images["workloads"].image
    assert [c["image"] for c in second["containers"]] == [workloads]
    selector = f"job-name={project['job']}"
    got = installed.run_kubectl("get", "pods", "-n", NS, "-l", selector, "-o", "json")
    (pod,) = json.loads(got.stdout)["items"]
    (init,) = pod["status"]["initContainerStatuses"]
    assert init["state"]["terminated"]["exitCode"] == 0
    # What the entry point saw: the serving image (no Beam, which the workloads image has)
    # and the docker_env's variable; logged to the run it was given.
    with sqlite3.connect(data_dir / "mlflow.db") as db:
        params = dict(
            db.execute(
                "SELECT key, value FROM params WHERE run_uuid = ?", (status["mlflowRunId"],)
            ).fetchall()
        )
        (run_status,) = db.execute(
            "SELECT status FROM runs WHERE run_uuid = ?", (status["mlflowRunId"],)
        ).fetchone()
    assert params["beam_here"] == "False", params
    assert params["mode"] == "in-image"
    assert run_status == "FINISHED"
    assert status["registeredModel"] and status["modelUri"].startswith("models:/")
    # The stage folder between the Jobs is gone once registered.
    assert not (data_dir / "trainings" / status["mlflowRunId"]).exists()
    evaluated = lykeion.condition("Model", NS, name, "Evaluated") or {}
    assert evaluated.get("reason") in ("GatePassed", "GateFailed"), evaluated
