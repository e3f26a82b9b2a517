"""The kubernetes executor against the real API server: Jobs accepted, owned, found again;
logs of a Job's own pods and of a crashing server's pod (read through the API server from
`tests.kubelet_logs`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kubernetes import client

from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, State, VersionServer, Work
from lykeion.executors.kubernetes import JOB_UID_LABEL, KubernetesExecutor
from lykeion.kube import Kube
from tests import objects
from tests.kubelet_logs import KubeletLogs
from tests.support import Cluster, wait_for


def _set_job_status(
    api: client.ApiClient, namespace: str, name: str, status: dict[str, Any]
) -> None:
    client.BatchV1Api(api).patch_namespaced_job_status(name, namespace, {"status": status})


def test_job_created_once_with_owner_and_followed_to_completion(
    api: client.ApiClient, cluster: Cluster, namespace: str
) -> None:
    owner = cluster.create(objects.model(), namespace)
    executor = KubernetesExecutor(Kube(api))
    work = Work(
        "forward-default-1-0-train",
        namespace,
        "lykeion/training:0.1",
        ("lykeion-train",),
        {"X": "1"},
        owner=owner,
    )

    async def scenario() -> None:
        assert (await executor.submit(work)).state is State.PENDING
        job = client.BatchV1Api(api).read_namespaced_job(work.name, namespace)
        assert job.metadata.owner_references[0].uid == owner["metadata"]["uid"]
        assert job.spec.template.spec.security_context.run_as_non_root is True
        # Submitting again (operator restarted) finds the Job instead of creating another.
        await executor.submit(work)
        again = client.BatchV1Api(api).read_namespaced_job(work.name, namespace)
        assert again.metadata.uid == job.metadata.uid

        # No controller-manager here: the test plays the Job controller.
        _set_job_status(
            api,
            namespace,
            work.name,
            {"startTime": "2026-01-01T00:00:00Z", "active": 1, "ready": 0},
        )
        assert (await executor.status(namespace, work.name)).state is State.RUNNING
        _set_job_status(
            api,
            namespace,
            work.name,
            {
                "active": 0,
                "succeeded": 1,
                "completionTime": "2026-01-01T00:01:00Z",
                "conditions": [
                    {
                        "type": "SuccessCriteriaMet",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": "2026-01-01T00:01:00Z",
                    },
                    {
                        "type": "Complete",
                        "status": "True",
                        "lastProbeTime": None,
                        "lastTransitionTime": "2026-01-01T00:01:00Z",
                    },
                ],
            },
        )
        assert (await executor.status(namespace, work.name)).state is State.SUCCEEDED
        assert (await executor.status(namespace, "nothing-here")).state is State.MISSING
        await executor.cancel(namespace, work.name)
        assert (await executor.status(namespace, work.name)).state is State.MISSING

    asyncio.run(scenario())


def test_failed_job_reports_reason(api: client.ApiClient, cluster: Cluster, namespace: str) -> None:
    executor = KubernetesExecutor(Kube(api))
    work = Work("failing-work", namespace, "img", ("false",))

    async def scenario() -> None:
        await executor.submit(work)
        _set_job_status(
            api,
            namespace,
            work.name,
            {
                "startTime": "2026-01-01T00:00:00Z",
                "failed": 1,
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastTransitionTime": "2026-01-01T00:01:00Z",
                    },
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastTransitionTime": "2026-01-01T00:01:00Z",
                    },
                ],
            },
        )
        status = await executor.status(namespace, work.name)
        assert status.state is State.FAILED
        assert status.message.startswith("BackoffLimitExceeded")

    asyncio.run(scenario())


def _pod(
    api: client.ApiClient,
    namespace: str,
    name: str,
    labels: dict[str, str],
    node: str,
    container: str,
    status: dict[str, Any],
) -> None:
    """A pod on `node` with `labels` (what the Job or ReplicaSet controller would give it)
    and one container whose status is `status` (what the kubelet would report)."""
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "containers": [{"name": container, "image": "img"}],
            },
        },
    )
    core.patch_namespaced_pod_status(
        name,
        namespace,
        {
            "status": {
                "containerStatuses": [
                    {"name": container, "image": "img", "imageID": "", "ready": False, **status}
                ]
            }
        },
    )


OOM = {
    "restartCount": 0,
    "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
}
FAILED_JOB = {
    "startTime": "2026-01-01T00:00:00Z",
    "failed": 1,
    "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy",
         "message": "failed", "lastTransitionTime": "2026-01-01T00:01:00Z"},
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
         "message": "failed", "lastTransitionTime": "2026-01-01T00:01:00Z"},
    ],
}  # fmt: skip


def test_logs_and_the_oom_tail_are_of_the_jobs_own_pods_not_a_predecessors(
    api: client.ApiClient, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    """A Job deleted and created again under the same name for the same owner (a retry):
    its predecessor's pods, which carry the same `lykeion.io/work` and owner labels, are
    still there (nothing collects them here). Its logs and its OOM log tail are its own."""
    owner = cluster.create(objects.model(), namespace)
    executor = KubernetesExecutor(Kube(api))
    work = Work("retried-work", namespace, "img", ("train",), owner=owner)
    batch = client.BatchV1Api(api)
    with KubeletLogs(api, tmp_path / "kubelet", f"node-{namespace}"[:63]) as kubelet:

        async def scenario() -> None:
            await executor.submit(work)
            first = batch.read_namespaced_job(work.name, namespace)
            first_labels = dict(first.spec.template.metadata.labels)
            # The API server gives the template the Job's own UID (Kubernetes 1.36: both).
            assert first_labels[JOB_UID_LABEL] == first.metadata.uid
            assert first_labels["controller-uid"] == first.metadata.uid
            _pod(api, namespace, "retried-work-old", first_labels, kubelet.node, "work", OOM)
            kubelet.logs[(namespace, "retried-work-old", "work", False)] = "old: step 9\n"

            await executor.cancel(namespace, work.name)
            wait_for(lambda: not batch.list_namespaced_job(namespace).items, 30, "deletion")
            await executor.submit(work)
            second = batch.read_namespaced_job(work.name, namespace)
            assert second.metadata.uid != first.metadata.uid
            second_labels = dict(second.spec.template.metadata.labels)
            _pod(api, namespace, "retried-work-new", second_labels, kubelet.node, "work", OOM)
            kubelet.logs[(namespace, "retried-work-new", "work", False)] = "new: step 1\n"

            assert (await executor.logs(namespace, work.name)).strip() == "new: step 1"
            _set_job_status(api, namespace, work.name, FAILED_JOB)
            status = await executor.status(namespace, work.name, work.owner_uid)
            assert status.reason == "OOMKilled"
            assert "pod retried-work-new was OOMKilled" in status.message
            assert status.message.endswith("new: step 1") and "old:" not in status.message
            assert {pod for _, pod, _, _ in kubelet.asked} == {"retried-work-new"}
            assert await executor.logs(namespace, "no-such-work") == ""

        asyncio.run(scenario())


def _version_2_0(namespace: str, replicas: int = 1) -> Endpoint:
    """The `forward` endpoint serving version 2.0 alone on the lykeion backend."""
    return Endpoint(
        name="forward",
        namespace=namespace,
        backend="lykeion",
        servers=(
            VersionServer("2.0", "forward-2-0", objects.server_config("2.0", name="forward")),
        ),
        weights={"2.0": 100},
        replicas=replicas,
        image="lykeion/serving:0.1.0",
    )


def test_a_crash_reports_the_crashing_pods_previous_log_not_the_first_pods(
    api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """Two pods of one version: the one listed first serves (a healthy replica, or a
    rolling update's other pod), the other crashes at start."""
    executor = KubernetesExecutor(Kube(api))
    endpoint = _version_2_0(namespace, replicas=2)
    crashing = {
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1}},
    }
    running = {"restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
    with KubeletLogs(api, tmp_path / "kubelet", f"node-{namespace}"[:63]) as kubelet:

        async def scenario() -> None:
            status = await executor.serve(endpoint)
            assert not status.crashed and not status.available["2.0"]
            name = render.version_name(endpoint, "2.0")
            deployment = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
            labels = dict(deployment.spec.template.metadata.labels)
            healthy, broken = f"{name}-a-healthy", f"{name}-b-crashing"
            _pod(api, namespace, healthy, labels, kubelet.node, "server", running)
            _pod(api, namespace, broken, labels, kubelet.node, "server", crashing)
            kubelet.logs[(namespace, healthy, "server", True)] = "an earlier run's last line\n"
            kubelet.logs[(namespace, broken, "server", True)] = (
                "starting\nloading model\nTraceback ...\nModelLoadError: no such model\n"
            )

            status = await executor.serve(endpoint)
            assert status.crashed == frozenset({"2.0"})
            message = status.messages["2.0"]
            assert message.startswith(f"pod {broken}: container server crashed 3 time(s)")
            assert message.endswith(
                f"; the previous log of pod {broken} ends: loading model\nTraceback ...\n"
                "ModelLoadError: no such model"
            )
            assert healthy not in message and "earlier run" not in message
            assert kubelet.asked == [(namespace, broken, "server", True)]

        asyncio.run(scenario())


def test_a_crash_without_a_readable_log_is_still_reported(
    api: client.ApiClient, namespace: str
) -> None:
    """No node to ask for the log (the pod names none): the crash and its pod alone."""
    executor = KubernetesExecutor(Kube(api))
    endpoint = _version_2_0(namespace)

    async def scenario() -> None:
        await executor.serve(endpoint)
        name = render.version_name(endpoint, "2.0")
        labels = dict(
            client.AppsV1Api(api)
            .read_namespaced_deployment(name, namespace)
            .spec.template.metadata.labels
        )
        core = client.CoreV1Api(api)
        pod = f"{name}-x"
        core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": pod, "labels": labels},
                "spec": {"containers": [{"name": "server", "image": "img"}]},
            },
        )
        core.patch_namespaced_pod_status(
            pod,
            namespace,
            {
                "status": {
                    "containerStatuses": [
                        {"name": "server", "image": "img", "imageID": "", "ready": False,
                         "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                         "lastState": {"terminated": {"reason": "Error", "exitCode": 2}}}
                    ]
                }
            },
        )  # fmt: skip
        status = await executor.serve(endpoint)
        assert status.crashed == frozenset({"2.0"})
        assert status.messages["2.0"] == (
            f"pod {pod}: container server crashed 1 time(s), last Error with exit code 2"
        )

    asyncio.run(scenario())
