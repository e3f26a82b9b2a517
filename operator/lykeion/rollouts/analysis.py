"""The verdict over one analysis window (pure: no I/O, no clock).

Inputs are cumulative counters of the canary's and the stable version's model servers at the
window's start and now (`Counters`, as in `status.rollout.baseline`), the canary's drift now,
and the thresholds of `spec.rollout.checks`. Definitions, over the window (now - start):

- `requests`: requests the canary answered; below `minRequests` no check can pass or fail.
- `errorRate`: the canary's 5xx answers / its requests. (4xx are the caller's: a 422 for a
  missing feature is counted by `missingFeatures` instead.)
- `latencyRatio`: p99 of the canary / p99 of the stable version, where p99 is the upper bound
  of the histogram bucket that holds the ceil(0.99 n)-th fastest request (no interpolation:
  exact from the buckets, and the same for both versions). `NoData` while the stable version
  answered fewer than `minRequests`; unbounded (no value) when the canary's p99 is past the
  last finite bucket and the stable's is not.
- `missingFeatures`: requests refused for a missing feature (422: a key lacked a feature
  with no declared default) / requests. Values served as declared defaults are by design.
- `skewRate`: for the worst feature, mismatches / checked (served vs offline recomputation);
  `NoData` when the server reports no comparisons in the window.
- `driftPsi`: the largest population stability index the canary reports over the values
  it served since the window's start (its server counts only those: `serving/drift.py`);
  `NoData` when none (fewer values than its server needs).
- `liveMetric` (with `spec.rollout.labels`): the canary Model's evaluation metric over the
  canary's requests in the window joined to their delayed outcomes (`serving/outcomes.py`),
  against that Model's gate threshold, in the gate's direction (`atLeast` when higher is
  better); `NoData` below `minLabels` labelled requests.
- `liveMetricDrop`: how much worse the canary's live metric is than the stable version's
  over the same window (stable - canary when higher is better, canary - stable otherwise;
  negative: better); `NoData` while either has fewer than `minLabels` labelled requests.

A counter that went down means the server restarted: its value now is the window's count.
The verdict: any check failing (with enough requests) → `RollBack` naming the first failing
check in the order above; else, with enough requests and the interval elapsed → `Advance`;
else `Hold`.

`NoData` never fails a step, and for the checks on the servers' counters it does not hold
one either (a Deployment without skew sampling or drift statistics still rolls out). The
live checks are different: declaring `spec.rollout.labels` asks for the canary to be judged
on outcomes, and those arrive up to `horizon` after each request, possibly long after the
interval. So with labels a step whose live checks are `NoData` is held, never advanced:

- while the step is younger than interval + horizon, labels of its requests may still be
  on their way: the checks' messages say until when (`waiting for labels`);
- from then on, too few labelled requests (or no value: one class only, an unreadable
  source) are a shortfall, not a wait: the messages say so, and the step stays held rather
  than promoting a canary nobody judged.

A person still decides: `lykectl models promote` (the `lykeion.io/promote` annotation,
`plan.begin`) promotes a held canary at once, and `spec.rollout.paused` or declaring the
stable version again work as ever. A failing live check rolls back whenever it fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from lykeion.api.deployment import CheckResult, Counters, LatencyBucket, RolloutChecks
from lykeion.serving.outcomes import LiveMetric

Action = Literal["Advance", "Hold", "RollBack"]

#: `CheckResult.name` -> the CamelCase reason of a rollback it causes.
REASONS = {
    "errorRate": "ErrorRateTooHigh",
    "latencyRatio": "LatencyTooHigh",
    "missingFeatures": "MissingFeatures",
    "skewRate": "FeatureSkew",
    "driftPsi": "FeatureDrift",
    "liveMetric": "LiveMetricFailsGate",
    "liveMetricDrop": "LiveMetricWorse",
}


@dataclass(frozen=True)
class Gate:
    """The canary Model's evaluation gate: the live checks' metric and direction."""

    metric: str
    threshold: float
    higher_is_better: bool = True


@dataclass(frozen=True)
class Verdict:
    action: Action
    checks: tuple[CheckResult, ...]
    """Every check's value against its threshold, `requests` first."""
    failing: CheckResult | None = None
    """The first failing check when `action` is `RollBack`."""
    held: tuple[CheckResult, ...] = ()
    """The live checks holding a step whose interval is over (`NoData` with labels)."""

    @property
    def reason(self) -> str:
        if self.failing is not None:
            return REASONS[self.failing.name]
        return "ChecksPassed" if self.action == "Advance" else "Analysing"

    @property
    def message(self) -> str:
        if self.failing is not None:
            return describe(self.failing)
        requests = self.checks[0]
        if requests.result != "Pass":
            return f"{describe(requests)}: waiting for enough requests"
        shown = [c for c in self.checks if c.result != "NoData" or c in self.held]
        return "; ".join(describe(c) for c in shown)


