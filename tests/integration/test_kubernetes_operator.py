"""The operator with the `kubernetes` executor: pipeline runs and trainings become Jobs the
real API server accepts, and the Jobs' outcomes (status + termination message, set here as
the Job controller and kubelet would) drive the FeatureManifest's and the Model's status."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lykeion.executors.kubernetes_endpoints import KSERVE_SOURCE_URI
from lykeion.handlers.training import project_job_name, training_name
from lykeion.kube import api_client
from lykeion.local.controlplane import ControlPlane
from tests.support import TRAINED_FEATURES, Cluster, Operator, finish_job, load, wait_for, wait_job

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "forward"
NS = "default"


@pytest.fixture(scope="module")
def k8s_operator_env() -> dict[str, str]:
    """A private package index, as the chart's ConfigMap gives `workload.packageIndex`."""
    return {
        "LYKEION_PACKAGE_INDEX_URL": "https://pypi.internal/simple",
        "LYKEION_PACKAGE_TRUSTED_HOSTS": "pypi.internal",
    }


def test_jobs_drive_manifest_and_model_status_and_every_backend_serves(
    k8s_plane: ControlPlane, k8s_operator: Operator
) -> None:
    api = api_client(k8s_plane.kubeconfig)
    cluster = Cluster(api)
    cluster.create(load(EXAMPLES / "family.yaml")[0], NS)
    manifest = cluster.create(load(EXAMPLES / "features.yaml")[0], NS)

    job = wait_job(api, "rider-activity-g1-r1")
    assert job.metadata.owner_references[0].uid == manifest["metadata"]["uid"]
    container = job.spec.template.spec.containers[0]
    assert container.image == "registry.example.com/lykeion/workloads:0.1.0"
    assert container.command[:3] == ["python", "-m", "lykeion.features.run"]
    assert job.spec.template.spec.security_context.run_as_non_root is True
    finish_job(
        api,
        job.metadata.name,
        {
            "succeeded": True,
            "rows_read": 7,
            "rows_written": 6,
            "bad_rows": 1,
            "online_rows": 3,
            # Freshness is about the newest event materialized, within the TTL (365d).
            "max_event_time": datetime.now(UTC).isoformat(),
            "message": "6 history rows",
        },
    )
    cluster.wait_condition("FeatureManifest", NS, "rider-activity", "True", timeout=60)
    status = (cluster.get("FeatureManifest", NS, "rider-activity") or {})["status"]
    assert (status["rowsWritten"], status["runs"][-1]["badRows"]) == (6, 1)

    model = copy.deepcopy(load(EXAMPLES / "model.yaml")[0])
    model["spec"]["training"]["requests"] = 1
    created = cluster.create(model, NS)
    job = wait_job(api, training_name("forward-default-1.0", 1))
    assert job.metadata.owner_references[0].uid == created["metadata"]["uid"]
    container = job.spec.template.spec.containers[0]
    assert container.command[:3] == ["python", "-m", "lykeion.training.run"]
    assert container.resources.requests == {"cpu": "1", "memory": "2Gi"}
    # The training installs a project's python_env from the platform's index.
    env = {e.name: e.value for e in container.env}
    assert (env["PIP_INDEX_URL"], env["PIP_TRUSTED_HOST"]) == (
        "https://pypi.internal/simple",
        "pypi.internal",
    )
    finish_job(
        api,
        job.metadata.name,
        {
            "succeeded": False,
            "reason": "CommitNotFound",
            "message": "commit abc is not in the repository",
        },
        failed=True,
    )
    cond = cluster.wait_condition(
        "Model", NS, "forward-default-1.0", "False", "CommitNotFound", type_="Trained", timeout=60
    )
    assert "commit abc" in cond["message"]

    # A retraining request is a new Job; its success drives Trained and Evaluated.
    cluster.patch("Model", NS, "forward-default-1.0", {"spec": {"training": {"requests": 2}}})
    job = wait_job(api, training_name("forward-default-1.0", 2))
    result = {
        "succeeded": True, "run_id": "r123", "model_uri": "models:/forward-default/4",
        "registered_model": "forward-default", "registered_version": "4",
        "artifact_uri": "gs://models/forward-default/4",
        "metrics": {"eval_roc_auc": 0.81}, "gate_passed": True, "training_set_hash": "ab" * 32,
        "training_set_rows": 900, "source_revision": "sha256:00", "features": TRAINED_FEATURES,
        "message": "ok",
    }  # fmt: skip
    finish_job(api, job.metadata.name, result)
    cluster.wait_condition("Model", NS, "forward-default-1.0", "True", timeout=60)
    status = (cluster.get("Model", NS, "forward-default-1.0") or {})["status"]
    assert (status["modelUri"], status["observedTrainingRequests"]) == (
        "models:/forward-default/4",
        2,
    )
    evaluated = cluster.condition("Model", NS, "forward-default-1.0", "Evaluated")
    assert (
        evaluated is not None
        and evaluated["reason"] == "GatePassed"
        and "0.8100 >= 0.6" in evaluated["message"]
    )

    # Serving: each backend's objects are created in the API server, which validates them
    # against the real Seldon and KServe CRDs; their status (set here, as Seldon's and
    # KServe's controllers would) drives the Deployment to Ready.
    # One Deployment per family/segment: switching its backend renders the next system's.
    name = "forward-default"
    created = cluster.create(_serving(name, "lykeion"), NS)
    for backend, ready in (
        ("lykeion", _deployment_available), ("seldon", _seldon_available), ("kserve", _kserve_ready)
    ):  # fmt: skip
        cluster.patch("Deployment", NS, name, {"spec": {"backend": backend}})
        rendered = ready(api, name)
        expected = _ENDPOINTS[backend]
        assert rendered["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
        wait_for(
            lambda expected=expected: (
                (cluster.get("Deployment", NS, name) or {}).get("status", {}).get("endpoint")
                == expected
            ),
            timeout=60,
            what=f"the {backend} endpoint in status",
        )
        cond = cluster.wait_condition("Deployment", NS, name, "True", timeout=60)
        assert cond["reason"] == "Serving"
        status = (cluster.get("Deployment", NS, name) or {})["status"]
        assert status["traffic"] == [{"version": "1.0", "traffic": 100, "available": True}]

    # A canary that never becomes available leaves the stable version all the traffic.
    canary = copy.deepcopy(model)
    canary["metadata"]["name"] = "forward-default-1.1"
    canary["spec"]["version"] = "1.1"
    cluster.create(canary, NS)
    job = wait_job(api, training_name("forward-default-1.1", 1))
    finish_job(api, job.metadata.name, {**result, "model_uri": "models:/forward-default/5",
                                     "registered_version": "5"})  # fmt: skip
    cluster.wait_condition("Model", NS, "forward-default-1.1", "True", timeout=60)
    versions = [{"version": "1.0", "traffic": 90}, {"version": "1.1", "traffic": 10}]
    cluster.patch("Deployment", NS, name, {"spec": {"backend": "lykeion", "versions": versions}})
    # Seldon and KServe served meanwhile: the lykeion backend's objects were retired, so
    # 1.0's server Deployment is a new one (no controller here: its status is set again).
    _deployment_available(api, name)
    held = cluster.wait_condition(
        "Deployment", NS, name, "False", "RolloutHeld", type_="TrafficInEffect", timeout=60
    )
    assert "1.0 100%, 1.1 0%" in held["message"]
    assert _routes(api, name) == {"1.0": 100}
    apps = client.AppsV1Api(api)
    available = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
    apps.patch_namespaced_deployment_status(f"{name}-1-1", NS, {"status": available})
    cluster.wait_condition("Deployment", NS, name, "True", timeout=60)
    assert _routes(api, name) == {"1.0": 90, "1.1": 10}


def test_a_docker_env_training_runs_its_entry_point_in_the_projects_image_in_a_second_job(
    k8s_plane: ControlPlane, k8s_operator: Operator
) -> None:
    """After the first test: the example's FeatureManifest is Materialized."""
    api = api_client(k8s_plane.kubeconfig)
    cluster = Cluster(api)
    assert cluster.condition("FeatureManifest", NS, "rider-activity", "Materialized")
    model = copy.deepcopy(load(EXAMPLES / "model.yaml")[0])
    model["metadata"]["name"] = "forward-default-3.0"
    model["spec"]["version"] = "3.0"
    model["spec"]["training"]["requests"] = 1
    created = cluster.create(model, NS)
    first = wait_job(api, training_name("forward-default-3.0", 1))
    command = first.spec.template.spec.containers[0].command
    assert "--docker-env" in command and not first.spec.template.spec.init_containers
    stage = command[command.index("--stage-dir") + 1]
    project = {
        "image": "registry.example.com/team-a/trainer:2",
        "command": f"python train.py --train {stage}/r9/train.parquet",
        "directory": "/var/lib/lykeion/sources/abc/mlproject",
        "env": {"MLFLOW_RUN_ID": "r9", "MLFLOW_EXPERIMENT_ID": "4", "MODE": "fast"},
    }
    prepared = {"succeeded": True, "run_id": "r9", "experiment_id": "4", "project": project,
                "message": "prepared run r9"}  # fmt: skip
    finish_job(api, first.metadata.name, prepared)

    # The second Job: the entry point in the project's image, then the Lykeion image.
    second = wait_job(api, project_job_name("forward-default-3.0", 1))
    assert second.metadata.owner_references[0].uid == created["metadata"]["uid"]
    pod = second.spec.template.spec
    (init,) = pod.init_containers
    (main,) = pod.containers
    assert (init.image, init.command) == (project["image"], ["sh", "-c", project["command"]])
    assert init.working_dir == project["directory"]
    env = {e.name: e.value for e in init.env}
    assert env["MLFLOW_RUN_ID"] == "r9" and env["MODE"] == "fast"
    # The tracking server the main container evaluates and registers with.
    assert env["MLFLOW_TRACKING_URI"] == main.command[main.command.index("--tracking-uri") + 1]
    main_env = {e.name: e.value for e in main.env}
    assert env["PIP_INDEX_URL"] == "https://pypi.internal/simple"  # the platform's variables
    assert init.security_context.read_only_root_filesystem is True
    assert main.command[-4:] == ["--phase", "finish", "--run-id", "r9"]
    assert "LYKEION_RESULT_PATH" in main_env and "LYKEION_RESULT_PATH" not in env
    wait_for(
        lambda: "runs in its image registry.example.com/team-a/trainer:2"
        in ((cluster.condition("Model", NS, "forward-default-3.0", "Trained") or {}).get(
            "message") or ""),
        timeout=60,
    )  # fmt: skip
    current = (cluster.get("Model", NS, "forward-default-3.0") or {})["status"]["currentTraining"]
    assert current["project"]["job"] == second.metadata.name

    result = {
        "succeeded": True, "run_id": "r9", "model_uri": "models:/forward-default/9",
        "registered_model": "forward-default", "registered_version": "9",
        "metrics": {"eval_roc_auc": 0.8}, "gate_passed": True, "training_set_hash": "cd" * 32,
        "training_set_rows": 900, "source_revision": "sha256:01", "features": TRAINED_FEATURES,
        "message": "ok",
    }  # fmt: skip
    finish_job(api, second.metadata.name, result)
    cluster.wait_condition("Model", NS, "forward-default-3.0", "True", timeout=60)
    status = (cluster.get("Model", NS, "forward-default-3.0") or {})["status"]
    assert (status["modelUri"], status["mlflowRunId"]) == ("models:/forward-default/9", "r9")
    assert status["lastTraining"]["project"]["image"] == project["image"]
    assert "currentTraining" not in status or status["currentTraining"] is None

    # Retrained with an image the node cannot pull: the second Job is stuck and says so; a
    # newer request (the MLproject fixed, `lykectl models train`) replaces it.
    cluster.patch("Model", NS, "forward-default-3.0", {"spec": {"training": {"requests": 2}}})
    first = wait_job(api, training_name("forward-default-3.0", 2))
    finish_job(api, first.metadata.name, {**prepared, "project": {**project, "image": "no/such:1"}})
    stuck_job = wait_job(api, project_job_name("forward-default-3.0", 2))
    _pulling_forever(api, stuck_job)
    stuck = cluster.wait_condition(
        "Model", NS, "forward-default-3.0", "False", "ImagePullFailed", type_="Trained", timeout=60
    )
    assert "docker_env.image" in stuck["message"] and "no/such:1" in stuck["message"]
    cluster.patch("Model", NS, "forward-default-3.0", {"spec": {"training": {"requests": 3}}})
    wait_job(api, training_name("forward-default-3.0", 3))
    status = (cluster.get("Model", NS, "forward-default-3.0") or {})["status"]
    assert status["lastTraining"]["reason"] == "Superseded"
    assert "replaced by training request 3 while stuck" in status["lastTraining"]["message"]
    assert status["observedTrainingRequests"] == 2
    assert status["modelUri"] == "models:/forward-default/9"  # the last trained version stays

    def stuck_job_gone() -> bool:
        try:
            job = client.BatchV1Api(api).read_namespaced_job(stuck_job.metadata.name, NS)
        except client.ApiException as error:
            return error.status == 404
        return job.metadata.deletion_timestamp is not None

    wait_for(stuck_job_gone, 60, "the stuck Job deleted")
    cluster.delete("Model", NS, "forward-default-3.0")


def _pulling_forever(api: client.ApiClient, job: Any) -> None:
    """Play the kubelet for `job`: its pod waits on an image pull of its init container."""
    core = client.CoreV1Api(api)
    init = job.spec.template.spec.init_containers[0]
    main = job.spec.template.spec.containers[0]
    pod = core.create_namespaced_pod(
        NS,
        {
            "metadata": {
                "name": f"{job.metadata.name}-pod",
                "labels": dict(job.spec.template.metadata.labels),
            },
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [{"name": init.name, "image": init.image}],
                "containers": [{"name": main.name, "image": main.image}],
            },
        },
    )
    waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{init.image}"'}
    core.patch_namespaced_pod_status(
        pod.metadata.name,
        NS,
        {
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": init.name, "image": init.image, "imageID": "", "ready": False,
                     "restartCount": 0, "state": {"waiting": waiting}}
                ],
            }
        },
    )  # fmt: skip


