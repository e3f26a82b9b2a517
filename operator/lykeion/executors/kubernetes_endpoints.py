"""Endpoints as Kubernetes objects: render per backend, server-side apply, read status.

The applied objects' own status says what serves: a Deployment's available replicas, a
SeldonDeployment's `state` and per-predictor deployment status, an InferenceService's
`Ready` condition and the revisions KServe keeps. Removed versions' objects are deleted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lykeion.conditions import get as get_condition
from lykeion.executors.base import Endpoint, EndpointStatus, ServingRejected
from lykeion.serving import render

if TYPE_CHECKING:
    from lykeion.executors.kubernetes import DataVolume


def observe_lykeion(endpoint: Endpoint, applied: Mapping[str, dict[str, Any]]) -> EndpointStatus:
    available, messages, replicas = {}, {}, 0
    for server in endpoint.servers:
        deployment = (
            applied.get(f"Deployment/{render.version_name(endpoint, server.version)}") or {}
        )
        count = int((deployment.get("status") or {}).get("availableReplicas") or 0)
        replicas += count
        available[server.version] = count > 0 or endpoint.replicas == 0
        if not available[server.version]:
            messages[server.version] = (
                f"Deployment {deployment.get('metadata', {}).get('name')} has no available replica"
            )
    url = f"http://{endpoint.name}.{endpoint.namespace}.svc"
    # Each version's own Service: where a rollout's analysis reads /metrics and /analysis.
    servers = {
        v: f"http://{render.version_name(endpoint, v)}.{endpoint.namespace}.svc"
        for v, up in available.items()
        if up
    }
    return EndpointStatus(url, available, messages, replicas, servers=servers)


def crash(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a version's server pods crash rather than start, or None while they start or
    run (pure, on API objects as data): a container waiting in `CrashLoopBackOff`, or
    restarted after exiting non-zero (its last termination's reason and exit code)."""
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name") or "")
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            last = (container.get("lastState") or {}).get("terminated") or {}
            restarts = int(container.get("restartCount") or 0)
            looping = waiting.get("reason") == "CrashLoopBackOff"
            if looping or (restarts > 0 and int(last.get("exitCode") or 0) != 0):
                return (
                    f"pod {name}: container {container.get('name')} crashed "
                    f"{restarts} time(s), last {last.get('reason') or 'exit'} with exit code "
                    f"{last.get('exitCode')}"
                    + (f": {str(last['message']).strip()[-500:]}" if last.get("message") else "")
                )
    return None


def observe_seldon(endpoint: Endpoint, sdep: Mapping[str, Any]) -> EndpointStatus:
    status = sdep.get("status") or {}
    state = status.get("state")
    deployments = status.get("deploymentStatus") or {}
    available, messages, replicas = {}, {}, 0
    for server in endpoint.servers:
        prefix = f"{endpoint.name}-{render.predictor_name(server.version)}-"
        mine = [d for name, d in deployments.items() if name.startswith(prefix)]
        count = sum(int(d.get("availableReplicas") or 0) for d in mine)
        replicas += count
        # A predictor Seldon reports no Deployment for yet (just added) is not serving.
        available[server.version] = state == "Available" and (count > 0 or endpoint.replicas == 0)
        if not available[server.version]:
            why = status.get("description") or f"state {state or 'not reported'}"
            messages[server.version] = f"SeldonDeployment {endpoint.name}: {why}"
    address = (status.get("address") or {}).get("url")
    return EndpointStatus(address, available, messages, replicas)


def observe_kserve(endpoint: Endpoint, isvc: Mapping[str, Any]) -> EndpointStatus:
    status = isvc.get("status") or {}
    conditions = status.get("conditions") or []
    ready = get_condition(conditions, "Ready") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    # The version the InferenceService names (the canary, or the one at 100%).
    named = ((isvc.get("metadata") or {}).get("labels") or {}).get("lykeion.io/version")
    available, messages = {}, {}
    for version in (s.version for s in endpoint.servers):
        if version == named:
            ok = ready.get("status") == "True"
        elif endpoint.weights.get(version, 0) > 0:
            # The stable version lives on as the revision KServe rolled out last.
            ok = bool(predictor.get("latestRolledoutRevision"))
        else:
            ok = False  # not in the InferenceService: no share, no server
        available[version] = ok
        if not ok:
            messages[version] = (
                f"InferenceService {endpoint.name}: {ready.get('message') or 'not Ready'}"
                if endpoint.weights.get(version, 0) > 0
                else f"InferenceService {endpoint.name} does not serve {version} (no share)"
            )
    return EndpointStatus(status.get("url"), available, messages, sum(available.values()))


def withdrawn(endpoint: Endpoint) -> EndpointStatus:
    """What serves once the backend's object is withdrawn (no rendered version has a
    share): nothing."""
    why = f"{endpoint.backend} backend: no admitted version has a declared share"
    return EndpointStatus(None, {s.version: False for s in endpoint.servers},
                          {s.version: why for s in endpoint.servers})  # fmt: skip


SERVER_CONTAINERS = {"Deployment": "server", "SeldonDeployment": "model",
                     "InferenceService": "kserve-container"}  # fmt: skip
"""The model server's container name in each kind `render` gives (routers have none)."""


