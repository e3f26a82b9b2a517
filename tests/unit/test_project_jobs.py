"""A docker_env training's second Job (pure): its init container in the project's image,
what a failed entry point says, and the training record between the two Jobs."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from lykeion.api.model import ModelSpec, ModelStatus, TrainingRecord
from lykeion.config import PlatformConfig
from lykeion.executors.base import InitStep, State, Work, WorkStatus
from lykeion.executors.ca_bundle import CaBundle
from lykeion.executors.kubernetes import (
    INIT_CONTAINER,
    DataVolume,
    build_job,
    init_failure,
    killed_reason,
)
from lykeion.handlers.training import (
    Model,
    checks,
    finish,
    prepared_project,
    project_job_name,
    project_work,
    training_name,
    work_for,
)
from lykeion.runtime import Resource
from lykeion.training.run import TrainingResult, report
from tests.objects import model

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = PlatformConfig(
    data_dir=Path("/var/lib/lykeion"),
    online_store="sqlite:///var/lib/lykeion/online.db",
    offline_store="duckdb:///var/lib/lykeion/offline.duckdb",
    data_root="/var/lib/lykeion",
    image="lykeion/training:1",
    tracking_uri="http://mlflow.lykeion-system:5000",
)
PROJECT = {
    "image": "registry.example/team/trainer:1",
    "command": "python train.py --train /var/lib/lykeion/trainings/r1/train.parquet",
    "directory": "/var/lib/lykeion/sources/abc/project",
    "env": {"MLFLOW_RUN_ID": "r1", "MLFLOW_EXPERIMENT_ID": "7", "PROJECT_MODE": "fast"},
}


def _model() -> Model:
    body = model("forward", version="1.0")
    body["metadata"] |= {"namespace": "team-a", "uid": "u-1"}
    return Resource.parse(body, ModelSpec, ModelStatus)


def _current(**extra: Any) -> TrainingRecord:
    name = training_name("forward-default-1.0", 1)
    return TrainingRecord(name=name, requests=1, started_at="2026-01-01T00:00:00Z", **extra)


def _prepared() -> WorkStatus:
    result = {"succeeded": True, "run_id": "r1", "experiment_id": "7", "project": PROJECT}
    return WorkStatus(State.SUCCEEDED, "Job complete", result)


def test_the_first_job_asks_for_the_docker_env_split_only_where_images_run() -> None:
    work = work_for(_model(), [], "forward-t1", CONFIG, images=True)
    assert "--docker-env" in work.command
    stage = work.command[work.command.index("--stage-dir") + 1]
    assert stage == "/var/lib/lykeion/trainings"
    assert "--docker-env" not in work_for(_model(), [], "forward-t1", CONFIG).command


def test_a_prepared_training_gets_its_second_job_and_a_finished_one_does_not() -> None:
    current = _current()
    record = prepared_project(current, _prepared(), "forward-default-1.0")
    assert record is not None and record.project is not None
    assert record.project.job == project_job_name("forward-default-1.0", 1)
    assert record.project.job != current.name and len(record.project.job) <= 63
    assert (record.project.image, record.project.run_id) == (PROJECT["image"], "r1")
    # The record survives the status round trip (what a restarted operator reads).
    again = TrainingRecord.model_validate(json.loads(json.dumps(record.wire_given())))
    assert again == record
    # A training without docker_env, a failed one, or the second Job's end: it ended.
    plain = WorkStatus(State.SUCCEEDED, "", {"succeeded": True, "run_id": "r1"})
    assert prepared_project(current, plain, "forward-default-1.0") is None
    failed = WorkStatus(State.FAILED, "", {"succeeded": False, "project": PROJECT})
    assert prepared_project(current, failed, "forward-default-1.0") is None
    assert prepared_project(record, _prepared(), "forward-default-1.0") is None


def test_a_project_report_that_does_not_fit_the_status_is_refused_naming_the_field() -> None:
    report = WorkStatus(
        State.SUCCEEDED,
        "",
        {"succeeded": True, "run_id": "r1", "project": {**PROJECT, "image": ""}},
    )
    with pytest.raises(ValidationError, match="image"):
        prepared_project(_current(), report, "forward-default-1.0")


def test_the_second_job_runs_the_entry_point_in_the_projects_image_then_finishes() -> None:
    record = prepared_project(_current(), _prepared(), "forward-default-1.0")
    assert record is not None and record.project is not None
    work = project_work(_model(), [], record.project, CONFIG)
    assert work.name == record.project.job and work.image == CONFIG.image
    assert work.command[-4:] == ("--phase", "finish", "--run-id", "r1")
    assert "--docker-env" not in work.command
    assert work.init == InitStep(
        image=PROJECT["image"],
        command=("sh", "-c", PROJECT["command"]),
        working_dir=PROJECT["directory"],
        env={"MLFLOW_TRACKING_URI": CONFIG.tracking_uri, **PROJECT["env"]},
    )
    assert work.owner_uid == "u-1"


def test_the_init_container_gets_the_volumes_and_limits_of_the_job() -> None:
    step = InitStep(
        "registry.example/t:1",
        ("sh", "-c", "python train.py"),
        "/data/src",
        {"MODE": "fast", "HOME": "/home/me"},
    )
    work = Work(
        name="forward-t1-project",
        namespace="team-a",
        image="lykeion/training:1",
        command=("python", "-m", "lykeion.training.run"),
        memory="2Gi",
        init=step,
    )
    data = DataVolume({"hostPath": {"path": "/srv/lykeion"}}, "/var/lib/lykeion")
    ca = CaBundle("configmap", "corp-ca", "ca.crt")
    job = build_job(work, data, {"PIP_INDEX_URL": "https://pypi.internal/simple"}, ca)
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    assert init["name"] == INIT_CONTAINER and init["image"] == step.image
    assert init["command"] == ["sh", "-c", "python train.py"]
    assert init["workingDir"] == "/data/src"
    assert init["volumeMounts"] == main["volumeMounts"]
    assert init["resources"] == main["resources"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"] is not main["securityContext"]
    env = {e["name"]: e["value"] for e in init["env"]}
    # The platform's variables and the CA's, the step's own over them; never the result
    # path (the main container reports) nor the main container's own variables.
    assert env["PIP_INDEX_URL"] == "https://pypi.internal/simple"
    assert env["SSL_CERT_FILE"] == "/etc/lykeion/ca/ca.crt"
    assert (env["MODE"], env["HOME"]) == ("fast", "/home/me")
    assert "LYKEION_RESULT_PATH" not in env
    # Without a step: no init container; without HOME given: /tmp, the writable one.
    assert (
        "initContainers"
        not in build_job(Work("w", "ns", "i", ("true",)))["spec"]["template"]["spec"]
    )
    bare = build_job(Work("w", "ns", "i", ("true",), init=InitStep("x:1", ("true",))))
    init_env = bare["spec"]["template"]["spec"]["initContainers"][0]["env"]
    assert {"name": "HOME", "value": "/tmp"} in init_env
    assert "workingDir" not in bare["spec"]["template"]["spec"]["initContainers"][0]


def _pod(init: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "forward-t1-project-x1"},
        "spec": {
            "initContainers": [{"name": "project", "resources": {"limits": {"memory": "1Gi"}}}],
            "containers": [{"name": "work"}],
        },
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [{"name": "project", "image": "t:1", **init}],
            "containerStatuses": [{"name": "work", "state": {"waiting": {"reason": "PodInit"}}}],
        },
    }


def test_a_failed_entry_point_names_its_image_and_ends_with_its_log() -> None:
    failed = {
        "state": {
            "terminated": {
                "exitCode": 2,
                "reason": "Error",
                "message": "Traceback ...\nValueError: bad column",
            }
        }
    }
    reason, message = init_failure([_pod(failed)]) or ("", "")
    assert reason == "ProjectFailed"
    assert "image t:1" in message and "exit code 2" in message
    assert message.endswith("ValueError: bad column")
    ok = {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    assert init_failure([_pod(ok)]) is None
    assert init_failure([]) is None
    # Killed at its memory limit: the kill says so, with the init container's limit.
    oom = {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
    assert init_failure([_pod(oom)]) is None
    killed = killed_reason([_pod(oom)], "allocating")
    assert killed is not None and killed[0] == "OOMKilled" and "limit 1Gi" in killed[1]


def test_the_conditions_say_where_the_training_stands() -> None:
    record = prepared_project(_current(), _prepared(), "forward-default-1.0")
    assert record is not None
    status = ModelStatus().patched({"currentTraining": record.wire_given()})
    trained, _ = checks(status, 1, None)
    assert trained.reason == "Training"
    assert f"runs in its image {PROJECT['image']}" in trained.message
    # The second Job's failure ends the training with its reason.
    failed = WorkStatus(
        State.FAILED, "the MLflow project's entry point failed", None, reason="ProjectFailed"
    )
    fields = finish(record, failed, NOW)
    assert fields["currentTraining"] is None
    assert fields["lastTraining"]["reason"] == "ProjectFailed"
    assert fields["lastTraining"]["project"]["image"] == PROJECT["image"]


def test_a_prepared_report_fits_a_termination_message_with_two_dozen_features() -> None:
    """Kubernetes keeps the last 4 KiB of a termination message: a longer report is no JSON
    and the training reads as failed. The prepare phase's command names every column once
    more, so it leaves out what the operator does not read of it (the finish phase reports
    the features and the contract)."""
    refs = [f"customer.purchases_in_the_last_{n}_days" for n in range(24)]
    features = [{"ref": r, "column": r.replace(".", "__"), "type": "float64"} for r in refs]
    stage = "/var/lib/lykeion/trainings/0123456789abcdef0123456789abcdef"
    command = (
        f"python train.py --train {stage}/train.parquet --test {stage}/test.parquet "
        f"--target churned --features {','.join(f['column'] for f in features)}"
    )
    contract = {
        "labels": {"file": {"path": "labels/churn.csv", "format": "csv"},
                   "timestampColumn": "label_time", "target": "churned"},
        "evaluation": {"metric": "roc_auc", "threshold": 0.7, "higherIsBetter": True},
        "parameters": {}, "origins": {"labels": "spec", "evaluation": "spec",
                                      "parameters": {}, "overridden": []},
    }  # fmt: skip
    common: dict[str, Any] = {
        "succeeded": True,
        "run_id": "0123456789abcdef0123456789abcdef",
        "experiment_id": "12",
        "training_set_hash": "ab" * 32,
        "training_set_rows": 120000,
        "source_revision": "git:" + "c" * 40,
        "contract": contract,
        "features": features,
        "duration_seconds": 41.5,
    }
    project = {**PROJECT, "command": command}
    prepared = TrainingResult(
        **common, project=project, message="prepared run: its entry point runs next"
    )
    plain = TrainingResult(**common, message="roc_auc=0.8100, gate passed; registered x")
    assert len(json.dumps(asdict(prepared), separators=(",", ":"))) > 4096  # the whole
    text = report(prepared)
    assert len(text.encode()) <= 4096
    outcome = WorkStatus(State.SUCCEEDED, "Job complete", json.loads(text))
    record = prepared_project(_current(), outcome, "forward-default-1.0")
    assert record is not None and record.project is not None
    assert record.project.command == command and record.project.run_id == common["run_id"]
    # A training that ends in one Job reports its features, which the status keeps.
    assert json.loads(report(plain))["features"] == features
    assert len(report(plain).encode()) <= 4096
