"""Which version is stable, which is the canary, and at which step (pure: no I/O).

The declared spec is the desired end state: with `spec.rollout`, `spec.versions` names one
version at 100%. When it names a version other than the one serving 100% now (the
*stable* one, recorded in `status.rollout.stable`; at first the version with the most
traffic in effect), that version becomes the *canary*: it gets `steps[0]` percent, then each
next step when the analysis of a window passes, and reaching 100 promotes it (it becomes the
stable version). A failing check sets it back to 0% (`RolledBack`); it stays there until the
spec changes again (a new `metadata.generation`) or a person promotes it. Declaring the
stable version again aborts the canary. A new Deployment has nothing to compare with: its
version serves at once.

All of this is recorded in `status.rollout` — nothing is written to spec — so an operator
restart resumes from the step, its start time and the counters taken then.

With `spec.rollout.labels` a step whose live checks have no data is held, not advanced
(`analysis.py`: labels may still be on their way until interval + horizon, and too few after
that are a shortfall); the `RolledBack` condition's message says what holds it. The
promote annotation below overrides that hold like any other.

`lykectl models promote` sets the annotation `PROMOTE` to `<canary>@<startedAt>` of the
rollout it means: a person's edit of metadata (not of spec, which GitOps owns; the promoted
end state is the one spec declares anyway), and one that names the rollout, so an old
annotation never promotes a later canary of the same version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lykeion.api.deployment import (
    Counters,
    Decision,
    RolloutSpec,
    RolloutStatus,
)
from lykeion.conditions import Check
from lykeion.rollouts.analysis import LIVE_CHECKS, Verdict, describe

PROMOTE = "lykeion.io/promote"
ROLLED_BACK = "RolledBack"
FEATURES_CONSISTENT = "FeaturesConsistent"
DECISIONS_KEPT = 10


def _decide(
    state: RolloutStatus, now: str, action: str, reason: str, message: str, **change: Any
) -> RolloutStatus:
    after = state.model_copy(update=change)
    decision = Decision(
        time=now,
        action=action,
        canary=after.canary or state.canary or after.stable or "",
        weight=after.weight,
        reason=reason,
        message=message[:1024],
    )
    return after.model_copy(update={"decisions": [*state.decisions, decision][-DECISIONS_KEPT:]})


def _start(
    state: RolloutStatus, target: str, rollout: RolloutSpec, generation: int, now: str, why: str
) -> RolloutStatus:
    started = _decide(
        state, now, "Start", "NewVersionDeclared", why,
        phase="Paused" if rollout.paused else "Progressing", canary=target, step=0,
        weight=rollout.steps[0], started_at=now, step_started_at=None, baseline=None,
        generation=generation, checks=[],
    )  # fmt: skip
    if rollout.steps[0] == 100:
        return promote(started, now, "NoSteps", "steps start at 100: nothing to analyse")
    return started


def promote(state: RolloutStatus, now: str, reason: str, message: str) -> RolloutStatus:
    """The canary becomes the stable version and gets all traffic."""
    return _decide(
        state, now, "Promote", reason, message, phase="Promoted", stable=state.canary,
        canary=None, step=0, weight=0, step_started_at=None, baseline=None,
    )  # fmt: skip


def begin(
    target: str,
    rollout: RolloutSpec,
    previous: RolloutStatus | None,
    in_effect: Mapping[str, int],
    generation: int,
    now: str,
    promote_annotation: str | None = None,
    recorded_stable: str | None = None,
) -> RolloutStatus:
    """The rollout's state for this reconcile, before any analysis: `target` is the version
    spec declares, `in_effect` the traffic in effect now (`status.traffic`), `now` RFC 3339.
    Without a `previous` state, the stable version is `recorded_stable` (the one
    `status.traffic` marks stable) while it serves, else the one serving the most."""
    if previous is None:
        serving = [v for v, w in sorted(in_effect.items(), key=lambda kv: (-kv[1], kv[0])) if w > 0]
        if recorded_stable is not None and in_effect.get(recorded_stable, 0) > 0:
            stable = recorded_stable
        else:
            stable = serving[0] if serving else target
        state = RolloutStatus(phase="Promoted", stable=stable, generation=generation)
        if stable == target:
            return state
        return _start(
            state, target, rollout, generation, now, f"{target} declared; {stable} serves now"
        )
    state = previous
    stable = state.stable or target
    if target == stable:
        if state.canary is None:
            return state.model_copy(update={"phase": "Promoted", "weight": 0})
        return _decide(
            state, now, "Abort", "StableDeclared",
            f"spec declares {stable} again: canary {state.canary} dropped",
            phase="Promoted", canary=None, step=0, weight=0, step_started_at=None, baseline=None,
            generation=generation,
        )  # fmt: skip
    if state.canary != target:
        why = f"{target} declared; {stable} serves now" + (
            f" (replaces canary {state.canary})" if state.canary else ""
        )
        state = _start(state, target, rollout, generation, now, why)
    elif state.phase == "RolledBack" and generation > state.generation:
        state = _start(
            state, target, rollout, generation, now, f"spec changed after the rollback of {target}"
        )
    if (
        state.canary is not None
        and promote_annotation is not None
        and promote_annotation == f"{state.canary}@{state.started_at}"
    ):
        return promote(state, now, "PromotedByUser", f"annotation {PROMOTE}={promote_annotation}")
    if state.phase in ("Progressing", "Paused"):
        paused = rollout.paused
        if paused and state.phase != "Paused":
            # The window restarts on resume: what happened while paused is not judged.
            state = state.model_copy(
                update={"phase": "Paused", "step_started_at": None, "baseline": None}
            )
        elif not paused and state.phase == "Paused":
            state = state.model_copy(update={"phase": "Progressing"})
        if state.step >= len(rollout.steps) - 1:
            # The steps were edited under a running canary: take the nearest valid one.
            state = state.model_copy(update={"step": max(0, len(rollout.steps) - 2)})
        state = state.model_copy(update={"weight": rollout.steps[state.step]})
    return state


def versions(state: RolloutStatus) -> list[dict[str, Any]]:
    """`spec.versions` as the rollout says now (the split the gate and the executor serve)."""
    stable = state.stable or ""
    if state.canary is None:
        return [{"version": stable, "traffic": 100}]
    return [
        {"version": stable, "traffic": 100 - state.weight},
        {"version": state.canary, "traffic": state.weight},
    ]


def open_window(
    state: RolloutStatus, canary: Counters, stable: Counters, now: str
) -> RolloutStatus:
    """Start the analysis window at `now` with both versions' counters as its baseline."""
    return state.model_copy(update={"step_started_at": now, "baseline": [canary, stable]})


