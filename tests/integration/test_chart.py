"""The Helm chart lints, renders, and everything it renders is accepted by the real API server."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from lykeion.config import PlatformConfig
from lykeion.executors import Work, make_executor
from lykeion.executors.base import Endpoint, VersionServer
from lykeion.kube import Kube
from lykeion.local.controlplane import ControlPlane
from lykeion.local.tools import script_output
from tests import objects
from tests.support import Cluster

ROOT = Path(__file__).resolve().parents[2]


def _helm() -> str:
    return str(script_output(ROOT / "scripts" / "install-helm.sh", "installing helm"))


def test_chart_renders_objects_the_api_server_accepts(
    control_plane: ControlPlane, cluster: Cluster, tmp_path: Path
) -> None:
    helm = _helm()
    lint = subprocess.run(
        [helm, "lint", "--strict", str(ROOT / "charts" / "lykeion")], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    namespace = cluster.new_namespace("lykeion-system")
    rendered = subprocess.run(
        [helm, "template", "lykeion", str(ROOT / "charts" / "lykeion"), "-n", namespace],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
    } <= kinds
    path = tmp_path / "chart.yaml"
    path.write_text(rendered)
    control_plane.run_kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))
    for doc in docs:
        kind = doc["kind"].lower()
        name = doc["metadata"]["name"]
        scope = [] if doc["kind"].startswith("Cluster") else ["-n", namespace]
        assert control_plane.run_kubectl("get", kind, name, *scope, check=False).returncode == 0, (
            kind,
            name,
        )


def test_chart_crds_are_the_generated_ones() -> None:
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (ROOT / "charts" / "lykeion" / "crds" / path.name).read_text() == path.read_text()


INDEX_VALUES = [
    "--set", "workload.packageIndex.url=https://pypi.internal/simple",
    "--set", "workload.packageIndex.extraUrls={https://extra.internal/simple,http://plain:8080/simple}",
    "--set", "workload.packageIndex.trustedHosts={plain:8080,pypi.internal}",
    "--set", "workload.packageIndex.cert=/var/lib/lykeion/ca/internal.pem",
]  # fmt: skip


def _config_map(helm: str, *values: str) -> dict[str, str]:
    rendered = subprocess.run(
        [helm, "template", "lykeion", str(ROOT / "charts" / "lykeion"), *values],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    (config,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "LYKEION_CONFIG" in (d.get("data") or {})
    ]
    data: dict[str, str] = config["data"]
    return data


def test_the_package_index_reaches_every_job_the_operator_creates(
    api: client.ApiClient, cluster: Cluster, namespace: str
) -> None:
    """workload.packageIndex -> the operator's ConfigMap -> its PlatformConfig -> the
    environment of the Jobs it creates, as the API server stores them."""
    helm = _helm()
    data = _config_map(helm, *INDEX_VALUES)
    assert {k: v for k, v in data.items() if k.startswith("LYKEION_PACKAGE_")} == {
        "LYKEION_PACKAGE_INDEX_URL": "https://pypi.internal/simple",
        "LYKEION_PACKAGE_EXTRA_INDEX_URLS": "https://extra.internal/simple http://plain:8080/simple",
        "LYKEION_PACKAGE_TRUSTED_HOSTS": "plain:8080 pypi.internal",
        "LYKEION_PACKAGE_INDEX_CERT": "/var/lib/lykeion/ca/internal.pem",
    }
    # By default nothing: pip's and uv's own index.
    assert not [k for k in _config_map(helm) if k.startswith("LYKEION_PACKAGE_")]

    # The operator reads its ConfigMap as its environment (envFrom).
    config = PlatformConfig.from_env(data)
    executor = make_executor("kubernetes", Kube(api), job_env=config.package_index.env())
    owner = cluster.create(objects.model(), namespace)
    work = Work("indexed-t1", namespace, "img", ("python", "-m", "lykeion.training.run"),
                owner=owner)  # fmt: skip
    asyncio.run(executor.submit(work))
    job = client.BatchV1Api(api).read_namespaced_job(work.name, namespace)
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert {k: v for k, v in env.items() if k.startswith("PIP_")} == {
        "PIP_INDEX_URL": "https://pypi.internal/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra.internal/simple http://plain:8080/simple",
        "PIP_TRUSTED_HOST": "plain:8080 pypi.internal",
        "PIP_CERT": "/var/lib/lykeion/ca/internal.pem",
    }


def test_an_index_that_is_not_a_url_is_refused_at_install_time() -> None:
    done = subprocess.run(
        [_helm(), "template", "lykeion", str(ROOT / "charts" / "lykeion"),
         "--set", "workload.packageIndex.url=pypi.internal/simple"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    # The values schema names the field ('/workload/packageIndex/url' in helm 3.22).
    assert "packageIndex" in done.stderr and "url" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("kind", "volume_source"),
    [
        ("configMap", {"configMap": {"name": "internal-ca", "defaultMode": 0o444,
                                     "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}),
        ("secret", {"secret": {"secretName": "internal-ca", "defaultMode": 0o444,
                               "items": [{"key": "bundle.pem", "path": "ca.crt"}]}}),
    ],
)  # fmt: skip
def test_the_ca_bundle_reaches_every_job_and_model_server_the_operator_creates(
    api: client.ApiClient,
    cluster: Cluster,
    namespace: str,
    kind: str,
    volume_source: dict[str, Any],
) -> None:
    """workload.caBundle -> the operator's ConfigMap -> its PlatformConfig -> a Job and a
    model server Deployment with the bundle mounted read-only and the trust variables
    pointing at it, as the API server stores them."""
    helm = _helm()
    values = ["--set", f"workload.caBundle.{kind}=internal-ca",
              "--set", "workload.caBundle.key=bundle.pem"]  # fmt: skip
    data = _config_map(helm, *values)
    assert {k: v for k, v in data.items() if k.startswith("LYKEION_CA_BUNDLE_")} == {
        f"LYKEION_CA_BUNDLE_{kind.upper()}": "internal-ca",
        "LYKEION_CA_BUNDLE_KEY": "bundle.pem",
    }
    # By default nothing: the images' own trust store.
    assert not [k for k in _config_map(helm) if k.startswith("LYKEION_CA_BUNDLE_")]

    config = PlatformConfig.from_env(data)
    executor = make_executor("kubernetes", Kube(api), ca_bundle=config.ca_bundle)
    owner = cluster.create(objects.model(), namespace)
    work = Work("trusting-t1", namespace, "img", ("python", "-m", "lykeion.training.run"),
                owner=owner)  # fmt: skip
    endpoint = Endpoint(name="forward", namespace=namespace, backend="lykeion",
                        servers=(VersionServer("2.0", "forward-2-0",
                                               objects.server_config("2.0", name="forward")),),
                        weights={"2.0": 100}, image="lykeion/serving:0.1.0")  # fmt: skip

    async def scenario() -> None:
        await executor.submit(work)
        await executor.serve(endpoint)

    asyncio.run(scenario())
    job = client.BatchV1Api(api).read_namespaced_job(work.name, namespace)
    server = client.AppsV1Api(api).read_namespaced_deployment("forward-2-0", namespace)
    for pod in (job.spec.template.spec, server.spec.template.spec):
        (volume,) = [v for v in pod.volumes if v.name == "ca-bundle"]
        # Only the one key, as ca.crt, readable by the pods' non-root user.
        assert api.sanitize_for_serialization(volume) == {"name": "ca-bundle", **volume_source}
        (container,) = pod.containers
        (mount,) = [m for m in container.volume_mounts if m.name == "ca-bundle"]
        assert (mount.mount_path, mount.read_only) == ("/etc/lykeion/ca", True)
        env = {e.name: e.value for e in container.env}
        assert {k: v for k, v in env.items() if v == "/etc/lykeion/ca/ca.crt"} == dict.fromkeys(
            ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "GIT_SSL_CAINFO",
             "MLFLOW_TRACKING_SERVER_CERT_PATH", "AWS_CA_BUNDLE"], "/etc/lykeion/ca/ca.crt"
        )  # fmt: skip
    router = client.AppsV1Api(api).read_namespaced_deployment("forward-router", namespace)
    assert "ca-bundle" not in {v.name for v in router.spec.template.spec.volumes}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # at most one of the two objects, named in the message
        (["workload.caBundle.configMap=a", "workload.caBundle.secret=b"],
         "/workload/caBundle/secret"),
        (["workload.caBundle.secret=internal-ca", "workload.caBundle.key="],
         "/workload/caBundle/key"),
        (["workload.caBundle.configMap=Internal_CA"], "/workload/caBundle/configMap"),
        # the bundle sets PIP_CERT itself
        (["workload.caBundle.configMap=internal-ca",
          "workload.packageIndex.cert=/var/lib/lykeion/ca/internal.pem"],
         "workload.caBundle and workload.packageIndex.cert are both set"),
    ],
)  # fmt: skip
def test_a_bad_ca_bundle_is_refused_at_install_time(values: list[str], expected: str) -> None:
    done = subprocess.run(
        [_helm(), "template", "lykeion", str(ROOT / "charts" / "lykeion"),
         *[arg for value in values for arg in ("--set", value)]],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert expected in done.stderr, done.stderr


def test_pull_secrets_reach_every_jobs_pod_through_the_workload_service_account() -> None:
    chart = str(ROOT / "charts" / "lykeion")
    rendered = subprocess.run(
        [_helm(), "template", "lykeion", chart, "-n", "lykeion-system",
         "--set", "imagePullSecrets[0].name=regcred",
         "--set", "workload.extraNamespaces={team-a}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    accounts = [
        d
        for d in docs
        if d["kind"] == "ServiceAccount"
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == "workload"
    ]
    assert {a["metadata"]["namespace"] for a in accounts} >= {"team-a"}
    for account in accounts:
        assert account["imagePullSecrets"] == [{"name": "regcred"}]
        assert account["automountServiceAccountToken"] is False
    # None given: none rendered.
    plain = subprocess.run(
        [_helm(), "template", "lykeion", chart], capture_output=True, text=True, check=True
    ).stdout
    assert all("imagePullSecrets" not in d for d in yaml.safe_load_all(plain) if d)
    # A secret without a name is refused at install time.
    bad = subprocess.run(
        [_helm(), "template", "lykeion", chart, "--set", "imagePullSecrets[0].nam=regcred"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "imagePullSecrets" in bad.stderr, bad.stderr
