"""Which version is stable, which is the canary, and at which step (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lykectl.deployments import rollout_document
from lykeion.api.deployment import (
    STEPS_ASCENDING,
    STEPS_END,
    CheckResult,
    Counters,
    DeploymentSpec,
    RolloutSpec,
    RolloutStatus,
)
from lykeion.rollouts import plan
from lykeion.rollouts.analysis import Verdict

T0, T1, T2 = "2026-12-01T00:00:00Z", "2026-12-01T00:00:10Z", "2026-12-01T00:00:20Z"
SPEC = RolloutSpec(steps=[10, 50, 100], interval="10s")
C = Counters(version="1.1", requests=10)
S = Counters(version="1.0", requests=90)
REQUESTS = CheckResult(name="requests", value=10, threshold=5, result="Pass")
FAILING = CheckResult(
    name="errorRate", value=0.5, threshold=0.01, result="Fail", message="5 of 10 requests"
)


def _started() -> RolloutStatus:
    return plan.begin("1.1", SPEC, None, {"1.0": 100}, 2, T0)


def test_a_new_deployment_serves_its_version_at_once() -> None:
    state = plan.begin("1.0", SPEC, None, {}, 1, T0)
    assert (state.phase, state.stable, state.canary, state.decisions) == (
        "Promoted",
        "1.0",
        None,
        [],
    )
    assert plan.versions(state) == [{"version": "1.0", "traffic": 100}]


def test_a_newly_declared_version_starts_from_the_one_serving_100() -> None:
    state = _started()
    assert (state.phase, state.stable, state.canary, state.weight) == (
        "Progressing",
        "1.0",
        "1.1",
        10,
    )
    assert state.started_at == T0 and state.baseline is None
    assert plan.versions(state) == [
        {"version": "1.0", "traffic": 90},
        {"version": "1.1", "traffic": 10},
    ]
    assert state.decisions[-1].action == "Start" and state.decisions[-1].canary == "1.1"
    # Reconciling again changes nothing.
    assert plan.begin("1.1", SPEC, state, {"1.0": 90, "1.1": 10}, 2, T1) == state


def test_steps_advance_then_reaching_100_promotes() -> None:
    state = plan.open_window(_started(), C, S, T0)
    advance = Verdict("Advance", (REQUESTS,))
    state = plan.judge(state, advance, SPEC, 2, T1, C, S)
    assert (state.step, state.weight, state.step_started_at) == (1, 50, T1)
    assert state.baseline == [C, S]
    state = plan.judge(state, advance, SPEC, 2, T2, C, S)
    assert (state.phase, state.stable, state.canary) == ("Promoted", "1.1", None)
    assert [d.action for d in state.decisions] == ["Start", "Advance", "Promote"]
    assert plan.versions(state) == [{"version": "1.1", "traffic": 100}]
    assert plan.rolled_back(state).ok is False


def test_a_failing_check_rolls_back_until_the_spec_changes() -> None:
    state = plan.open_window(_started(), C, S, T0)
    state = plan.judge(state, Verdict("RollBack", (REQUESTS, FAILING), FAILING), SPEC, 2, T1, C, S)
    assert (state.phase, state.weight, state.generation) == ("RolledBack", 0, 2)
    condition = plan.rolled_back(state)
    assert (condition.ok, condition.reason) == (True, "ErrorRateTooHigh")
    assert condition.message == (
        "1.1: errorRate 0.5 > 0.01 (5 of 10 requests); traffic back to 1.0"
    )
    # Same generation: it stays back; any later spec edit tries again from the first step.
    assert plan.begin("1.1", SPEC, state, {"1.0": 100}, 2, T2) == state
    retried = plan.begin("1.1", SPEC, state, {"1.0": 100}, 3, T2)
    assert (retried.phase, retried.weight, retried.started_at) == ("Progressing", 10, T2)


def test_the_status_patch_removes_what_the_state_no_longer_has() -> None:
    window = plan.open_window(_started(), C, S, T0)
    stored = window.wire()
    back = plan.judge(window, Verdict("RollBack", (REQUESTS, FAILING), FAILING), SPEC, 2, T1, C, S)
    patch = plan.status_field(back, stored)
    assert patch["baseline"] is None and patch["stepStartedAt"] is None
    merged = {k: v for k, v in {**stored, **patch}.items() if v is not None}
    assert RolloutStatus.model_validate(merged) == back
    assert plan.status_field(back, back.wire()) == back.wire()


def test_declaring_the_stable_version_again_aborts_the_canary() -> None:
    state = plan.begin("1.0", SPEC, _started(), {"1.0": 90, "1.1": 10}, 3, T1)
    assert (state.phase, state.stable, state.canary) == ("Promoted", "1.0", None)
    assert state.decisions[-1].action == "Abort" and state.decisions[-1].canary == "1.1"


def test_another_version_replaces_the_canary_and_keeps_the_stable() -> None:
    state = plan.begin("1.2", SPEC, _started(), {"1.0": 90, "1.1": 10}, 3, T1)
    assert (state.stable, state.canary, state.weight, state.started_at) == ("1.0", "1.2", 10, T1)
    assert "replaces canary 1.1" in state.decisions[-1].message


def test_pause_holds_and_restarts_the_window_on_resume() -> None:
    running = plan.open_window(_started(), C, S, T0)
    paused = plan.begin("1.1", SPEC.model_copy(update={"paused": True}), running, {}, 3, T1)
    assert (paused.phase, paused.weight, paused.baseline, paused.step_started_at) == (
        "Paused", 10, None, None,
    )  # fmt: skip
    resumed = plan.begin("1.1", SPEC, paused, {}, 4, T2)
    assert (resumed.phase, resumed.baseline) == ("Progressing", None)


def test_the_promote_annotation_must_name_this_rollout() -> None:
    state = _started()
    stale = plan.begin("1.1", SPEC, state, {}, 2, T1, "1.1@2026-01-01T00:00:00Z")
    assert stale.phase == "Progressing"
    other = plan.begin("1.1", SPEC, state, {}, 2, T1, f"1.2@{T0}")
    assert other.phase == "Progressing"
    done = plan.begin("1.1", SPEC, state, {}, 2, T1, f"1.1@{T0}")
    assert (done.phase, done.stable, done.decisions[-1].reason) == (
        "Promoted", "1.1", "PromotedByUser",
    )  # fmt: skip


def test_decisions_keep_the_last_ten() -> None:
    state = plan.begin("1.0", SPEC, None, {}, 1, T0)
    for n in range(15):
        state = plan.begin(f"2.{n}", SPEC, state, {}, n + 2, T0)
    assert len(state.decisions) == 10 and state.decisions[-1].canary == "2.14"


def test_consistency_names_the_feature_version_and_example() -> None:
    mismatch = {
        "key": {"rider_id": "r4"}, "served": 30, "offline": 31,
        "requestTime": T1, "offlineTime": T0,
    }  # fmt: skip
    check = plan.consistency(
        {"1.0": [("rider.age", 100, 0)], "1.1": [("rider.age", 10, 3)]},
        {"1.1": {"rider.age": mismatch}},
        0.01,
    )
    assert check is not None and (check.ok, check.reason) == (False, "FeatureSkew")
    assert check.message.startswith("1.1: rider.age served 3 of 10 checked values")
    assert "key {'rider_id': 'r4'}: served 30" in check.message
    assert plan.consistency({"1.0": []}, {}, 0.01) is None
    fine = plan.consistency({"1.0": [("rider.age", 100, 0)]}, {}, 0.01)
    assert fine is not None and fine.ok


@pytest.mark.parametrize(
    ("steps", "message"),
    [([50, 10, 100], STEPS_ASCENDING), ([10, 10, 100], STEPS_ASCENDING),
     ([0, 100], STEPS_ASCENDING), ([10, 50], STEPS_END)],
)  # fmt: skip
def test_steps_are_checked(steps: list[int], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        RolloutSpec(steps=steps)


def test_a_rollout_declares_one_version_as_the_end_state() -> None:
    spec = {"family": "forward", "segment": "default", "rollout": {}}
    DeploymentSpec.model_validate({**spec, "versions": [{"version": "1.1", "traffic": 100}]})
    with pytest.raises(ValidationError, match="declares the end state"):
        DeploymentSpec.model_validate(
            {
                **spec,
                "versions": [{"version": "1.0", "traffic": 90}, {"version": "1.1", "traffic": 10}],
            }
        )


def test_status_document_shows_step_checks_and_decisions() -> None:
    state = plan.open_window(_started(), C, S, T0).model_copy(update={"checks": [REQUESTS]})
    deployment = {
        "metadata": {"name": "forward-default"},
        "spec": {"rollout": SPEC.wire()},
        "status": {
            "rollout": state.wire(),
            "traffic": [{"version": "1.0", "traffic": 90}, {"version": "1.1", "traffic": 10}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
        },
    }
    document = rollout_document(deployment)
    assert (document["phase"], document["stable"], document["canary"]) == (
        "Progressing", "1.0", "1.1",
    )  # fmt: skip
    assert (document["step"], document["steps"], document["weight"]) == (1, [10, 50, 100], 10)
    assert document["checks"][0]["name"] == "requests"
    assert document["decisions"][0]["action"] == "Start"
    assert rollout_document({"metadata": {"name": "x"}, "spec": {}})["rollout"] is False


def test_labels_give_each_server_a_request_log_and_the_source_with_its_horizon() -> None:
    from pathlib import Path

    from lykeion.config import PlatformConfig
    from lykeion.rollouts.labels import server_fields
    from lykeion.serving.config import ServerConfig

    config = PlatformConfig(
        data_dir=Path("/data"), online_store="sqlite:///x", offline_store="duckdb:///y",
        data_root="/repo",
    )  # fmt: skip
    labels = {
        "file": {"path": "outcomes.csv", "format": "csv"},
        "timestampColumn": "label_time",
        "target": "ordered_again",
        "horizon": "2h",
    }
    deployment = {
        "metadata": {"name": "forward-default", "namespace": "team"},
        "spec": {"rollout": {**SPEC.wire(), "labels": labels}},
    }
    fields = server_fields(deployment, "1.1", config)
    assert fields["request_log"] == "/data/requests/team/forward-default/1.1.jsonl"
    assert fields["labels"] == {
        "source": {
            "file": {"path": "outcomes.csv", "format": "csv"},
            "timestampColumn": "label_time",
            "target": "ordered_again",
        },
        "horizon_seconds": 7200.0,
        "data_root": "/repo",
    }
    server = ServerConfig.model_validate(
        {"name": "forward-default", "version": "1.1", "model_uri": "m", "online_store": "s",
         **fields}
    )  # fmt: skip
    assert server.labels is not None and server.labels.horizon_seconds == 7200.0
    # Without labels nothing is logged: the request log costs a write per request.
    assert server_fields({"metadata": {"name": "x"}, "spec": {"rollout": {}}}, "1", config) == {}
