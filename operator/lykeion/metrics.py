"""Prometheus metrics of the operator, served with its health endpoints."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter("lykeion_reconciles_total", "Completed reconciles", ["kind"])
RECONCILE_ERRORS = Counter("lykeion_reconcile_errors_total", "Reconciles that raised", ["kind"])
RECONCILE_SECONDS = Histogram(
    "lykeion_reconcile_duration_seconds",
    "Time to reconcile one object",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
