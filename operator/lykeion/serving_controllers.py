"""Seldon Core's and KServe's own controllers, with their admission webhooks, against a
running one-node cluster (`lykeion.cluster.NodeCluster`).

Both are built from the Go module proxy by `scripts/build-serving-controllers.sh` (Seldon
Core's v1 operator v1.16.0, KServe v0.15.2's `cmd/manager`) and run as host processes,
started and stopped by PID, logging to `<cluster workdir>/logs/<name>.log`. Everything they
need comes from their own Go modules in the module cache: their CRDs, their webhook
definitions, KServe's `inferenceservice-config` ConfigMap and MLServer runtime, Seldon's
`seldon-config` ConfigMap and its manager's environment. What this module changes, and why:

- webhooks: the API server runs on the host, so each webhook's `clientConfig` is a URL to
  the host process (`https://127.0.0.1:<port><path>`) with a CA made here, instead of a
  Service in front of a pod; the controllers serve the certificate this module writes.
- identity: the controllers use the admin kubeconfig (system:masters), so their RBAC
  manifests are not installed; the rights Lykeion itself needs are the chart's.
- KServe: `defaultDeploymentMode: RawDeployment` (no Knative) and no Ingress creation (no
  ingress controller); the `kserve-mlserver` runtime keeps its name, formats and
  environment (KServe's defaults for MLServer key on that name) but runs MLServer from
  PyPI (`scripts/install-mlserver.sh`, the host's virtualenv mounted read-only) in the
  serving image, since `docker.io/seldonio/mlserver` cannot be pulled here; the storage
  initializer for MLflow's `mlflow-artifacts:` URIs is a `ClusterStorageContainer` (KServe's
  documented extension point) running MLflow's own `download_artifacts` in the serving
  image — KServe's `kserve/storage-initializer` image cannot be pulled here and does not
  read that scheme anyway.
- Seldon: its executor image cannot be pulled here (and its Go module is not served), so
  SeldonDeployments go without it: see `SELDON_NO_ENGINE`.

`stop()` puts the cluster back: the serving objects deleted while their controller still
runs (finalizers), webhooks removed, the process stopped, the CRDs as they were before.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lykeion.cluster import ClusterError, NodeCluster
from lykeion.local import processes
from lykeion.local.controlplane import REPO_ROOT
from lykeion.local.ports import free_port

log = logging.getLogger("lykeion.serving_controllers")

BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-serving-controllers.sh"
MLSERVER_SCRIPT = REPO_ROOT / "scripts" / "install-mlserver.sh"
SELDON_MODULE, SELDON_VERSION = "github.com/seldonio/seldon-core/operator", "1.16.0"
KSERVE_MODULE, KSERVE_VERSION = "github.com/kserve/kserve", "0.15.2"
SELDON_NAMESPACE = "seldon-system"
KSERVE_NAMESPACE = "kserve"
SELDON_NO_ENGINE = {"seldon.io/no-engine": "true"}
"""Seldon's documented single-model switch: no executor container, the predictor's Service
points at the model container itself. Lykeion's graphs are one MODEL node whose server
speaks Seldon's v1 protocol at the executor's own path (`/api/v1.0/predictions`), so the
executor would only add a hop."""
WAIT = 120.0


class ServingControllerError(RuntimeError):
    """A controller could not be built, configured or started; the message says which."""


@dataclass(frozen=True)
class ControllerBinaries:
    """The two controllers' executables."""

    seldon: Path
    kserve: Path


def controller_binaries() -> ControllerBinaries:
    """Build (once, cached under ~/.cache/lykeion/serving-controllers) and locate both
    controllers; `$LYKEION_SERVING_CONTROLLERS_BIN` (a directory holding `seldon-operator`
    and `kserve-manager`) skips the build script. Raises ServingControllerError."""
    given = os.environ.get("LYKEION_SERVING_CONTROLLERS_BIN")
    if given:
        return ControllerBinaries(Path(given) / "seldon-operator", Path(given) / "kserve-manager")
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServingControllerError(f"{BUILD_SCRIPT.name} failed:\n{done.stderr[-4000:]}")
    paths = [Path(line) for line in done.stdout.split()]
    seldon = next(p for p in paths if p.name == "seldon-operator")
    kserve = next(p for p in paths if p.name == "kserve-manager")
    return ControllerBinaries(seldon, kserve)


