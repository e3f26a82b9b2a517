"""When a FeatureManifest's pipeline runs, over which range, and what its outcome means.

Planning is pure (`next_range`, `finish`); `materialize` is the one step with I/O: it asks
the executor about the current run or submits the next one. Run names are deterministic
(`<manifest>-g<generation>-r<n>`, `names.derived_name`: shortened with a hash when long),
so after an operator restart the executor finds the run it had started instead of starting
another; runs carry the object's UID, so a recreated object never adopts its
predecessor's. The watermark moves only on success.

Generations: a backfill of spec generation G writes tables of its own (`FeatureView.table`
holds the generation) while readers go on reading the generation in effect,
`status.materializedGeneration`. Only when G's backfill succeeded does the status switch
to G, at once for every reader. The tables of generations no longer in effect are dropped
by the next backfill when it starts (it drops every stored generation except the one in
effect, its own included, so a retried backfill starts empty): a replaced generation stays
readable until a newer backfill begins, time enough for readers holding the old view
(model servers being re-rendered, a training reading its set) to move on.

Deletion: a FeatureManifest being deleted starts no run; its finalizer stops the run in
flight (the executor's cancel; the drop waits until the run has stopped, so it cannot write
a table again afterwards), then submits a drop run (`<manifest>-drop-a<n>`, labelled with
the object's UID like the pipeline runs) that drops the tables of every generation it may
have written from both stores (`DROP ... IF EXISTS`: idempotent). The drop runs where the
pipeline runs do (a Job of the workloads image, a detached process locally): the operator
itself has no store drivers and may not see the stores' files. The finalizer follows the
run and lets the object go only once it succeeded; a restarted operator finds the attempt
by name and follows it. A failed attempt sets `TablesDropped=False` (reason `DropFailed`,
the run's reason and the tables left) with a Warning event, and the next attempt starts,
spaced out by `drop_poll_delay`, until `DROP_GIVE_UP` after the deletion request; past
that the object goes and a Warning event names the tables left behind — deleting an
object never hangs on a store that is gone for good (a bucket or instance deleted with the
platform).

Late data: an incremental run re-reads from `watermark - spec.allowedLateness`; the run
counts source rows at or behind that boundary the offline store does not hold (`lateRows`)
and the `LateData` condition asks for a backfill.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import kopf
from croniter import croniter
from pydantic import ValidationError

from lykeion.api.featuremanifest import FeatureManifestSpec, FeatureManifestStatus, RunRecord
from lykeion.conditions import Check, parse_time, rfc3339
from lykeion.config import PlatformConfig
from lykeion.executors.base import Executor, State, Work, WorkStatus
from lykeion.features.dataflow import with_job_name
from lykeion.features.view import FeatureView, parse_duration
from lykeion.handlers.named_runs import finished_record, follow, invalid_result
from lykeion.names import derived_name
from lykeion.runtime import Resource

MATERIALIZED = "Materialized"
LATE_DATA = "LateData"
MAX_RUNS_KEPT = 10
BACKOFF_START = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
DROP_RETRY = 10.0
"""Seconds between attempts to drop a deleted manifest's tables (store unreachable, run
still stopping)."""
DROP_GIVE_UP = timedelta(hours=1)
"""How long after the deletion request a store that cannot be reached holds the object."""
DROP_POLL_FIRST = 2.0
DROP_POLL_MAX = 300.0
DROP_MAX_ATTEMPTS = 40
"""Drop attempts before the finalizer gives up whatever the time (`drop_poll_delay` makes
about 20 in `DROP_GIVE_UP`): the attempts are found by probing their names."""
DROP_CPU = "100m"
DROP_MEMORY = "512Mi"
TABLES_DROPPED = "TablesDropped"
"""Condition of a deleted manifest whose drop run failed or cannot start (False only)."""

FeatureManifest = Resource[FeatureManifestSpec, FeatureManifestStatus]
"""A FeatureManifest as a reconcile reads it: spec and status parsed."""


@dataclass(frozen=True)
class NextRange:
    start: str | None
    end: str
    reason: str


def consecutive_failures(runs: Sequence[RunRecord], generation: int) -> int:
    """How many of the last `runs` in a row are failed runs of `generation`."""
    count = 0
    for run in reversed(runs):
        if run.generation != generation or run.result != "Failed":
            break
        count += 1
    return count


def next_range(
    spec: FeatureManifestSpec, status: FeatureManifestStatus, generation: int, now: datetime
) -> NextRange | None:
    """The range of the run to start now, or None (pure)."""
    if status.current_run is not None:
        return None
    runs = status.runs
    failures = consecutive_failures(runs, generation)
    if failures:
        backoff = min(BACKOFF_START * 2 ** (failures - 1), BACKOFF_MAX)
        finished = parse_time(runs[-1].finished_at)
        if finished is not None and now < finished + backoff:
            return None
    if status.materialized_generation != generation:
        # New or changed definitions: recompute the whole history.
        return NextRange(None, rfc3339(now), "backfill")
    watermark = parse_time(status.watermark)
    last = parse_time(status.last_run_time)
    if spec.schedule and watermark is not None and last is not None:
        due = croniter(spec.schedule, last).get_next(datetime)
        if due <= now:
            # Re-read what arrived late but within the allowed lateness; keyed writes make
            # the overlap with the previous run change nothing it already wrote.
            start = watermark - parse_duration(spec.allowed_lateness)
            return NextRange(rfc3339(start), rfc3339(now), "schedule")
    return None


def run_record(
    name: str,
    generation: int,
    planned: NextRange,
    now: datetime,
    drop_generations: list[int] | None = None,
) -> RunRecord:
    """The status record of a run starting now (pure); `start` and `dropGenerations` are
    given only when the run has them, so its stored record holds no empty ones."""
    record = RunRecord(
        name=name, generation=generation, end=planned.end, result="Running", started_at=rfc3339(now)
    )
    given = {
        **({"start": planned.start} if planned.start is not None else {}),
        **({"drop_generations": drop_generations} if drop_generations else {}),
    }
    return record.model_copy(update=given) if given else record


def stored_generations(status: FeatureManifestStatus) -> list[int]:
    """Generations whose tables may exist: the one in effect and any started since."""
    stored = set(status.stored_generations)
    if status.materialized_generation:
        stored.add(status.materialized_generation)
    return sorted(stored)


def generations_to_drop(status: FeatureManifestStatus) -> list[int]:
    """What a backfill starting now drops first (pure): every stored generation but the
    one readers read, its own included (a retried backfill starts from empty tables)."""
    in_effect = status.materialized_generation
    return [g for g in stored_generations(status) if g != in_effect]


REPORTED = (
    "rows_read",
    "rows_written",
    "bad_rows",
    "duplicate_rows",
    "online_rows",
    "late_rows",
    "duration_seconds",
)
"""The `RunRecord` fields a pipeline run reports under the same names (its `RunResult`)."""


def finish(
    status: FeatureManifestStatus, run: RunRecord, outcome: WorkStatus, now: datetime
) -> dict[str, Any]:
    """Status fields (the keys and values written) after `run` ended with `outcome`
    (pure). A run that reported a value of the wrong type is recorded as failed, its
    message starting `ResultInvalid` and naming the field."""
    result = outcome.result or {}
    succeeded = outcome.state is State.SUCCEEDED and result.get("succeeded", True)
    # The range the run itself used wins: after a restart the record may have been rebuilt.
    used = parse_time(result.get("range_end"))
    end = rfc3339(used) if used is not None else run.end
    try:
        done = finished_record(
            run.model_copy(update={"end": end}), outcome, succeeded, now, REPORTED
        )
    except ValidationError as error:
        # A run record has no reason of its own: its message carries it.
        invalid = invalid_result("run", error)
        failed = replace(invalid, message=f"{invalid.reason}: {invalid.message}")
        return finish(status, run, failed, now)
    runs = [r.wire_given() for r in status.runs if r.name != run.name]
    fields: dict[str, Any] = {
        "currentRun": None,
        "runs": [*runs, done.wire_given()][-MAX_RUNS_KEPT:],
    }
    if succeeded:
        fields |= {"watermark": end, "lastRunTime": rfc3339(now), "rowsWritten": done.rows_written}
        # A full run (a backfill) says what the source holds now; an incremental one adds.
        before = None if run.start is None else status.newest_event_time
        newest = [m for m in (parse_time(before), parse_time(result.get("max_event_time"))) if m]
        fields["newestEventTime"] = rfc3339(max(newest)) if newest else None
        if run.start is None:
            # The switch: every reader follows materializedGeneration from now on.
            fields |= {
                "materializedGeneration": run.generation,
                "lateRows": 0,
                "lateRowsBoundary": None,
            }
        elif done.late_rows is not None:
            fields |= {"lateRows": done.late_rows, "lateRowsBoundary": run.start}
        # The run dropped these before writing (a failed drop fails the run); its own
        # generation it wrote again, and the one in effect it never drops.
        dropped = set(run.drop_generations)
        merged = status.patched(fields)
        keep = {run.generation, merged.materialized_generation}
        fields["storedGenerations"] = [
            g for g in stored_generations(merged) if g not in dropped or g in keep
        ]
    return fields


def materialized_check(status: FeatureManifestStatus, generation: int) -> Check:
    """The Materialized condition from the status fields (pure)."""
    current = status.current_run
    last = status.runs[-1] if status.runs else None
    if status.materialized_generation == generation and status.watermark:
        message = f"stores complete up to {status.watermark}"
        if last and last.result == "Failed":
            return Check(
                MATERIALIZED,
                True,
                "IncrementalRunFailed",
                f"{message}; last run failed: {last.message or ''}",
            )
        return Check(MATERIALIZED, True, "Materialized", message)
    if last and last.result == "Failed" and last.generation == generation:
        return Check(
            MATERIALIZED,
            False,
            "PipelineFailed",
            f"run {last.name} failed: {last.message or ''}",
        )
    if current:
        return Check(
            MATERIALIZED, False, "Backfilling", f"run {current.name} is computing the history"
        )
    return Check(MATERIALIZED, False, "Pending", "no run has completed for this generation yet")


def late_data_check(status: FeatureManifestStatus, name: str) -> Check:
    """The LateData condition (pure): True while source rows at or behind the last re-read
    boundary are missing from the stores, which only a backfill can bring in."""
    late = status.late_rows or 0
    if late:
        boundary = status.late_rows_boundary or "the re-read boundary"
        return Check(
            LATE_DATA,
            True,
            "RowsBehindAllowedLateness",
            f"{late} source row(s) at or before {boundary} (watermark minus allowedLateness) "
            f"are not in the stores; run `lykectl features backfill {name}` to rebuild them",
        )
    return Check(LATE_DATA, False, "NoLateRows", "no source rows behind the re-read boundary")


def _manifest_json(manifest: FeatureManifest) -> str:
    """What a run needs of the manifest, as compact JSON: identity (with the UID) and spec
    (as stored: the run parses it itself)."""
    body, meta = manifest.body, manifest.body["metadata"]
    argument = {
        "apiVersion": body.get("apiVersion"),
        "kind": "FeatureManifest",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", "default"),
            "uid": meta.get("uid", ""),
        },
        "spec": body["spec"],
    }
    return json.dumps(argument, separators=(",", ":"))


def work_for(manifest: FeatureManifest, run: RunRecord, config: PlatformConfig) -> Work:
    """The pipeline run as executor work (pure)."""
    command = [
        config.python, "-m", "lykeion.features.run",
        "--manifest-json", _manifest_json(manifest),
        "--offline", config.offline_store,
        "--online", config.online_store,
        "--engine", config.feature_engine,
        "--data-root", config.data_root,
        "--generation", str(run.generation),
        "--end", run.end,
    ]  # fmt: skip
    if run.start:
        command += ["--start", run.start]
    if run.drop_generations:
        command += ["--drop-generations", ",".join(str(g) for g in run.drop_generations)]
    command += ["--", *with_job_name(config.beam_args, run.name)]
    return Work(
        name=run.name,
        namespace=manifest.body["metadata"].get("namespace", "default"),
        image=config.image,
        command=tuple(command),
        owner=manifest.body,
    )


def run_name(manifest: str, generation: int, number: int) -> str:
    """`<manifest>-g<generation>-r<number>`, or shortened with a hash of all three."""
    return derived_name(manifest, f"g{generation}", f"r{number}")


RUN_RECORD_UNREADABLE = "RunRecordUnreadable"
"""Materialized=False reason: a `currentRun` is stored that the status model refuses."""


def unreadable_run(manifest: FeatureManifest) -> str | None:
    """The name of the run a stored `status.currentRun` records when the status model
    refuses the record (written by another version of the operator), "" when it names
    none readable, None when there is no such record (pure). While it is stored a run may
    be in flight: no new run is planned, and deletion stops that run by this name first."""
    stored = manifest.body.get("status")
    if manifest.status.current_run is not None or not isinstance(stored, Mapping):
        return None
    record = stored.get("currentRun")
    if record is None:
        return None
    name = record.get("name") if isinstance(record, Mapping) else None
    return name if isinstance(name, str) else ""


async def materialize(
    manifest: FeatureManifest, executor: Executor, config: PlatformConfig, now: datetime
) -> tuple[dict[str, Any], Check]:
    """Follow or start this manifest's run; status fields and the Materialized check."""
    body = manifest.body
    status = manifest.status
    generation = int(body["metadata"].get("generation", 1))
    namespace = manifest.namespace
    uid = body["metadata"].get("uid")
    fields: dict[str, Any] = {}
    stuck: Check | None = None
    current = status.current_run
    held = unreadable_run(manifest)
    if held is not None:
        problem = manifest.status_problems.get("currentRun") or manifest.status_problems.get(
            "", "status.currentRun: refused"
        )
        message = (
            f"{problem}; no run is planned while this record is stored (its run "
            f"{held or '(unnamed)'} may still be in flight): run the operator version that "
            "wrote it, or remove status.currentRun once that run has ended"
        )
        return {}, Check(MATERIALIZED, False, RUN_RECORD_UNREADABLE, message)
    if current is not None:
        followed = await follow(
            executor,
            namespace,
            uid,
            current.name,
            lambda: work_for(manifest, current, config),
            MATERIALIZED,
            "run",
        )
        stuck = followed.stuck
        if followed.finished is not None:
            fields = finish(status, current, followed.finished, now)
    else:
        planned = next_range(manifest.spec, status, generation, now)
        if planned is not None:
            number = status.run_count + 1
            backfill = planned.start is None
            run = run_record(
                run_name(manifest.name, generation, number),
                generation,
                planned,
                now,
                generations_to_drop(status) if backfill else None,
            )
            # Deterministic name: submitting before the status records it is safe.
            await executor.submit(work_for(manifest, run, config))
            fields = {"currentRun": run.wire_given(), "runCount": number}
            if backfill:
                fields["storedGenerations"] = sorted({*stored_generations(status), generation})
    check = materialized_check(status.patched(fields), generation)
    return fields, stuck if stuck is not None and not check.ok else check


