"""`--wait`: re-read an object until its `Ready` condition settles, with a status line."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.text import Text

from lykectl.errors import CliError
from lykeion.api.kinds import Kind

POLL_INTERVAL = 0.5

# Reasons that describe work in progress: a False `Ready` with one of them will change on
# its own. Any other False reason of the current generation needs the user to act.
TRANSIENT_REASONS = frozenset(
    {
        "Pending",
        "Progressing",
        "InProgress",
        "Reconciling",
        "Starting",
        "Creating",
        "Scaling",
        "Deploying",
        "RollingOut",
        "Running",
        "Backfilling",
        "Training",
        "TrainingRequested",
        "TrainingRunning",
        "BuildingTrainingSet",
        "Evaluating",
        "Registering",
        "ModelNotReady",
        "ModelsNotReady",
        "ReplicasNotReady",
        "EndpointNotReady",
        "VersionsStarting",
        "RolloutHeld",
        "NoVersionServing",
        "FeaturesNotMaterialized",
    }
)
TRANSIENT_PREFIXES = ("Waiting", "Pending")


def is_transient(reason: str) -> bool:
    return reason in TRANSIENT_REASONS or reason.startswith(TRANSIENT_PREFIXES)


class State(StrEnum):
    waiting = "waiting"
    ready = "ready"
    failed = "failed"


@dataclass(frozen=True)
class Verdict:
    state: State
    summary: str


def _ready_condition(status: dict[str, Any]) -> dict[str, Any] | None:
    conditions = status.get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def assess(obj: dict[str, Any]) -> Verdict:
    """Where an object stands: still converging, Ready, or failed for a reason that stays."""
    generation = int(obj.get("metadata", {}).get("generation") or 0)
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None or int(observed) < generation:
        return Verdict(
            State.waiting, f"waiting for the operator to observe generation {generation}"
        )
    ready = _ready_condition(status)
    if ready is None:
        return Verdict(State.waiting, "waiting for a Ready condition")
    reason = str(ready.get("reason", ""))
    message = str(ready.get("message", ""))
    summary = f"Ready={ready.get('status')} {reason}" + (f": {message}" if message else "")
    if int(ready.get("observedGeneration", observed)) < generation:
        return Verdict(State.waiting, f"{summary} (from generation {ready['observedGeneration']})")
    requested = obj.get("spec", {}).get("training", {}).get("requests")
    acted_on = status.get("observedTrainingRequests")
    if requested is not None and acted_on is not None and int(acted_on) < int(requested):
        return Verdict(State.waiting, f"waiting for training request {requested} to be picked up")
    if ready.get("status") == "True":
        return Verdict(State.ready, summary)
    if ready.get("status") == "False" and not is_transient(reason):
        return Verdict(State.failed, f"{reason}: {message}" if message else reason)
    return Verdict(State.waiting, summary)


def wait_ready(
    read: Callable[[], dict[str, Any]],
    kind: Kind,
    name: str,
    timeout: float,
    interval: float = POLL_INTERVAL,
    console: Console | None = None,
) -> dict[str, Any]:
    """The object once Ready; CliError when it fails for good or `timeout` runs out."""
    console = console or Console(stderr=True, highlight=False)
    started = time.monotonic()
    deadline = started + timeout
    label = f"{kind.kind} {name}"
    with console.status(Text(f"{label}: waiting")) as line:
        while True:
            obj = read()
            verdict = assess(obj)
            now = time.monotonic()
            elapsed = now - started
            if verdict.state is State.ready:
                break
            if verdict.state is State.failed:
                raise CliError(f"{label} is not Ready: {verdict.summary}")
            if now >= deadline:
                raise CliError(
                    f"timed out after {timeout:g}s waiting for {label} to be Ready "
                    f"({verdict.summary})"
                )
            line.update(Text(f"{label}: {verdict.summary} ({elapsed:.1f}s)"))
            time.sleep(min(interval, deadline - now))
    console.print(Text(f"{label} is Ready ({elapsed:.1f}s)"))
    return obj
