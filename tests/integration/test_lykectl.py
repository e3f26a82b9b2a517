"""lykectl as a user runs it: a real process against the real API server and operator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lykeion.local.controlplane import ControlPlane
from tests.support import Cluster, Operator, wait_for

LYKECTL = str(Path(sys.executable).parent / "lykectl")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "forward"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def lykectl(control_plane: ControlPlane, operator: Operator, namespace: str) -> Any:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [LYKECTL, "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
        if check and done.returncode != 0:
            raise AssertionError(f"lykectl {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    return run


def _create_model(
    lykectl: Any, version: str, features: str, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return lykectl(
        "models", "create", "forward", "--segment", "default", "--version", version,
        "--description", "Forward test model",
        "--source-url", f"git@example.com:org/projects.git#mlprojects/forward@{SHA}",
        "--input-features", features,
        "--labels-path", "labels.csv", "--labels-timestamp-column", "label_time",
        "--target", "ordered_again", "--metric", "roc_auc", "--threshold", "0.6",
        *extra, check=check,
    )  # fmt: skip


def test_family_to_canary_deployment(lykectl: Any, cluster: Cluster, namespace: str) -> None:
    lykectl("families", "create", "--alias", "forward", "--name", "Forward",
            "--description", "Forward", "--authors", "ds@example.com", "--wait")  # fmt: skip
    lykectl("features", "apply", "-f", str(EXAMPLES / "features.yaml"), "--wait")
    _create_model(lykectl, "1.0", "rider.age,rider.drop_offs_count", "--wait")
    assert cluster.condition("Model", namespace, "forward-default-1.0")["status"] == "True"  # type: ignore[index]

    lykectl("models", "train", "forward", "--segment", "default", "--version", "1.0")
    model = cluster.get("Model", namespace, "forward-default-1.0")
    assert model is not None and model["spec"]["training"]["requests"] == 1

    # The source is not reachable from here, so the training fails and the gate holds.
    lykectl("models", "deploy", "forward", "--segment", "default", "--version", "1.0")
    _create_model(lykectl, "1.1", "rider.age,rider.avg_fare", "--wait")
    lykectl(
        "models",
        "deploy",
        "forward",
        "--segment",
        "default",
        "--version",
        "1.1",
        "--traffic",
        "10",
    )
    deployment = json.loads(lykectl("deployments", "get", "forward-default", "-o", "json").stdout)
    assert deployment["spec"]["versions"] == [
        {"version": "1.0", "traffic": 90},
        {"version": "1.1", "traffic": 10},
    ]

    held = cluster.wait_condition(
        "Deployment", namespace, "forward-default", "False", "ModelNotEvaluated", timeout=120
    )
    assert "1.0: Model forward-default-1.0 is not Evaluated" in held["message"]
    table = lykectl("models", "list").stdout
    assert "forward-default-1.0" in table and "forward-default-1.1" in table
    family = json.loads(lykectl("families", "get", "forward", "-o", "json").stdout)
    wait_for(
        lambda: (
            (cluster.get("ModelFamily", namespace, "forward") or {})
            .get("status", {})
            .get("segments")
            == [{"name": "default", "versions": ["1.0", "1.1"], "deployed": ["1.0", "1.1"]}]
        ),
        what="family status listing deployed versions",
    )
    assert family["spec"]["alias"] == "forward"


def test_wait_ends_on_failure_reason_in_one_line(lykectl: Any) -> None:
    lykectl("families", "create", "--alias", "forward", "--name", "Forward",
            "--description", "d", "--authors", "ds@example.com")  # fmt: skip
    done = _create_model(lykectl, "1.0", "rider.nope", "--wait", "--timeout", "60", check=False)
    assert done.returncode == 1
    assert "FeaturesNotDefined" in done.stderr and "rider.nope" in done.stderr
    assert "Traceback" not in done.stderr


def test_server_errors_are_one_line(lykectl: Any) -> None:
    done = lykectl(
        "models", "get", "forward", "--segment", "default", "--version", "9.0", check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        next(line for line in done.stderr.splitlines() if "not found" in line)
    ]
    bad = subprocess.run(
        [LYKECTL, "models", "create", "forward", "--param", "novalue"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2


def test_features_backfill_rebuilds_both_stores_as_a_new_generation(
    lykectl: Any, cluster: Cluster, namespace: str
) -> None:
    lykectl("features", "apply", "-f", str(EXAMPLES / "features.yaml"), "--wait")
    before = (cluster.get("FeatureManifest", namespace, "rider-activity") or {})["status"]
    done = lykectl("features", "backfill", "rider-activity", "--wait")
    assert "backfill requested (request #1)" in done.stdout
    after = (cluster.get("FeatureManifest", namespace, "rider-activity") or {})["status"]
    assert after["materializedGeneration"] == before["materializedGeneration"] + 1
    backfills = [r for r in after["runs"] if r.get("start") is None]
    assert [r["generation"] for r in backfills][-2:] == [1, 2]
    # The same source rewritten: same rows, nothing new in the online store.
    assert backfills[-1]["rowsWritten"] == backfills[-2]["rowsWritten"]


def _create_family(lykectl: Any, *extra: str, check: bool = True) -> Any:
    return lykectl("families", "create", "--alias", "forward", "--name", "Forward",
                   "--description", "d", "--authors", "ds@example.com", *extra,
                   check=check)  # fmt: skip


def test_creating_the_same_object_again_is_unchanged_and_a_different_one_is_refused(
    lykectl: Any,
) -> None:
    assert _create_family(lykectl).stdout == "modelfamily.lykeion.io/forward created\n"
    again = _create_family(lykectl)
    assert again.stdout == "modelfamily.lykeion.io/forward unchanged\n", again.stderr
    other = lykectl("families", "create", "--alias", "forward", "--name", "Forward",
                    "--description", "another", "--authors", "ds@example.com",
                    check=False)  # fmt: skip
    assert other.returncode == 1
    assert other.stderr.startswith("error: ModelFamily forward already exists")
    assert "different spec (spec.description)" in other.stderr
    as_json = json.loads(_create_family(lykectl, "-o", "json").stdout)
    assert as_json["metadata"]["name"] == "forward"


def test_deleting_a_family_in_use_says_which_models_hold_it_and_wait_waits(
    lykectl: Any, cluster: Cluster, namespace: str, control_plane: ControlPlane
) -> None:
    _create_family(lykectl, "--wait")
    _create_model(lykectl, "1.0", "rider.age", "--wait", check=False)
    trained = json.loads(
        lykectl("models", "train", "forward", "--version", "1.0", "-o", "json").stdout
    )
    assert trained["spec"]["training"]["requests"] == 1

    held = lykectl("families", "delete", "forward")
    assert held.stdout == (
        "modelfamily.lykeion.io/forward deletion requested; waiting for 1 Model(s) of the "
        "family to be deleted: forward-default-1.0\n"
    )
    assert cluster.get("ModelFamily", namespace, "forward") is not None
    timed_out = lykectl("families", "delete", "forward", "--wait", "--timeout", "2", check=False)
    assert timed_out.returncode == 1
    assert "timed out after 2s waiting for modelfamily.lykeion.io/forward to be deleted" in (
        timed_out.stderr
    )
    assert "forward-default-1.0" in timed_out.stderr

    # Waiting for the family while its last Model goes: --wait sees the finalizer through.
    waiting = subprocess.Popen(
        [LYKECTL, "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace,
         "families", "delete", "forward", "--wait", "--timeout", "90", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        model = json.loads(lykectl("models", "delete", "forward", "--version", "1.0", "--wait",
                                   "-o", "json").stdout)  # fmt: skip
        assert model == {"object": "model.lykeion.io/forward-default-1.0",
                         "namespace": namespace, "deleted": True, "waitingFor": None}  # fmt: skip
        out, err = waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert json.loads(out) == {"object": "modelfamily.lykeion.io/forward",
                               "namespace": namespace, "deleted": True,
                               "waitingFor": None}  # fmt: skip
    assert cluster.get("ModelFamily", namespace, "forward") is None
