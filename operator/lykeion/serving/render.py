"""The Kubernetes objects that serve an `Endpoint`, per backend (pure builders).

- `lykeion`: a Deployment + Service per version running the Lykeion model server, and a
  router (Deployment + Service named like the endpoint) splitting traffic by weight;
- `seldon`: one SeldonDeployment, a predictor per version (`traffic`), the shadow as a
  `shadow: true` predictor; each predictor's graph is one MODEL node, the Lykeion server
  as a custom container speaking Seldon's v1 protocol;
- `kserve`: one InferenceService for the newest version (KServe keeps the previous one,
  `canaryTrafficPercent` is the split): KServe's MLflow runtime as the predictor, the
  Lykeion server as the transformer that turns keys into the model's V2 inputs.

Every server gets its `ServerConfig` through the `LYKEION_SERVER_CONFIG` variable.
"""

from __future__ import annotations

import json
from typing import Any

from lykeion.executors.base import Endpoint, VersionServer
from lykeion.names import child_name

CONFIG_ENV = "LYKEION_SERVER_CONFIG"
SERVING_ACCOUNT = "lykeion-serving"
"""The ServiceAccount of model servers that review callers (`access: kubernetes`): the
chart creates it and lets it create TokenReviews and SubjectAccessReviews, nothing else."""
PORT = 8080
SELDON_PORT = 9000
ROUTES_PATH = "/etc/lykeion/routes/routes.json"


class Unrenderable(ValueError):
    """The endpoint asks for something its backend cannot express."""


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
            {"name": CONFIG_ENV, "value": json.dumps(server.config, separators=(",", ":"))},
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
    if server.config.get("access") == "kubernetes":
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
    config_map: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(endpoint, routes_name, **labels),
        "data": {"routes.json": json.dumps(routes(endpoint), indent=2, sort_keys=True)},
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
    service = _service(endpoint, endpoint.name, labels)
    return [*objects, config_map, router_deployment, service]


# -- seldon ------------------------------------------------------------------------------


def predictor_name(version: str) -> str:
    return child_name("v" + version)


def render_seldon(endpoint: Endpoint) -> list[dict[str, Any]]:
    predictors = []
    for server in endpoint.servers:
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
    return [
        {
            "apiVersion": "machinelearning.seldon.io/v1",
            "kind": "SeldonDeployment",
            "metadata": _metadata(endpoint, endpoint.name),
            "spec": {"name": endpoint.name, "protocol": "seldon", "predictors": predictors},
        }
    ]


# -- kserve ------------------------------------------------------------------------------


def render_kserve(endpoint: Endpoint) -> list[dict[str, Any]]:
    """A transformer (the Lykeion server: keys in, features looked up, V2 request out) in
    front of KServe's own MLflow runtime serving the registered version's files."""
    if endpoint.shadow:
        raise Unrenderable("the kserve backend has no shadow traffic; use seldon or lykeion")
    live = [s for s in endpoint.servers if endpoint.weights.get(s.version, 0) > 0]
    if not live:
        raise Unrenderable("no version has traffic")
    if len(live) > 2:
        raise Unrenderable("the kserve backend splits traffic between at most two versions")
    # KServe keeps the previously rolled-out revision itself: the spec names the newest.
    newest = live[-1]
    storage = newest.config.get("storage_uri")
    if not storage:
        raise Unrenderable(
            f"version {newest.version} records no artifact location (status.artifactUri): "
            "train it again"
        )
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
    if len(live) == 2:
        for component in (transformer, predictor):
            component["canaryTrafficPercent"] = endpoint.weights[newest.version]
    return [
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": _metadata(
                endpoint, endpoint.name, **{"lykeion.io/version": newest.version}
            ),
            "spec": {"predictor": predictor, "transformer": transformer},
        }
    ]


RENDERERS = {"lykeion": render_lykeion, "seldon": render_seldon, "kserve": render_kserve}


def render(endpoint: Endpoint) -> list[dict[str, Any]]:
    return RENDERERS[endpoint.backend](endpoint)