def generations_written(status: FeatureManifestStatus, generation: int) -> list[int]:
    """Every generation of the manifest whose tables may exist (pure): the stored ones, the
    one in effect, a run's in flight, and the object's own `generation` (a backfill may
    have been submitted just before its status was written; 0, unknown, reads as 1)."""
    found = set(stored_generations(status))
    if status.current_run is not None and status.current_run.generation:
        found.add(status.current_run.generation)
    found.add(generation or 1)
    return sorted(found)


def give_up_dropping(body: dict[str, Any], now: datetime) -> bool:
    """Whether a failing drop should let the object go (pure): `DROP_GIVE_UP` has passed
    since the deletion request."""
    requested = parse_time(body["metadata"].get("deletionTimestamp"))
    return requested is not None and now >= requested + DROP_GIVE_UP


def drop_run_name(manifest: str, attempt: int) -> str:
    """`<manifest>-drop-a<attempt>`, or shortened with a hash (`names.derived_name`)."""
    return derived_name(manifest, "drop", f"a{attempt}")


def drop_poll_delay(attempt: int) -> float:
    """Seconds until the finalizer looks at drop attempt `attempt` again (pure): doubling
    from `DROP_POLL_FIRST`, at most `DROP_POLL_MAX`; so failing attempts (a store down) are
    spaced out too, about 20 of them in `DROP_GIVE_UP`."""
    return min(DROP_POLL_FIRST * 2.0 ** max(attempt - 1, 0), DROP_POLL_MAX)


