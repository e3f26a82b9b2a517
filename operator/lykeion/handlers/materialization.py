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
a table again afterwards) and drops the tables of every generation it may have written
from both stores (`DROP ... IF EXISTS`: idempotent, so an operator restarted mid-deletion
just does it again), then lets the object go. A store that cannot be reached is retried
every `DROP_RETRY` until `DROP_GIVE_UP` after the deletion request; past that the object
goes and a Warning event names the tables left behind — deleting an object never hangs
on a store that is gone for good (a bucket or instance deleted with the platform).

Late data: an incremental run re-reads from `watermark - spec.allowedLateness`; the run
counts source rows at or behind that boundary the offline store does not hold (`lateRows`)
and the `LateData` condition asks for a backfill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import kopf
from croniter import croniter

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.conditions import Check, parse_time, rfc3339
from lykeion.config import PlatformConfig
from lykeion.executors.base import Executor, State, Work, WorkStatus
from lykeion.features.dataflow import with_job_name
from lykeion.features.view import parse_duration
from lykeion.names import derived_name

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


@dataclass(frozen=True)
class NextRange:
    start: str | None
    end: str
    reason: str


def consecutive_failures(runs: list[dict[str, Any]], generation: int) -> int:
    count = 0
    for run in reversed(runs):
        if run.get("generation") != generation or run.get("result") != "Failed":
            break
        count += 1
    return count


def next_range(
    spec: FeatureManifestSpec, status: dict[str, Any], generation: int, now: datetime
) -> NextRange | None:
    """The range of the run to start now, or None (pure)."""
    if status.get("currentRun"):
        return None
    runs = status.get("runs") or []
    failures = consecutive_failures(runs, generation)
    if failures:
        backoff = min(BACKOFF_START * 2 ** (failures - 1), BACKOFF_MAX)
        finished = parse_time(runs[-1].get("finishedAt"))
        if finished is not None and now < finished + backoff:
            return None
    if status.get("materializedGeneration") != generation:
        # New or changed definitions: recompute the whole history.
        return NextRange(None, rfc3339(now), "backfill")
    watermark = parse_time(status.get("watermark"))
    last = parse_time(status.get("lastRunTime"))
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
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": name,
        "generation": generation,
        "end": planned.end,
        "result": "Running",
        "startedAt": rfc3339(now),
    }
    if planned.start is not None:
        record["start"] = planned.start
    if drop_generations:
        record["dropGenerations"] = drop_generations
    return record


def stored_generations(status: dict[str, Any]) -> list[int]:
    """Generations whose tables may exist: the one in effect and any started since."""
    stored = {int(g) for g in status.get("storedGenerations") or []}
    if status.get("materializedGeneration"):
        stored.add(int(status["materializedGeneration"]))
    return sorted(stored)


def generations_to_drop(status: dict[str, Any]) -> list[int]:
    """What a backfill starting now drops first (pure): every stored generation but the
    one readers read, its own included (a retried backfill starts from empty tables)."""
    in_effect = status.get("materializedGeneration")
    return [g for g in stored_generations(status) if g != in_effect]


def finish(
    status: dict[str, Any], run: dict[str, Any], outcome: WorkStatus, now: datetime
) -> dict[str, Any]:
    """Status fields after `run` ended with `outcome` (pure)."""
    result = outcome.result or {}
    succeeded = outcome.state is State.SUCCEEDED and result.get("succeeded", True)
    # The range the run itself used wins: after a restart the record may have been rebuilt.
    used = parse_time(result.get("range_end"))
    end = rfc3339(used) if used is not None else run["end"]
    done = {
        **run,
        "end": end,
        "result": "Succeeded" if succeeded else "Failed",
        "finishedAt": rfc3339(now),
        # Killed by its node (OOMKilled): the executor's account, not the run's own report.
        "message": ((outcome.reason and outcome.message) or result.get("message")
                    or outcome.message)[-2000:],
    }  # fmt: skip
    for key, field in (
        ("rows_read", "rowsRead"),
        ("rows_written", "rowsWritten"),
        ("bad_rows", "badRows"),
        ("duplicate_rows", "duplicateRows"),
        ("online_rows", "onlineRows"),
        ("late_rows", "lateRows"),
        ("duration_seconds", "durationSeconds"),
    ):
        if result.get(key) is not None:
            done[field] = result[key]
    runs = [r for r in status.get("runs") or [] if r.get("name") != run["name"]]
    fields: dict[str, Any] = {"currentRun": None, "runs": [*runs, done][-MAX_RUNS_KEPT:]}
    if succeeded:
        fields |= {
            "watermark": end,
            "lastRunTime": rfc3339(now),
            "rowsWritten": done.get("rowsWritten"),
        }
        # A full run (a backfill) says what the source holds now; an incremental one adds.
        before = None if run.get("start") is None else status.get("newestEventTime")
        newest = [m for m in (parse_time(before), parse_time(result.get("max_event_time"))) if m]
        fields["newestEventTime"] = rfc3339(max(newest)) if newest else None
        if run.get("start") is None:
            # The switch: every reader follows materializedGeneration from now on.
            fields |= {
                "materializedGeneration": run["generation"],
                "lateRows": 0,
                "lateRowsBoundary": None,
            }
        elif done.get("lateRows") is not None:
            fields |= {"lateRows": done["lateRows"], "lateRowsBoundary": run.get("start")}
        # The run dropped these before writing (a failed drop fails the run); its own
        # generation it wrote again, and the one in effect it never drops.
        dropped = set(run.get("dropGenerations") or [])
        merged = {**status, **fields}
        keep = {run["generation"], merged.get("materializedGeneration")}
        fields["storedGenerations"] = [
            g for g in stored_generations(merged) if g not in dropped or g in keep
        ]
    return fields


