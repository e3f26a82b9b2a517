"""What a killed Job's pods and a crashing server's pods say (pure, on API objects as
data), and what a training's status records from it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lykeion.api.model import ModelStatus, TrainingRecord
from lykeion.executors.base import State, WorkStatus
from lykeion.executors.kubernetes import LOG_TAIL_CHARS, killed_reason
from lykeion.executors.kubernetes_endpoints import crash, newest_first
from lykeion.handlers.training import checks, finish


def _pod(status: dict[str, Any], memory: str = "256Mi") -> dict[str, Any]:
    return {
        "metadata": {"name": "forward-oom-t1-x7"},
        "spec": {"containers": [{"name": "work", "resources": {"limits": {"memory": memory}}}]},
        "status": {"phase": "Failed", "containerStatuses": [{"name": "work", **status}]},
    }


OOM = {"terminated": {"reason": "OOMKilled", "exitCode": 1, "message": '{"succeeded":false}'}}


def test_an_oom_kill_names_the_limit_what_to_change_and_ends_with_the_log() -> None:
    reason, message = killed_reason([_pod({"state": OOM})], "step 1\nallocating 64 MiB\n") or (
        "",
        "",
    )
    assert reason == "OOMKilled"
    assert "memory limit 256Mi" in message and "spec.training.resources.memory" in message
    assert message.endswith("allocating 64 MiB")


def test_an_oom_kill_before_a_restart_counts_and_a_long_log_is_cut_at_its_start() -> None:
    pod = _pod({"state": {"terminated": {"reason": "Error", "exitCode": 1}}, "lastState": OOM})
    log = "x" * 5000 + "the end"
    _, message = killed_reason([pod], log) or ("", "")
    kept = LOG_TAIL_CHARS - len("the end")
    assert message.endswith("\n" + "x" * kept + "the end")


def test_a_failure_of_its_own_is_not_a_kill() -> None:
    error = {"terminated": {"reason": "Error", "exitCode": 1}}
    assert killed_reason([_pod({"state": error})], "Traceback") is None
    assert killed_reason([], "") is None


def test_the_training_records_the_kill_over_its_own_report() -> None:
    current = TrainingRecord.model_validate(
        {"name": "forward-oom-t1", "requests": 1, "startedAt": "2026-01-01T00:00:00Z"}
    )
    own = {"succeeded": False, "reason": "ProjectFailed", "message": "the project failed"}
    killed = WorkStatus(State.FAILED, "pod p was OOMKilled ... log", own, reason="OOMKilled")
    fields = finish(current, killed, datetime(2026, 1, 1, tzinfo=UTC))
    trained, _ = checks(ModelStatus().patched(fields), 1, None)
    assert (trained.reason, trained.message) == ("OOMKilled", "pod p was OOMKilled ... log")
    # Without a kill the training's own report stands.
    fields = finish(
        current, WorkStatus(State.FAILED, "BackoffLimitExceeded", own), datetime.now(UTC)
    )
    assert checks(ModelStatus().patched(fields), 1, None)[0].reason == "ProjectFailed"


def _server(
    container: dict[str, Any], name: str = "srv-2-0-abc", created: str = "2026-01-01T00:00:00Z"
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"containerStatuses": [container]},
    }


def test_a_server_in_crash_loop_back_off_crashes_and_one_that_starts_does_not() -> None:
    looping = {
        "name": "server",
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 2}},
    }
    found = crash([_server(looping)])
    assert found is not None and (found.pod, found.container) == ("srv-2-0-abc", "server")
    assert found.message.startswith("pod srv-2-0-abc: container server crashed 3 time(s)")
    assert "exit code 2" in found.message
    starting = {"name": "server", "restartCount": 0, "state": {"running": {}}}
    assert crash([_server(starting)]) is None
    assert crash([]) is None
    # Restarted after a clean exit (a liveness kill is exit 137, not 0) is not a crash.
    clean = {"name": "server", "restartCount": 1, "state": {"running": {}},
             "lastState": {"terminated": {"reason": "Completed", "exitCode": 0}}}  # fmt: skip
    assert crash([_server(clean)]) is None


def test_a_training_report_that_does_not_fit_the_status_fails_it_naming_the_field() -> None:
    current = TrainingRecord(name="forward-t1", requests=1, started_at="2026-01-01T00:00:00Z")
    report = {"succeeded": True, "run_id": "r1", "training_set_hash": "h", "training_set_rows": 9}
    fields = finish(current, WorkStatus(State.SUCCEEDED, "", report), datetime.now(UTC))
    assert fields["trainingSet"] == {"hash": "h", "rows": 9}
    # A field the training did not report is cleared: an older training's value goes.
    assert fields["registeredModel"] is None and fields["mlflowRunId"] == "r1"
    # A value the status refuses fails the training (the same path as a failed one): the
    # current training is cleared, nothing of its report kept, the message names the field.
    wrong = WorkStatus(State.SUCCEEDED, "", report | {"metrics": {"auc": "high"}})
    fields = finish(current, wrong, datetime.now(UTC))
    assert fields["currentTraining"] is None and "mlflowRunId" not in fields
    last = fields["lastTraining"]
    assert (last["result"], last["reason"]) == ("Failed", "ResultInvalid")
    assert last["message"].startswith("the training reported a value the status does not")
    assert "metrics.auc: Input should be a valid number" in last["message"]
    assert "'high'" in last["message"] and "Traceback" not in last["message"]
    trained, evaluated = checks(ModelStatus().patched(fields), 1, None)
    assert (trained.ok, trained.reason, trained.message) == (
        False,
        "ResultInvalid",
        last["message"],
    )
    assert evaluated.reason == "NotTrained"
    # A value of the training record's own fails it the same way.
    long = WorkStatus(State.SUCCEEDED, "", report | {"duration_seconds": "long"})
    fields = finish(current, long, datetime.now(UTC))
    assert fields["lastTraining"]["reason"] == "ResultInvalid"
    assert "duration_seconds: Input should be a valid number" in fields["lastTraining"]["message"]


def test_the_crash_is_the_crashing_pods_not_the_first_pods() -> None:
    """Two replicas, or a rolling update: the pod listed first runs, another crashes."""
    running = {"name": "server", "restartCount": 0, "state": {"running": {}}}
    looping = {
        "name": "sidecar",
        "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "message": "no model"}},
    }
    pods = [_server(running, "srv-2-0-aaa"), _server(looping, "srv-2-0-bbb")]
    found = crash(pods)
    assert found is not None and (found.pod, found.container) == ("srv-2-0-bbb", "sidecar")
    assert found.message.startswith("pod srv-2-0-bbb:") and found.message.endswith(": no model")


def test_pods_newest_first() -> None:
    old = _server({}, "old", "2026-01-01T00:00:00Z")
    new = _server({}, "new", "2026-01-01T00:05:00Z")
    pods = [old, new]
    assert [p["metadata"]["name"] for p in newest_first(pods)] == ["new", "old"]
    assert pods == [old, new]  # input untouched