def drop_work_for(manifest: FeatureManifest, attempt: int, config: PlatformConfig) -> Work:
    """Drop attempt `attempt` of a deleted manifest as executor work (pure): the tables of
    `generations_written`, from both stores, in the workloads image (Kubernetes) or a
    detached process (local). Not owned by the manifest (`Work.owned`): a foreground
    deletion would delete it as it starts; it carries the manifest's UID all the same."""
    body, meta = manifest.body, manifest.body["metadata"]
    generations = generations_written(manifest.status, manifest.generation)
    command = [
        config.python, "-m", "lykeion.features.run",
        "--manifest-json", _manifest_json(manifest),
        "--offline", config.offline_store,
        "--online", config.online_store,
        "--drop-generations", ",".join(str(g) for g in generations),
        "--drop-only",
    ]  # fmt: skip
    return Work(
        name=drop_run_name(meta["name"], attempt),
        namespace=meta.get("namespace", "default"),
        image=config.image,
        command=tuple(command),
        cpu=DROP_CPU,
        memory=DROP_MEMORY,
        owner=body,
        owned=False,
    )


@dataclass(frozen=True)
class DropStep:
    """What the finalizer of a deleted manifest does next (`next_drop_step`)."""

    release: bool
    """Let the object go: the drop succeeded, or the finalizer gave up (`tables_left`)."""
    tables_left: tuple[str, ...] = ()
    submit: int | None = None
    """The drop attempt to submit now."""
    cancel: str | None = None
    """A drop run to stop (stuck when the finalizer gave up)."""
    check: Check | None = None
    """`TablesDropped=False` to write: an attempt failed, or cannot start."""
    warning: str | None = None
    """The message of a `DropFailed` Warning event, once per failed attempt."""
    delay: float = DROP_RETRY
    waiting: str = ""
    """Why the finalizer holds (the TemporaryError's message)."""