def module_dir(module: str, version: str) -> Path:
    """Where the Go module cache holds `module@v<version>` (downloaded when missing)."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@v{version}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    if done.returncode != 0:
        raise ServingControllerError(f"go mod download {module}@v{version}: {done.stderr}")
    return Path(json.loads(done.stdout)["Dir"])


def mlserver_dir() -> Path:
    """The virtualenv holding MLServer with its MLflow runtime (`scripts/install-mlserver.sh`
    prints its bin directory; `$LYKEION_MLSERVER_BIN` overrides)."""
    given = os.environ.get("LYKEION_MLSERVER_BIN")
    if given:
        return Path(given).parent
    done = subprocess.run(
        ["bash", str(MLSERVER_SCRIPT)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ServingControllerError(f"{MLSERVER_SCRIPT.name} failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.split()[-1]).parent


def webhook_certificate(directory: Path, hosts: Sequence[str]) -> bytes:
    """A CA and a serving certificate for `hosts` (IP addresses) in `directory`, as
    controller-runtime reads them (`tls.crt`, `tls.key`); returns the CA (PEM) for the
    webhooks' `caBundle`."""
    directory.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "7", "-subj", "/CN=lykeion-webhook-ca")  # fmt: skip
    sans = ",".join(f"IP:{h}" for h in hosts)
    (directory / "ext.cnf").write_text(
        f"subjectAltName={sans}\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
         "-subj", "/CN=webhook")  # fmt: skip
    ossl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "tls.crt", "-days", "7", "-extfile", "ext.cnf")  # fmt: skip
    return (directory / "ca.crt").read_bytes()


def url_webhooks(
    configurations: Sequence[Mapping[str, Any]], base_url: str, ca: bytes
) -> list[dict[str, Any]]:
    """Webhook configurations with each `clientConfig.service` replaced by a URL under
    `base_url` (same path) and `caBundle` set (pure: copies)."""
    out = []
    bundle = base64.b64encode(ca).decode()
    for configuration in configurations:
        copy = json.loads(json.dumps(configuration))
        copy["metadata"] = {"name": copy["metadata"]["name"]}
        for hook in copy["webhooks"]:
            path = (hook["clientConfig"].get("service") or {}).get("path", "")
            hook["clientConfig"] = {"url": base_url + path, "caBundle": bundle}
        out.append(copy)
    return out


