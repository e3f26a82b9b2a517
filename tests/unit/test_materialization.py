"""Planning of pipeline runs: pure functions on plain status data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lykeion.api.featuremanifest import FeatureManifestSpec, FeatureManifestStatus, RunRecord
from lykeion.config import PlatformConfig
from lykeion.executors.base import State, WorkStatus
from lykeion.handlers.materialization import (
    DROP_GIVE_UP,
    NextRange,
    finish,
    generations_to_drop,
    generations_written,
    give_up_dropping,
    late_data_check,
    materialized_check,
    next_range,
    run_name,
    run_record,
    work_for,
)
from lykeion.runtime import Resource
from tests import objects

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _spec(schedule: str | None = None) -> FeatureManifestSpec:
    spec = objects.manifest()["spec"]
    if schedule:
        spec["schedule"] = schedule
    return FeatureManifestSpec.model_validate(spec)


def _status(stored: dict[str, Any]) -> FeatureManifestStatus:
    """A stored status as the runtime reads it (strictly: a test's status must be whole)."""
    return FeatureManifestStatus.model_validate(stored)


def test_first_run_is_a_full_backfill_up_to_now() -> None:
    planned = next_range(_spec(), FeatureManifestStatus(), 1, NOW)
    assert planned is not None
    assert (planned.start, planned.end, planned.reason) == (
        None,
        "2026-11-27T12:00:00Z",
        "backfill",
    )


def test_no_second_run_while_one_is_in_flight() -> None:
    running = RunRecord(name="x", generation=1, end="2026-11-27T11:00:00Z", started_at="t")
    assert next_range(_spec(), FeatureManifestStatus(current_run=running), 1, NOW) is None


def test_spec_change_backfills_again() -> None:
    status = _status(
        {
            "materializedGeneration": 1,
            "watermark": "2026-11-27T11:00:00Z",
            "lastRunTime": "2026-11-27T11:00:00Z",
        }
    )
    assert next_range(_spec(), status, 1, NOW) is None
    planned = next_range(_spec(), status, 2, NOW)
    assert planned is not None and planned.start is None


def test_schedule_runs_incrementally_from_the_watermark() -> None:
    status = _status(
        {
            "materializedGeneration": 1,
            "watermark": "2026-11-27T10:30:00Z",
            "lastRunTime": "2026-11-27T10:30:05Z",
        }
    )
    planned = next_range(_spec("0 * * * *"), status, 1, NOW)  # 11:00 is due
    # The default allowedLateness (1h) is re-read behind the watermark.
    assert planned is not None and (planned.start, planned.reason) == (
        "2026-11-27T09:30:00Z",
        "schedule",
    )
    exact = _spec("0 * * * *").model_copy(update={"allowed_lateness": "0s"})
    planned = next_range(exact, status, 1, NOW)
    assert planned is not None and planned.start == "2026-11-27T10:30:00Z"
    assert next_range(_spec("0 * * * *"), status, 1, NOW - timedelta(hours=1, minutes=1)) is None
    assert next_range(_spec(None), status, 1, NOW) is None


def test_failures_back_off_exponentially() -> None:
    failed = RunRecord(
        name="m-g1-r1",
        generation=1,
        end="2026-11-27T11:59:00Z",
        result="Failed",
        started_at="2026-11-27T11:59:00Z",
        finished_at="2026-11-27T11:59:50Z",
    )
    one = FeatureManifestStatus(runs=[failed])
    assert next_range(_spec(), one, 1, NOW) is None  # 10 s < 30 s
    assert next_range(_spec(), one, 1, NOW + timedelta(seconds=25)) is not None
    two = FeatureManifestStatus(runs=[failed.model_copy(update={"name": "m-g1-r0"}), failed])
    assert next_range(_spec(), two, 1, NOW + timedelta(seconds=25)) is None  # 60 s now


def _parsed(body: dict[str, Any]) -> Resource[FeatureManifestSpec, FeatureManifestStatus]:
    return Resource.parse(body, FeatureManifestSpec, FeatureManifestStatus)


def _run() -> RunRecord:
    planned = next_range(_spec(), FeatureManifestStatus(), 1, NOW)
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
    before = FeatureManifestStatus(current_run=run, newest_event_time="2026-11-25T00:00:00Z")
    fields = finish(before, run, outcome, NOW + timedelta(minutes=1))
    assert fields["currentRun"] is None
    # A full run states what the source holds now: its newest event, not an older max.
    assert fields["newestEventTime"] == "2026-11-20T08:00:00Z"
    assert fields["runs"][-1]["duplicateRows"] == 2
    assert fields["watermark"] == "2026-11-27T11:59:00Z"
    assert fields["materializedGeneration"] == 1
    assert fields["runs"][-1] | {} == fields["runs"][-1]
    assert (fields["runs"][-1]["result"], fields["runs"][-1]["badRows"]) == ("Succeeded", 1)
    assert materialized_check(FeatureManifestStatus().patched(fields), 1).ok


def test_failure_keeps_the_watermark_and_says_why() -> None:
    run = _run()
    before = FeatureManifestStatus(current_run=run, watermark="2026-11-01T00:00:00Z")
    fields = finish(
        before,
        run,
        WorkStatus(
            State.FAILED, "exited with 1: boom", {"succeeded": False, "message": "IOError: disk"}
        ),
        NOW,
    )
    assert "watermark" not in fields and "materializedGeneration" not in fields
    check = materialized_check(before.patched(fields), 1)
    assert (check.ok, check.reason) == (False, "PipelineFailed")
    assert "IOError: disk" in check.message


def test_finishing_twice_records_the_run_once() -> None:
    run = _run()
    outcome = WorkStatus(State.SUCCEEDED, "", {"succeeded": True})
    running = FeatureManifestStatus(current_run=run)
    once = finish(running, run, outcome, NOW)
    twice = finish(running.patched(once), run, outcome, NOW)
    assert len(twice["runs"]) == 1


def test_work_is_deterministic_and_names_are_bounded() -> None:
    config = PlatformConfig.from_env({"LYKEION_DATA_DIR": "/data", "LYKEION_PYTHON": "python"})
    body = objects.manifest() | {
        "metadata": {"name": "rider-activity", "namespace": "ns", "generation": 1}
    }
    run = _run()
    work = work_for(_parsed(body), run, config)
    assert work == work_for(_parsed(body), run, config)
    assert work.name == "rider-activity-g1-r1"
    assert "--start" not in work.command
    assert work.command[work.command.index("--online") + 1] == "sqlite:///data/online.db"
    assert len(run_name("x" * 60, 123, 45678)) <= 63


def test_a_backfill_switches_the_generation_only_when_it_succeeded() -> None:
    # Generation 1 in effect; the spec changed (generation 2): the backfill drops nothing
    # readers read, writes generation 2, and the status switches when it succeeded.
    before = _status({"materializedGeneration": 1, "storedGenerations": [1], "watermark": "w"})
    assert generations_to_drop(before) == []
    planned = next_range(_spec(), before, 2, NOW)
    assert planned is not None and planned.start is None
    run = run_record(run_name("m", 2, 3), 2, planned, NOW, generations_to_drop(before))
    failed = finish(before, run, WorkStatus(State.FAILED, "boom", {"succeeded": False}), NOW)
    assert "materializedGeneration" not in failed and "storedGenerations" not in failed
    ok = finish(before, run, WorkStatus(State.SUCCEEDED, "", {"succeeded": True}), NOW)
    assert (ok["materializedGeneration"], ok["storedGenerations"], ok["lateRows"]) == (2, [1, 2], 0)


def test_the_next_backfill_drops_replaced_and_abandoned_generations() -> None:
    # 3 in effect, 2 replaced by it, 4 started but never finished: the backfill of 5 drops
    # 2 and 4 (and nothing of 3, which readers read until 5 is complete).
    status = _status({"materializedGeneration": 3, "storedGenerations": [2, 3, 4]})
    drops = generations_to_drop(status)
    assert drops == [2, 4]
    planned = next_range(_spec(), status, 5, NOW)
    assert planned is not None
    run = run_record(run_name("m", 5, 9), 5, planned, NOW, drops)
    config = PlatformConfig.from_env({"LYKEION_DATA_DIR": "/data", "LYKEION_PYTHON": "python"})
    body = objects.manifest() | {
        "metadata": {"name": "m", "namespace": "ns", "generation": 5, "uid": "u-1"}
    }
    command = work_for(_parsed(body), run, config).command
    assert command[command.index("--drop-generations") + 1] == "2,4"
    assert command[command.index("--generation") + 1] == "5"
    assert '"uid":"u-1"' in command[command.index("--manifest-json") + 1]
    done = finish(status, run, WorkStatus(State.SUCCEEDED, "", {"succeeded": True}), NOW)
    assert (done["materializedGeneration"], done["storedGenerations"]) == (5, [3, 5])


def test_late_rows_of_an_incremental_run_make_a_condition() -> None:
    status = _status({"materializedGeneration": 1, "watermark": "2026-11-27T10:30:00Z"})
    planned = next_range(
        _spec("0 * * * *"), status.patched({"lastRunTime": "2026-11-27T10:30:05Z"}), 1, NOW
    )
    assert planned is not None and planned.start is not None
    run = run_record(run_name("m", 1, 2), 1, planned, NOW)
    outcome = WorkStatus(State.SUCCEEDED, "", {"succeeded": True, "late_rows": 3})
    fields = finish(status, run, outcome, NOW)
    assert (fields["lateRows"], fields["lateRowsBoundary"]) == (3, planned.start)
    assert fields["runs"][-1]["lateRows"] == 3
    check = late_data_check(status.patched(fields), "m")
    assert (check.status, check.reason) == ("True", "RowsBehindAllowedLateness")
    assert "lykectl features backfill m" in check.message and planned.start in check.message
    # A backfill brings them in: the count goes back to zero.
    backfill = run_record(run_name("m", 2, 3), 2, NextRange(None, "2026-11-27T12:00:00Z", ""), NOW)
    after = finish(status.patched(fields), backfill, WorkStatus(State.SUCCEEDED, "", {}), NOW)
    assert late_data_check(status.patched(fields).patched(after), "m").status == "False"


def test_a_deleted_manifest_drops_every_generation_it_may_have_written() -> None:
    in_flight = RunRecord(name="m-g4-r9", generation=4, end="2026-11-27T11:00:00Z", started_at="t")
    status = FeatureManifestStatus(
        stored_generations=[2, 3], materialized_generation=1, current_run=in_flight
    )
    # Stored, in effect, in flight, and its own (submitted before the status said so).
    assert generations_written(status, 5) == [1, 2, 3, 4, 5]
    # No status, no generation known: the first one.
    assert generations_written(FeatureManifestStatus(), 0) == [1]


def test_an_unreachable_store_holds_a_deletion_for_a_bounded_time() -> None:
    asked = datetime(2026, 3, 1, tzinfo=UTC)
    body = {"metadata": {"name": "m", "deletionTimestamp": "2026-03-01T00:00:00Z"}}
    assert not give_up_dropping(body, asked)
    assert not give_up_dropping(body, asked + DROP_GIVE_UP - timedelta(seconds=1))
    assert give_up_dropping(body, asked + DROP_GIVE_UP)
    assert not give_up_dropping({"metadata": {"name": "m"}}, asked + 10 * DROP_GIVE_UP)


def test_a_finished_run_is_recorded_as_the_status_schema_says() -> None:
    # The record keeps exactly the keys it started with plus what the run reported (no
    # empty defaults such as dropGenerations), and a reported value the schema refuses
    # fails the run, naming the field, not a status patch the API server would refuse.
    run = _run()
    outcome = WorkStatus(State.SUCCEEDED, "", {"succeeded": True, "rows_read": 4})
    record = finish(_status({"currentRun": run.wire_given()}), run, outcome, NOW)["runs"][-1]
    assert set(record) == {
        "name", "generation", "end", "result", "startedAt", "finishedAt", "message", "rowsRead"
    }  # fmt: skip
    assert RunRecord.model_validate(record).wire_given() == record
    wrong = WorkStatus(State.SUCCEEDED, "", {"succeeded": True, "rows_read": "many"})
    before = _status({"currentRun": run.wire_given()})
    fields = finish(before, run, wrong, NOW)
    failed = fields["runs"][-1]
    assert fields["currentRun"] is None and "materializedGeneration" not in fields
    assert (failed["result"], "rowsRead" in failed) == ("Failed", False)
    assert failed["message"].startswith("ResultInvalid: the run reported a value the status")
    assert "rows_read: Input should be a valid integer" in failed["message"]
    assert "'many'" in failed["message"] and "Traceback" not in failed["message"]
    # The same path a failed run takes: Materialized is False, its message the run's.
    check = materialized_check(before.patched(fields), run.generation)
    assert (check.ok, check.reason) == (False, "PipelineFailed")
    assert check.message == f"run {run.name} failed: {failed['message']}"