def materialized_check(status: dict[str, Any], generation: int) -> Check:
    """The Materialized condition from the status fields (pure)."""
    current = status.get("currentRun")
    runs = status.get("runs") or []
    last = runs[-1] if runs else None
    if status.get("materializedGeneration") == generation and status.get("watermark"):
        message = f"stores complete up to {status['watermark']}"
        if last and last.get("result") == "Failed":
            return Check(
                MATERIALIZED,
                True,
                "IncrementalRunFailed",
                f"{message}; last run failed: {last.get('message', '')}",
            )
        return Check(MATERIALIZED, True, "Materialized", message)
    if last and last.get("result") == "Failed" and last.get("generation") == generation:
        return Check(
            MATERIALIZED,
            False,
            "PipelineFailed",
            f"run {last['name']} failed: {last.get('message', '')}",
        )
    if current:
        return Check(
            MATERIALIZED, False, "Backfilling", f"run {current['name']} is computing the history"
        )
    return Check(MATERIALIZED, False, "Pending", "no run has completed for this generation yet")


def late_data_check(status: dict[str, Any], name: str) -> Check:
    """The LateData condition (pure): True while source rows at or behind the last re-read
    boundary are missing from the stores, which only a backfill can bring in."""
    late = int(status.get("lateRows") or 0)
    if late:
        boundary = status.get("lateRowsBoundary") or "the re-read boundary"
        return Check(
            LATE_DATA,
            True,
            "RowsBehindAllowedLateness",
            f"{late} source row(s) at or before {boundary} (watermark minus allowedLateness) "
            f"are not in the stores; run `lykectl features backfill {name}` to rebuild them",
        )
    return Check(LATE_DATA, False, "NoLateRows", "no source rows behind the re-read boundary")


def work_for(body: dict[str, Any], run: dict[str, Any], config: PlatformConfig) -> Work:
    """The pipeline run as executor work (pure)."""
    meta = body["metadata"]
    manifest = {
        "apiVersion": body.get("apiVersion"),
        "kind": "FeatureManifest",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", "default"),
            "uid": meta.get("uid", ""),
        },
        "spec": body["spec"],
    }
    command = [
        config.python, "-m", "lykeion.features.run",
        "--manifest-json", json.dumps(manifest, separators=(",", ":")),
        "--offline", config.offline_store,
        "--online", config.online_store,
        "--engine", config.feature_engine,
        "--data-root", config.data_root,
        "--generation", str(run["generation"]),
        "--end", run["end"],
    ]  # fmt: skip
    if run.get("start"):
        command += ["--start", run["start"]]
    if run.get("dropGenerations"):
        command += ["--drop-generations", ",".join(str(g) for g in run["dropGenerations"])]
    command += ["--", *with_job_name(config.beam_args, run["name"])]
    return Work(
        name=run["name"],
        namespace=meta.get("namespace", "default"),
        image=config.image,
        command=tuple(command),
        owner=body,
    )


def run_name(manifest: str, generation: int, number: int) -> str:
    """`<manifest>-g<generation>-r<number>`, or shortened with a hash of all three."""
    return derived_name(manifest, f"g{generation}", f"r{number}")


