"""A real one-node cluster for the session (tests marked `cluster`), with the images built
from the Dockerfile imported into its containerd.

Not root or not Linux: the tests skip with the reason, except under `.ci/run`
(LYKEION_REQUIRE_CLUSTER=1), where a missing cluster is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lykeion.cluster import BuiltImage, NodeCluster, build_images, unsupported_reason
from lykeion.host_state import HostState
from lykeion.local.controlplane import third_party_crds

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster_images() -> dict[str, BuiltImage]:
    why = unsupported_reason()
    if why:
        if os.environ.get("LYKEION_REQUIRE_CLUSTER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return build_images()


@pytest.fixture(scope="session")
def node_cluster(
    tmp_path_factory: pytest.TempPathFactory, cluster_images: dict[str, BuiltImage]
) -> Iterator[NodeCluster]:
    before = HostState.capture()
    cluster = NodeCluster(
        tmp_path_factory.mktemp("node-cluster"),
        images=[image.archive for image in cluster_images.values()],
    ).start()
    # How long each part took to come up (seconds from the start), for the README's figures.
    (cluster.workdir / "timings.json").write_text(json.dumps(cluster.timings, indent=2))
    yield cluster
    problems = cluster.stop()
    # The host is as it was: no bridge, netfilter tables, sysctls, paths or cgroups left.
    assert problems == [], problems
    assert before.differences() == []


RELEASE = "lykeion"
NAMESPACE = "lykeion-system"
WORKLOAD_NAMESPACE = "team-a"
"""Where the example runs: listed in the chart's workload.extraNamespaces."""
DATA_MOUNT = "/var/lib/lykeion"


def helm_binary() -> str:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-helm.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def data_dir(node_cluster: NodeCluster) -> Path:
    """The shared data volume on the node (hostPath): the stores, MLflow's database and
    artifacts, and the data root holding the example's CSV files, owned by uid 1000 (the
    pods' user)."""
    data = node_cluster.workdir / "lykeion-data"
    examples = data / "data" / "examples" / "forward" / "data"
    examples.mkdir(parents=True, exist_ok=True)
    for csv in (ROOT / "examples" / "forward" / "data").glob("*.csv"):
        shutil.copy(csv, examples / csv.name)
    for path in [data, *data.rglob("*")]:
        os.chown(path, 1000, 1000)
    return data


@pytest.fixture(scope="session")
def installed(
    node_cluster: NodeCluster, cluster_images: dict[str, BuiltImage], data_dir: Path
) -> Iterator[NodeCluster]:
    """`helm install` of the chart with the images built here, the data volume on the
    node, the chart's MLflow server, and the workload namespace of the example."""
    operator = cluster_images["operator"].image
    repository, tag = operator.rsplit(":", 1)
    # Seldon's and KServe's real CRDs: the operator's rights on them are part of the proof.
    for crd in sorted(third_party_crds().glob("*.yaml")):
        node_cluster.run_kubectl("apply", "--server-side", "-f", str(crd))
    node_cluster.run_kubectl("create", "namespace", WORKLOAD_NAMESPACE)
    volume = {"hostPath": {"path": str(data_dir), "type": "Directory"}}
    helm = helm_binary()
    base = [helm, f"--kubeconfig={node_cluster.kubeconfig}"]
    started = time.monotonic()
    done = subprocess.run(
        [
            *base, "install", RELEASE, str(ROOT / "charts" / "lykeion"),
            "--namespace", NAMESPACE, "--create-namespace",
            "--set", f"image.repository={repository}",
            "--set", f"image.tag={tag}",
            "--set", "image.pullPolicy=Never",
            "--set", f"workload.image={cluster_images['workloads'].image}",
            "--set", f"serving.image={cluster_images['serving'].image}",
            "--set", f"workload.extraNamespaces={{{WORKLOAD_NAMESPACE}}}",
            "--set-json", f"stores.volume={json.dumps(volume)}",
            "--set", "mlflow.server.enabled=true",
            # tests/cluster/serving.py installs KServe with a ClusterStorageContainer for
            # MLflow's proxied artifacts (the example's model location).
            "--set-json", 'serving.kserve.storageSchemes=["mlflow-artifacts:"]',
            "--wait", "--timeout=240s",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pods = node_cluster.run_kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        logs = node_cluster.run_kubectl(
            "logs", "-n", NAMESPACE, f"deployment/{RELEASE}", "--tail=60", check=False
        )
        raise AssertionError(f"helm install failed: {done.stderr}\n{pods}\n{logs.stdout}")
    timings = node_cluster.workdir / "timings.json"
    figures = json.loads(timings.read_text()) if timings.exists() else {}
    figures["helm install --wait"] = round(time.monotonic() - started, 1)
    timings.write_text(json.dumps(figures, indent=2))
    yield node_cluster
    subprocess.run(
        [*base, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout=60s"],
        check=False,
        capture_output=True,
    )


# Seldon Core's and KServe's own controllers and what the tests through them share.
from tests.cluster.serving import (  # noqa: E402,F401
    clients_python,
    kserve,
    lykeion_api,
    reference_predictions,
    seldon,
    trained_canary,
    trained_example,
)
