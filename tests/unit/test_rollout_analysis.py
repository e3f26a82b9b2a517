"""The rollout's verdict over one window (pure), held to a brute-force reference computed
from the individual requests, not from counters; and the parsing of the servers' reports."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lykeion.api.deployment import CheckResult, Counters, LatencyBucket, RolloutChecks, SkewCount
from lykeion.rollouts import analysis, signals
from lykeion.serving.outcomes import LiveMetric

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
FEATURES = ("rider.age", "rider.avg_fare")


@dataclass(frozen=True)
class Request:
    seconds: float
    code: int
    skew: tuple[tuple[str, bool], ...]
    """(feature, mismatched) per value the skew sampler compared."""


requests = st.builds(
    Request,
    seconds=st.sampled_from([0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.02, 0.2, 0.9, 1.0, 3.0]),
    code=st.sampled_from([200, 200, 200, 200, 400, 422, 500, 503]),
    skew=st.lists(st.tuples(st.sampled_from(FEATURES), st.booleans()), max_size=2).map(tuple),
)
thresholds = st.builds(
    RolloutChecks,
    max_error_rate=st.sampled_from([0.0, 0.01, 0.2, 0.5, 1.0]),
    max_latency_ratio=st.sampled_from([1.0, 1.5, 3.0, 100.0]),
    max_missing_feature_rate=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
    max_skew_rate=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    max_drift_psi=st.sampled_from([0.1, 0.2, 1.0]),
    min_requests=st.integers(1, 12),
)


def counters(version: str, served: list[Request], with_skew: bool) -> Counters:
    """What a server that answered `served` reports (cumulative)."""
    return Counters(
        version=version,
        requests=len(served),
        server_errors=sum(r.code >= 500 for r in served),
        missing_features=sum(r.code == 422 for r in served),
        latency=[
            LatencyBucket(
                le=None if math.isinf(b) else b, count=sum(r.seconds <= b for r in served)
            )
            for b in (*BUCKETS, math.inf)
        ],
        skew=[
            SkewCount(
                feature=f,
                checked=sum(1 for r in served for g, _ in r.skew if g == f),
                mismatches=sum(1 for r in served for g, m in r.skew if g == f and m),
            )
            for f in FEATURES
        ]
        if with_skew
        else None,
    )


def reference_p99(window: list[Request]) -> float:
    ordered = sorted(r.seconds for r in window)
    slowest = ordered[math.ceil(0.99 * len(ordered)) - 1]
    return min(b for b in (*BUCKETS, math.inf) if slowest <= b)


def reference(
    checks: RolloutChecks,
    canary: list[Request],
    stable: list[Request],
    with_skew: bool,
    drift: dict[str, float],
    elapsed: float,
    interval: float,
) -> tuple[str, str | None, dict[str, float | None]]:
    """(action, failing check, value per check) straight from the window's requests."""
    n = len(canary)
    enough = n >= checks.min_requests
    values: dict[str, float | None] = {"requests": float(n)}
    failed: list[str] = []

    def judge(name: str, value: float | None, limit: float, fails: bool | None = None) -> None:
        values[name] = value
        if enough and (fails if fails is not None else value is not None and value > limit):
            failed.append(name)

    judge("errorRate", sum(r.code >= 500 for r in canary) / n if n else None, checks.max_error_rate)
    if n and len(stable) >= checks.min_requests:
        mine, theirs = reference_p99(canary), reference_p99(stable)
        if math.isinf(mine) and math.isinf(theirs):
            judge("latencyRatio", 1.0, checks.max_latency_ratio)
        elif math.isinf(mine):
            judge("latencyRatio", None, checks.max_latency_ratio, fails=True)
        else:
            judge("latencyRatio", mine / theirs, checks.max_latency_ratio)
    else:
        judge("latencyRatio", None, checks.max_latency_ratio)
    judge(
        "missingFeatures",
        sum(r.code == 422 for r in canary) / n if n else None,
        checks.max_missing_feature_rate,
    )
    rates = []
    for f in FEATURES:
        compared = [m for r in canary for g, m in r.skew if g == f]
        if with_skew and compared:
            rates.append(sum(compared) / len(compared))
    judge("skewRate", max(rates) if rates else None, checks.max_skew_rate)
    judge("driftPsi", max(drift.values()) if drift else None, checks.max_drift_psi)
    if failed:
        return "RollBack", failed[0], values
    return ("Advance" if enough and elapsed >= interval else "Hold"), None, values


