"""When a Model trains, and what a finished training means for its conditions and status.

A training starts when the Model's references resolve and `spec.training.requests` is
above `status.observedTrainingRequests`; never twice for the same request: the run is
named `<model>-t<requests>` (`names.derived_name`: a Model name with dots, or a long one,
gets a hash of the exact name) and the executor finds it by that name and the Model's UID
after an operator restart; a recreated Model never adopts its predecessor's training.
A docker_env project on an executor that runs images trains in two Jobs: the first
(`<model>-t<requests>`) prepares the run and the training set and reports the image and
command of the entry point; the record keeps them (`currentTraining.project`) and the
second (`<model>-t<requests>-project`) runs the entry point in that image as its init
container, then evaluates and registers. Both are found again by name after a restart.
A training stuck on something only a human can fix (an image that cannot be pulled, a pod
that cannot be scheduled) is cancelled when a newer request comes (`Superseded`), so that
fixing the cause and training again (`lykectl models train`) replaces it.
Planning and outcomes are pure; `train` does the I/O.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from lykeion.api.model import Evaluation, ModelSpec, ModelStatus, ProjectRun, TrainingRecord
from lykeion.conditions import Check, rfc3339
from lykeion.config import PlatformConfig
from lykeion.executors.base import Executor, InitStep, State, Work, WorkStatus
from lykeion.handlers.named_runs import finished_record, follow, invalid_result
from lykeion.names import derived_name
from lykeion.runtime import Resource

TRAINED = "Trained"
EVALUATED = "Evaluated"

Model = Resource[ModelSpec, ModelStatus]
"""A Model as a reconcile reads it: spec and status parsed."""


def training_name(model: str, requests: int) -> str:
    """The training run (and Job) of request `requests` of Model `model`."""
    return derived_name(model, f"t{requests}")


def project_job_name(model: str, requests: int) -> str:
    """The second Job of a docker_env training: its entry point in the project's image."""
    return derived_name(model, f"t{requests}", "project")


def wanted(spec: ModelSpec, status: ModelStatus) -> int | None:
    """The request number to train now, or None (pure)."""
    requests = spec.training.requests
    observed = status.observed_training_requests or 0
    if status.current_training is not None or requests <= observed:
        return None
    return requests


def work_for(
    model: Model,
    manifests: list[dict[str, Any]],
    name: str,
    config: PlatformConfig,
    images: bool = False,
) -> Work:
    """The training `name` of `model` as executor work (pure): the Model's identity and
    spec and its input features' manifests, as JSON arguments of `lykeion.training.run`;
    `images`: the executor runs images (`Executor.runs_images`), so a docker_env project
    stops after its training set (`--docker-env`) for `project_work` to go on."""
    body, meta = model.body, model.body["metadata"]
    argument = {
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", "default"),
            "uid": meta.get("uid", ""),
        },
        "spec": body["spec"],
    }
    resources = model.spec.training.resources
    command: tuple[str, ...] = (
        config.python, "-m", "lykeion.training.run",
        "--model-json", json.dumps(argument, separators=(",", ":")),
        "--manifests-json", json.dumps(manifests, separators=(",", ":")),
        "--offline", config.offline_store,
        "--tracking-uri", config.tracking_uri,
        "--cache-dir", str(config.data_dir / "sources"),
        "--artifact-root", str(config.data_dir / "mlartifacts"),
        "--data-root", config.data_root,
        "--stage-dir", str(config.data_dir / "trainings"),
    )  # fmt: skip
    if images:
        command += ("--docker-env",)
    return Work(
        name=name,
        namespace=meta.get("namespace", "default"),
        image=config.image,
        command=command,
        cpu=resources.cpu,
        memory=resources.memory,
        owner=body,
        git_ssh_secret=model.spec.source.ssh_secret or config.git_ssh_secret,
    )


def project_work(
    model: Model, manifests: list[dict[str, Any]], project: ProjectRun, config: PlatformConfig
) -> Work:
    """The second Job of a docker_env training (pure): the init container runs the entry
    point `project.command` in `project.image` in the pinned checkout, with the tracking
    URI and `project.env` (the run's id among them); the main container, the Lykeion image,
    is `lykeion.training.run --phase finish --run-id <run>`."""
    first = work_for(model, manifests, project.job, config)
    step = InitStep(
        image=project.image,
        command=("sh", "-c", project.command),
        working_dir=project.directory,
        env={"MLFLOW_TRACKING_URI": config.tracking_uri, **project.env},
    )
    command = (*first.command, "--phase", "finish", "--run-id", project.run_id)
    return dataclasses.replace(first, command=command, init=step)


