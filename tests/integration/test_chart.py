"""The Helm chart lints, renders, and everything it renders is accepted by the real API server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from lykeion.local.controlplane import ControlPlane
from lykeion.local.tools import script_output
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
