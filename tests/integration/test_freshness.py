"""Freshness gauges on the operator's /metrics, after a real materialization of the
example FeatureManifest through the operator and the real API server."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import Cluster, Operator, load, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = load(ROOT / "examples" / "forward" / "features.yaml")[0]
NEWEST_EVENT = datetime(2026, 4, 30, 23, 44, 6, tzinfo=UTC)
"""The example source's newest event (`status.newestEventTime`)."""


def _gauges(operator: Operator, namespace: str) -> dict[str, float]:
    status, text = operator.get("/metrics")
    assert status == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels == {"namespace": namespace, "manifest": "rider-activity"}
    }


def test_freshness_gauges_follow_the_manifest_status(
    cluster: Cluster, operator: Operator, namespace: str
) -> None:
    cluster.create(EXAMPLE, namespace)
    cluster.wait_condition("FeatureManifest", namespace, "rider-activity", "True", timeout=90)
    before = time.time()
    gauges = wait_for(
        lambda: _gauges(operator, namespace) or None, timeout=30, what="freshness gauges"
    )
    after = time.time()
    event_age = gauges["lykeion_feature_newest_event_age_seconds"]
    assert (
        before - NEWEST_EVENT.timestamp() - 1 <= event_age <= after - NEWEST_EVENT.timestamp() + 1
    )
    status = (cluster.get("FeatureManifest", namespace, "rider-activity") or {})["status"]
    finished = datetime.fromisoformat(status["lastRunTime"].replace("Z", "+00:00")).timestamp()
    assert (
        before - finished - 1
        <= gauges["lykeion_feature_last_success_age_seconds"]
        <= after - finished + 1
    )

    cluster.delete("FeatureManifest", namespace, "rider-activity")
    wait_for(lambda: not _gauges(operator, namespace), timeout=30, what="gauges removed")