def prepared_project(
    current: TrainingRecord, outcome: WorkStatus, model: str
) -> TrainingRecord | None:
    """The record with its second Job once the first one of a docker_env training
    succeeded and reported its entry point (`TrainingResult.project`), else None: the
    training ended (pure). Raises `pydantic.ValidationError` naming the field when the
    report does not fit the status."""
    result = outcome.result or {}
    project = result.get("project")
    if current.project is not None or outcome.state is not State.SUCCEEDED or not project:
        return None
    if not result.get("succeeded"):
        return None
    run = ProjectRun.model_validate(
        {
            "job": project_job_name(model, current.requests),
            "image": project.get("image"),
            "command": project.get("command"),
            "directory": project.get("directory"),
            "run_id": result.get("run_id"),
            "env": project.get("env") or {},
        }
    )
    return current.model_copy(update={"project": run})


SUPERSEDED = "Superseded"
"""The reason of a stuck training that a newer training request replaced."""


def superseded(stuck: Check, requests: int) -> WorkStatus:
    """The outcome recorded for a stuck training that request `requests` replaces (pure):
    failed, reason `SUPERSEDED`, the message saying why it was stuck."""
    message = f"replaced by training request {requests} while stuck: {stuck.message}"
    return WorkStatus(State.FAILED, message, None, reason=SUPERSEDED)


REPORTED = ("duration_seconds", "project_seconds", "gate_passed")
"""The `TrainingRecord` fields a training reports under the same names (its `TrainingResult`)."""

TRAINED_FIELDS = (
    "mlflow_run_id",
    "model_uri",
    "artifact_uri",
    "registered_model",
    "registered_version",
    "metrics",
    "training_set",
    "source_sha",
    "features",
    "contract",
)
"""The `ModelStatus` fields a successful training sets: each one, also to null (a merge
patch then removes a field an earlier training left; inside an object it sets, such as
`metrics` or `contract`, keys of the earlier training that this one does not write stay)."""


def trained_status(result: dict[str, Any]) -> ModelStatus:
    """What a successful training reported (its `TrainingResult`, as the executor read it),
    as the Model's status fields of `TRAINED_FIELDS` (pure). Raises `pydantic.ValidationError`
    naming the field when a value does not fit the status schema."""
    return ModelStatus.model_validate(
        {
            "mlflow_run_id": result.get("run_id"),
            "model_uri": result.get("model_uri"),
            "artifact_uri": result.get("artifact_uri"),
            "registered_model": result.get("registered_model"),
            "registered_version": result.get("registered_version"),
            "metrics": result.get("metrics") or {},
            "training_set": {
                "hash": result.get("training_set_hash"),
                "rows": result.get("training_set_rows"),
            },
            "source_sha": result.get("source_revision"),
            "features": result.get("features") or [],
            "contract": result.get("contract"),
        }
    )


def finish(current: TrainingRecord, outcome: WorkStatus, now: datetime) -> dict[str, Any]:
    """Status fields once the training `current` ended with `outcome` (pure). A training
    that reported a value that does not fit the status schema is recorded as failed
    (reason `ResultInvalid`, the message naming the field)."""
    result = outcome.result or {}
    succeeded = outcome.state is State.SUCCEEDED and bool(result.get("succeeded"))
    try:
        done = finished_record(current, outcome, succeeded, now, REPORTED)
        trained = trained_status(result) if succeeded else None
    except ValidationError as error:
        return finish(current, invalid_result("training", error), now)
    reason = outcome.reason or result.get("reason") or ("" if succeeded else "TrainingFailed")
    record = done.model_copy(update={"reason": reason})
    fields: dict[str, Any] = {
        "currentTraining": None,
        "lastTraining": record.wire_given(),
        "observedTrainingRequests": current.requests,
    }
    if trained is not None:
        fields |= {_alias(name): None for name in TRAINED_FIELDS}
        fields |= trained.model_dump(by_alias=True, exclude_none=True, include=set(TRAINED_FIELDS))
    return fields


def _alias(name: str) -> str:
    """The status key (camelCase) of a `ModelStatus` field."""
    return ModelStatus.model_fields[name].alias or name


