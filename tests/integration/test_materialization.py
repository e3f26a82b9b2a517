"""A FeatureManifest applied to the real API server: the operator runs its pipeline, fills
both stores and the status, and a failed run leaves the watermark where it was."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lykeion.features.view import FeatureView
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.support import Cluster, Operator, load, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = load(ROOT / "examples" / "forward" / "features.yaml")[0]


def _status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return (cluster.get("FeatureManifest", namespace, "rider-activity") or {}).get("status") or {}


def test_manifest_fills_stores_and_status(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    cluster.create(EXAMPLE, namespace)
    cond = cluster.wait_condition(
        "FeatureManifest", namespace, "rider-activity", "True", timeout=90
    )
    assert cond["reason"] == "Materialized"
    status = _status(cluster, namespace)
    assert status["rowsWritten"] == 12871
    assert status["materializedGeneration"] == 1
    run = status["runs"][-1]
    assert (run["result"], run["rowsRead"], run["badRows"], run["onlineRows"]) == (
        "Succeeded",
        12871,
        0,
        300,
    )
    assert run["name"] == "rider-activity-g1-r1"
    assert run["duplicateRows"] == 0
    assert status["watermark"] == run["end"]
    assert status["newestEventTime"] == "2026-04-30T23:44:06Z"
    assert "currentRun" not in status

    data = Path(operator.extra_env["LYKEION_DATA_DIR"])
    view = FeatureView.from_body(cluster.get("FeatureManifest", namespace, "rider-activity") or {})
    online = SqliteOnlineStore(data / "online.db")
    try:
        values = online.read(
            view, ["r0", "nobody"], ["age", "drop_offs_count"], now=datetime.now(UTC)
        )
    finally:
        online.close()
    assert values[0] is not None and values[0]["age"] == 38 and values[1] is None
    # Months after r0's last ride its 30-day window is empty: 0, not its last value.
    assert values[0]["drop_offs_count"] == 0
    history = DuckDBOfflineStore(data / "offline.duckdb").history(view)
    assert history.num_rows == 12871


def test_failed_run_keeps_the_watermark_and_recovers(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    cluster.create(EXAMPLE, namespace)
    cluster.wait_condition("FeatureManifest", namespace, "rider-activity", "True", timeout=90)
    first = _status(cluster, namespace)

    source = {
        "source": {
            "file": {"path": "examples/forward/data/missing.csv", "format": "csv"},
            "timestampColumn": "event_time",
        }
    }
    cluster.patch("FeatureManifest", namespace, "rider-activity", {"spec": source})
    cond = cluster.wait_condition(
        "FeatureManifest", namespace, "rider-activity", "False", "PipelineFailed", timeout=90
    )
    assert "missing.csv" in cond["message"]
    failed = _status(cluster, namespace)
    assert failed["watermark"] == first["watermark"]
    assert failed["materializedGeneration"] == 1
    assert failed["runs"][-1]["result"] == "Failed"

    fixed = {
        "source": {
            "file": {"path": "examples/forward/data/rides.csv", "format": "csv"},
            "timestampColumn": "event_time",
        }
    }
    cluster.patch("FeatureManifest", namespace, "rider-activity", {"spec": fixed})
    wait_for(
        lambda: _status(cluster, namespace).get("materializedGeneration") == 3,
        timeout=120,
        what="generation 3 materialized",
    )
    done = _status(cluster, namespace)
    assert done["watermark"] > first["watermark"]
    assert [r["result"] for r in done["runs"]] == ["Succeeded", "Failed", "Succeeded"]
