"""The kubernetes executor against the real API server: Jobs accepted, owned, found again."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client

from lykeion.executors.base import State, Work
from lykeion.executors.kubernetes import KubernetesExecutor
from lykeion.kube import Kube
from tests import objects
from tests.support import Cluster


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