def next_drop_step(
    attempts: list[WorkStatus], give_up: bool, tables: list[str], name: Callable[[int], str]
) -> DropStep:
    """The finalizer's next step from the drop attempts so far (pure).

    `attempts[i]` is the state of attempt i + 1 (named `name(i + 1)`): every one but the
    last failed; the last is the newest, MISSING when not submitted yet. `tables` are all the
    manifest's tables (what is left when a failed attempt reported nothing); `give_up`:
    `give_up_dropping` holds or the attempts ran out. A failed attempt is reported (the
    condition and one Warning event: its reason and the tables left) and the next one
    submitted at once; its outcome is read `drop_poll_delay` later."""
    number = len(attempts)
    last = attempts[-1]
    if last.state is State.SUCCEEDED:
        return DropStep(release=True)
    if last.state in (State.PENDING, State.RUNNING):
        check = None
        if last.stuck:
            message = f"drop run {name(number)} cannot go on: {last.message}"
            check = Check(TABLES_DROPPED, False, last.stuck, message)
        if give_up:  # stuck, or running without end (a store that never answers)
            message = f"drop run {name(number)} did not finish in time: {last.message}"
            check = check or Check(TABLES_DROPPED, False, "DropTimedOut", message)
            return DropStep(True, tuple(tables), cancel=name(number), check=check)
        return DropStep(
            False,
            check=check,
            delay=drop_poll_delay(number),
            waiting=f"waiting for drop run {name(number)} ({last.message})",
        )
    if number == 1:  # nothing submitted yet
        if give_up:  # no attempt could even be submitted in the time given
            return DropStep(True, tuple(tables))
        return DropStep(
            False, submit=1, delay=drop_poll_delay(1), waiting=f"submitted drop run {name(1)}"
        )
    failed = attempts[-2]
    result = failed.result or {}
    reported = result.get("tables_left")
    left = tuple(str(t) for t in reported) if isinstance(reported, list) else tuple(tables)
    reason = (failed.reason and failed.message) or result.get("message") or failed.message
    message = (
        f"drop run {name(number - 1)} failed: {reason}; tables left: {', '.join(left) or 'none'}"
    )
    check = Check(TABLES_DROPPED, False, "DropFailed", message)
    if give_up:
        return DropStep(True, left, check=check)
    message += f"; retrying as {name(number)}"
    return DropStep(
        False,
        submit=number,
        check=Check(TABLES_DROPPED, False, "DropFailed", message),
        warning=message,
        delay=drop_poll_delay(number),
        waiting=message,
    )