def _server_pods(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs of `manifest` that may run a model server: a Deployment's template,
    each Seldon predictor's component specs, KServe's transformer (its predictor runs
    KServe's own runtime, which reads the model from the storage URI)."""
    kind, spec = manifest.get("kind"), manifest.get("spec") or {}
    if kind == "Deployment":
        return [spec["template"]["spec"]]
    if kind == "SeldonDeployment":
        return [c["spec"] for p in spec.get("predictors", []) for c in p.get("componentSpecs", [])]
    if kind == "InferenceService" and spec.get("transformer"):
        return [spec["transformer"]]
    return []


def with_data_volume(manifests: list[dict[str, Any]], data: DataVolume) -> list[dict[str, Any]]:
    """`manifests` with `data` mounted into every model server container of the
    Deployments, SeldonDeployments and InferenceServices among them (pure: copies; routers
    need no data). The server reads the embedded online store and the model's files from
    the shared data directory."""
    out = []
    for manifest in manifests:
        manifest = json.loads(json.dumps(manifest))
        name = SERVER_CONTAINERS.get(manifest.get("kind", ""))
        for pod in _server_pods(manifest):
            servers = [c for c in pod["containers"] if c.get("name") == name]
            for container in servers:
                container["volumeMounts"] = [*container.get("volumeMounts", []), data.mount()]
            if servers:
                pod["volumes"] = [*pod.get("volumes", []), data.volume()]
        out.append(manifest)
    return out


class KubernetesEndpoints:
    def __init__(self, kube: Any, data: DataVolume | None = None) -> None:
        self.kube = kube
        self.data = data
        self.apps = client.AppsV1Api(kube.api)
        self.core = client.CoreV1Api(kube.api)
        self.custom = client.CustomObjectsApi(kube.api)

    async def serve(self, endpoint: Endpoint) -> EndpointStatus:
        try:
            manifests = render.render(endpoint)
        except render.Unrenderable as error:
            raise ServingRejected(f"{endpoint.backend} backend: {error}") from error
        if not manifests:
            # Seldon and KServe cannot route "nothing": withdraw their object instead.
            await self._withdraw(endpoint)
            return withdrawn(endpoint)
        if self.data is not None:
            manifests = with_data_volume(manifests, self.data)
        applied: dict[str, dict[str, Any]] = {}
        for manifest in manifests:
            try:
                result = await self.kube.apply(manifest, owner=endpoint.owner)
            except ApiException as error:
                raise ServingRejected(_api_message(manifest, error)) from error
            applied[f"{manifest['kind']}/{manifest['metadata']['name']}"] = result
        if endpoint.backend == "lykeion":
            await self._prune(endpoint)
            return await self._with_crashes(endpoint, observe_lykeion(endpoint, applied))
        if endpoint.backend == "seldon":
            return observe_seldon(endpoint, applied[f"SeldonDeployment/{endpoint.name}"])
        return observe_kserve(endpoint, applied[f"InferenceService/{endpoint.name}"])

    async def _withdraw(self, endpoint: Endpoint) -> None:
        """Delete the endpoint's SeldonDeployment or InferenceService, if there is one."""
        group, version, plural = _SERVING_OBJECTS[endpoint.backend]
        await self._delete(
            lambda name, ns: self.custom.delete_namespaced_custom_object(
                group, version, ns, plural, name
            ),
            endpoint.name,
            endpoint.namespace,
        )

    async def _with_crashes(self, endpoint: Endpoint, observed: EndpointStatus) -> EndpointStatus:
        """`observed` with the versions whose pods crash marked (`crashed`), and why: the
        end of the crashed server's previous log (it says why it cannot serve)."""
        crashed, messages = set(), dict(observed.messages)
        for version, up in observed.available.items():
            if up:
                continue
            name = render.version_name(endpoint, version)
            selector = f"lykeion.io/deployment={endpoint.name},lykeion.io/version={name}"
            found = await asyncio.to_thread(
                self.core.list_namespaced_pod, endpoint.namespace, label_selector=selector
            )
            pods: list[dict[str, Any]] = self.kube.api.sanitize_for_serialization(found.items)
            why = crash(pods)
            if why is None:
                continue
            crashed.add(version)
            try:
                log = await asyncio.to_thread(
                    self.core.read_namespaced_pod_log,
                    pods[0]["metadata"]["name"],
                    endpoint.namespace,
                    container="server",
                    previous=True,
                    tail_lines=3,
                )
            except ApiException:
                log = ""
            tail = str(log or "").strip()[-600:]
            messages[version] = why + (f"; its log ends: {tail}" if tail else "")
        if not crashed:
            return observed
        return replace(observed, crashed=frozenset(crashed), messages=messages)

    async def _prune(self, endpoint: Endpoint) -> None:
        """Delete the Deployments and Services of versions no longer served."""
        keep = {render.version_name(endpoint, s.version) for s in endpoint.servers}
        selector = f"lykeion.io/deployment={endpoint.name},lykeion.io/version"
        found = await asyncio.to_thread(
            self.apps.list_namespaced_deployment, endpoint.namespace, label_selector=selector
        )
        for item in found.items:
            name = item.metadata.name
            if name not in keep:
                await self._delete(self.apps.delete_namespaced_deployment, name, endpoint.namespace)
                await self._delete(self.core.delete_namespaced_service, name, endpoint.namespace)

    async def _delete(self, method: Any, name: str, namespace: str) -> None:
        try:
            await asyncio.to_thread(method, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    async def unserve(self, namespace: str, name: str) -> None:
        # Everything rendered carries an owner reference: garbage collection removes it.
        return None


_SERVING_OBJECTS = {
    "seldon": ("machinelearning.seldon.io", "v1", "seldondeployments"),
    "kserve": ("serving.kserve.io", "v1beta1", "inferenceservices"),
}


def _api_message(manifest: Mapping[str, Any], error: ApiException) -> str:
    try:
        message = json.loads(error.body or "{}").get("message") or error.reason
    except ValueError:
        message = error.reason
    return f"{manifest['kind']} {manifest['metadata']['name']} rejected: {message}"