def judge(
    state: RolloutStatus,
    verdict: Verdict,
    rollout: RolloutSpec,
    generation: int,
    now: str,
    canary_now: Counters,
    stable_now: Counters,
) -> RolloutStatus:
    """Apply one verdict: roll back to 0%, advance one step (reaching 100 promotes), or hold."""
    state = state.model_copy(update={"checks": list(verdict.checks)})
    if verdict.action == "RollBack":
        return _decide(
            state, now, "RollBack", verdict.reason,
            f"{verdict.message}; traffic back to {state.stable}",
            phase="RolledBack", weight=0, step_started_at=None, baseline=None,
            generation=generation,
        )  # fmt: skip
    if verdict.action == "Advance":
        step = state.step + 1
        if rollout.steps[step] == 100:
            return promote(state, now, "ChecksPassed", verdict.message)
        return _decide(
            state, now, "Advance", "ChecksPassed", verdict.message, step=step,
            weight=rollout.steps[step], step_started_at=now, baseline=[canary_now, stable_now],
        )  # fmt: skip
    return state


def status_field(state: RolloutStatus, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """`status.rollout` for a JSON merge patch over `stored`: a field the state no longer has
    (a baseline after a rollback, the canary after a promotion) is sent as null, which
    removes it; left out, the stored value would survive and be read back next time."""
    wire = state.wire()
    return {**{key: None for key in stored or {} if key not in wire}, **wire}


def rolled_back(state: RolloutStatus) -> Check:
    """The `RolledBack` condition: True with the failing check's reason and values."""
    if state.phase == "RolledBack":
        last = next((d for d in reversed(state.decisions) if d.action == "RollBack"), None)
        return Check(
            ROLLED_BACK,
            True,
            last.reason if last else "RolledBack",
            f"{state.canary}: {last.message}" if last else f"{state.canary} rolled back",
        )
    if state.canary is None:
        return Check(ROLLED_BACK, False, "Promoted", f"{state.stable} serves all traffic")
    message = f"{state.canary} at {state.weight}% beside {state.stable}"
    # A step held by live checks without data says so (waiting for labels, or too few).
    held = [c for c in state.checks if c.name in LIVE_CHECKS and c.result == "NoData" and c.message]
    if state.phase == "Progressing" and held and state.checks[0].result == "Pass":
        message += f"; held by {describe(held[0])}"
    return Check(ROLLED_BACK, False, state.phase, message[:1024])


def consistency(
    skew: Mapping[str, Sequence[tuple[str, int, int]]],
    last_mismatch: Mapping[str, Mapping[str, Mapping[str, Any]]],
    max_rate: float,
) -> Check | None:
    """`FeaturesConsistent` from each version's cumulative skew counts
    (version -> [(feature, checked, mismatches)]); None when no version reports any."""
    worst: tuple[float, str, str, int, int] | None = None
    for version, counts in sorted(skew.items()):
        for feature, checked, mismatches in counts:
            if checked <= 0:
                continue
            rate = min(mismatches, checked) / checked
            if worst is None or rate > worst[0]:
                worst = (rate, version, feature, checked, mismatches)
    if worst is None:
        return None
    rate, version, feature, checked, mismatches = worst
    text = (
        f"{version}: {feature} served {mismatches} of {checked} checked values unlike the "
        "offline store"
    )
    if rate <= max_rate:
        return Check(
            FEATURES_CONSISTENT,
            True,
            "SkewWithinThreshold",
            f"{text} ({rate:.4g} <= {max_rate:.4g})",
        )
    example = last_mismatch.get(version, {}).get(feature)
    if example:
        text += (
            f"; e.g. key {example.get('key')}: served {example.get('served')!r} at "
            f"{example.get('requestTime')}, offline {example.get('offline')!r} at "
            f"{example.get('offlineTime')}"
        )
    return Check(FEATURES_CONSISTENT, False, "FeatureSkew", f"{text} ({rate:.4g} > {max_rate:.4g})")


__all__ = [
    "FEATURES_CONSISTENT",
    "PROMOTE",
    "ROLLED_BACK",
    "begin",
    "consistency",
    "describe",
    "judge",
    "open_window",
    "promote",
    "rolled_back",
    "status_field",
    "versions",
]
