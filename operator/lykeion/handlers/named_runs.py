"""Work with a deterministic name that a status records while it runs (a FeatureManifest's
pipeline run, a Model's training): follow it, or submit it again when it was recorded but
never reached the executor, and the record it leaves once finished.

Submitting before the status records the run is safe for the same reason: a restarted
operator recomputes the same name and the executor finds the run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from pydantic import ValidationError

from lykeion.api.featuremanifest import RunRecord
from lykeion.api.model import TrainingRecord
from lykeion.conditions import Check, rfc3339
from lykeion.executors.base import Executor, State, Work, WorkStatus

MESSAGE_LIMIT = 2000
"""Characters of a finished run's message kept in status (its end: where errors are)."""

RESULT_INVALID = "ResultInvalid"
"""The reason of a run recorded as failed because it reported a value the status refuses."""

_INPUT_LIMIT = 80
"""Characters of a refused value quoted in the message."""


@dataclass(frozen=True)
class Followed:
    """Where a recorded run stands: `finished` holds its outcome once it ended; `stuck` is
    a False check (the caller's condition type) while it cannot go on without a human."""

    finished: WorkStatus | None
    stuck: Check | None


async def follow(
    executor: Executor,
    namespace: str,
    owner_uid: str | None,
    name: str,
    work: Callable[[], Work],
    condition: str,
    noun: str,
) -> Followed:
    """Follow the run `name` of the object `owner_uid`; submit `work()` again when the
    executor has no such run (recorded, then a restart before it was submitted; a run of
    that name left by a deleted object of the same name also reads as missing). A stuck
    run gives `Check(condition, False, <reason>, "<noun> <name>: <message>")`: not failed
    (it goes on once fixed), but said, never a silent in-progress."""
    outcome = await executor.status(namespace, name, owner_uid)
    stuck = (
        Check(condition, False, outcome.stuck, f"{noun} {name}: {outcome.message}")
        if outcome.stuck
        else None
    )
    if outcome.state is State.MISSING:
        await executor.submit(work())
    return Followed(outcome if outcome.state.finished else None, stuck)


Record = TypeVar("Record", RunRecord, TrainingRecord)
"""The status record of a named run: a FeatureManifest's pipeline run, a Model's training."""


def finished_record(
    run: Record,
    outcome: WorkStatus,
    succeeded: bool,
    now: datetime,
    reported: Sequence[str],
) -> Record:
    """The status record of `run` once it ended (pure): its result, when, the end of its
    message, and each field of `reported` the work reported (the work's result keys are the
    record's field names; absent or null ones are left as they were). Raises
    `pydantic.ValidationError` naming the field when the work reported a value of the wrong
    type."""
    result = outcome.result or {}
    ended = {
        "result": "Succeeded" if succeeded else "Failed",
        "finished_at": rfc3339(now),
        # Killed by its node (OOMKilled, `outcome.reason`): where it ran knows better than
        # the work's own report.
        "message": (
            (outcome.reason and outcome.message) or result.get("message") or outcome.message
        )[-MESSAGE_LIMIT:],
    }
    ended |= {field: result[field] for field in reported if result.get(field) is not None}
    # Validated again (not `model_copy`): what the work reported is checked against the
    # status schema here, not by the API server refusing the patch.
    return type(run).model_validate({**run.model_dump(exclude_unset=True), **ended})


def invalid_result(noun: str, error: ValidationError) -> WorkStatus:
    """The outcome to record instead when a finished run (a `noun`: "training") reported a
    value that does not fit the status (`error` from `finished_record` or the caller's own
    validation): a failure with reason `RESULT_INVALID` and a message naming each field,
    what is wrong and the value given (cut to a few characters), never a stack trace
    (pure)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'result'}: {e['msg']} "
        f"(got {repr(e.get('input'))[:_INPUT_LIMIT]})"
        for e in error.errors(include_url=False)
    )
    message = f"the {noun} reported a value the status does not accept: {problems}"
    return WorkStatus(State.FAILED, message, None, reason=RESULT_INVALID)
