"""Status conditions by the Kubernetes API conventions, computed without I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

READY = "Ready"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(moment: datetime) -> str:
    """A status timestamp: ISO 8601 with `Z` for UTC."""
    return moment.isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@dataclass(frozen=True)
class Check:
    """The outcome of one condition before it is stamped with time and generation."""

    type: str
    ok: bool
    reason: str
    message: str = ""

    @property
    def status(self) -> str:
        return "True" if self.ok else "False"


def ready(checks: Sequence[Check], ready_reason: str = "Ready", ready_message: str = "") -> Check:
    """`Ready` aggregates the others: False with the first failing check's reason and message."""
    for check in checks:
        if not check.ok:
            return Check(READY, False, check.reason, check.message)
    return Check(READY, True, ready_reason, ready_message or "all conditions are met")


def merge(
    current: Iterable[Mapping[str, Any]],
    checks: Iterable[Check],
    generation: int,
    timestamp: str,
    keep_others: bool = True,
) -> list[dict[str, Any]]:
    """New `status.conditions`: `lastTransitionTime` moves only when a status flips."""
    previous = {c["type"]: c for c in current}
    merged: dict[str, dict[str, Any]] = dict(previous) if keep_others else {}
    for check in checks:
        before = previous.get(check.type)
        flipped = before is None or before.get("status") != check.status
        merged[check.type] = {
            "type": check.type,
            "status": check.status,
            "reason": check.reason,
            "message": check.message,
            "lastTransitionTime": timestamp if flipped else before["lastTransitionTime"],  # type: ignore[index]
            "observedGeneration": generation,
        }
    # Ready first, then the rest in a stable order, so that equal states compare equal.
    return sorted(merged.values(), key=lambda c: (c["type"] != READY, c["type"]))


def get(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    condition = get(conditions, type_)
    return condition is not None and condition.get("status") == "True"