@dataclass
class ServingController:
    """One controller as a host process with its webhooks, CRDs and configuration.

    `crds` are created or replace those present before (restored on stop);
    `manifests` are applied before the process starts, `after_start` once its webhooks
    answer (they are validated by them), `webhooks` once it listens; `served` are the
    resources (plural.group) whose objects are deleted before it stops."""

    cluster: NodeCluster
    name: str
    binary: Path
    namespace: str
    args: list[str]
    env: dict[str, str]
    crds: list[dict[str, Any]]
    manifests: list[dict[str, Any]]
    webhooks: list[dict[str, Any]]
    served: list[str]
    after_start: list[dict[str, Any]] = field(default_factory=list)
    webhook_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _previous_crds: list[dict[str, Any]] = field(default_factory=list)
    _created_crds: list[str] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.cluster.workdir / "logs" / f"{self.name}.log"

    @property
    def tmp(self) -> Path:
        """The process's TMPDIR: controller-runtime reads its serving certificate from
        `$TMPDIR/k8s-webhook-server/serving-certs`."""
        return self.cluster.workdir / self.name

    def start(self, timeout: float = WAIT) -> ServingController:
        """Install, start, wait until the webhook port answers TLS with our certificate.
        Raises ServingControllerError (after undoing what was done)."""
        begin = time.monotonic()
        try:
            self._install_crds()
            self.cluster.apply(
                [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}]
            )
            if self.manifests:
                self.cluster.apply(self.manifests)
            ca = webhook_certificate(
                self.tmp / "k8s-webhook-server" / "serving-certs",
                ["127.0.0.1", self.cluster.node_ip],
            )
            self.process = processes.start(
                [str(self.binary), f"-kubeconfig={self.cluster.kubeconfig}",
                 f"-webhook-port={self.webhook_port}", *self.args],
                self.log_path,
                env={**os.environ, **self.env, "TMPDIR": str(self.tmp),
                     "POD_NAMESPACE": self.namespace},
            )  # fmt: skip
            self._wait_listening(timeout)
            self.timings["webhook listening"] = round(time.monotonic() - begin, 2)
            base = f"https://127.0.0.1:{self.webhook_port}"
            self.cluster.apply(url_webhooks(self.webhooks, base, ca))
            if self.after_start:
                self._apply_when_admitted(self.after_start, timeout)
            self.timings["ready"] = round(time.monotonic() - begin, 2)
        except BaseException:
            self.stop()
            raise
        return self

    def _install_crds(self) -> None:
        # Whole objects (create, or replace what another version left): a server-side apply
        # over an earlier CRD would keep the fields only that one declares.
        for crd in self.crds:
            name = crd["metadata"]["name"]
            found = self.cluster.run_kubectl("get", "crd", name, "-o", "json", check=False)
            if found.returncode == 0:
                before = json.loads(found.stdout)
                meta = before["metadata"]
                self._previous_crds.append(
                    {
                        "apiVersion": before["apiVersion"],
                        "kind": before["kind"],
                        "metadata": {
                            "name": name,
                            "annotations": meta.get("annotations") or {},
                            "labels": meta.get("labels") or {},
                        },
                        "spec": before["spec"],
                    }
                )
                self._replace(crd)
            else:
                self.cluster.run_kubectl("create", "-f", "-", stdin=json.dumps(crd))
                self._created_crds.append(name)
        for crd in self.crds:
            self.cluster.run_kubectl(
                "wait",
                "--for=condition=Established",
                f"crd/{crd['metadata']['name']}",
                "--timeout=60s",
            )

    def _replace(self, crd: Mapping[str, Any]) -> None:
        # CRDs allow no unconditional update: name the version replaced.
        version = self.cluster.run_kubectl(
            "get", "crd", crd["metadata"]["name"], "-o", "jsonpath={.metadata.resourceVersion}"
        ).stdout.strip()
        body = {**crd, "metadata": {**crd["metadata"], "resourceVersion": version}}
        self.cluster.run_kubectl("replace", "-f", "-", stdin=json.dumps(body))

    def _wait_listening(self, timeout: float) -> None:
        context = ssl.create_default_context(
            cafile=str(self.tmp / "k8s-webhook-server" / "serving-certs" / "ca.crt")
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ServingControllerError(
                    f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.webhook_port), timeout=2) as s,
                context.wrap_socket(s, server_hostname="127.0.0.1"),
            ):
                return
            if time.monotonic() > deadline:
                raise ServingControllerError(
                    f"{self.name}'s webhook did not listen on {self.webhook_port} within "
                    f"{timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def _apply_when_admitted(self, manifests: list[dict[str, Any]], timeout: float) -> None:
        # The API server may take a moment to call a webhook configured just now.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.cluster.apply(manifests)
                return
            except ClusterError as error:
                if time.monotonic() > deadline:
                    raise ServingControllerError(f"{self.name}: {error}") from error
                time.sleep(1)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the controller's log (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> list[str]:
        """Undo `start`: objects of `served` deleted while the controller runs, webhooks,
        the process (by PID), `after_start` and `manifests`, the namespace, CRDs restored
        or deleted. Returns what could not be undone (empty when all was); never raises."""
        problems: list[str] = []
        k = self.cluster.run_kubectl
        for resource in self.served:
            done = k("delete", resource, "--all", "--all-namespaces", "--wait=true",
                     "--timeout=90s", check=False, timeout=120)  # fmt: skip
            if done.returncode != 0 and "the server doesn't have a resource" not in done.stderr:
                problems.append(f"delete {resource}: {done.stderr.strip()}")
        for hook in self.webhooks:
            k("delete", hook["kind"], hook["metadata"]["name"], "--ignore-not-found", check=False)
        if self.process is not None:
            processes.stop(self.process, grace=20)
            self.process = None
        for manifest in [*self.after_start, *self.manifests]:
            meta = manifest["metadata"]
            scope = ["-n", meta["namespace"]] if meta.get("namespace") else []
            k("delete", manifest["kind"], meta["name"], *scope, "--ignore-not-found",
              "--wait=false", check=False)  # fmt: skip
        k("delete", "namespace", self.namespace, "--ignore-not-found", "--wait=false", check=False)
        for name in self._created_crds:
            done = k("delete", "crd", name, "--ignore-not-found", "--timeout=60s", check=False)
            if done.returncode != 0:
                problems.append(f"delete crd {name}: {done.stderr.strip()}")
        for crd in self._previous_crds:
            try:
                self._replace(crd)
            except ClusterError as error:
                problems.append(f"restore CRD {crd['metadata']['name']}: {error}")
        self._created_crds, self._previous_crds = [], []
        return problems


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# -- KServe ------------------------------------------------------------------------------


def kserve_config(module: Path) -> dict[str, Any]:
    """KServe's own `inferenceservice-config` ConfigMap with RawDeployment as the default
    deployment mode and no Ingress objects (there is no ingress controller); the rest as
    KServe ships it (its `_example` key dropped)."""
    config = _load_all(module / "config" / "configmap" / "inferenceservice.yaml")[0]
    data = {k: v for k, v in config["data"].items() if k != "_example"}
    deploy = json.loads(data["deploy"])
    deploy["defaultDeploymentMode"] = "RawDeployment"
    data["deploy"] = json.dumps(deploy, indent=2)
    ingress = json.loads(data["ingress"])
    ingress["disableIngressCreation"] = True
    data["ingress"] = json.dumps(ingress, indent=2)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config["metadata"]["name"], "namespace": KSERVE_NAMESPACE},
        "data": data,
    }


