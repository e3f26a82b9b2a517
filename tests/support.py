"""Helpers for tests that talk to the real API server and a real operator process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lykeion import GROUP, VERSION
from lykeion.api.kinds import BY_KIND
from lykeion.local.controlplane import REPO_ROOT
from lykeion.local.ports import free_port
from lykeion.local.processes import kill as kill_process
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


@dataclass
class Cluster:
    """Typed access to Lykeion objects in the test API server."""

    api: client.ApiClient

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def create(self, body: dict[str, Any], namespace: str) -> dict[str, Any]:
        kind = BY_KIND[body["kind"]]
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, kind.plural, body
        )
        return result

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, BY_KIND[kind].plural, name
            )
            return result
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, BY_KIND[kind].plural, name, patch
        )
        return result

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, BY_KIND[kind].plural, name
        )

    def condition(
        self, kind: str, namespace: str, name: str, type_: str = "Ready"
    ) -> dict[str, Any] | None:
        body = self.get(kind, namespace, name) or {}
        for cond in (body.get("status") or {}).get("conditions", []):
            if cond["type"] == type_:
                return dict(cond)
        return None

    def wait_condition(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: str,
        reason: str | None = None,
        type_: str = "Ready",
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            cond = self.condition(kind, namespace, name, type_)
            if cond and cond["status"] == status and (reason is None or cond["reason"] == reason):
                return cond
            return None

        result: dict[str, Any] = wait_for(
            matches, timeout, f"{kind} {namespace}/{name} {type_}={status} {reason or ''}"
        )
        return result

    def new_namespace(self, name: str) -> str:
        client.CoreV1Api(self.api).create_namespace({"metadata": {"name": name}})
        return name


@dataclass
class Operator:
    """The real operator, as a child process, with its log in a file."""

    kubeconfig: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Operator:
        self.process = start_process(
            [
                sys.executable,
                "-m",
                "lykeion.operator_main",
                "--kubeconfig",
                str(self.kubeconfig),
                "--health-port",
                str(self.port),
            ],
            self.log_path,
            env={**os.environ, **self.extra_env},
        )
        wait_for(self.ready, timeout, f"operator readiness (log: {self.log_path})")
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"operator exited; log:\n{self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/readyz", timeout=2
            ) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies."""
        if self.process is not None:
            kill_process(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=20)


def local_operator(kubeconfig: Path, state: Path, **extra_env: str) -> Operator:
    """An operator (not started) with the local executor's runs, its stores and its log in
    `state`, relative sources read from the checkout, the in-process feature engine (the
    Beam pipeline is held to the same stores by tests/integration/test_pipeline.py) and
    a 1 s poll; `extra_env` adds or overrides variables."""
    state.mkdir(parents=True, exist_ok=True)
    return Operator(
        kubeconfig,
        state / "operator.log",
        extra_env={
            "LYKEION_STATE_DIR": str(state / "runs"),
            "LYKEION_DATA_DIR": str(state / "data"),
            "LYKEION_DATA_ROOT": str(REPO_ROOT),
            "LYKEION_FEATURE_ENGINE": "duckdb",
            "LYKEION_POLL_SECONDS": "1",
            **extra_env,
        },
    )


def kubernetes_operator(kubeconfig: Path, state: Path, **extra_env: str) -> Operator:
    """An operator (not started) with the `kubernetes` executor, as the chart runs it: its
    Jobs run `python` in the workloads image, its trainings log to the chart's MLflow
    Service, a 1 s poll; its data and log in `state`. `extra_env` adds or overrides
    variables. Nothing runs the Jobs: `finish_job` plays kubelet and Job controller."""
    return Operator(
        kubeconfig,
        state / "operator.log",
        extra_env={
            "LYKEION_EXECUTOR": "kubernetes",
            "LYKEION_PYTHON": "python",
            "LYKEION_PIPELINE_IMAGE": "registry.example.com/lykeion/workloads:0.1.0",
            "LYKEION_DATA_DIR": str(state / "data"),
            "LYKEION_POLL_SECONDS": "1",
            "LYKEION_MLFLOW_TRACKING_URI": "http://mlflow.lykeion.svc:5000",
            **extra_env,
        },
    )


TRAINED_FEATURES = [
    {"ref": "rider.age", "column": "rider__age", "type": "int64"},
    {"ref": "rider.drop_offs_count", "column": "rider__drop_offs_count", "type": "int64"},
    {"ref": "rider.avg_fare", "column": "rider__avg_fare", "type": "float64"},
]
"""The `features` of a training result for the example's Model (examples/forward)."""


