"""A step judged on delayed outcomes (`spec.rollout.labels`) waits for them: the pure step
judging (`analysis.decide`, then `plan.judge`) held to a plain reference over the step's
interval, the labels' horizon and when each request's label arrives."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.api.deployment import Counters, RolloutChecks, RolloutSpec
from lykeion.rollouts import analysis, plan
from lykeion.serving.outcomes import LiveMetric

GATE = analysis.Gate("roc_auc", 0.6, higher_is_better=True)
MAX_DROP = 0.05
T0 = "2026-12-01T00:00:00Z"


@dataclass(frozen=True)
class Request:
    at: float
    """Seconds after the step started."""
    delay: float | None
    """When its outcome arrives, after the request (None: never)."""


def served(requests: list[Request], now: float, horizon: float, value: float) -> LiveMetric:
    """What a server reports at step age `now`: the requests logged so far, those whose
    label arrived by now within the horizon, the metric `value` when any is labelled."""
    logged = [r for r in requests if r.at <= now]
    labelled = sum(
        1 for r in logged if r.delay is not None and r.delay <= horizon and r.at + r.delay <= now
    )
    return LiveMetric("roc_auc", value if labelled else None, labelled, len(logged))


def reference(
    interval: float,
    horizon: float,
    min_labels: int,
    now: float,
    canary: LiveMetric,
    stable: LiveMetric,
) -> tuple[str, str | None, dict[str, str]]:
    """(action, rollback reason, the start of each live check's message when NoData),
    written from the definition with no shared code."""

    def judged(live: LiveMetric) -> bool:
        return live.value is not None and live.labelled >= min_labels

    notes: dict[str, str] = {}
    for name, needed in (("liveMetric", [canary]), ("liveMetricDrop", [canary, stable])):
        if all(judged(live) for live in needed):
            continue
        if now < interval + horizon:
            notes[name] = "waiting for labels"
        elif any(live.labelled < min_labels for live in needed):
            notes[name] = "fewer than minLabels"
        else:
            notes[name] = "no live metric"
    if judged(canary) and canary.value is not None and canary.value < GATE.threshold:
        return "RollBack", "LiveMetricFailsGate", notes
    if judged(canary) and judged(stable):
        assert canary.value is not None and stable.value is not None
        if stable.value - canary.value > MAX_DROP:
            return "RollBack", "LiveMetricWorse", notes
    if now < interval:
        return "Hold", None, notes
    return ("Hold" if notes else "Advance"), None, notes


arrivals = st.lists(
    st.builds(
        Request,
        at=st.floats(0, 1200, allow_nan=False),
        delay=st.none() | st.floats(0, 5000, allow_nan=False),
    ),
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(
    interval=st.floats(1, 600, allow_nan=False),
    horizon=st.floats(0.5, 3600, allow_nan=False),
    now=st.floats(0, 6000, allow_nan=False),
    min_labels=st.integers(1, 6),
    canary_requests=arrivals,
    stable_requests=arrivals,
    canary_value=st.sampled_from([0.4, 0.7, 0.9]),
    stable_value=st.sampled_from([0.7, 0.9]),
)
def test_a_step_without_its_labels_is_held_until_they_can_have_arrived(
    interval: float,
    horizon: float,
    now: float,
    min_labels: int,
    canary_requests: list[Request],
    stable_requests: list[Request],
    canary_value: float,
    stable_value: float,
) -> None:
    canary = served(canary_requests, now, horizon, canary_value)
    stable = served(stable_requests, now, horizon, stable_value)
    checks = RolloutChecks(min_requests=1, min_labels=min_labels, max_live_metric_drop=MAX_DROP)
    verdict = analysis.decide(
        checks, Counters(version="1.1"), Counters(version="1.1", requests=50),
        Counters(version="1.0"), Counters(version="1.0", requests=50), None,
        now, interval, GATE, canary, stable, horizon,
    )  # fmt: skip
    action, reason, notes = reference(interval, horizon, min_labels, now, canary, stable)
    assert (verdict.action, verdict.failing and verdict.reason) == (action, reason)
    live = {c.name: c for c in verdict.checks if c.name in analysis.LIVE_CHECKS}
    for name, check in live.items():
        if name in notes:
            assert check.result == "NoData"
            assert check.message.startswith(notes[name]), check.message
        else:
            assert check.result != "NoData"
    # Never promoted unjudged: an advance had both live checks with values.
    if verdict.action == "Advance":
        assert all(c.result == "Pass" for c in live.values())
    # What the step shows while held: the rollout's checks and its condition's message.
    spec = RolloutSpec(steps=[10, 50, 100], interval="10m")
    state = plan.begin("1.1", spec, None, {"1.0": 100}, 2, T0)
    after = plan.judge(
        state, verdict, spec, 2, T0, Counters(version="1.1"), Counters(version="1.0")
    )
    assert after.checks == list(verdict.checks)
    if verdict.action == "Hold":
        assert (after.step, after.weight, after.phase) == (0, 10, "Progressing")
        if verdict.held:
            condition = plan.rolled_back(after)
            assert "held by liveMetric" in condition.message
            assert notes[verdict.held[0].name] in condition.message


def test_horizon_past_the_interval_holds_until_interval_plus_horizon() -> None:
    """The case of the issue: labels come 1h after requests, the interval is 10 minutes.
    At the interval nothing is labelled yet; the step waits, then is judged on the labels."""
    requests = [Request(at=float(t), delay=3000.0) for t in range(0, 600, 10)]
    checks = RolloutChecks(min_requests=1, min_labels=20, max_live_metric_drop=MAX_DROP)

    def at(now: float) -> analysis.Verdict:
        return analysis.decide(
            checks, Counters(version="1.1"), Counters(version="1.1", requests=60),
            Counters(version="1.0"), Counters(version="1.0", requests=60), None, now, 600.0,
            GATE, served(requests, now, 3600, 0.9), served(requests, now, 3600, 0.9), 3600.0,
        )  # fmt: skip

    held = at(600.0)
    assert held.action == "Hold" and [c.name for c in held.held] == [
        "liveMetric",
        "liveMetricDrop",
    ]
    assert "waiting for labels" in held.message and "by step age 4200s" in held.message
    # 3000 s after the first requests their labels are in: judged, advanced.
    assert at(3600.0 + 200).action == "Advance"


def test_too_few_labels_after_the_horizon_hold_and_a_person_promotes() -> None:
    few = LiveMetric("roc_auc", 0.9, 3, 500)
    checks = RolloutChecks(min_requests=1, min_labels=20)
    verdict = analysis.decide(
        checks, Counters(version="1.1"), Counters(version="1.1", requests=500),
        Counters(version="1.0"), Counters(version="1.0", requests=500), None, 5000.0, 600.0,
        GATE, few, LiveMetric("roc_auc", 0.9, 300, 500), 3600.0,
    )  # fmt: skip
    assert verdict.action == "Hold"
    assert verdict.held[0].message.startswith("fewer than minLabels 20 labelled requests")
    spec = RolloutSpec(steps=[10, 50, 100], interval="10m")
    state = plan.begin("1.1", spec, None, {"1.0": 100}, 2, T0)
    state = plan.judge(
        state, verdict, spec, 2, T0, Counters(version="1.1"), Counters(version="1.0")
    )
    assert state.phase == "Progressing" and state.weight == 10
    # `lykectl models promote` names this rollout: it overrides the hold.
    promoted = plan.begin(
        "1.1", spec, state, {"1.0": 90, "1.1": 10}, 2, T0, f"1.1@{state.started_at}"
    )
    assert (promoted.phase, promoted.stable, promoted.decisions[-1].reason) == (
        "Promoted",
        "1.1",
        "PromotedByUser",
    )
