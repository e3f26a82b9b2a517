"""Planning of pipeline runs: pure functions on plain status data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.config import PlatformConfig
from lykeion.executors.base import State, WorkStatus
from lykeion.handlers.materialization import (
    finish,
    materialized_check,
    next_range,
    run_name,
    run_record,
    work_for,
)
from tests import objects

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _spec(schedule: str | None = None) -> FeatureManifestSpec:
    spec = objects.manifest()["spec"]
    if schedule:
        spec["schedule"] = schedule
    return FeatureManifestSpec.model_validate(spec)


def test_first_run_is_a_full_backfill_up_to_now() -> None:
    planned = next_range(_spec(), {}, 1, NOW)
    assert planned is not None
    assert (planned.start, planned.end, planned.reason) == (
        None,
        "2026-11-27T12:00:00Z",
        "backfill",
    )


def test_no_second_run_while_one_is_in_flight() -> None:
    assert next_range(_spec(), {"currentRun": {"name": "x"}}, 1, NOW) is None


def test_spec_change_backfills_again() -> None:
    status = {
        "materializedGeneration": 1,
        "watermark": "2026-11-27T11:00:00Z",
        "lastRunTime": "2026-11-27T11:00:00Z",
    }
    assert next_range(_spec(), status, 1, NOW) is None
    planned = next_range(_spec(), status, 2, NOW)
    assert planned is not None and planned.start is None


def test_schedule_runs_incrementally_from_the_watermark() -> None:
    status = {
        "materializedGeneration": 1,
        "watermark": "2026-11-27T10:30:00Z",
        "lastRunTime": "2026-11-27T10:30:05Z",
    }
    planned = next_range(_spec("0 * * * *"), status, 1, NOW)  # 11:00 is due
    assert planned is not None and (planned.start, planned.reason) == (
        "2026-11-27T10:30:00Z",
        "schedule",
    )
    assert next_range(_spec("0 * * * *"), status, 1, NOW - timedelta(hours=1, minutes=1)) is None
    assert next_range(_spec(None), status, 1, NOW) is None


def test_failures_back_off_exponentially() -> None:
    failed = {
        "name": "m-g1-r1",
        "generation": 1,
        "result": "Failed",
        "finishedAt": "2026-11-27T11:59:50Z",
    }
    assert next_range(_spec(), {"runs": [failed]}, 1, NOW) is None  # 10 s < 30 s
    assert next_range(_spec(), {"runs": [failed]}, 1, NOW + timedelta(seconds=25)) is not None
    two = [failed | {"name": "m-g1-r0"}, failed]
    assert next_range(_spec(), {"runs": two}, 1, NOW + timedelta(seconds=25)) is None  # 60 s now


def _run() -> dict[str, Any]:
    planned = next_range(_spec(), {}, 1, NOW)
    assert planned is not None
    return run_record(run_name("rider-activity", 1, 1), 1, planned, NOW)


def test_success_moves_the_watermark_to_the_range_the_run_used() -> None:
    run = _run()
    outcome = WorkStatus(
        State.SUCCEEDED,
        "exited with 0",
        {
            "succeeded": True,
            "range_end": "2026-11-27T11:59:00+00:00",
            "rows_read": 10,
            "rows_written": 9,
            "bad_rows": 1,
            "duplicate_rows": 2,
            "max_event_time": "2026-11-20T08:00:00+00:00",
        },
    )
    before = {"currentRun": run, "newestEventTime": "2026-11-25T00:00:00Z"}
    fields = finish(before, run, outcome, NOW + timedelta(minutes=1))
    assert fields["currentRun"] is None
    # A full run states what the source holds now: its newest event, not an older max.
    assert fields["newestEventTime"] == "2026-11-20T08:00:00Z"
    assert fields["runs"][-1]["duplicateRows"] == 2
    assert fields["watermark"] == "2026-11-27T11:59:00Z"
    assert fields["materializedGeneration"] == 1
    assert fields["runs"][-1] | {} == fields["runs"][-1]
    assert (fields["runs"][-1]["result"], fields["runs"][-1]["badRows"]) == ("Succeeded", 1)
    assert materialized_check(fields, 1).ok


def test_failure_keeps_the_watermark_and_says_why() -> None:
    run = _run()
    before = {"currentRun": run, "watermark": "2026-11-01T00:00:00Z"}
    fields = finish(
        before,
        run,
        WorkStatus(
            State.FAILED, "exited with 1: boom", {"succeeded": False, "message": "IOError: disk"}
        ),
        NOW,
    )
    assert "watermark" not in fields and "materializedGeneration" not in fields
    check = materialized_check({**before, **fields}, 1)
    assert (check.ok, check.reason) == (False, "PipelineFailed")
    assert "IOError: disk" in check.message


def test_finishing_twice_records_the_run_once() -> None:
    run = _run()
    outcome = WorkStatus(State.SUCCEEDED, "", {"succeeded": True})
    once = finish({"currentRun": run}, run, outcome, NOW)
    twice = finish({"currentRun": run, **once}, run, outcome, NOW)
    assert len(twice["runs"]) == 1


def test_work_is_deterministic_and_names_are_bounded() -> None:
    config = PlatformConfig.from_env({"LYKEION_DATA_DIR": "/data", "LYKEION_PYTHON": "python"})
    body = objects.manifest() | {
        "metadata": {"name": "rider-activity", "namespace": "ns", "generation": 1}
    }
    run = _run()
    work = work_for(body, run, config)
    assert work == work_for(body, run, config)
    assert work.name == "rider-activity-g1-r1"
    assert "--start" not in work.command
    assert work.command[work.command.index("--online") + 1] == "sqlite:///data/online.db"
    assert len(run_name("x" * 60, 123, 45678)) <= 63
