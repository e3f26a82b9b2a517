"""Prometheus metrics of the operator, served with its health endpoints."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from lykeion.conditions import parse_time

RECONCILES = Counter("lykeion_reconciles_total", "Completed reconciles", ["kind"])
RECONCILE_ERRORS = Counter("lykeion_reconcile_errors_total", "Reconciles that raised", ["kind"])
RECONCILE_SECONDS = Histogram(
    "lykeion_reconcile_duration_seconds",
    "Time to reconcile one object",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Freshness:
    """Per FeatureManifest, two ages computed when scraped (so they grow between runs):

    - `lykeion_feature_newest_event_age_seconds{namespace,manifest}`: now minus the event
      time of the newest source row the stores hold (`status.newestEventTime`);
    - `lykeion_feature_last_success_age_seconds{namespace,manifest}`: now minus the end of
      the last successful run (`status.lastRunTime`).

    A manifest without that time yet (never materialized, an empty source) has no sample
    for it: no data, which an alert tells apart from "fresh" with `absent()`."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._times: dict[tuple[str, str], tuple[float | None, float | None]] = {}
        self._lock = threading.Lock()

    def record(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Take the times of a FeatureManifest's status (as stored or about to be)."""
        newest = parse_time(status.get("newestEventTime"))
        success = parse_time(status.get("lastRunTime"))
        with self._lock:
            self._times[(namespace, name)] = (
                newest.timestamp() if newest else None,
                success.timestamp() if success else None,
            )

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._times.pop((namespace, name), None)

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        labels = ["namespace", "manifest"]
        newest = GaugeMetricFamily(
            "lykeion_feature_newest_event_age_seconds",
            "Age of the newest source event materialized, per FeatureManifest",
            labels=labels,
        )
        success = GaugeMetricFamily(
            "lykeion_feature_last_success_age_seconds",
            "Time since the last successful materialization run, per FeatureManifest",
            labels=labels,
        )
        with self._lock:
            items = sorted(self._times.items())
        for (namespace, name), (event, run) in items:
            if event is not None:
                newest.add_metric([namespace, name], now - event)
            if run is not None:
                success.add_metric([namespace, name], now - run)
        yield newest
        yield success


FRESHNESS = Freshness()
REGISTRY.register(FRESHNESS)


def record_status(kind: str, namespace: str, name: str, status: Mapping[str, Any] | None) -> None:
    """What the metrics keep of an object's status after a reconcile (None: deleted)."""
    if kind != "FeatureManifest":
        return
    if status is None:
        FRESHNESS.forget(namespace, name)
    else:
        FRESHNESS.record(namespace, name, status)