def kserve_mlserver_runtime(module: Path, image: str, mlserver: Path) -> dict[str, Any]:
    """KServe's own `kserve-mlserver` ClusterServingRuntime (formats, ports, environment
    unchanged) running `mlserver start /mnt/models` from the MLServer virtualenv `mlserver`
    (mounted from the node, read-only, with the interpreter it links to) in `image`."""
    runtime = _load_all(module / "config" / "runtimes" / "kserve-mlserver.yaml")[0]
    interpreter = Path(os.path.realpath(mlserver / "bin" / "python")).parents[1]
    container = runtime["spec"]["containers"][0]
    container["image"] = image
    container["imagePullPolicy"] = "Never"
    container["command"] = [str(mlserver / "bin" / "mlserver"), "start", "/mnt/models"]
    # MLServer 1.7.1's worker processes die at start with the uvloop pip resolves today
    # ("There is no current event loop"): infer in the server's own process instead.
    container["env"] = [*container.get("env", []),
                        {"name": "MLSERVER_PARALLEL_WORKERS", "value": "0"}]  # fmt: skip
    container["volumeMounts"] = [
        {"name": "mlserver", "mountPath": str(mlserver), "readOnly": True},
        {"name": "python", "mountPath": str(interpreter), "readOnly": True},
    ]
    # The virtualenv lives under /root on the node: read as root, nothing else granted.
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "runAsUser": 0,
        "capabilities": {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]},
    }
    container["resources"] = {
        "requests": {"cpu": "100m", "memory": "512Mi"},
        "limits": {"memory": "2Gi"},
    }
    runtime["spec"]["volumes"] = [
        {"name": "mlserver", "hostPath": {"path": str(mlserver), "type": "Directory"}},
        {"name": "python", "hostPath": {"path": str(interpreter), "type": "Directory"}},
    ]
    return runtime


MLFLOW_DOWNLOAD = """\
import os, shutil, sys, tempfile
import mlflow.artifacts
source, target = sys.argv[1], sys.argv[2]
staging = tempfile.mkdtemp(dir=target)
got = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=staging)
for name in os.listdir(got):
    shutil.move(os.path.join(got, name), os.path.join(target, name))
shutil.rmtree(staging)
print("downloaded", source, "to", target, sorted(os.listdir(target)))
"""


