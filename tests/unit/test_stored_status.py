"""The stored status, parsed once into the kind's status model: what another version of the
operator (or someone else) wrote that the model refuses is read as absent, never a crash;
the status written back still starts from the stored one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from lykeion.api.deployment import DeploymentSpec, DeploymentStatus, RolloutStatus
from lykeion.api.featuremanifest import FeatureManifestStatus, RunRecord
from lykeion.api.kinds import MODEL_FAMILY
from lykeion.api.model import ModelStatus
from lykeion.handlers import deployments, families
from lykeion.object_index import Key
from lykeion.rollouts import plan
from lykeion.runtime import Resource, Runtime
from tests import objects

RUN = {"name": "m-g1-r1", "generation": 1, "end": "2026-01-01T00:00:00Z", "startedAt": "t"}


def test_no_status_yet_is_the_empty_status() -> None:
    assert FeatureManifestStatus.from_stored(None) == (FeatureManifestStatus(), {})
    assert ModelStatus.from_stored({}) == (ModelStatus(), {})


def test_a_whole_status_reads_back_as_stored() -> None:
    stored = {
        "materializedGeneration": 2,
        "watermark": "2026-01-01T00:00:00Z",
        "runs": [RUN | {"result": "Failed", "message": "boom"}, RUN | {"name": "m-g1-r2"}],
        "currentRun": RUN | {"name": "m-g1-r3"},
        "runCount": 3,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Materialized", "message": "",
             "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2},
        ],
    }  # fmt: skip
    status, problems = FeatureManifestStatus.from_stored(stored)
    assert problems == {}
    assert status.wire_given() == stored
    assert status.current_run == RunRecord.model_validate(stored["currentRun"])


def test_a_field_the_model_refuses_is_absent_and_named() -> None:
    stored = {
        "watermark": 5,  # not a timestamp's text
        "phase": "Ready",  # a field this version does not have
        "rowsWritten": 9,
        "currentRun": {"name": "m-g1-r1"},  # a record missing what this version needs
    }
    status, problems = FeatureManifestStatus.from_stored(stored)
    assert (status.watermark, status.rows_written, status.current_run) == (None, 9, None)
    assert set(problems) == {"watermark", "phase", "currentRun"}
    assert "status.currentRun.startedAt: Field required" in problems["currentRun"]
    assert problems["watermark"] == "status.watermark: Input should be a valid string"
    assert problems["phase"] == "status.phase: Extra inputs are not permitted"


def test_a_list_with_an_item_the_model_refuses_is_absent_whole() -> None:
    # Never read in part: a Model's trained inputs are an ordered list, and one left out
    # would change what the model is served.
    runs = [RUN, {"name": "m-g1-r2", "generation": 1}, RUN | {"name": "m-g1-r3", "rows": 4}]
    status, problems = FeatureManifestStatus.from_stored({"runs": runs, "runCount": 3})
    assert (status.runs, status.run_count) == ([], 3)
    assert list(problems) == ["runs"]
    assert "status.runs.1.end: Field required" in problems["runs"]
    assert "status.runs.2.rows: Extra inputs are not permitted" in problems["runs"]
    features = [{"ref": "rider.age", "column": "rider__age", "type": "int64"}, {"ref": 7}]
    model, problems = ModelStatus.from_stored({"features": features, "modelUri": "runs:/r/m"})
    assert (model.features, model.model_uri) == ([], "runs:/r/m")
    assert "status.features.1.ref: Input should be a valid string" in problems["features"]
    status, problems = FeatureManifestStatus.from_stored({"runs": [RUN] * 11, "runCount": 11})
    assert (status.runs, status.run_count) == ([], 11)
    assert "status.runs: List should have at most 10 items" in problems["runs"]


def test_a_status_that_is_not_an_object_is_empty() -> None:
    status, problems = ModelStatus.from_stored(["not", "a", "status"])
    assert status == ModelStatus()
    assert problems == {"": "status: not an object (list)"}


def test_patched_reads_a_status_after_its_own_changes() -> None:
    status = FeatureManifestStatus(watermark="w", late_rows=3, late_rows_boundary="b")
    after = status.patched({"lateRows": 0, "lateRowsBoundary": None, "runCount": 1})
    assert (after.watermark, after.late_rows, after.late_rows_boundary) == ("w", 0, None)
    assert after.run_count == 1
    with pytest.raises(ValueError, match="runCount"):
        status.patched({"runCount": "many"})


def _rolling_body(stored_rollout: Any) -> dict[str, Any]:
    body = objects.deployment(versions={"1.1": 100})
    body["metadata"] |= {"namespace": "ns", "generation": 2}
    body["spec"]["rollout"] = {"steps": [10, 100]}
    body["status"] = {
        "traffic": [{"version": "1.0", "traffic": 100, "available": True}],
        "rollout": stored_rollout,
    }
    return body


def test_an_unreadable_rollout_state_restarts_the_rollout_in_the_same_pass() -> None:
    # A state from another version of Lykeion restarts the rollout from the traffic in
    # effect: the declared version gets the first step, never spec's 100% at once (a pass
    # without a rollout would serve it, and the next would find it stable).
    good = RolloutStatus(phase="Promoted", stable="1.0").wire()
    parsed = Resource.parse(_rolling_body(good), DeploymentSpec, DeploymentStatus)
    rollout_spec, state = deployments._rollout_state(parsed, "2026-01-01T00:00:00Z")
    assert rollout_spec is not None and state is not None
    assert (state.stable, state.canary, state.weight) == ("1.0", "1.1", 10)
    for bad in (good | {"phase": "Walking"}, {"stable": 7}, ["not", "a", "state"]):
        parsed = Resource.parse(_rolling_body(bad), DeploymentSpec, DeploymentStatus)
        assert (
            parsed.status.rollout is None and "status.rollout" in parsed.status_problems["rollout"]
        )
        assert [t.version for t in parsed.status.traffic] == ["1.0"]
        rollout_spec, state = deployments._rollout_state(parsed, "2026-01-01T00:00:00Z")
        assert rollout_spec is not None and state is not None
        assert (state.phase, state.stable, state.canary, state.weight) == (
            "Progressing",
            "1.0",
            "1.1",
            10,
        )
        assert plan.versions(state) == [
            {"version": "1.0", "traffic": 90},
            {"version": "1.1", "traffic": 10},
        ]


class _Kube:
    """The API server as the runtime uses it here: status patches, recorded."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    async def patch_status(self, kind: Any, namespace: str, name: str, status: Any) -> bool:
        self.patches.append(status)
        return True


