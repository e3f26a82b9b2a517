"""Running one container to completion in the one-node cluster, as a workload would."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from lykeion.cluster import NodeCluster

GIT_DAEMON = ["git", "daemon", "--reuseaddr", "--export-all", "--base-path=/srv/git",
              "--listen=0.0.0.0", "--port=9418"]  # fmt: skip
"""`git daemon` serving the repositories under /srv/git read-only on port 9418 (append the
directory): the example's sources in the cluster."""


@dataclass(frozen=True)
class Finished:
    phase: str
    exit_code: int | None
    message: str
    """The container's termination message (the result JSON workloads write)."""
    logs: str
    user: str
    """`id -u`-like: the pod's runAsUser as the kubelet ran it."""


def restricted_pod(name: str, image: str, command: list[str], namespace: str) -> dict[str, Any]:
    """A pod as the chart and the executor run them: uid 1000, read-only root, /tmp an
    emptyDir, no capabilities, no token."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "env": [{"name": "LYKEION_RESULT_PATH", "value": "/dev/termination-log"}],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def run_pod(cluster: NodeCluster, pod: dict[str, Any], timeout: float = 300.0) -> Finished:
    """Create `pod`, wait until it ends (bounded), return how, and delete it."""
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    cluster.apply([pod])
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline:
            got = cluster.run_kubectl("get", "pod", "-n", namespace, name, "-o", "json")
            body = json.loads(got.stdout)
            if body.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"pod {name} did not finish in {timeout}s: {body.get('status')}")
        status = body["status"]["containerStatuses"][0]
        terminated = status["state"].get("terminated") or {}
        logs = cluster.run_kubectl("logs", "-n", namespace, name, check=False).stdout
        return Finished(
            phase=body["status"]["phase"],
            exit_code=terminated.get("exitCode"),
            message=terminated.get("message") or "",
            logs=logs,
            user=str(body["spec"]["securityContext"].get("runAsUser")),
        )
    finally:
        cluster.run_kubectl(
            "delete",
            "pod",
            "-n",
            namespace,
            name,
            "--grace-period=0",
            "--wait=false",
            check=False,
        )
