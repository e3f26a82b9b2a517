"""The Kubernetes objects that serve an `Endpoint`, per backend (pure builders).

- `lykeion`: a Deployment + Service per version running the Lykeion model server, and a
  router (Deployment + Service named like the endpoint) splitting traffic by weight;
- `seldon`: one SeldonDeployment, a predictor per version (`traffic`), the shadow as a
  `shadow: true` predictor; each predictor's graph is one MODEL node, the Lykeion server
  as a custom container speaking Seldon's v1 protocol;
- `kserve`: one InferenceService in the configured deployment mode. In `Serverless`
  (Knative) mode it names the canary, chosen by meaning (the live version that is not
  `Endpoint.stable`): KServe sends `canaryTrafficPercent` to the revision it creates and
  the rest to the revision it rolled out last. In `RawDeployment` mode KServe v0.15.2
  ignores `canaryTrafficPercent`, so only one live version can be served. KServe's MLflow
  runtime is the predictor, the Lykeion server the transformer that turns keys into the
  model's V2 inputs.

Before anything is built, `check` refuses what the backend cannot serve: a name it would
derive that is not a DNS label of at most 63 characters, a model location KServe's storage
initializer cannot fetch, a split KServe cannot express. A split with no share for any
rendered version renders no Seldon or KServe object at all (`render` returns `[]`): they
cannot express "no traffic" without routing it to a version declared at 0%.

Every server gets its `ServerConfig` through the `LYKEION_SERVER_CONFIG` variable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lykeion.executors.base import Endpoint, VersionServer
from lykeion.names import MAX_LABEL, child_name
from lykeion.serving.config import CONFIG_ENV

SERVING_ACCOUNT = "lykeion-serving"
"""The ServiceAccount of model servers that review callers (`access: kubernetes`): the
chart creates it and lets it create TokenReviews and SubjectAccessReviews, nothing else."""
PORT = 8080
SELDON_PORT = 9000
ROUTES_PATH = "/etc/lykeion/routes/routes.json"
ROUTES_DIGEST = "lykeion.io/routes-sha256"
"""Annotation of the router's pod template: a digest of its routes.json."""


KSERVE_SCHEMES = ("gs://", "s3://", "hdfs://", "webhdfs://", "http://", "https://", "pvc://",
                  "oci://", "hf://")  # fmt: skip
"""Model locations KServe v0.15.2 fetches into the predictor (`SupportedStorageURIPrefixList`
in `pkg/controller/v1beta1/inferenceservice/utils/utils.go`; Azure Blob is `https://`).
KServe also takes `file://` and plain paths, but those name the storage initializer's own
file system, never the operator's artifact directory. Other schemes (MLflow's proxied
`mlflow-artifacts:`) it fetches only through a `ClusterStorageContainer` installed for
them, which the operator is told of (`Endpoint.kserve_storage_schemes`)."""


class Unrenderable(ValueError):
    """The endpoint asks for something its backend cannot express (the message says what
    and why); raised before any object is built or applied."""


def _labels(endpoint: Endpoint, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": "lykeion",
        "app.kubernetes.io/part-of": endpoint.name,
        "lykeion.io/deployment": endpoint.name,
        **extra,
    }


def _metadata(endpoint: Endpoint, name: str, **labels: str) -> dict[str, Any]:
    return {"name": name, "namespace": endpoint.namespace, "labels": _labels(endpoint, **labels)}


def _security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "requests": {"cpu": endpoint.cpu, "memory": endpoint.memory},
        "limits": {"memory": endpoint.memory},
    }


def server_container(
    endpoint: Endpoint, server: VersionServer, name: str, port: int
) -> dict[str, Any]:
    """The Lykeion model server for one version, listening on all interfaces at `port`."""
    probe = {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 5}
    return {
        "name": name,
        "image": endpoint.image,
        "command": ["python", "-m", "lykeion.serving", "--host", "0.0.0.0", "--port", str(port)],
        "env": [
            {"name": CONFIG_ENV, "value": json.dumps(server.config.wire(), separators=(",", ":"))},
        ],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10},
        "resources": _resources(endpoint),
        "securityContext": _security(),
    }