def describe(check: CheckResult) -> str:
    """`errorRate 0.2 > 0.01` and the like (one line, for conditions and decisions)."""
    value = "unbounded" if check.value is None and check.result != "NoData" else _num(check.value)
    sign = {"Pass": "<=", "Fail": ">", "NoData": "vs"}[check.result]
    if check.at_least:
        sign = {"Pass": ">=", "Fail": "<", "NoData": "vs"}[check.result]
    if check.name == "requests":
        sign = {"Pass": ">=", "Fail": "<", "NoData": "<"}[check.result]
    text = f"{check.name} {value} {sign} {_num(check.threshold)}"
    return f"{text} ({check.message})" if check.message else text


def _num(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.4g}"


def _delta(now: int, start: int) -> int:
    # A counter below its start value belongs to a restarted server: count from zero.
    return now - start if now >= start else now


def window_latency(
    start: Sequence[LatencyBucket], now: Sequence[LatencyBucket]
) -> list[tuple[float, int]]:
    """Cumulative (upper bound, count) per bucket over the window; +Inf as `math.inf`."""
    before = {b.le: b.count for b in start}
    reset = any(b.count < before.get(b.le, 0) for b in now)
    out = [
        (math.inf if b.le is None else b.le, b.count if reset else b.count - before.get(b.le, 0))
        for b in now
    ]
    return sorted(out)