def test_a_reconcile_reads_past_an_unreadable_status_keeps_it_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = objects.family()
    body["metadata"] |= {"namespace": "default", "generation": 1}
    body["status"] = {
        "phase": "Registered",  # written by someone else: not this model's
        "segments": [{"name": "default", "versions": ["1.0"]}, {"versions": ["2.0"]}],
        "modelCount": 1,
    }
    kube = _Kube()
    runtime = Runtime(kube=kube, declarations={MODEL_FAMILY.kind: families.DECLARATION})
    key = Key(MODEL_FAMILY.kind, "default", "forward")
    with caplog.at_level(logging.WARNING, logger="lykeion"):
        asyncio.run(runtime.reconcile_now(key, body))
        # The same problems again (the clocks reconcile every few seconds): no new warning.
        body["status"] = {**body["status"], "conditions": kube.patches[-1]["conditions"]}
        asyncio.run(runtime.reconcile_now(key, body))
    (written, *_) = kube.patches
    # What the model refused stays as stored; what the reconcile writes is written.
    assert written["phase"] == "Registered"
    assert (written["modelCount"], written["segments"]) == (0, [])
    assert [c["reason"] for c in written["conditions"]] == ["Registered", "NoModels"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "ModelFamily default/forward: stored status read without" in warnings[0]
    assert "status.phase: Extra inputs are not permitted" in warnings[0]
    assert "status.segments.1.name: Field required" in warnings[0]


def test_an_unreadable_rollout_state_never_promotes_a_canary_that_had_the_most_traffic() -> None:
    # Mid-walk (10.0 at the 50% step, 9.0 recorded stable in status.traffic) the stored
    # rollout state is unreadable: the restart must not take the canary for the stable
    # version and promote it at once, unanalysed.
    body = objects.deployment(versions={"10.0": 100})
    body["metadata"] |= {"namespace": "ns", "generation": 2}
    body["spec"]["rollout"] = {"steps": [10, 50, 100]}
    body["status"] = {
        "traffic": [
            {"version": "9.0", "traffic": 50, "available": True, "stable": True},
            {"version": "10.0", "traffic": 50, "available": True},
        ],
        "rollout": {"stable": 7},
    }
    parsed = Resource.parse(body, DeploymentSpec, DeploymentStatus)
    _, state = deployments._rollout_state(parsed, "2026-01-01T00:00:00Z")
    assert state is not None and state.stable == "9.0" and state.canary == "10.0"


def test_an_unreadable_rollout_state_and_traffic_never_serve_the_declared_version_at_once() -> None:
    # Nothing tells which version serves: the pass changes nothing and says what to do.
    body = _rolling_body({"stable": 7})
    body["status"]["traffic"] = [{"version": "1.0", "weight": 100}]  # another shape
    parsed = Resource.parse(body, DeploymentSpec, DeploymentStatus)
    with pytest.raises(deployments.RolloutStateUnreadable) as raised:
        deployments._rollout_state(parsed, "2026-01-01T00:00:00Z")
    message = str(raised.value)
    assert "--subresource=status" in message and '"traffic":null' in message
    assert "status.traffic" in message and "status.rollout" in message