def version_name(endpoint: Endpoint, version: str) -> str:
    return child_name(endpoint.name, version)


# -- lykeion -----------------------------------------------------------------------------


def _deployment(
    endpoint: Endpoint, name: str, replicas: int, labels: dict[str, str], container: dict[str, Any]
) -> dict[str, Any]:
    selector = {"lykeion.io/deployment": endpoint.name, **labels}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(endpoint, name, **labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": _labels(endpoint, **labels)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [container],
                },
            },
        },
    }


def _service(endpoint: Endpoint, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(endpoint, name, **labels),
        "spec": {
            "selector": {"lykeion.io/deployment": endpoint.name, **labels},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def routes(endpoint: Endpoint) -> dict[str, Any]:
    """The router's routes.json: version Services by cluster DNS, weights in effect."""

    def url(version: str) -> str:
        return f"http://{version_name(endpoint, version)}.{endpoint.namespace}.svc"

    return {
        "versions": [
            {"version": v, "url": url(v), "weight": w}
            for v, w in sorted(endpoint.weights.items())
            if w > 0
        ],
        "shadow": {"version": endpoint.shadow, "url": url(endpoint.shadow)}
        if endpoint.shadow
        else None,
    }


def _reviewing(pod: dict[str, Any], server: VersionServer) -> None:
    """A server that reviews callers (`access: kubernetes`) needs the pod's own token: the
    one account that may ask for reviews (modifies `pod`, a pod spec)."""
    if server.config.access == "kubernetes":
        pod["serviceAccountName"] = SERVING_ACCOUNT
        pod["automountServiceAccountToken"] = True


def render_lykeion(endpoint: Endpoint) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for server in endpoint.servers:
        name = version_name(endpoint, server.version)
        labels = {"lykeion.io/version": name}
        container = server_container(endpoint, server, "server", PORT)
        deployment = _deployment(endpoint, name, endpoint.replicas, labels, container)
        _reviewing(deployment["spec"]["template"]["spec"], server)
        objects += [deployment, _service(endpoint, name, labels)]
    router_name = child_name(endpoint.name, "router")
    labels = {"lykeion.io/component": "router"}
    routes_name = child_name(endpoint.name, "routes")
    routes_json = json.dumps(routes(endpoint), indent=2, sort_keys=True)
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(endpoint, routes_name, **labels),
        "data": {"routes.json": routes_json},
    }
    router = {
        "name": "router",
        "image": endpoint.image,
        "command": [
            "python",
            "-m",
            "lykeion.serving.router",
            "--routes",
            ROUTES_PATH,
            "--host",
            "0.0.0.0",
            "--port",
            str(PORT),
        ],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": PORT}, "periodSeconds": 5},
        "volumeMounts": [{"name": "routes", "mountPath": "/etc/lykeion/routes"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": _security(),
    }
    router_deployment = _deployment(endpoint, router_name, 1, labels, router)
    router_deployment["spec"]["template"]["spec"]["volumes"] = [
        {"name": "routes", "configMap": {"name": routes_name}}
    ]
    # The kubelet rewrites a mounted ConfigMap only when it syncs the pod (a minute apart
    # by default), so a new split, a rollback too, would reach the router that late. A new
    # split rolls the router instead: its new pod reads the routes at start, the old one
    # serves until the new one is Ready.
    digest = hashlib.sha256(routes_json.encode()).hexdigest()
    router_deployment["spec"]["template"]["metadata"]["annotations"] = {ROUTES_DIGEST: digest}
    service = _service(endpoint, endpoint.name, labels)
    return [*objects, config_map, router_deployment, service]


# -- seldon ------------------------------------------------------------------------------


def predictor_name(version: str) -> str:
    return child_name("v" + version)


def seldon_names(endpoint: Endpoint) -> list[tuple[str, str]]:
    """(what, name) of every object Seldon Core v1.16.0 derives per predictor, as its
    `GetDeploymentName`, `GetContainerServiceName`, `GetPredictorKey` and
    `GetServiceOrchestratorName` build them. Over 63 characters Seldon silently renames
    them `seldon-<md5>`, and the status could no longer be told apart per version."""
    names = []
    for server in endpoint.servers:
        predictor = f"{endpoint.name}-{predictor_name(server.version)}"
        names += [
            ("Deployment", f"{predictor}-0-model"),
            ("Service", f"{predictor}-model"),
            ("Service", predictor),
            ("Service", f"{predictor}-svc-orch"),
        ]
    return names


def seldon_accepts(sdep: dict[str, Any]) -> str | None:
    """None if Seldon Core v1.16.0's validating webhook admits `sdep`'s predictors, else its
    message (`checkTraffic` and `validateShadow` in
    `operator/apis/machinelearning.seldon.io/v1/seldondeployment_webhook.go`): several
    non-shadow predictors sum to exactly 100; a lone predictor carries 0 or 100; at most
    one shadow, with traffic in 0..100, never the only predictor; names unique."""
    predictors = sdep["spec"]["predictors"]
    if not predictors:
        return "Graph contains no predictors"
    names = [p["name"] for p in predictors]
    if len(set(names)) != len(names):
        return "Duplicate predictor name"
    shadows = [p for p in predictors if p.get("shadow")]
    if len(predictors) == 1 and shadows:
        return "Shadow can not exist as only predictor"
    if len(shadows) > 1:
        return "Multiple shadows are not allowed"
    if any(not 0 <= int(p.get("traffic", 0)) <= 100 for p in shadows):
        return "shadow traffic is illegal, the traffic number should be between [0, 100]"
    total = sum(int(p.get("traffic", 0)) for p in predictors if not p.get("shadow"))
    if total != 100 and len(predictors) - len(shadows) > 1:
        return "Traffic must sum to 100 for multiple predictors"
    if 0 < total < 100 and len(predictors) == 1:
        return "Traffic must sum be 100 for a single predictor when set"
    return None


def render_seldon(endpoint: Endpoint) -> list[dict[str, Any]]:
    """One SeldonDeployment, a predictor per admitted version with its share as `traffic`
    (the shadow's 0), the largest share first, which Seldon's webhook admits
    (`seldon_accepts`); `[]` when no predictor has a share."""
    if not any(endpoint.weights.get(s.version, 0) for s in endpoint.servers):
        return []
    predictors = []
    # The largest share first, the shadow last (a stable sort: otherwise as declared).
    # Seldon's status.address names the first predictor's Service, and without Istio or
    # Ambassador that Service is the only way in: a version at 0% must never be first.
    first = sorted(
        endpoint.servers,
        key=lambda s: (s.version == endpoint.shadow, -endpoint.weights.get(s.version, 0)),
    )
    for server in first:
        shadow = server.version == endpoint.shadow
        container = server_container(endpoint, server, "model", SELDON_PORT)
        pod: dict[str, Any] = {"automountServiceAccountToken": False, "containers": [container]}
        _reviewing(pod, server)
        predictor: dict[str, Any] = {
            "name": predictor_name(server.version),
            "replicas": endpoint.replicas,
            "traffic": 0 if shadow else endpoint.weights.get(server.version, 0),
            "labels": {"lykeion.io/version": server.version},
            # Seldon's single-model mode: the graph is one MODEL node whose server speaks
            # the v1 protocol at the executor's own path, so no executor container (whose
            # image is Seldon's, not ours) sits in front of it.
            "annotations": {"seldon.io/no-engine": "true"},
            "componentSpecs": [{"spec": pod}],
            "graph": {
                "name": "model",
                "type": "MODEL",
                "endpoint": {"type": "REST", "httpPort": SELDON_PORT},
                "children": [],
            },
        }
        if shadow:
            predictor["shadow"] = True
        predictors.append(predictor)
    sdep = {
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": _metadata(endpoint, endpoint.name),
        "spec": {"name": endpoint.name, "protocol": "seldon", "predictors": predictors},
    }
    refused = seldon_accepts(sdep)
    if refused is not None:
        raise Unrenderable(f"Seldon's webhook would refuse the split {endpoint.weights}: {refused}")
    return [sdep]


# -- kserve ------------------------------------------------------------------------------

KSERVE_COMPONENTS = ("predictor", "transformer")
SERVERLESS = "Serverless"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"


def kserve_names(endpoint: Endpoint) -> list[tuple[str, str]]:
    """(what, name) KServe v0.15.2 derives: `<name>-<component>` Deployments and Services
    (`constants.PredictorServiceName`, `TransformerServiceName`) and the first DNS label of
    each component's host, `<name>-<component>-<namespace>` (the default `domainTemplate`
    `{{ .Name }}-{{ .Namespace }}.{{ .IngressDomain }}`)."""
    names = []
    for component in KSERVE_COMPONENTS:
        names += [
            ("Deployment/Service", f"{endpoint.name}-{component}"),
            ("host label", f"{endpoint.name}-{component}-{endpoint.namespace}"),
        ]
    names.append(("host label", f"{endpoint.name}-{endpoint.namespace}"))
    return names


def kserve_canary(endpoint: Endpoint) -> tuple[VersionServer, int | None]:
    """The version the InferenceService names and its `canaryTrafficPercent` (None: it
    takes everything). KServe v0.15.2 (`ksvc_reconciler.go`) sends the percent to the
    revision it creates and the rest to its `latestRolledoutRevision`, the last one that
    received 100%: so the canary is the live version that is not `endpoint.stable`, and a
    split is refused when that cannot hold: a shadow, more than two live versions, or two
    whose remainder would not go to the version serving before (`endpoint.stable`)."""
    if endpoint.shadow:
        raise Unrenderable(
            f"KServe has no shadow traffic (shadow {endpoint.shadow}); use seldon or lykeion"
        )
    live = [s for s in endpoint.servers if endpoint.weights.get(s.version, 0) > 0]
    if len(live) > 2:
        raise Unrenderable(
            "KServe splits traffic between at most two versions (a canary and the revision "
            f"it rolled out last); {', '.join(s.version for s in live)} all have a share"
        )
    if len(live) == 1:
        return live[0], None
    if endpoint.kserve_mode != SERVERLESS:
        # Only the Knative reconciler reads canaryTrafficPercent: raw, the canary's
        # Deployment would replace the stable one's and take every request.
        raise Unrenderable(
            f"KServe in {endpoint.kserve_mode} mode serves one version per InferenceService "
            "(canaryTrafficPercent is read only in Serverless mode, with Knative): "
            f"{', '.join(f'{s.version} {endpoint.weights[s.version]}%' for s in live)} cannot "
            "be split; use the seldon or lykeion backend, or KServe in Serverless mode"
        )
    stable = [s for s in live if s.version == endpoint.stable]
    if not stable:
        raise Unrenderable(
            "KServe sends a canary's remainder to the revision it rolled out last, and "
            + (
                f"that is {endpoint.stable}, not one of"
                if endpoint.stable
                else "none has served yet among"
            )
            + f" the versions with a share ({', '.join(s.version for s in live)}): "
            "serve the stable one at 100% first"
        )
    (canary,) = [s for s in live if s is not stable[0]]
    return canary, endpoint.weights[canary.version]


def render_kserve(endpoint: Endpoint) -> list[dict[str, Any]]:
    """A transformer (the Lykeion server: keys in, features looked up, V2 request out) in
    front of KServe's own MLflow runtime serving the registered version's files; the canary
    by meaning (`kserve_canary`); `[]` when no version has a share."""
    if not any(endpoint.weights.get(s.version, 0) for s in endpoint.servers):
        if endpoint.shadow:
            kserve_canary(endpoint)  # refused as such, not silently withdrawn
        return []
    newest, percent = kserve_canary(endpoint)
    storage = newest.config.storage_uri
    transformer: dict[str, Any] = {
        "minReplicas": endpoint.replicas,
        "automountServiceAccountToken": False,
        "containers": [server_container(endpoint, newest, "kserve-container", PORT)],
    }
    _reviewing(transformer, newest)
    predictor: dict[str, Any] = {
        "minReplicas": endpoint.replicas,
        "model": {
            "modelFormat": {"name": "mlflow"},
            "protocolVersion": "v2",
            "storageUri": storage,
            "resources": _resources(endpoint),
        },
    }
    if percent is not None:
        for component in (transformer, predictor):
            component["canaryTrafficPercent"] = percent
    metadata = _metadata(endpoint, endpoint.name, **{"lykeion.io/version": newest.version})
    # Explicit: the split rules above hold for this mode, whatever the cluster's default.
    metadata["annotations"] = {DEPLOYMENT_MODE: endpoint.kserve_mode}
    return [
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": metadata,
            "spec": {"predictor": predictor, "transformer": transformer},
        }
    ]


def _storage_problem(server: VersionServer, extra_schemes: tuple[str, ...] = ()) -> str | None:
    storage = server.config.storage_uri
    if not storage:
        return (
            f"version {server.version} records no artifact location (status.artifactUri): "
            "train it again"
        )
    schemes = (*KSERVE_SCHEMES, *extra_schemes)
    if not str(storage).startswith(schemes):
        return (
            f"version {server.version}'s model is at {storage}, which KServe cannot fetch "
            f"(it takes {', '.join(schemes)}): train it with an object store as MLflow's "
            "artifact root, or install a ClusterStorageContainer for its scheme and list "
            "the scheme in the operator's LYKEION_KSERVE_STORAGE_SCHEMES"
        )
    return None


def lykeion_names(endpoint: Endpoint) -> list[tuple[str, str]]:
    """(what, name) of every object the `lykeion` backend renders."""
    names = [("Service", endpoint.name)]
    names += [("Deployment/Service", f"{endpoint.name}-{s.version}") for s in endpoint.servers]
    return [
        *names,
        ("Deployment", f"{endpoint.name}-router"),
        ("ConfigMap", f"{endpoint.name}-routes"),
    ]


NAMES = {"lykeion": lykeion_names, "seldon": seldon_names, "kserve": kserve_names}


def check(endpoint: Endpoint) -> None:
    """Raise `Unrenderable` naming the object and the limit if the backend would derive a
    name that is not a DNS label of at most 63 characters, or (KServe) a version's model
    lies where the storage initializer cannot fetch it."""
    for what, name in NAMES[endpoint.backend](endpoint):
        name = name.replace(".", "-")
        if len(name) > MAX_LABEL:
            raise Unrenderable(
                f"{endpoint.backend} would name a {what} {name!r}: {len(name)} characters, "
                f"over the {MAX_LABEL}-character DNS label limit; shorten the family, "
                "segment, version or namespace"
            )
    if endpoint.backend == "kserve":
        for server in endpoint.servers:
            if not endpoint.weights.get(server.version, 0):
                continue  # never in the InferenceService while it has no share
            problem = _storage_problem(server, endpoint.kserve_storage_schemes)
            if problem is not None:
                raise Unrenderable(problem)


RENDERERS = {"lykeion": render_lykeion, "seldon": render_seldon, "kserve": render_kserve}


def render(endpoint: Endpoint) -> list[dict[str, Any]]:
    """The backend's objects for `endpoint`, after `check`; raises `Unrenderable`."""
    check(endpoint)
    return RENDERERS[endpoint.backend](endpoint)
