"""The contract between handlers and the places work runs."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class State(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    MISSING = "Missing"

    @property
    def finished(self) -> bool:
        return self in (State.SUCCEEDED, State.FAILED)


@dataclass(frozen=True)
class Work:
    """One unit of batch work (a pipeline run, a training). `name` is deterministic."""

    name: str
    namespace: str
    image: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cpu: str = "500m"
    memory: str = "1Gi"
    owner: dict[str, Any] | None = None
    """The Lykeion object the work belongs to (owner reference on Kubernetes)."""
    service_account: str = "lykeion-workload"


@dataclass(frozen=True)
class WorkStatus:
    state: State
    message: str = ""
    result: dict[str, Any] | None = None
    """What the work reported about itself when it finished (e.g. rows written)."""


class Executor(Protocol):
    """Runs `Work` idempotently: submitting a name that already exists starts nothing new."""

    async def submit(self, work: Work) -> WorkStatus: ...

    async def status(self, namespace: str, name: str) -> WorkStatus: ...

    async def logs(self, namespace: str, name: str, tail: int = 50) -> str: ...

    async def cancel(self, namespace: str, name: str) -> None: ...