def _routes(api: client.ApiClient, name: str) -> dict[str, int]:
    """The weights the router is given (its ConfigMap), by version."""
    config = client.CoreV1Api(api).read_namespaced_config_map(f"{name}-routes", NS)
    routes = json.loads(config.data["routes.json"])
    return {v["version"]: v["weight"] for v in routes["versions"]}


_ENDPOINTS = {
    "lykeion": f"http://forward-default.{NS}.svc",
    "seldon": f"http://forward-default.{NS}.svc:8000",
    "kserve": f"http://forward-default.{NS}.example.com",
}


def _serving(name: str, backend: str) -> dict[str, Any]:
    return {
        "apiVersion": "lykeion.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "family": "forward",
            "segment": "default",
            "versions": [{"version": "1.0", "traffic": 100}],
            "backend": backend,
        },
    }


def _rendered(read: Any) -> dict[str, Any]:
    def found() -> Any:
        try:
            return read()
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    return dict(wait_for(found, timeout=60, what="the rendered serving object"))


def _deployment_available(api: client.ApiClient, name: str) -> dict[str, Any]:
    apps = client.AppsV1Api(api)
    server = f"{name}-1-0"
    obj = _rendered(
        lambda: api.sanitize_for_serialization(apps.read_namespaced_deployment(server, NS))
    )
    container = obj["spec"]["template"]["spec"]["containers"][0]
    config = json.loads(container["env"][0]["value"])
    assert config["model_uri"] == "models:/forward-default/4"
    assert [f["ref"] for f in config["features"]] == [f["ref"] for f in TRAINED_FEATURES]
    assert config["tracking_uri"] == "http://mlflow.lykeion.svc:5000"
    # The router and its Service are applied beside the server, not necessarily before it.
    core = client.CoreV1Api(api)
    _rendered(
        lambda: api.sanitize_for_serialization(
            apps.read_namespaced_deployment(f"{name}-router", NS)
        )
    )
    _rendered(lambda: api.sanitize_for_serialization(core.read_namespaced_service(name, NS)))
    status = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
    apps.patch_namespaced_deployment_status(server, NS, {"status": status})
    return obj