def mlflow_storage_container(image: str, tracking_uri: str) -> dict[str, Any]:
    """A ClusterStorageContainer (KServe's extension point for storage URI schemes) that
    fetches `mlflow-artifacts:` URIs with MLflow's own client from the tracking server
    `tracking_uri`, into the model directory KServe mounts at /mnt/models."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterStorageContainer",
        "metadata": {"name": "mlflow-artifacts"},
        "spec": {
            "workloadType": "initContainer",
            "supportedUriFormats": [{"prefix": "mlflow-artifacts:"}],
            "container": {
                "name": "storage-initializer",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["python", "-c", MLFLOW_DOWNLOAD],
                "env": [{"name": "MLFLOW_TRACKING_URI", "value": tracking_uri},
                        {"name": "HOME", "value": "/tmp"}],
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                              "limits": {"memory": "1Gi"}},
            },
        },
    }  # fmt: skip


def kserve_controller(
    cluster: NodeCluster, binary: Path, image: str, tracking_uri: str
) -> ServingController:
    """KServe's manager with its CRDs, config, MLServer runtime and MLflow storage
    container (`image`: the Lykeion serving image, which holds MLflow; `tracking_uri`: the
    MLflow server the storage container downloads from). Not started."""
    module = module_dir(KSERVE_MODULE, KSERVE_VERSION)
    crds = [
        doc
        for path in sorted((module / "config" / "crd" / "full").glob("serving.kserve.io_*.yaml"))
        for doc in _load_all(path)
    ]
    webhooks = _load_all(module / "config" / "webhook" / "manifests.yaml")
    return ServingController(
        cluster=cluster,
        name="kserve-manager",
        binary=binary,
        namespace=KSERVE_NAMESPACE,
        args=[
            f"-metrics-addr=127.0.0.1:{free_port()}",
            f"-health-probe-addr=127.0.0.1:{free_port()}",
            "-leader-elect=false",
        ],
        env={},
        crds=crds,
        manifests=[kserve_config(module)],
        webhooks=webhooks,
        served=["inferenceservices.serving.kserve.io"],
        after_start=[
            kserve_mlserver_runtime(module, image, mlserver_dir()),
            mlflow_storage_container(image, tracking_uri),
        ],
    )


# -- Seldon ------------------------------------------------------------------------------


def seldon_settings(module: Path) -> dict[str, str]:
    """The environment Seldon's own manager Deployment gives the operator (literal values
    only), without Istio or Ambassador (neither runs here)."""
    manager = next(
        d for d in _load_all(module / "config" / "manager" / "manager.yaml")
        if d.get("kind") == "Deployment"
    )  # fmt: skip
    container = manager["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
    env.update(ISTIO_ENABLED="false", AMBASSADOR_ENABLED="false", KEDA_ENABLED="false")
    return env


def seldon_config(module: Path) -> dict[str, Any]:
    """Seldon's own `seldon-config` ConfigMap (prepackaged servers, credentials, storage
    initializer, explainers) in the operator's namespace."""
    config = _load_all(module / "config" / "manager" / "configmap.yaml")[0]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "seldon-config", "namespace": SELDON_NAMESPACE},
        "data": config["data"],
    }


def seldon_webhooks() -> list[dict[str, Any]]:
    """The v1 SeldonDeployment validating webhook as the operator registers it
    (`+kubebuilder:webhook` on `apis/machinelearning.seldon.io/v1/seldondeployment_webhook.go`:
    path, failure policy, review versions); the module's generated manifest names only
    v1alpha2."""
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "seldon-validating-webhook-configuration"},
            "webhooks": [
                {
                    "name": "v1.vseldondeployment.kb.io",
                    "clientConfig": {
                        "service": {
                            "name": "seldon-webhook-service",
                            "namespace": SELDON_NAMESPACE,
                            "path": "/validate-machinelearning-seldon-io-v1-seldondeployment",
                        }
                    },
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1", "v1beta1"],
                    "rules": [
                        {
                            "apiGroups": ["machinelearning.seldon.io"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["seldondeployments"],
                        }
                    ],
                }
            ],
        }
    ]


def seldon_controller(cluster: NodeCluster, binary: Path) -> ServingController:
    """Seldon Core's v1 operator with its own CRD (1.16.0's bundle manifest: identical to
    1.17.1's in shared/third_party/crds), config and settings. Not started."""
    module = module_dir(SELDON_MODULE, SELDON_VERSION)
    crd = _load_all(
        module / "bundle" / "manifests" / "machinelearning.seldon.io_seldondeployments.yaml"
    )
    for doc in crd:
        # cert-manager's CA injection: no cert-manager here (the CRD has no conversion hook).
        doc["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
    return ServingController(
        cluster=cluster,
        name="seldon-operator",
        binary=binary,
        namespace=SELDON_NAMESPACE,
        args=[f"-metrics-addr=127.0.0.1:{free_port()}", f"-operator-namespace={SELDON_NAMESPACE}"],
        env=seldon_settings(module),
        crds=crd,
        manifests=[seldon_config(module)],
        webhooks=seldon_webhooks(),
        served=["seldondeployments.machinelearning.seldon.io"],
    )


__all__ = [
    "SELDON_NO_ENGINE",
    "ControllerBinaries",
    "ServingController",
    "ServingControllerError",
    "controller_binaries",
    "kserve_controller",
    "module_dir",
    "seldon_controller",
    "url_webhooks",
    "webhook_certificate",
]