def checks(
    status: ModelStatus, requests: int, evaluation: Evaluation | None
) -> tuple[Check, Check]:
    """The Trained and Evaluated conditions from the status fields and the gate the last
    training applied (`evaluation`; None: none known) (pure)."""
    current = status.current_training
    last = status.last_training
    if current is not None:
        message = f"training {current.name} is running"
        if current.project is not None:
            message = (
                f"training {current.name}: the project's entry point runs in its image "
                f"{current.project.image} (Job {current.project.job})"
            )
        trained = Check(TRAINED, False, "Training", message)
        return trained, Check(EVALUATED, False, "NotTrained", "waiting for the training to finish")
    if last is None:
        if requests == 0:
            message = (
                "no training requested: increment spec.training.requests (lykectl models train)"
            )
            return Check(TRAINED, False, "TrainingNotRequested", message), Check(
                EVALUATED, False, "NotTrained", "not trained yet"
            )
        return (
            Check(
                TRAINED,
                False,
                "WaitingForReferences",
                "training starts once the family and features resolve and the features "
                "are materialized",
            ),
            Check(EVALUATED, False, "NotTrained", "not trained yet"),
        )
    if last.result == "Failed":
        return (
            Check(
                TRAINED,
                False,
                last.reason or "TrainingFailed",
                last.message or "training failed",
            ),
            Check(EVALUATED, False, "NotTrained", "the last training failed"),
        )
    trained = Check(TRAINED, True, "Trained", f"{status.model_uri} from run {status.mlflow_run_id}")
    metric = evaluation.metric if evaluation is not None else ""
    value = status.metrics.get(f"eval_{metric}")
    threshold = evaluation.threshold if evaluation is not None else None
    higher = evaluation.higher_is_better if evaluation is not None else True
    comparison = (">=" if higher else "<=") if last.gate_passed else ("<" if higher else ">")
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    message = f"{metric}={shown} {comparison} {threshold} on the held-out latest labels"
    if last.gate_passed:
        return trained, Check(EVALUATED, True, "GatePassed", message)
    return trained, Check(EVALUATED, False, "GateFailed", message)


async def train(
    model: Model, manifests: list[dict[str, Any]], resolved: bool,
    executor: Executor, config: PlatformConfig, now: datetime,
) -> tuple[dict[str, Any], Check, Check]:  # fmt: skip
    """Follow the Model's training in flight, or start the one asked for once `resolved`;
    the status fields it changes and the Trained and Evaluated checks."""
    status = model.status
    spec = model.spec
    namespace = model.namespace
    fields: dict[str, Any] = {}
    stuck: Check | None = None
    current = status.current_training
    images = executor.runs_images
    if current is not None:
        project = current.project
        name = project.job if project is not None else current.name

        def again() -> Work:
            if project is not None:
                return project_work(model, manifests, project, config)
            return work_for(model, manifests, name, config, images)

        followed = await follow(
            executor,
            namespace,
            model.body["metadata"].get("uid"),
            name,
            again,
            TRAINED,
            "training",
        )
        stuck = followed.stuck
        if followed.finished is not None:
            try:
                prepared = prepared_project(current, followed.finished, model.name)
            except ValidationError as error:
                prepared = None
                fields = finish(current, invalid_result("training", error), now)
            if prepared is not None and prepared.project is not None:
                # Deterministic name: submitting before the status records it is safe.
                await executor.submit(project_work(model, manifests, prepared.project, config))
                fields = {"currentTraining": prepared.wire_given()}
            elif not fields:
                fields = finish(current, followed.finished, now)
        elif followed.stuck is not None and spec.training.requests > current.requests:
            # Stuck (an image that cannot be pulled, a pod that cannot be scheduled) and a
            # newer request came: the new request replaces it, so that fixing the cause
            # (an MLproject's docker_env image, the resources) and training again works.
            await executor.cancel(namespace, name)
            fields = finish(current, superseded(followed.stuck, spec.training.requests), now)
            stuck = None
    # Also right after a training ended in this pass: a request that came while it ran
    # starts now, not at some later event (an idle Model has no timer).
    if resolved and status.patched(fields).current_training is None:
        requests = wanted(spec, status.patched(fields))
        if requests is not None:
            name = training_name(model.name, requests)
            # Deterministic name: submitting before the status records it is safe.
            await executor.submit(work_for(model, manifests, name, config, images))
            started = TrainingRecord(name=name, requests=requests, started_at=rfc3339(now))
            fields = {**fields, "currentTraining": started.wire_given()}
    merged = status.patched(fields)
    requests = spec.training.requests
    # The gate the training applied (the spec's, else the project's), as it recorded it.
    gate = merged.contract.evaluation if merged.contract is not None else spec.evaluation
    trained, evaluated = checks(merged, requests, gate)
    if stuck is not None and merged.current_training is not None:
        trained = stuck
    return fields, trained, evaluated
