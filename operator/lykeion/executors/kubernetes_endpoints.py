"""Endpoints as Kubernetes objects: render per backend, server-side apply, read status.

The applied objects' own status says what serves: a Deployment's available replicas, the
available replicas of each Seldon predictor's own Deployment, an InferenceService's
`Ready` condition of its current generation and the revisions KServe keeps. Removed
versions' objects are deleted, and so are the objects rendered for another backend once
`spec.backend` changes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lykeion.conditions import get as get_condition
from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, EndpointStatus, ServingRejected
from lykeion.executors.ca_bundle import CaBundle
from lykeion.kube import pod_log
from lykeion.serving.config import CONFIG_ENV

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


@dataclass(frozen=True)
class Crash:
    """A model server container that crashes rather than starts."""

    pod: str
    container: str
    message: str
    """Which pod and container, how many restarts, the last exit's reason and code, and
    the end of its termination message."""


def crash(pods: Sequence[Mapping[str, Any]]) -> Crash | None:
    """The first of `pods` (in their order) whose server crashes rather than starts, or None
    while they start or run (pure, on API objects as data): a container waiting in
    `CrashLoopBackOff`, or restarted after exiting non-zero (its last termination's
    reason and exit code). The other pods may be healthy replicas or a rolling update's."""
    for pod in pods:
        name = str((pod.get("metadata") or {}).get("name") or "")
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            last = (container.get("lastState") or {}).get("terminated") or {}
            restarts = int(container.get("restartCount") or 0)
            looping = waiting.get("reason") == "CrashLoopBackOff"
            if looping or (restarts > 0 and int(last.get("exitCode") or 0) != 0):
                message = (
                    f"pod {name}: container {container.get('name')} crashed "
                    f"{restarts} time(s), last {last.get('reason') or 'exit'} with exit code "
                    f"{last.get('exitCode')}"
                    + (f": {str(last['message']).strip()[-500:]}" if last.get("message") else "")
                )
                return Crash(name, str(container.get("name") or ""), message)
    return None


