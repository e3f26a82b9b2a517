"""Runs work as batch/v1 Jobs: deterministic names, owner references, non-root, no rights."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lykeion.executors.base import Endpoint, EndpointStatus, State, Work, WorkStatus
from lykeion.executors.ca_bundle import CaBundle
from lykeion.executors.kubernetes_endpoints import KubernetesEndpoints, newest_first
from lykeion.kube import pod_log
from lykeion.names import check_label

RESULT_ENV = "LYKEION_RESULT_PATH"
OWNER_UID_LABEL = "lykeion.io/owner-uid"
"""The owning object's UID on Jobs and pods: a Job of the same name with another UID
belongs to a deleted predecessor."""
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
"""The Job's own UID, which the API server puts on the Job's pod template (so on each of its
pods) and in its generated selector (Kubernetes 1.27 and later; 1.36 also sets the legacy
`controller-uid`): a Job recreated under the same name (a new object, a retry) has another,
so its predecessor's pods are never taken for its own."""
TERMINATION_LOG = "/dev/termination-log"
GIT_SSH_DIR = "/etc/lykeion/git-ssh"
# The Secret's keys are those of Kubernetes' `kubernetes.io/ssh-auth` type, plus known_hosts;
# ssh accepts a group-readable key file it does not own (root owns Secret volume files).
GIT_SSH_COMMAND = (
    f"ssh -i {GIT_SSH_DIR}/ssh-privatekey -o IdentitiesOnly=yes "
    f"-o UserKnownHostsFile={GIT_SSH_DIR}/known_hosts"
)
RUN_AS = 1000
UNOWNED_TTL = 24 * 3600
"""Seconds an unowned Job (`Work.owned` False) stays after it finished: no owner's garbage
collection removes it, and a day leaves its log to read."""
LOG_TAIL_LINES = 20
LOG_TAIL_CHARS = 1500
"""How much of a killed pod's log its condition message carries (a status message is
trimmed to 2000 characters)."""
DATA_VOLUME = "data"
WORKLOAD_ACCOUNT = "lykeion-workload"
# Container waiting reasons that do not heal by waiting alone, mapped to the condition's
# reason and what to do about them.
_WAITING = {
    "ErrImagePull": ("ImagePullFailed", "check the image name and the registry's credentials "
                     "(chart: workload.image, serving.image, imagePullSecrets)"),
    "ImagePullBackOff": ("ImagePullFailed", "check the image name and the registry's "
                         "credentials (chart: workload.image, serving.image, imagePullSecrets)"),
    "ErrImageNeverPull": ("ImagePullFailed", "the image is not on the node and its pull policy "
                          "is Never: load it onto the node or allow pulls"),
    "InvalidImageName": ("ImagePullFailed", "fix the image reference (chart: workload.image)"),
    "CreateContainerConfigError": ("ContainerNotCreated", "create what the message names "
                                   "(a Secret or ConfigMap the pod refers to)"),
    "CreateContainerError": ("ContainerNotCreated", "fix what the message names"),
    "RunContainerError": ("ContainerNotCreated", "fix what the message names"),
}  # fmt: skip


_PROJECT_IMAGE_HINT = (
    "check the image the project's MLproject names (docker_env.image) and the registry's "
    "credentials (chart: imagePullSecrets, given to the workload ServiceAccount)"
)


@dataclass(frozen=True)
class DataVolume:
    """The volume every Job and model server mounts at `mount_path` (the platform's data
    directory): embedded stores, the data root, source caches, model artifacts."""

    source: Mapping[str, Any]
    """One Kubernetes volume source, e.g. `{"hostPath": {"path": "/srv/lykeion"}}` or
    `{"persistentVolumeClaim": {"claimName": "lykeion-data"}}` (ReadWriteMany across nodes)."""
    mount_path: str

    def volume(self) -> dict[str, Any]:
        return {"name": DATA_VOLUME, **json.loads(json.dumps(dict(self.source)))}

    def mount(self) -> dict[str, Any]:
        return {"name": DATA_VOLUME, "mountPath": self.mount_path}


