"""Every file in examples/ applies to the real API server and the operator makes it Ready."""

from __future__ import annotations

import csv
import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lykeion.api import validate_object
from lykeion.features.view import FeatureView
from lykeion.local.controlplane import ControlPlane
from lykeion.stores import open_offline
from lykeion.stores.offline.base import LabelSpec
from lykeion.training import dataset
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
            # The Model trains (the example asks for one training) before it can serve.
            cluster.wait_condition(
                doc["kind"], namespace, doc["metadata"]["name"], "True", timeout=300
            )
    table = control_plane.run_kubectl("get", "lykeion", "-n", namespace).stdout
    assert table.count("True") == sum(len(load(p)) for p in FILES)


def test_served_features_equal_the_training_path_for_the_same_key_and_time(
    control_plane: ControlPlane, cluster: Cluster, operator: Operator, namespace: str
) -> None:
    """The skew check: what the endpoint feeds the model for a key now equals the
    point-in-time row the offline store (the training set's path) gives for that key now
    — now being long after every rider's last ride (the example's rides end on Apr 30),
    so both must have decayed the 30-day windows: `drop_offs_count` 0, `avg_fare` null."""
    for path in FILES:
        control_plane.run_kubectl("apply", "--server-side", "-n", namespace, "-f", str(path))
    deployment = cluster.wait_condition(
        "Deployment", namespace, "forward-default", "True", timeout=300
    )
    assert deployment["reason"] == "Serving"
    status = (cluster.get("Deployment", namespace, "forward-default") or {})["status"]
    model = (cluster.get("Model", namespace, "forward-default-1.0") or {})["status"]
    manifest = cluster.get("FeatureManifest", namespace, "rider-activity") or {}

    keys = [f"r{i}" for i in range(1, 301, 7)] + ["r42"]
    body = json.dumps({"keys": [{"rider_id": k} for k in keys]}).encode()
    request = urllib.request.Request(
        status["endpoint"] + "/predict?explain=features", body, {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        served = json.loads(answer.read())
        assert answer.headers["x-lykeion-version"] == "1.0"
    assert len(served["predictions"]) == len(keys)

    now = datetime.now(UTC)
    view = FeatureView.from_body(manifest)
    refs = dataset.feature_refs([f["ref"] for f in model["features"]], [view])
    labels = pa.table(
        {
            "rider_id": keys,
            "label_time": pa.array([now] * len(keys), pa.timestamp("us", tz="UTC")),
            "target": [0] * len(keys),
        }
    )
    offline = open_offline(f"duckdb://{operator.extra_env['LYKEION_DATA_DIR']}/offline.duckdb")
    try:
        training = offline.training_set(labels, LabelSpec("rider_id", "label_time", "target"), refs)
    finally:
        offline.close()
    expected = training.table.to_pylist()
    columns = [f["column"] for f in model["features"]]
    assert [list(row) for row in served["features"]] == [columns] * len(keys)
    for key, online, offline_row in zip(keys, served["features"], expected, strict=True):
        assert offline_row["rider_id"] == key
        for column in columns:
            want = offline_row[column]
            if want is None:
                assert online[column] is None, (key, column)
            else:
                assert online[column] == pytest.approx(want, rel=1e-12), (key, column)
    # Some riders have history and some values differ between them: the check has teeth.
    assert len({json.dumps(row, sort_keys=True) for row in served["features"]}) > 10
    # No rider has ridden in the last 30 days: every window is empty, for r42 (13 rides
    # in its last 30 days of data) too, online and offline alike.
    last_ride = max(row["event_time"] for row in _rides() if row["rider_id"] == "r42")
    assert now - last_ride > timedelta(days=30)
    for online, offline_row in zip(served["features"], expected, strict=True):
        assert online["rider__drop_offs_count"] == offline_row["rider__drop_offs_count"] == 0
        assert online["rider__avg_fare"] is offline_row["rider__avg_fare"] is None
    assert manifest["status"]["newestEventTime"] == "2026-04-30T23:44:06Z"


def _rides() -> list[dict[str, Any]]:
    with (EXAMPLES / "forward" / "data" / "rides.csv").open() as f:
        return [
            {**row, "event_time": datetime.fromisoformat(row["event_time"].replace("Z", "+00:00"))}
            for row in csv.DictReader(f)
        ]