def _seldon_available(api: client.ApiClient, name: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    group = ("machinelearning.seldon.io", "v1", NS, "seldondeployments", name)
    obj = _rendered(lambda: custom.get_namespaced_custom_object(*group))
    (predictor,) = obj["spec"]["predictors"]
    assert predictor["traffic"] == 100 and predictor["graph"]["type"] == "MODEL"
    custom.patch_namespaced_custom_object_status(
        *group,
        {"status": {"state": "Available", "address": {"url": f"http://{name}.{NS}.svc:8000"},
                    "deploymentStatus": {f"{name}-v1-0-0-model": {"availableReplicas": 1}}}},
    )  # fmt: skip
    return obj


def _kserve_ready(api: client.ApiClient, name: str) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    group = ("serving.kserve.io", "v1beta1", NS, "inferenceservices", name)
    obj = _rendered(lambda: custom.get_namespaced_custom_object(*group))
    # KServe's MLflow runtime predicts; the Lykeion server turns keys into its V2 inputs.
    assert obj["spec"]["predictor"]["model"]["storageUri"] == "gs://models/forward-default/4"
    container = obj["spec"]["transformer"]["containers"][0]
    assert container["command"][:3] == ["python", "-m", "lykeion.serving"]
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    custom.patch_namespaced_custom_object_status(
        *group,
        {"status": {"url": f"http://{name}.{NS}.example.com",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    # KServe's Ready counts for the generation it observed, this one.
                    "observedGeneration": obj["metadata"]["generation"]}},
    )  # fmt: skip
    # RawDeployment: the Deployments KServe makes, rolled out (no controller manager here
    # to do it): Lykeion reads them, as KServe's Ready does not say they are.
    apps = client.AppsV1Api(api)
    transformer = {"name": "kserve-container", "image": "x",
                   "env": obj["spec"]["transformer"]["containers"][0]["env"]}  # fmt: skip
    # KServe records the predictor's storage URI in its pod template's annotation.
    source = {KSERVE_SOURCE_URI: obj["spec"]["predictor"]["model"]["storageUri"]}
    pods = {
        "transformer": ({}, {"containers": [transformer]}),
        "predictor": (source, {"containers": [{"name": "kserve-container", "image": "x"}]}),
    }
    for component, (template_annotations, pod) in pods.items():
        labels = {"app": f"isvc.{name}-{component}"}
        made = apps.create_namespaced_deployment(NS, {
            "metadata": {"name": f"{name}-{component}", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels,
                                               "annotations": template_annotations},
                                  "spec": pod}},
        })  # fmt: skip
        apps.patch_namespaced_deployment_status(
            f"{name}-{component}", NS,
            {"status": {"observedGeneration": made.metadata.generation, "replicas": 1,
                        "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}},
        )  # fmt: skip
    return obj


def test_deleting_a_manifest_drops_its_tables_in_jobs_until_one_succeeds(
    k8s_plane: ControlPlane, k8s_operator: Operator
) -> None:
    api = api_client(k8s_plane.kubeconfig)
    cluster, batch = Cluster(api), client.BatchV1Api(api)
    body = copy.deepcopy(load(EXAMPLES / "features.yaml")[0])
    body["metadata"]["name"] = "dropped"
    body["spec"]["entity"]["name"] = "dropper"  # its own features: registered, it runs
    created = cluster.create(body, NS)
    uid = created["metadata"]["uid"]
    wait_job(api, "dropped-g1-r1")

    cluster.delete("FeatureManifest", NS, "dropped")
    # The pipeline run in flight is stopped first, then the drop runs in its own Job.
    job = wait_job(api, "dropped-drop-a1")
    assert (cluster.get("FeatureManifest", NS, "dropped") or {})["metadata"]["deletionTimestamp"]
    assert not batch.list_namespaced_job(NS, label_selector="lykeion.io/work=dropped-g1-r1").items
    container = job.spec.template.spec.containers[0]
    assert container.image == "registry.example.com/lykeion/workloads:0.1.0"
    command = list(container.command)
    assert command[:3] == ["python", "-m", "lykeion.features.run"]
    assert command[-1] == "--drop-only"
    # Generation 1's tables (the deletion itself raised the object's generation to 2).
    assert "1" in command[command.index("--drop-generations") + 1].split(",")
    assert job.metadata.labels["lykeion.io/owner-uid"] == uid
    # Not a dependent: a foreground deletion of the manifest would delete it as it starts.
    assert not job.metadata.owner_references and job.spec.ttl_seconds_after_finished

    # A failed drop: the condition and an event say why and what is left; a new attempt.
    left = {"succeeded": False, "message": "IOException: disk gone", "tables_left": ["t_g1"]}
    finish_job(api, "dropped-drop-a1", left, failed=True)
    cond = cluster.wait_condition(
        "FeatureManifest", NS, "dropped", "False", "DropFailed", type_="TablesDropped", timeout=60
    )
    assert "IOException: disk gone" in cond["message"] and "t_g1" in cond["message"]
    events = client.CoreV1Api(api).list_namespaced_event(
        NS, field_selector="involvedObject.name=dropped,reason=DropFailed"
    )
    assert any("t_g1" in (e.message or "") for e in events.items)
    assert cluster.get("FeatureManifest", NS, "dropped") is not None  # still held

    wait_job(api, "dropped-drop-a2")
    finish_job(api, "dropped-drop-a2", {"succeeded": True, "message": "dropped", "tables_left": []})
    wait_for(lambda: cluster.get("FeatureManifest", NS, "dropped") is None, 60, "the deletion")