@settings(max_examples=400, deadline=None)
@given(
    checks=thresholds,
    canary_before=st.lists(requests, max_size=15),
    canary_window=st.lists(requests, max_size=40),
    stable_before=st.lists(requests, max_size=15),
    stable_window=st.lists(requests, max_size=40),
    with_skew=st.booleans(),
    drift=st.dictionaries(st.sampled_from(FEATURES), st.sampled_from([0.0, 0.05, 0.15, 0.5])),
    elapsed=st.sampled_from([0.0, 9.9, 10.0, 30.0]),
)
def test_verdict_equals_the_reference_on_the_requests(
    checks: RolloutChecks,
    canary_before: list[Request],
    canary_window: list[Request],
    stable_before: list[Request],
    stable_window: list[Request],
    with_skew: bool,
    drift: dict[str, float],
    elapsed: float,
) -> None:
    verdict = analysis.decide(
        checks,
        counters("1.1", canary_before, with_skew),
        counters("1.1", canary_before + canary_window, with_skew),
        counters("1.0", stable_before, with_skew),
        counters("1.0", stable_before + stable_window, with_skew),
        drift,
        elapsed,
        10.0,
    )
    action, failing, values = reference(
        checks, canary_window, stable_window, with_skew, drift, elapsed, 10.0
    )
    assert verdict.action == action
    assert (verdict.failing.name if verdict.failing else None) == failing
    got = {c.name: c.value for c in verdict.checks}
    assert got.keys() == values.keys()
    for name, value in values.items():
        assert got[name] == (None if value is None else pytest.approx(value)), name
    if failing is not None:
        assert verdict.reason == analysis.REASONS[failing]
        assert verdict.message.startswith(failing)


def test_a_restarted_server_counts_from_zero() -> None:
    checks = RolloutChecks(min_requests=5)
    before = Counters(version="1.1", requests=100, server_errors=0)
    now = Counters(version="1.1", requests=10, server_errors=5)
    stable = Counters(version="1.0", requests=50)
    verdict = analysis.decide(checks, before, now, stable, stable, None, 60, 10)
    assert verdict.action == "RollBack"
    assert verdict.failing == CheckResult(
        name="errorRate", value=0.5, threshold=0.01, result="Fail", message="5 of 10 requests"
    )
    assert verdict.message == "errorRate 0.5 > 0.01 (5 of 10 requests)"


def test_too_few_requests_hold_even_when_failing() -> None:
    checks = RolloutChecks(min_requests=20)
    start = Counters(version="1.1")
    bad = Counters(version="1.1", requests=19, server_errors=19)
    stable = Counters(version="1.0")
    verdict = analysis.decide(checks, start, bad, stable, stable, {"rider.age": 9.0}, 600, 10)
    assert verdict.action == "Hold" and verdict.failing is None
    assert verdict.message == "requests 19 < 20: waiting for enough requests"


def test_metrics_text_of_a_real_registry_is_read_back() -> None:
    registry = CollectorRegistry()
    seconds = Histogram(
        "lykeion_serving_request_seconds", "x", ["protocol"], registry=registry, buckets=BUCKETS
    )
    errors = Counter("lykeion_serving_errors_total", "x", ["code"], registry=registry)
    missing = Counter("lykeion_serving_missing_features_total", "x", ["feature"], registry=registry)
    for protocol, value in [("v2", 0.0007), ("plain", 0.3), ("plain", 2.0)]:
        seconds.labels(protocol).observe(value)
    errors.labels("422").inc(4)
    errors.labels("503").inc(2)
    missing.labels("rider.age").inc(3)
    missing.labels("rider.avg_fare").inc(1)
    read = signals.parse_metrics("1.0", generate_latest(registry).decode())
    # 422s are the refusals; the missing-values counter (defaults included) is not read.
    assert (read.requests, read.server_errors, read.missing_features) == (3, 2, 4)
    by_bound = {b.le: b.count for b in read.latency}
    assert by_bound[0.0005] == 0 and by_bound[0.001] == 1 and by_bound[1.0] == 2
    assert by_bound[None] == 3


