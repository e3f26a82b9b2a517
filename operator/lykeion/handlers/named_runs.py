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
from typing import Any

from lykeion.conditions import Check, rfc3339
from lykeion.executors.base import Executor, State, Work, WorkStatus

MESSAGE_LIMIT = 2000
"""Characters of a finished run's message kept in status (its end: where errors are)."""


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


def finished_record(
    run: dict[str, Any],
    outcome: WorkStatus,
    succeeded: bool,
    now: datetime,
    reported: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The status record of `run` once it ended (pure): its result, when, the end of its
    message, and each `(result key, status field)` of `reported` the work reported."""
    result = outcome.result or {}
    record = {
        **run,
        "result": "Succeeded" if succeeded else "Failed",
        "finishedAt": rfc3339(now),
        # Killed by its node (OOMKilled, `outcome.reason`): where it ran knows better than
        # the work's own report.
        "message": (
            (outcome.reason and outcome.message) or result.get("message") or outcome.message
        )[-MESSAGE_LIMIT:],
    }
    for key, field in reported:
        if result.get(key) is not None:
            record[field] = result[key]
    return record