def training_result(version: str, artifact: str, name: str = "forward-default") -> dict[str, Any]:
    """A training Job's successful result (what `lykeion.training.run` reports) for version
    `version` of the example's Model registered as `name`, its files at `artifact`."""
    return {
        "succeeded": True, "run_id": f"r{version}", "model_uri": f"models:/{name}/{version}",
        "registered_model": name, "registered_version": version.replace(".", ""),
        "artifact_uri": artifact, "metrics": {"eval_roc_auc": 0.81}, "gate_passed": True,
        "training_set_hash": "ab" * 32, "training_set_rows": 900,
        "source_revision": "sha256:00", "features": TRAINED_FEATURES, "message": "ok",
    }  # fmt: skip


def wait_job(api: client.ApiClient, name: str, namespace: str = "default") -> Any:
    """The Job `name` (a `V1Job`) once the operator has created it; fails after 60 s."""

    def find() -> Any:
        try:
            return client.BatchV1Api(api).read_namespaced_job(name, namespace)
        except client.ApiException:
            return None

    return wait_for(find, 60, f"Job {name}")


def finish_job(
    api: client.ApiClient,
    name: str,
    result: dict[str, Any],
    failed: bool = False,
    namespace: str = "default",
) -> None:
    """Play kubelet and Job controller for Job `name`: a terminated pod with `result` (JSON)
    as its termination message, then the Job's status, succeeded or (`failed`) failed."""
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    job = batch.read_namespaced_job(name, namespace)
    container = job.spec.template.spec.containers[0]
    pod = core.create_namespaced_pod(
        namespace,
        {
            # The Job controller gives its pods the template's labels (owner UID included).
            "metadata": {"name": f"{name}-pod", "labels": dict(job.spec.template.metadata.labels)},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": container.name, "image": container.image}],
            },
        },
    )
    terminated = {
        "exitCode": 1 if failed else 0,
        "message": json.dumps(result),
        "reason": "Error" if failed else "Completed",
    }
    core.patch_namespaced_pod_status(
        pod.metadata.name,
        namespace,
        {
            "status": {
                "containerStatuses": [
                    {
                        "name": container.name,
                        "image": container.image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ]
            }
        },
    )
    when = "2026-01-01T00:01:00Z"
    conditions = (
        [
            {
                "type": "FailureTarget",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "failed",
                "lastTransitionTime": when,
            },
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "failed",
                "lastTransitionTime": when,
            },
        ]
        if failed
        else [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": when},
            {"type": "Complete", "status": "True", "lastTransitionTime": when},
        ]
    )
    batch.patch_namespaced_job_status(
        name,
        namespace,
        {
            "status": {
                "startTime": "2026-01-01T00:00:00Z",
                "failed" if failed else "succeeded": 1,
                **({} if failed else {"completionTime": when}),
                "conditions": conditions,
            }
        },
    )


def deployment_status(
    cluster: Cluster, namespace: str, name: str = "forward-default"
) -> dict[str, Any]:
    """The `status` of Deployment `name` ({} while it has none or does not exist)."""
    return (cluster.get("Deployment", namespace, name) or {}).get("status") or {}


def rollout_status(
    cluster: Cluster, namespace: str, name: str = "forward-default"
) -> dict[str, Any]:
    """`status.rollout` of Deployment `name` ({} while it has none)."""
    return deployment_status(cluster, namespace, name).get("rollout") or {}


def traffic_in_effect(
    cluster: Cluster, namespace: str, name: str = "forward-default"
) -> dict[str, int]:
    """Version -> percent of `status.traffic` of Deployment `name` ({} while none)."""
    status = deployment_status(cluster, namespace, name)
    return {t["version"]: t["traffic"] for t in status.get("traffic", [])}


def materialize_example(cluster: Cluster, examples: Path, namespace: str = "default") -> None:
    """Create the example's Family and FeatureManifest (`family.yaml`, `features.yaml` in
    `examples`), finish the manifest's first run (Job `rider-activity-g1-r1`, by
    `finish_job`) as a success whose newest event is now, and wait until the manifest is
    Ready. Raises AssertionError when the Job or the condition takes over 60 s."""
    cluster.create(load(examples / "family.yaml")[0], namespace)
    cluster.create(load(examples / "features.yaml")[0], namespace)
    job = wait_job(cluster.api, "rider-activity-g1-r1", namespace)
    finish_job(cluster.api, job.metadata.name, {
        "succeeded": True, "rows_read": 7, "rows_written": 6, "bad_rows": 0, "online_rows": 3,
        "max_event_time": datetime.now(UTC).isoformat(), "message": "6 history rows",
    }, namespace=namespace)  # fmt: skip
    cluster.wait_condition("FeatureManifest", namespace, "rider-activity", "True", timeout=60)


def load(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
