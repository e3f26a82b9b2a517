"""Every file in examples/ applies to the real API server and the operator makes it Ready."""

from __future__ import annotations

from pathlib import Path

import pytest

from lykeion.api import validate_object
from lykeion.controlplane import ControlPlane
from tests.support import Cluster, Operator, load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(p for p in EXAMPLES.rglob("*.yaml") if "mlproject" not in p.parts)


def test_there_are_examples() -> None:
    kinds = {doc["kind"] for path in FILES for doc in load(path)}
    assert kinds == {"ModelFamily", "FeatureManifest", "Model", "Deployment"}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(EXAMPLES)) for p in FILES])
def test_example_is_valid_client_side(path: Path) -> None:
    for doc in load(path):
        validate_object(doc)


def test_examples_apply_and_become_ready(
    control_plane: ControlPlane, cluster: Cluster, operator: Operator, namespace: str
) -> None:
    for path in FILES:
        control_plane.run_kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))
    for path in FILES:
        for doc in load(path):
            cluster.wait_condition(doc["kind"], namespace, doc["metadata"]["name"], "True")
    table = control_plane.run_kubectl("get", "lykeion", "-n", namespace).stdout
    assert table.count("True") == sum(len(load(p)) for p in FILES)