def p99(buckets: Sequence[tuple[float, int]]) -> float | None:
    """Upper bound of the bucket holding the ceil(0.99 n)-th request; None without requests."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = math.ceil(0.99 * buckets[-1][1])
    return next(le for le, count in buckets if count >= rank)


def _skew_rate(start: Counters, now: Counters) -> tuple[float | None, str]:
    if now.skew is None:
        return None, ""
    before = {s.feature: s for s in start.skew or []}
    worst: tuple[float, str] | None = None
    for s in now.skew:
        b = before.get(s.feature)
        checked = _delta(s.checked, b.checked if b else 0)
        mismatches = _delta(s.mismatches, b.mismatches if b else 0)
        if checked <= 0:
            continue
        rate = min(mismatches, checked) / checked
        if worst is None or rate > worst[0]:
            worst = (rate, f"{s.feature}: {mismatches} of {checked} differ")
    return (worst[0], worst[1]) if worst else (None, "")


def decide(
    checks: RolloutChecks,
    canary_start: Counters,
    canary_now: Counters,
    stable_start: Counters,
    stable_now: Counters,
    drift: Mapping[str, float] | None,
    elapsed_seconds: float,
    interval_seconds: float,
    gate: Gate | None = None,
    canary_live: LiveMetric | None = None,
    stable_live: LiveMetric | None = None,
    horizon_seconds: float = 0.0,
) -> Verdict:
    """Advance, hold or roll back the canary after `elapsed_seconds` of a window that must
    last `interval_seconds`; see the module docstring for every definition. `drift`: the
    canary's PSI per feature over the window (None or empty: no data); `gate`: with
    `spec.rollout.labels`, the canary Model's gate (None: no live checks); `canary_live`,
    `stable_live`: their servers' live metrics over the window (None: no data);
    `horizon_seconds`: the labels' horizon (how long after a request its outcome may
    arrive), which with a `gate` holds a step whose live checks are `NoData` (module
    docstring). Raises nothing."""
    requests = _delta(canary_now.requests, canary_start.requests)
    enough = requests >= checks.min_requests
    results = [
        CheckResult(
            name="requests",
            value=float(requests),
            threshold=float(checks.min_requests),
            result="Pass" if enough else "NoData",
        )
    ]

    def judged(
        name: str, value: float | None, limit: float, message: str = "", bounded: bool = True
    ) -> CheckResult:
        if not bounded:
            result: Literal["Pass", "Fail", "NoData"] = "Fail" if enough else "NoData"
            return CheckResult(
                name=name, value=None, threshold=limit, result=result, message=message
            )
        if value is None or not enough:
            return CheckResult(
                name=name, value=value, threshold=limit, result="NoData", message=message
            )
        result = "Fail" if value > limit else "Pass"
        return CheckResult(name=name, value=value, threshold=limit, result=result, message=message)

    errors = _delta(canary_now.server_errors, canary_start.server_errors)
    results.append(
        judged(
            "errorRate",
            errors / requests if requests else None,
            checks.max_error_rate,
            f"{errors} of {requests} requests",
        )
    )

    canary_p99 = p99(window_latency(canary_start.latency, canary_now.latency))
    stable_window = window_latency(stable_start.latency, stable_now.latency)
    stable_requests = stable_window[-1][1] if stable_window else 0
    stable_p99 = p99(stable_window) if stable_requests >= checks.min_requests else None
    if canary_p99 is None or stable_p99 is None:
        latency = judged(
            "latencyRatio", None, checks.max_latency_ratio,
            f"stable answered {stable_requests} requests" if stable_p99 is None else "",
        )  # fmt: skip
    elif math.isinf(canary_p99) and math.isinf(stable_p99):
        latency = judged(
            "latencyRatio", 1.0, checks.max_latency_ratio, "both p99 past the last bucket"
        )
    elif math.isinf(canary_p99):
        latency = judged(
            "latencyRatio", None, checks.max_latency_ratio,
            f"canary p99 past the last bucket, stable p99 {stable_p99}s", bounded=False,
        )  # fmt: skip
    else:
        latency = judged(
            "latencyRatio",
            canary_p99 / stable_p99,
            checks.max_latency_ratio,
            f"p99 {canary_p99}s vs {'+Inf' if math.isinf(stable_p99) else stable_p99}s",
        )
    results.append(latency)

    missing = _delta(canary_now.missing_features, canary_start.missing_features)
    results.append(
        judged(
            "missingFeatures",
            missing / requests if requests else None,
            checks.max_missing_feature_rate,
            f"{missing} of {requests} requests refused",
        )
    )
    skew, where = _skew_rate(canary_start, canary_now)
    results.append(judged("skewRate", skew, checks.max_skew_rate, where))
    worst = max(drift.items(), key=lambda kv: (kv[1], kv[0])) if drift else None
    results.append(
        judged(
            "driftPsi",
            worst[1] if worst else None,
            checks.max_drift_psi,
            worst[0] if worst else "",
        )
    )

    if gate is not None:
        live = _live_checks(checks, gate, canary_live, stable_live, enough)
        if enough:
            needs = {"liveMetric": [canary_live], "liveMetricDrop": [canary_live, stable_live]}
            for index, check in enumerate(live):
                if check.result == "NoData":
                    note = label_wait(
                        elapsed_seconds, interval_seconds, horizon_seconds, checks.min_labels,
                        needs[check.name],
                    )  # fmt: skip
                    message = f"{note}; {check.message}"[:512]
                    live[index] = check.model_copy(update={"message": message})
        results.extend(live)

    failing = next((c for c in results if c.result == "Fail"), None)
    if failing is not None:
        return Verdict("RollBack", tuple(results), failing)
    if enough and elapsed_seconds >= interval_seconds:
        held = tuple(c for c in results if c.name in LIVE_CHECKS and c.result == "NoData")
        if held:
            return Verdict("Hold", tuple(results), held=held)
        return Verdict("Advance", tuple(results))
    return Verdict("Hold", tuple(results))


LIVE_CHECKS = frozenset({"liveMetric", "liveMetricDrop"})
"""The checks that hold a step while `NoData` (module docstring)."""


def label_wait(
    elapsed_seconds: float,
    interval_seconds: float,
    horizon_seconds: float,
    min_labels: int,
    lives: Sequence[LiveMetric | None],
) -> str:
    """Why a live check is `NoData` at a step's age `elapsed_seconds` (one line, for its
    message): labels may still arrive before interval + horizon (`waiting for labels`);
    after it, too few labelled requests in `lives` (the versions the check needs; None: no
    report) or no value is a shortfall that holds the step. Pure."""
    due = interval_seconds + horizon_seconds
    if elapsed_seconds < due:
        return (
            f"waiting for labels: they may arrive up to {_secs(horizon_seconds)} after a "
            f"request, judged by step age {_secs(due)} (now {_secs(elapsed_seconds)})"
        )
    short = [live for live in lives if live is None or live.labelled < min_labels]
    if short:
        return (
            f"fewer than minLabels {min_labels} labelled requests at step age "
            f"{_secs(elapsed_seconds)}, past interval + horizon {_secs(due)}: held, not "
            "promoted unjudged (`lykectl models promote` overrides)"
        )
    return (
        f"no live metric at step age {_secs(elapsed_seconds)}, past interval + horizon "
        f"{_secs(due)}: held, not promoted unjudged (`lykectl models promote` overrides)"
    )


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.3g}s"


def _live_checks(
    checks: RolloutChecks,
    gate: Gate,
    canary: LiveMetric | None,
    stable: LiveMetric | None,
    enough: bool,
) -> list[CheckResult]:
    """`liveMetric` and `liveMetricDrop` (module docstring)."""

    def labelled(live: LiveMetric | None) -> bool:
        return live is not None and live.value is not None and live.labelled >= checks.min_labels

    def counted(live: LiveMetric | None, who: str) -> str:
        if live is None:
            return f"{who}: no live metric reported"
        text = f"{who}: {live.labelled} labelled of {live.requests} requests"
        return f"{text}; {live.message}" if live.message else text

    about = f"{gate.metric} {counted(canary, 'canary')}"
    if not (enough and labelled(canary)):
        metric = CheckResult(
            name="liveMetric", value=canary.value if canary else None, threshold=gate.threshold,
            at_least=gate.higher_is_better or None, result="NoData", message=about[:512],
        )  # fmt: skip
    else:
        assert canary is not None and canary.value is not None
        worse = (
            canary.value < gate.threshold
            if gate.higher_is_better
            else canary.value > gate.threshold
        )
        metric = CheckResult(
            name="liveMetric", value=canary.value, threshold=gate.threshold,
            at_least=gate.higher_is_better or None, result="Fail" if worse else "Pass",
            message=about[:512],
        )  # fmt: skip
    both = f"{counted(canary, 'canary')}; {counted(stable, 'stable')}"
    if not (enough and labelled(canary) and labelled(stable)):
        drop = CheckResult(
            name="liveMetricDrop", value=None, threshold=checks.max_live_metric_drop,
            result="NoData", message=f"{gate.metric} {both}"[:512],
        )  # fmt: skip
    else:
        assert canary is not None and stable is not None
        assert canary.value is not None and stable.value is not None
        value = (
            stable.value - canary.value if gate.higher_is_better else canary.value - stable.value
        )
        drop = CheckResult(
            name="liveMetricDrop", value=value, threshold=checks.max_live_metric_drop,
            result="Fail" if value > checks.max_live_metric_drop else "Pass",
            message=f"{gate.metric} {canary.value:.4g} vs stable {stable.value:.4g}; {both}"[:512],
        )  # fmt: skip
    return [metric, drop]