async def drop_tables(
    manifest: FeatureManifest, executor: Executor, config: PlatformConfig, now: datetime
) -> DropStep:
    """The finalizer's work for a deleted FeatureManifest (see the module docstring): stop
    the pipeline run in flight, then drop the tables of `generations_written` from both
    stores in a drop run (`drop_work_for`), followed attempt by attempt
    (`next_drop_step`). Idempotent: the attempts are found by their names and the
    object's UID, so a restarted operator follows the run in flight instead of starting
    another. Raises `kopf.TemporaryError` (delay `DROP_RETRY`) while the pipeline run is
    still stopping; the caller holds the finalizer while the step is not `release`."""
    body, meta = manifest.body, manifest.body["metadata"]
    namespace, uid = meta.get("namespace", "default"), meta.get("uid")
    current = manifest.status.current_run
    in_flight = current.name if current is not None else unreadable_run(manifest)
    if in_flight:
        outcome = await executor.status(namespace, in_flight, uid)
        if outcome.state in (State.PENDING, State.RUNNING):
            await executor.cancel(namespace, in_flight)
            raise kopf.TemporaryError(
                f"waiting for run {in_flight} to stop before dropping tables",
                delay=DROP_RETRY,
            )

    def name(attempt: int) -> str:
        return drop_run_name(meta["name"], attempt)

    attempts: list[WorkStatus] = []
    while len(attempts) < DROP_MAX_ATTEMPTS:
        attempts.append(await executor.status(namespace, name(len(attempts) + 1), uid))
        if attempts[-1].state is not State.FAILED:
            break
    exhausted = attempts[-1].state is State.FAILED
    if exhausted:  # every attempt failed: read as the next one not submitted
        attempts.append(WorkStatus(State.MISSING))
    written = generations_written(manifest.status, manifest.generation)
    tables = [FeatureView.from_body(body, g).table for g in written]
    step = next_drop_step(attempts, exhausted or give_up_dropping(body, now), tables, name)
    if step.cancel is not None:
        await executor.cancel(namespace, step.cancel)
    if step.submit is not None:
        try:
            await executor.submit(drop_work_for(manifest, step.submit, config))
        except Exception as error:
            if TERMINATING in str(error):
                # The namespace is being deleted: no run can start in it again, and holding
                # the finalizer would keep the namespace Terminating for good.
                message = (
                    f"drop run {name(step.submit)} cannot start: namespace {namespace} is "
                    "being deleted"
                )
                check = Check(TABLES_DROPPED, False, "NamespaceTerminating", message)
                return DropStep(True, tuple(tables), check=check)
            raise kopf.TemporaryError(
                f"cannot submit drop run {name(step.submit)}: {error}", delay=DROP_RETRY
            ) from error
    return step


TERMINATING = "because it is being terminated"
"""What the API server's NamespaceLifecycle admission says when refusing a new object in a
namespace being deleted (kube-apiserver's 403 Forbidden message)."""