async def materialize(
    body: dict[str, Any], executor: Executor, config: PlatformConfig, now: datetime
) -> tuple[dict[str, Any], Check]:
    """Follow or start this manifest's run; status fields and the Materialized check."""
    status = dict(body.get("status") or {})
    generation = int(body["metadata"].get("generation", 1))
    namespace = body["metadata"].get("namespace", "default")
    uid = body["metadata"].get("uid")
    fields: dict[str, Any] = {}
    stuck: Check | None = None
    current = status.get("currentRun")
    if current:
        # A run of the same name that belongs to another (deleted) object reads as MISSING.
        outcome = await executor.status(namespace, current["name"], uid)
        if outcome.stuck:
            # Not failed (it goes on once fixed), but said: never a silent Backfilling.
            stuck = Check(MATERIALIZED, False, outcome.stuck, f"run {current['name']}: "
                          f"{outcome.message}")  # fmt: skip
        if outcome.state is State.MISSING:
            # Recorded but never submitted (restart in between): submit it now, same name.
            await executor.submit(work_for(body, current, config))
        elif outcome.state.finished:
            fields = finish(status, current, outcome, now)
    else:
        spec = FeatureManifestSpec.model_validate(body["spec"])
        planned = next_range(spec, status, generation, now)
        if planned is not None:
            number = int(status.get("runCount") or 0) + 1
            backfill = planned.start is None
            run = run_record(
                run_name(body["metadata"]["name"], generation, number),
                generation,
                planned,
                now,
                generations_to_drop(status) if backfill else None,
            )
            # Submitting before the status says so is safe: the name is deterministic, so a
            # restart recomputes the same name and the executor finds the run.
            await executor.submit(work_for(body, run, config))
            fields = {"currentRun": run, "runCount": number}
            if backfill:
                fields["storedGenerations"] = sorted({*stored_generations(status), generation})
    merged = {**status, **fields}
    check = materialized_check(merged, generation)
    return fields, stuck if stuck is not None and not check.ok else check


def generations_written(body: dict[str, Any]) -> list[int]:
    """Every generation of the manifest whose tables may exist (pure): the stored ones, the
    one in effect, a run's in flight, and the object's own generation (a backfill may
    have been submitted just before its status was written)."""
    status = body.get("status") or {}
    found = set(stored_generations(status))
    current = status.get("currentRun") or {}
    if current.get("generation"):
        found.add(int(current["generation"]))
    found.add(int(body["metadata"].get("generation") or 1))
    return sorted(found)


def give_up_dropping(body: dict[str, Any], now: datetime) -> bool:
    """Whether a failing drop should let the object go (pure): `DROP_GIVE_UP` has passed
    since the deletion request."""
    requested = parse_time(body["metadata"].get("deletionTimestamp"))
    return requested is not None and now >= requested + DROP_GIVE_UP


async def drop_tables(
    body: dict[str, Any], executor: Executor, config: PlatformConfig, now: datetime
) -> list[str]:
    """The finalizer's work for a deleted FeatureManifest (see the module docstring):
    stop the run in flight, then drop the tables of `generations_written` from both
    stores. Returns the tables left behind (empty unless it gave up on an unreachable
    store). Raises `kopf.TemporaryError` (delay `DROP_RETRY`) while the run is still
    stopping or a store fails, until `give_up_dropping`."""
    import asyncio

    from lykeion.features.run import drop_generations
    from lykeion.features.view import FeatureView

    meta = body["metadata"]
    namespace = meta.get("namespace", "default")
    current = (body.get("status") or {}).get("currentRun")
    if current:
        outcome = await executor.status(namespace, current["name"], meta.get("uid"))
        if outcome.state in (State.PENDING, State.RUNNING):
            await executor.cancel(namespace, current["name"])
            raise kopf.TemporaryError(
                f"waiting for run {current['name']} to stop before dropping tables",
                delay=DROP_RETRY,
            )
    generations = generations_written(body)
    view = FeatureView.from_body(body)
    tables = [FeatureView.from_body(body, g).table for g in generations]
    try:
        await asyncio.to_thread(
            drop_generations, view, generations, config.offline_store, config.online_store
        )
    except Exception as error:  # any store's failure: retried, then reported
        reason = f"{type(error).__name__}: {error}"
        if give_up_dropping(body, now):
            return tables
        raise kopf.TemporaryError(f"dropping tables failed ({reason})", delay=DROP_RETRY) from error
    return []