def test_analysis_document_per_the_contract_and_anything_else_is_no_data() -> None:
    body = {
        "skew": {
            "features": {
                "rider.age": {
                    "checked": 10, "mismatches": 2,
                    "lastMismatch": {"key": {"rider_id": "r4"}, "served": 30, "offline": 31,
                                     "requestTime": "2026-12-01T00:00:00Z", "offlineTime": None},
                },
                "rider.bad": {"checked": "ten", "mismatches": 1},
            }
        },
        "drift": {"features": {"rider.age": {"psi": 0.3, "served": 100},
                               "rider.avg_fare": {"psi": None, "served": 0}}},
    }  # fmt: skip
    skew, drift, last = signals.parse_analysis(body)
    assert skew == [SkewCount(feature="rider.age", checked=10, mismatches=2)]
    assert drift == {"rider.age": 0.3}
    assert last["rider.age"]["key"] == {"rider_id": "r4"}
    for nonsense in (None, [], "x", {"skew": [1]}, {"drift": {"features": 3}}):
        assert signals.parse_analysis(nonsense) == (None, {}, {})


def _live_verdict(
    canary: LiveMetric | None,
    stable: LiveMetric | None,
    higher_is_better: bool = True,
    min_labels: int = 5,
) -> analysis.Verdict:
    ok = Counters(version="1.1", requests=50)
    checks = RolloutChecks(min_requests=5, min_labels=min_labels, max_live_metric_drop=0.05)
    gate = analysis.Gate("roc_auc" if higher_is_better else "rmse", 0.6, higher_is_better)
    return analysis.decide(
        checks, Counters(version="1.1"), ok, Counters(version="1.0"),
        Counters(version="1.0", requests=50), None, 10.0, 5.0, gate, canary, stable,
    )  # fmt: skip


def test_the_live_metric_is_judged_against_the_gate_and_the_stable_version() -> None:
    good = LiveMetric("roc_auc", 0.8, 20, 40)
    # Worse than the gate's threshold: rolled back naming the check, its metric and counts.
    verdict = _live_verdict(LiveMetric("roc_auc", 0.4, 20, 40), good)
    assert (verdict.action, verdict.reason) == ("RollBack", "LiveMetricFailsGate")
    assert verdict.message.startswith("liveMetric 0.4 < 0.6 (roc_auc canary: 20 labelled of 40")
    # Above the gate but worse than the stable version by more than maxLiveMetricDrop.
    verdict = _live_verdict(LiveMetric("roc_auc", 0.7, 20, 40), good)
    assert (verdict.action, verdict.reason) == ("RollBack", "LiveMetricWorse")
    assert verdict.failing is not None and verdict.failing.value == pytest.approx(0.1)
    # As good as stable: both pass, and the step advances.
    verdict = _live_verdict(LiveMetric("roc_auc", 0.78, 20, 40), good)
    live = {c.name: c for c in verdict.checks}
    assert verdict.action == "Advance"
    assert (live["liveMetric"].result, live["liveMetricDrop"].result) == ("Pass", "Pass")
    assert live["liveMetric"].at_least is True
    # Lower is better (an error metric): above the threshold fails.
    verdict = _live_verdict(LiveMetric("rmse", 0.9, 20, 40), LiveMetric("rmse", 0.3, 20, 40), False)
    assert verdict.reason == "LiveMetricFailsGate"
    assert verdict.message.startswith("liveMetric 0.9 > 0.6")


def test_too_few_labels_are_no_data_not_a_verdict() -> None:
    bad, good = LiveMetric("roc_auc", 0.1, 4, 40), LiveMetric("roc_auc", 0.9, 30, 40)
    verdict = _live_verdict(bad, good)
    live = {c.name: c for c in verdict.checks}
    # Neither rolled back on a value from 4 labels nor promoted unjudged: held.
    assert verdict.action == "Hold"
    assert "fewer than minLabels 5" in live["liveMetric"].message
    assert (live["liveMetric"].result, live["liveMetricDrop"].result) == ("NoData", "NoData")
    # The stable version's labels count too for the comparison.
    verdict = _live_verdict(good, bad)
    live = {c.name: c for c in verdict.checks}
    assert (live["liveMetric"].result, live["liveMetricDrop"].result) == ("Pass", "NoData")
    # No metric at all (one class only, no server report).
    verdict = _live_verdict(LiveMetric("roc_auc", None, 30, 40, "one class"), None)
    assert {c.name: c.result for c in verdict.checks}["liveMetric"] == "NoData"


def test_the_live_metric_of_the_analysis_document() -> None:
    body = {"labels": {"metric": "roc_auc", "value": 0.7, "labelled": 3, "requests": 9}}
    assert signals.parse_live(body) == LiveMetric("roc_auc", 0.7, 3, 9, "")
    assert signals.parse_live({"labels": {**body["labels"], "value": None}}) == LiveMetric(
        "roc_auc", None, 3, 9, ""
    )
    for junk in (None, [], {"labels": []}, {"labels": {"metric": 1}}, {}):
        assert signals.parse_live(junk) is None