def newest_first(pods: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`pods` by creation time, newest first (pure): a rolling update's new pods before
    the ones they replace."""
    return sorted(
        pods,
        key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""),
        reverse=True,
    )


def seldon_deployment_name(endpoint: Endpoint, version: str) -> str:
    """The Deployment Seldon Core v1.16.0 runs `version`'s predictor in, the key of its
    `status.deploymentStatus` (`GetDeploymentName` in
    `operator/apis/machinelearning.seldon.io/v1/seldondeployment_types.go`:
    `<sdep>-<predictor>-<componentSpecs index>-<container names>`; `render_seldon` gives
    each predictor one component spec with one container, `model`). Names over 63
    characters Seldon hashes; the Deployment's CEL rule keeps them within it."""
    container = SERVER_CONTAINERS["SeldonDeployment"]
    return f"{endpoint.name}-{render.predictor_name(version)}-0-{container}"


def observe_seldon(endpoint: Endpoint, sdep: Mapping[str, Any]) -> EndpointStatus:
    """Availability per version from its own predictor's Deployment, as Seldon Core v1.16.0
    reports it (`status.deploymentStatus[<deployment name>]`: `replicas`,
    `availableReplicas`), matched by the exact Deployment name (`seldon_deployment_name`),
    so versions `1.0` and `1.0.1` are never confused. The SeldonDeployment's overall
    `state` is not used for it: while one predictor is `Creating`, the others serve.
    A version with no entry yet (its predictor just added) is not available."""
    status = sdep.get("status") or {}
    state = status.get("state")
    deployments = status.get("deploymentStatus") or {}
    available, messages, replicas = {}, {}, 0
    for server in endpoint.servers:
        name = seldon_deployment_name(endpoint, server.version)
        mine = deployments.get(name)
        count = int((mine or {}).get("availableReplicas") or 0)
        replicas += count
        available[server.version] = count > 0 or endpoint.replicas == 0
        if not available[server.version]:
            if mine is None:
                why = f"Seldon reports no Deployment {name} yet"
            else:
                why = (
                    f"Deployment {name} has {count} of {int(mine.get('replicas') or 0)} "
                    "replica(s) available"
                )
            seldon = status.get("description") or f"state {state or 'not reported'}"
            messages[server.version] = f"SeldonDeployment {endpoint.name}: {why} ({seldon})"
    address = (status.get("address") or {}).get("url")
    return EndpointStatus(address, available, messages, replicas)


def kserve_current(isvc: Mapping[str, Any]) -> bool:
    """Whether KServe's status speaks of the InferenceService's current spec: its
    `status.observedGeneration` is present and not behind `metadata.generation`. Right
    after a change is applied, the `Ready` in status is the previous generation's.

    KServe v0.15.2 copies that field from what it reconciled the spec into (the last
    component's Deployment in RawDeployment mode, `PropagateRawStatus`; its Knative
    Service in Serverless mode, `PropagateStatus`), each changed once per changed spec:
    so "not behind" rather than "equal" (those objects' generations may run ahead)."""
    generation = int((isvc.get("metadata") or {}).get("generation") or 0)
    observed = (isvc.get("status") or {}).get("observedGeneration")
    return observed is not None and int(observed) >= generation


KSERVE_SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
"""Annotation KServe v0.15.2 puts on the predictor Deployment and its pod template, set to
the predictor's `storageUri` as given, whatever its scheme
(`StorageInitializerSourceUriInternalAnnotationKey`, set by the predictor's
`addStorageInitializerAnnotations`; `createRawDefaultDeployment` copies the component's
metadata onto the template). Its pod webhook reads it from each pod to add the storage
initializer (args `[uri, /mnt/models]`), the `pvc://` volume mount or the `oci://` modelcar:
those live on the pods, never on the Deployment."""


def kserve_rollout(
    deployments: Mapping[str, Mapping[str, Any] | None], version: str, storage_uri: str | None
) -> str | None:
    """Why KServe's Deployments (`<name>-predictor`, `<name>-transformer` -> the object as
    data, None when absent) do not yet run `version` on every replica, or None when they
    do (pure): each made, holding `version` (the transformer's server configuration, the
    predictor's storage URI, exactly as its pod template's `KSERVE_SOURCE_URI` annotation
    holds it), its rollout complete as `kubectl rollout status` judges it
    (observed generation current, every replica updated and available, no old replica).

    In RawDeployment mode KServe v0.15.2 copies only the Deployments' `Available`
    condition into its `Ready` (`PropagateRawStatus`), and a Deployment rolling onto a new
    template stays Available on its old ReplicaSet: so KServe reports a new version Ready
    while its pods cannot even be scheduled, and the previous version answers."""
    for name, deployment in deployments.items():
        if deployment is None:
            return f"KServe has not made Deployment {name} yet"
        pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
        if name.endswith("-transformer"):
            held = {
                json.loads(e["value"]).get("version")
                for c in pod.get("containers") or []
                for e in c.get("env") or []
                if e.get("name") == CONFIG_ENV and e.get("value")
            }
            rolled = version in held
        else:
            template = (deployment.get("spec") or {}).get("template") or {}
            annotations = (template.get("metadata") or {}).get("annotations") or {}
            rolled = not storage_uri or annotations.get(KSERVE_SOURCE_URI) == storage_uri
        if not rolled:
            return f"KServe has not rolled {version} into Deployment {name} yet"
        meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
        replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        pods, available = (
            int(status.get("replicas") or 0),
            int(status.get("availableReplicas") or 0),
        )
        done = (
            int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
            and updated >= replicas
            and pods <= updated
            and available >= updated
        )
        if not done:
            return (
                f"Deployment {name} is still rolling out {version}: {updated} of {replicas} "
                f"replica(s) updated, {available} of {pods} pod(s) available"
            )
    return None


def observe_kserve(
    endpoint: Endpoint, isvc: Mapping[str, Any], rollout: str | None = None
) -> EndpointStatus:
    """Availability of the version the InferenceService names (the canary, or the one at
    100%) from KServe's `Ready` condition, counted only when the status is of the current
    generation (`kserve_current`) and, in RawDeployment mode, its Deployments have rolled
    it out (`rollout`: why not, from `kserve_rollout`; None: they have); the stable
    version's from the revision KServe rolled out last
    (`status.components.predictor.latestRolledoutRevision`)."""
    status = isvc.get("status") or {}
    conditions = status.get("conditions") or []
    ready = get_condition(conditions, "Ready") or {}
    current = kserve_current(isvc)
    predictor = (status.get("components") or {}).get("predictor") or {}
    # The version the InferenceService names (the canary, or the one at 100%).
    named = ((isvc.get("metadata") or {}).get("labels") or {}).get("lykeion.io/version")
    generation = (isvc.get("metadata") or {}).get("generation")
    available, messages = {}, {}
    for version in (s.version for s in endpoint.servers):
        if version == named:
            ok = current and ready.get("status") == "True" and rollout is None
        elif endpoint.weights.get(version, 0) > 0:
            # The stable version lives on as the revision KServe rolled out last, which a
            # new spec does not replace until its canary takes 100%: not a generation's.
            ok = bool(predictor.get("latestRolledoutRevision"))
        else:
            ok = False  # not in the InferenceService: no share, no server
        available[version] = ok
        if not ok:
            if endpoint.weights.get(version, 0) <= 0:
                why = f"does not serve {version} (no share)"
            elif version == named and not current:
                why = (
                    f"KServe has not reported on generation {generation} yet (its status is "
                    f"of generation {status.get('observedGeneration', 'none')})"
                )
            elif version == named and rollout is not None and ready.get("status") == "True":
                why = f"KServe reports Ready, but {rollout}"
            else:
                why = ready.get("message") or "not Ready"
            messages[version] = f"InferenceService {endpoint.name}: {why}"
    unserved = frozenset(
        s.version
        for s in endpoint.servers
        if s.version != named and endpoint.weights.get(s.version, 0) <= 0
    )
    return EndpointStatus(
        status.get("url"), available, messages, sum(available.values()), unserved=unserved
    )


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


def _into_servers(
    manifests: list[dict[str, Any]],
    volume: dict[str, Any],
    mount: dict[str, Any],
    env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """`manifests` with `volume` in the pods of their model server containers, `mount` and
    `env` (after the container's own variables) in those containers (pure: copies)."""
    out = []
    for manifest in manifests:
        manifest = json.loads(json.dumps(manifest))
        name = SERVER_CONTAINERS.get(manifest.get("kind", ""))
        for pod in _server_pods(manifest):
            servers = [c for c in pod["containers"] if c.get("name") == name]
            for container in servers:
                container["volumeMounts"] = [*container.get("volumeMounts", []), mount]
                if env:
                    added = [{"name": k, "value": v} for k, v in sorted(env.items())]
                    container["env"] = [*container.get("env", []), *added]
            if servers:
                pod["volumes"] = [*pod.get("volumes", []), volume]
        out.append(manifest)
    return out


def with_data_volume(manifests: list[dict[str, Any]], data: DataVolume) -> list[dict[str, Any]]:
    """`manifests` with `data` mounted into every model server container of the
    Deployments, SeldonDeployments and InferenceServices among them (pure: copies; routers
    need no data). The server reads the embedded online store and the model's files from
    the shared data directory."""
    return _into_servers(manifests, data.volume(), data.mount())


def with_ca_bundle(manifests: list[dict[str, Any]], ca: CaBundle) -> list[dict[str, Any]]:
    """`manifests` with `ca` mounted read-only into every model server container of the
    Deployments, SeldonDeployments and InferenceServices among them, and its variables
    (`CaBundle.env`) in their environment (pure: copies). The server loads its model
    through MLflow's client, which may reach a tracking server or artifact store behind a
    private CA. Routers have none: they only forward to the version Services over plain
    HTTP inside the cluster. KServe's predictor runs KServe's own runtime and storage
    initializer, which are configured in KServe."""
    return _into_servers(manifests, ca.volume(), ca.mount(), ca.env())


class KubernetesEndpoints:
    def __init__(
        self, kube: Any, data: DataVolume | None = None, ca: CaBundle | None = None
    ) -> None:
        """Model servers through `kube`, with `data` and `ca` mounted in each when given
        (`with_data_volume`, `with_ca_bundle`)."""
        self.kube = kube
        self.data = data
        self.ca = ca
        self.apps = client.AppsV1Api(kube.api)
        self.core = client.CoreV1Api(kube.api)
        self.custom = client.CustomObjectsApi(kube.api)
        self._backends: dict[tuple[str, str], str] = {}
        """(namespace, name) -> the backend whose objects alone are known to exist."""

    async def serve(self, endpoint: Endpoint) -> EndpointStatus:
        try:
            manifests = render.render(endpoint)
        except render.Unrenderable as error:
            raise ServingRejected(f"{endpoint.backend} backend: {error}") from error
        if not manifests:
            # Seldon and KServe cannot route "nothing": withdraw their object instead.
            await self._withdraw(endpoint)
            await self._retire_other_backends(endpoint)
            return withdrawn(endpoint)
        if self.data is not None:
            manifests = with_data_volume(manifests, self.data)
        if self.ca is not None:
            manifests = with_ca_bundle(manifests, self.ca)
        applied: dict[str, dict[str, Any]] = {}
        for manifest in manifests:
            try:
                result = await self.kube.apply(manifest, owner=endpoint.owner)
            except ApiException as error:
                raise ServingRejected(_api_message(manifest, error)) from error
            applied[f"{manifest['kind']}/{manifest['metadata']['name']}"] = result
        # The new backend's objects are in place: the previous backend's go (spec.backend
        # changed), and nothing serves twice or holds a name the new backend derives.
        await self._retire_other_backends(endpoint)
        if endpoint.backend == "lykeion":
            await self._prune(endpoint)
            return await self._with_crashes(endpoint, observe_lykeion(endpoint, applied))
        if endpoint.backend == "seldon":
            return observe_seldon(endpoint, applied[f"SeldonDeployment/{endpoint.name}"])
        isvc = applied[f"InferenceService/{endpoint.name}"]
        rollout = None
        if endpoint.kserve_mode != render.SERVERLESS:
            rollout = await self._kserve_rollout(endpoint, isvc)
        return observe_kserve(endpoint, isvc, rollout)

    async def _kserve_rollout(self, endpoint: Endpoint, isvc: Mapping[str, Any]) -> str | None:
        """`kserve_rollout` of the Deployments KServe made for `endpoint` (RawDeployment)."""
        named = ((isvc.get("metadata") or {}).get("labels") or {}).get("lykeion.io/version")
        predictor = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
        deployments: dict[str, dict[str, Any] | None] = {}
        for component in render.KSERVE_COMPONENTS:
            name = f"{endpoint.name}-{component}"
            try:
                found = await asyncio.to_thread(
                    self.apps.read_namespaced_deployment, name, endpoint.namespace
                )
                deployments[name] = self.kube.api.sanitize_for_serialization(found)
            except ApiException as error:
                if error.status != 404:
                    raise
                deployments[name] = None
        return kserve_rollout(deployments, str(named), predictor.get("storageUri"))

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
        end of the previous log of the crashing pod's container (it says why it cannot
        serve), named in the message. The log is left out when it cannot be read."""
        crashed, messages = set(), dict(observed.messages)
        for version, up in observed.available.items():
            if up:
                continue
            name = render.version_name(endpoint, version)
            selector = f"lykeion.io/deployment={endpoint.name},lykeion.io/version={name}"
            found = await asyncio.to_thread(
                self.core.list_namespaced_pod, endpoint.namespace, label_selector=selector
            )
            pods = newest_first(self.kube.api.sanitize_for_serialization(found.items))
            crashing = crash(pods)
            if crashing is None:
                continue
            crashed.add(version)
            try:
                log = await asyncio.to_thread(
                    pod_log,
                    self.core,
                    crashing.pod,
                    endpoint.namespace,
                    container=crashing.container,
                    previous=True,
                    tail_lines=3,
                )
            except ApiException:
                log = ""  # no node to ask, or the pod is gone: the reason alone then
            tail = log.strip()[-600:]
            messages[version] = crashing.message + (
                f"; the previous log of pod {crashing.pod} ends: {tail}" if tail else ""
            )
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

    async def _retire_other_backends(self, endpoint: Endpoint) -> None:
        """Delete what this executor rendered for `endpoint` under any other backend: the
        objects of those backends' kinds (`RENDERED_KINDS`) labelled
        `lykeion.io/deployment=<name>` and owned by the endpoint's owner (its UID: the
        objects Seldon's and KServe's controllers derive carry the labels too, but they
        own those). Idempotent; it lists only on the first pass and when the backend
        changes (remembered per endpoint, so once again after a restart)."""
        key = (endpoint.namespace, endpoint.name)
        uid = ((endpoint.owner or {}).get("metadata") or {}).get("uid")
        if uid is None or self._backends.get(key) == endpoint.backend:
            return
        selector = f"lykeion.io/deployment={endpoint.name},app.kubernetes.io/managed-by=lykeion"
        for backend, kinds in RENDERED_KINDS.items():
            if backend == endpoint.backend:
                continue
            for kind in kinds:
                for name in await self._owned(kind, endpoint.namespace, selector, uid):
                    await self._delete(self._deleter(kind), name, endpoint.namespace)
        self._backends[key] = endpoint.backend

    async def _owned(self, kind: str, namespace: str, selector: str, uid: str) -> list[str]:
        """Names of the `kind` objects matching `selector` with an owner reference to
        `uid`; none when the kind is not served here (Seldon's or KServe's CRD absent)."""
        try:
            if kind in _SERVING_KINDS:
                group, version, plural = _SERVING_KINDS[kind]
                found = await asyncio.to_thread(
                    self.custom.list_namespaced_custom_object,
                    group, version, namespace, plural, label_selector=selector,
                )  # fmt: skip
                items = found.get("items") or []
            else:
                lister = {
                    "Deployment": self.apps.list_namespaced_deployment,
                    "Service": self.core.list_namespaced_service,
                    "ConfigMap": self.core.list_namespaced_config_map,
                }[kind]
                listed = await asyncio.to_thread(lister, namespace, label_selector=selector)
                items = self.kube.api.sanitize_for_serialization(listed.items)
        except ApiException as error:
            if error.status == 404:
                return []
            raise
        return [
            item["metadata"]["name"]
            for item in items
            if any(o.get("uid") == uid for o in item["metadata"].get("ownerReferences") or [])
        ]

    def _deleter(self, kind: str) -> Any:
        """The delete call of `kind`, as `_delete` takes it: (name, namespace)."""
        if kind in _SERVING_KINDS:
            group, version, plural = _SERVING_KINDS[kind]
            return lambda name, ns: self.custom.delete_namespaced_custom_object(
                group, version, ns, plural, name
            )
        return {
            "Deployment": self.apps.delete_namespaced_deployment,
            "Service": self.core.delete_namespaced_service,
            "ConfigMap": self.core.delete_namespaced_config_map,
        }[kind]

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
_SERVING_KINDS = {
    "SeldonDeployment": _SERVING_OBJECTS["seldon"],
    "InferenceService": _SERVING_OBJECTS["kserve"],
}
RENDERED_KINDS = {
    "lykeion": ("Deployment", "Service", "ConfigMap"),
    "seldon": ("SeldonDeployment",),
    "kserve": ("InferenceService",),
}
"""The kinds of the objects `render` gives per backend (`render.RENDERERS`)."""


def _api_message(manifest: Mapping[str, Any], error: ApiException) -> str:
    try:
        message = json.loads(error.body or "{}").get("message") or error.reason
    except ValueError:
        message = error.reason
    return f"{manifest['kind']} {manifest['metadata']['name']} rejected: {message}"
