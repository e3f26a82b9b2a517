"""What one version's model server reports: `/metrics` and `GET /analysis` read into
`Counters` and drift values (parsing is pure; `read` does the HTTP).

Sources (the model server's contract): `lykeion_serving_request_seconds{protocol}` (histogram),
`lykeion_serving_errors_total{code}` (a 422 is a request refused for a missing feature:
`lykeion_serving_missing_features_total` also counts values served as declared defaults,
which are not a fault); and
`/analysis` → `{"skew": {"features": {f: {"checked", "mismatches", "lastMismatch"}}},
"drift": {"features": {f: {"psi", "served", "window"}}}, "labels": {"metric", "value",
"labelled", "requests", "message"}}`, asked with `since` (the window's start: drift and
the live metric count only what was served from then on) and `metric` (the gate's, for
`labels`). An absent or unreadable `/analysis` is no data for skew, drift and the live
metric, never a failure.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lykeion.api.deployment import Counters, LatencyBucket, SkewCount
from lykeion.serving.outcomes import LiveMetric

TIMEOUT = 5.0
LABELS_TIMEOUT = 30.0
"""`/analysis` with a live metric reads the request log and the labels: allow longer."""


@dataclass(frozen=True)
class Signals:
    """One version's counters now, its drift per feature and its last skew mismatches."""

    counters: Counters
    drift: dict[str, float] = field(default_factory=dict)
    last_mismatch: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Feature -> the contract's `lastMismatch` (key, served, offline, times)."""
    live: LiveMetric | None = None
    """The live metric over the window, when asked for and reported."""


def parse_live(body: Any) -> LiveMetric | None:
    """The `labels` object of `/analysis`, or None when absent or not shaped as the
    contract says (`LiveMetric.from_wire`)."""
    return LiveMetric.from_wire(body.get("labels") if isinstance(body, dict) else None)


def parse_metrics(version: str, text: str) -> Counters:
    """Counters from a Prometheus text exposition (histogram summed over protocols).
    Raises ValueError on text that is not the exposition format."""
    requests = 0.0
    errors = 0.0
    missing = 0.0
    buckets: dict[float, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lykeion_serving_request_seconds_count":
                requests += sample.value
            elif sample.name == "lykeion_serving_request_seconds_bucket":
                buckets[float(sample.labels["le"])] += sample.value
            elif sample.name == "lykeion_serving_errors_total":
                code = str(sample.labels.get("code", ""))
                if code.startswith("5"):
                    errors += sample.value
                elif code == "422":
                    missing += sample.value
    return Counters(
        version=version,
        requests=int(requests),
        server_errors=int(errors),
        missing_features=int(missing),
        latency=[
            LatencyBucket(le=None if math.isinf(le) else le, count=int(count))
            for le, count in sorted(buckets.items())
        ],
    )


def parse_analysis(
    body: Any,
) -> tuple[list[SkewCount] | None, dict[str, float], dict[str, dict[str, Any]]]:
    """(skew counts or None, PSI per feature, last mismatch per feature) from `/analysis`;
    anything not shaped as the contract says is no data."""
    if not isinstance(body, dict):
        return None, {}, {}
    skew_features = (
        (body.get("skew") or {}).get("features") if isinstance(body.get("skew"), dict) else None
    )
    skew: list[SkewCount] | None = None
    last: dict[str, dict[str, Any]] = {}
    if isinstance(skew_features, dict):
        skew = []
        for name, value in sorted(skew_features.items()):
            if not isinstance(value, dict):
                continue
            checked, mismatches = value.get("checked"), value.get("mismatches")
            if (
                isinstance(checked, int)
                and isinstance(mismatches, int)
                and checked >= 0
                and mismatches >= 0
            ):
                skew.append(
                    SkewCount(feature=str(name)[:128], checked=checked, mismatches=mismatches)
                )
            if isinstance(value.get("lastMismatch"), dict):
                last[str(name)] = value["lastMismatch"]
    drift: dict[str, float] = {}
    drift_features = (
        (body.get("drift") or {}).get("features") if isinstance(body.get("drift"), dict) else None
    )
    if isinstance(drift_features, dict):
        for name, value in drift_features.items():
            psi = value.get("psi") if isinstance(value, dict) else None
            if isinstance(psi, (int, float)) and not isinstance(psi, bool) and math.isfinite(psi):
                drift[str(name)] = float(psi)
    return skew, drift, last


async def read(
    client: httpx.AsyncClient,
    version: str,
    url: str,
    since: str | None = None,
    metric: str | None = None,
) -> Signals | None:
    """The version's signals from its server at `url`, drift and the live `metric` over
    what it served since `since` (RFC 3339; None: its whole drift window, no live metric);
    None when `/metrics` cannot be read (the server is down or restarting: the window
    waits)."""
    try:
        answer = await client.get(f"{url}/metrics", timeout=TIMEOUT)
        answer.raise_for_status()
        counters = parse_metrics(version, answer.text)
    except (httpx.HTTPError, ValueError):
        return None
    skew: list[SkewCount] | None = None
    drift: dict[str, float] = {}
    last: dict[str, dict[str, Any]] = {}
    live: LiveMetric | None = None
    query = {k: v for k, v in (("since", since), ("metric", metric)) if v is not None}
    try:
        analysis = await client.get(
            f"{url}/analysis", params=query, timeout=TIMEOUT if metric is None else LABELS_TIMEOUT
        )
        if analysis.status_code == 200:
            body = json.loads(analysis.text)
            skew, drift, last = parse_analysis(body)
            live = parse_live(body)
    except (httpx.HTTPError, ValueError):
        pass  # no `/analysis` (an older server): no data for skew, drift and labels
    return Signals(counters.model_copy(update={"skew": skew}), drift, last, live)