def _git_ssh(work: Work) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Env, volumes and mounts that give `work` the SSH key of its git source (pure)."""
    if work.git_ssh_secret is None:
        return {}, [], []
    volume = {
        "name": "git-ssh",
        "secret": {"secretName": work.git_ssh_secret, "defaultMode": 0o440},
    }
    mount = {"name": "git-ssh", "mountPath": GIT_SSH_DIR, "readOnly": True}
    return {"GIT_SSH_COMMAND": GIT_SSH_COMMAND}, [volume], [mount]


def build_job(
    work: Work,
    data: DataVolume | None = None,
    env: Mapping[str, str] | None = None,
    ca: CaBundle | None = None,
) -> dict[str, Any]:
    """The Job manifest for `work` (pure: no I/O, input untouched), with `data` mounted
    when given, `ca` mounted read-only when given with its variables (`CaBundle.env`, over
    `env`'s), and `env` (the platform's variables for every Job, e.g. the package index's)
    in its container's environment under the work's own, which win. `work.init` becomes
    the init container `INIT_CONTAINER`: its image, command and working directory, the same
    volumes, resources and security context, the platform's variables and `HOME=/tmp` under
    its own."""
    check_label(work.name)  # a bad name fails here, not as a 422 at apply time
    ssh_env, volumes, mounts = _git_ssh(work)
    if data is not None:
        volumes, mounts = [*volumes, data.volume()], [*mounts, data.mount()]
    if ca is not None:
        volumes, mounts = [*volumes, ca.volume()], [*mounts, ca.mount()]
    labels = {"app.kubernetes.io/managed-by": "lykeion", "lykeion.io/work": work.name}
    if work.owner_uid:
        labels[OWNER_UID_LABEL] = work.owner_uid
    # Owned Jobs go with their owner; an unowned one removes itself once finished.
    ttl = {} if work.owned else {"ttlSecondsAfterFinished": UNOWNED_TTL}
    platform = {**(env or {}), **(ca.env() if ca is not None else {})}
    container = {
        "name": "work",
        "image": work.image,
        "command": list(work.command),
        # Work reports its result (result.json locally) here instead.
        "env": _env({**platform, **work.env, **ssh_env, RESULT_ENV: TERMINATION_LOG}),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "requests": {"cpu": work.cpu, "memory": work.memory},
            "limits": {"memory": work.memory},
        },
        # Read-only image; HOME and scratch files on /tmp (the image's HOME), an emptyDir
        # that goes with the pod.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *mounts],
    }
    init = {}
    if work.init is not None:
        step = work.init
        init_container = {
            **copy.deepcopy(container),
            "name": INIT_CONTAINER,
            "image": step.image,
            "command": list(step.command),
            # Another image's HOME may be read-only: /tmp unless the step says otherwise.
            "env": _env({**platform, "HOME": "/tmp", **step.env}),
            # Its log's end is its termination message when it fails (what status reads).
            "terminationMessagePath": TERMINATION_LOG,
            **({"workingDir": step.working_dir} if step.working_dir else {}),
        }
        init = {"initContainers": [init_container]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": work.name, "namespace": work.namespace, "labels": labels},
        "spec": {
            **ttl,
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": work.service_account,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        # Mounted Secrets (the git SSH key) are readable by the group.
                        **({"fsGroup": RUN_AS} if volumes else {}),
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    **init,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {}}, *volumes],
                },
            },
        },
    }


INIT_CONTAINER = "project"
"""The name of a Job's init container (`Work.init`): a training's entry point in its image."""


def _env(values: Mapping[str, str]) -> list[dict[str, str]]:
    """A container's `env`, sorted by name (the same manifest for the same values)."""
    return [{"name": k, "value": v} for k, v in sorted(values.items())]


def init_failure(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """Why a Job's init container (`INIT_CONTAINER`, a training's MLflow project entry
    point in its own image) failed, as (`ProjectFailed`, message naming the image and exit
    code and ending with the end of its log, its termination message), or None when none
    of `pods` has a failed one (pure; pods as API data, newest first). An OOMKilled init
    container is `killed_reason`'s."""
    for pod in pods:
        pod_name = str((pod.get("metadata") or {}).get("name") or "")
        for container in (pod.get("status") or {}).get("initContainerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if not terminated or terminated.get("exitCode") in (0, None):
                continue
            if terminated.get("reason") == "OOMKilled":
                return None
            tail = str(terminated.get("message") or "").strip()[-LOG_TAIL_CHARS:]
            message = (
                f"the MLflow project's entry point failed in image {container.get('image')} "
                f"(pod {pod_name}, exit code {terminated.get('exitCode')}); fix the project "
                "or its image, then train again (lykectl models train)"
            )
            return "ProjectFailed", message + (f". Last log lines:\n{tail}" if tail else "")
    return None


def job_owner_uid(job: dict[str, Any]) -> str:
    """The owner UID a Job was created for ("" when it carries none)."""
    labels = (job.get("metadata") or {}).get("labels") or {}
    return str(labels.get(OWNER_UID_LABEL) or "")


def job_state(job: dict[str, Any]) -> WorkStatus:
    """Map a Job's status to a WorkStatus (pure)."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return WorkStatus(State.SUCCEEDED, condition.get("message") or "Job complete")
        if condition.get("type") in ("Failed", "FailureTarget"):
            reason = condition.get("reason") or "Failed"
            return WorkStatus(State.FAILED, f"{reason}: {condition.get('message') or 'Job failed'}")
    if status.get("active"):
        return WorkStatus(State.RUNNING, f"{status['active']} pod(s) active")
    return WorkStatus(State.PENDING, "Job created, no pod running yet")


def _newest(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    def when(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or "")

    return max(events, key=when)


def _create_hint(message: str, namespace: str) -> str:
    if f'serviceaccount "{WORKLOAD_ACCOUNT}" not found' in message.lower():
        return (
            f"the namespace {namespace} has no ServiceAccount {WORKLOAD_ACCOUNT}: add it to "
            "the chart's watchNamespaces or workload.extraNamespaces (helm upgrade); the Job "
            "creates its pod once it exists"
        )
    return (
        "fix what the message names (a ServiceAccount, a quota, an admission policy); the Job "
        "creates its pod once it can"
    )


def stuck_reason(
    job: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
) -> tuple[str, str] | None:
    """Why an unfinished Job cannot go on without a human, as (CamelCase reason, message
    saying what to do), or None while it runs or waits normally (pure).

    `pods` are the Job's pods and `events` the events about the Job and its pods (API
    objects as data). Read: the Job controller's `FailedCreate` events while no pod exists
    (a missing ServiceAccount, a quota, an admission policy), `PodScheduled=False` with
    reason `Unschedulable`, a container waiting on an image pull or on a missing Secret or
    ConfigMap (an init container's too: a docker_env project's image that cannot be pulled
    says so), and `FailedMount` events of a pending pod."""
    name = str((job.get("metadata") or {}).get("name") or "")
    namespace = str((job.get("metadata") or {}).get("namespace") or "")
    if not pods:
        failed = [
            e
            for e in events
            if (e.get("involvedObject") or {}).get("kind") == "Job"
            and e.get("reason") == "FailedCreate"
        ]
        if not failed:
            return None
        message = str(_newest(failed).get("message") or "")
        hint = _create_hint(message, namespace)
        return "PodNotCreated", f"Job {name} cannot create its pod: {message}; {hint}"
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed", "Running"):
            continue
        pod_name = str((pod.get("metadata") or {}).get("name") or "")
        containers = [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]
        for container in containers:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _WAITING:
                reason, hint = _WAITING[str(waiting["reason"])]
                if container.get("name") == INIT_CONTAINER and reason == "ImagePullFailed":
                    hint = _PROJECT_IMAGE_HINT
                detail = waiting.get("message") or waiting["reason"]
                return reason, f"pod {pod_name} ({container.get('image')}): {detail}; {hint}"
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                return (
                    "Unschedulable",
                    f"pod {pod_name} cannot be scheduled: {condition.get('message')}; lower "
                    "the resources it requests (a Model's spec.training.resources) or add a "
                    "node that fits them",
                )
        mounts = [
            e
            for e in events
            if (e.get("involvedObject") or {}).get("name") == pod_name
            and e.get("reason") == "FailedMount"
        ]
        if mounts:
            return (
                "VolumeNotMounted",
                f"pod {pod_name} cannot mount a volume: {_newest(mounts).get('message')}; "
                "create what it names (the data volume's claim or path, a git SSH Secret, the "
                "CA bundle's ConfigMap or Secret or its key)",
            )
    return None


def _terminations(container: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A container's current and previous terminations (a restarted one keeps the cause of
    its restart in lastState)."""
    found = []
    for key in ("state", "lastState"):
        terminated = (container.get(key) or {}).get("terminated")
        if terminated:
            found.append(terminated)
    return found


def killed_reason(pods: Sequence[Mapping[str, Any]], logs: str) -> tuple[str, str] | None:
    """Why finished work was killed by its node rather than failing by itself, as
    (CamelCase reason, message saying what to change, ending with `logs`), or None (pure).

    `pods` are the work's pods (API objects as data), `logs` the end of their log. Read:
    a container whose current or last termination has reason `OOMKilled` (the kubelet's
    report of the kernel's OOM killer in the container's cgroup: a process in it went over
    the memory limit). The work may have reported another failure for its own sake (a
    project subprocess killed under it reads as a failed project): the kill is the cause.
    """
    for pod in pods:
        spec = pod.get("spec") or {}
        limits = {
            str(c.get("name")): ((c.get("resources") or {}).get("limits") or {}).get("memory")
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        }
        pod_name = str((pod.get("metadata") or {}).get("name") or "")
        status = pod.get("status") or {}
        containers = [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]
        for container in containers:
            for terminated in _terminations(container):
                if terminated.get("reason") != "OOMKilled":
                    continue
                limit = limits.get(str(container.get("name"))) or "no limit"
                tail = logs.strip()[-LOG_TAIL_CHARS:]
                message = (
                    f"pod {pod_name} was OOMKilled: a process in it went over the memory "
                    f"limit {limit} (exit code {terminated.get('exitCode')}); raise the limit "
                    "(a Model's spec.training.resources.memory) or make the work use less"
                )
                return "OOMKilled", message + (f". Last log lines:\n{tail}" if tail else "")
    return None


def result_from_message(message: str) -> dict[str, Any] | None:
    """A termination message as a result: JSON, or None for a log tail (crash)."""
    try:
        loaded = json.loads(message)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def _result(pods: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The JSON the work wrote to its termination message, from the first of `pods` (newest
    first) that has one (pure)."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            if terminated.get("message"):
                return result_from_message(str(terminated["message"]))
    return None


def job_pod_selector(job: dict[str, Any]) -> str:
    """The label selector of `job`'s own pods (API data, camelCase keys): the selector the
    API server generated into the Job's `spec.selector.matchLabels`, which carries the Job's
    UID (`JOB_UID_LABEL` from Kubernetes 1.27, the legacy `controller-uid` before), so it
    holds on every version the chart supports; `JOB_UID_LABEL=<uid>` when the Job has no
    generated selector (`manualSelector`, or data without a spec)."""
    labels = ((job.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    uid = str(job["metadata"]["uid"])
    if uid not in {str(value) for value in labels.values()}:
        labels = {JOB_UID_LABEL: uid}
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


class KubernetesExecutor:
    runs_images = True
    """`Work.init` is an init container of the Job's pod."""

    def __init__(
        self,
        kube: Any,
        data: DataVolume | None = None,
        env: Mapping[str, str] | None = None,
        ca: CaBundle | None = None,
    ) -> None:
        """Jobs and model servers through `kube`, with `data` and `ca` mounted in each when
        given and `env` in every Job's environment (`build_job`)."""
        self.kube = kube
        self.data = data
        self.env = dict(env or {})
        self.ca = ca
        self.batch = client.BatchV1Api(kube.api)
        self.core = client.CoreV1Api(kube.api)
        self.endpoints = KubernetesEndpoints(kube, data, ca)

    async def serve(self, endpoint: Endpoint) -> EndpointStatus:
        return await self.endpoints.serve(endpoint)

    async def unserve(self, namespace: str, name: str) -> None:
        await self.endpoints.unserve(namespace, name)

    async def submit(self, work: Work) -> WorkStatus:
        existing = await self._get(work.namespace, work.name)
        if existing is not None and job_owner_uid(existing) != work.owner_uid:
            # A deleted predecessor's Job (not yet collected): delete it, create ours once
            # it is gone (the handler submits again while the status reads MISSING).
            await self.cancel(work.namespace, work.name)
            return WorkStatus(State.PENDING, "replacing a Job left by a previous object")
        if existing is not None:
            return job_state(existing)
        owner = work.owner if work.owned else None
        job = await self.kube.apply(build_job(work, self.data, self.env, self.ca), owner=owner)
        return job_state(job)

    async def status(self, namespace: str, name: str, owner_uid: str | None = None) -> WorkStatus:
        job = await self._get(namespace, name)
        if job is None:
            return WorkStatus(State.MISSING, "no such Job")
        if owner_uid is not None and job_owner_uid(job) != owner_uid:
            return WorkStatus(State.MISSING, "the Job of this name belongs to another object")
        status = job_state(job)
        if status.state.finished:
            pods = await self._pods(job)
            result = _result(pods)
            status = WorkStatus(status.state, status.message, result)
            failed_init = init_failure(pods) if status.state is State.FAILED else None
            if failed_init is not None:
                status = WorkStatus(status.state, failed_init[1], result, reason=failed_init[0])
            # The log is read only for a kill (a Job faked in a test has pods with no log).
            if status.state is State.FAILED and killed_reason(pods, "") is not None:
                killed = killed_reason(pods, await self._logs(namespace, pods, LOG_TAIL_LINES))
                if killed is not None:
                    status = WorkStatus(status.state, killed[1], result, reason=killed[0])
        else:
            stuck = await self._stuck(namespace, job)
            if stuck is not None:
                status = WorkStatus(status.state, stuck[1], stuck=stuck[0])
        return status

    async def _stuck(self, namespace: str, job: dict[str, Any]) -> tuple[str, str] | None:
        """`stuck_reason` over the Job's pods and the events about them and the Job."""
        pods = await self._pods(job)
        waiting = [
            str(p["metadata"]["name"])
            for p in pods
            if (p.get("status") or {}).get("phase") == "Pending"
        ]
        events: list[dict[str, Any]] = []
        for involved in [str(job["metadata"]["name"])] if not pods else waiting:
            listed = await asyncio.to_thread(
                self.core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.name={involved}",
            )
            events += self.kube.api.sanitize_for_serialization(listed.items)
        return stuck_reason(job, pods, events)

    async def _pods(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods of `job` itself, newest first, as API data: never those of a Job of the
        same name before it, which may still be going away. Selected by `job_pod_selector`."""
        meta = job["metadata"]
        found = await asyncio.to_thread(
            self.core.list_namespaced_pod,
            meta["namespace"],
            label_selector=job_pod_selector(job),
        )
        return newest_first(self.kube.api.sanitize_for_serialization(found.items))

    async def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            job = await asyncio.to_thread(self.batch.read_namespaced_job, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = self.kube.api.sanitize_for_serialization(job)
        return result

    async def logs(self, namespace: str, name: str, tail: int = 50) -> str:
        """The last `tail` lines of the log of each pod of the Job `name` as it is now (its
        own pods, by its UID; a pod's log that cannot be read is a line saying so); "" when
        there is no such Job."""
        job = await self._get(namespace, name)
        if job is None:
            return ""
        return await self._logs(namespace, await self._pods(job), tail)

    async def _logs(self, namespace: str, pods: Sequence[Mapping[str, Any]], tail: int) -> str:
        chunks = []
        for pod in pods:
            pod_name = str(pod["metadata"]["name"])
            try:
                log = await asyncio.to_thread(
                    pod_log, self.core, pod_name, namespace, tail_lines=tail
                )
                chunks.append(log)
            except ApiException as error:
                chunks.append(f"(no log from {pod_name}: {error.reason})")
        return "\n".join(chunks)

    async def cancel(self, namespace: str, name: str) -> None:
        try:
            await asyncio.to_thread(
                self.batch.delete_namespaced_job, name, namespace, propagation_policy="Background"
            )
        except ApiException as error:
            if error.status != 404:
                raise
