"""The contract between handlers and the places work runs."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from lykeion.serving.config import ServerConfig


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
class InitStep:
    """A container that runs to completion before the work's own, in an image of its own
    (a docker_env training's MLflow project entry point, in the image the project names).
    It gets the work's volumes, the platform's variables and `env` (its own win); its
    failure fails the work (`ProjectFailed` on Kubernetes, with the end of its log)."""

    image: str
    command: tuple[str, ...]
    working_dir: str = ""
    """"" : the image's own."""
    env: dict[str, str] = field(default_factory=dict)


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
    owned: bool = True
    """Whether the work is a dependent of `owner` (Kubernetes: an owner reference, so the
    garbage collector removes it with the owner). False for work that must outlive the
    owner's deletion request: the drop of a deleted FeatureManifest's tables, which a
    foreground deletion would otherwise delete as it starts. Unowned work still carries the
    owner's UID; its Job removes itself `UNOWNED_TTL` seconds after it finished."""
    service_account: str = "lykeion-workload"
    git_ssh_secret: str | None = None
    """Secret with `ssh-privatekey` and `known_hosts` for SSH git sources: the `kubernetes`
    executor mounts it and points GIT_SSH_COMMAND at it; local runs use the environment's
    own SSH configuration and agent instead."""
    init: InitStep | None = None
    """Runs before `command`, in its own image; only executors with `runs_images` take it."""

    @property
    def owner_uid(self) -> str:
        """The owner's UID ("" without an owner): work of the same name with another
        owner UID belongs to a deleted predecessor and is never adopted."""
        return str(((self.owner or {}).get("metadata") or {}).get("uid") or "")


@dataclass(frozen=True)
class WorkStatus:
    state: State
    message: str = ""
    result: dict[str, Any] | None = None
    """What the work reported about itself when it finished (e.g. rows written)."""
    stuck: str = ""
    """A CamelCase reason while unfinished work cannot go on without a human (its pod
    cannot be created, scheduled, pulled or started; `message` says why and what to do);
    "" while it runs or waits normally. The work is not failed: it goes on once fixed."""
    reason: str = ""
    """A CamelCase reason for finished work that the place it ran knows better than the
    work's own report (e.g. `OOMKilled`: the kernel killed it at its memory limit, whatever
    the work wrote about the failure it saw); "" otherwise. `message` then says why, what
    to change and the end of its log."""


@dataclass(frozen=True)
class VersionServer:
    """One model server for one served version."""

    version: str
    name: str
    """Deterministic child name: `<deployment>-<version>` (dots as dashes)."""
    config: ServerConfig
    """The server's configuration; its `wire()` is what the server reads."""


@dataclass(frozen=True)
class Endpoint:
    """What a Deployment wants served: servers, the traffic in effect, a shadow."""

    name: str
    namespace: str
    backend: str
    """`lykeion`, `seldon` or `kserve` (the local executor always runs `lykeion`)."""
    servers: tuple[VersionServer, ...]
    weights: dict[str, int]
    """Version -> percent of requests: sums to 100 over `servers`, or is all 0 when no
    rendered version may take traffic (nothing is then served)."""
    shadow: str | None = None
    stable: str | None = None
    """The version a canary's remainder belongs to (`rollout.stable_version`): the one
    serving before the split. KServe renders the other live version as its canary."""
    replicas: int = 1
    kserve_mode: str = "RawDeployment"
    """`RawDeployment` or `Serverless`: what the `kserve` backend renders (and can split)."""
    kserve_storage_schemes: tuple[str, ...] = ()
    """Storage URI prefixes KServe fetches beyond `render.KSERVE_SCHEMES` (installed
    `ClusterStorageContainer`s)."""
    image: str = ""
    cpu: str = "500m"
    memory: str = "1Gi"
    owner: dict[str, Any] | None = None
    python: str = "python3"
    """Interpreter of the local backend's processes."""


@dataclass(frozen=True)
class EndpointStatus:
    url: str | None
    available: dict[str, bool]
    """Version -> serving (loaded, store reachable, ready)."""
    messages: dict[str, str] = field(default_factory=dict)
    """Version -> why it is not available."""
    ready_replicas: int = 0
    crashed: frozenset[str] = frozenset()
    """Versions whose servers exited (rather than still starting)."""
    servers: dict[str, str] = field(default_factory=dict)
    """Version -> base URL of its own model server (`/metrics`, `/analysis`), where the
    operator can reach it; a rollout's analysis reads them (no entry: no data)."""
    unserved: frozenset[str] = frozenset()
    """Versions the backend runs no server for by its design when they have no share
    (KServe: an InferenceService names one version, so a version declared at 0% is not in
    it). Not available, and not down either: nothing is meant to start for them."""


class Executor(Protocol):
    """Runs `Work` idempotently: submitting a name that already exists for the same owner
    UID starts nothing new; work of that name left by another owner UID (a deleted object
    of the same name) is stopped and replaced, never adopted. Serves `Endpoint`s the same
    way: serving the same endpoint twice changes nothing."""

    runs_images: bool
    """Whether work can run a step in an image of its own (`Work.init`): the `kubernetes`
    executor can, the local one (processes on the operator's host) cannot."""

    async def submit(self, work: Work) -> WorkStatus: ...

    async def status(self, namespace: str, name: str, owner_uid: str | None = None) -> WorkStatus:
        """The work's state; MISSING when there is none, or when `owner_uid` is given and
        the work of that name belongs to another owner."""
        ...

    async def logs(self, namespace: str, name: str, tail: int = 50) -> str: ...

    async def cancel(self, namespace: str, name: str) -> None: ...

    async def serve(self, endpoint: Endpoint) -> EndpointStatus: ...

    async def unserve(self, namespace: str, name: str) -> None: ...


class ServingRejected(RuntimeError):
    """The serving backend refused what was rendered (e.g. its schema rejected it)."""
