"""The operator's shared state and its one way to reconcile an object.

Every reconcile of an object — from its own kopf handler, or because something it depends
on changed — runs under that object's lock, reads the object index at that moment, and ends in
at most one status patch. So the last writer always saw the newest state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from lykeion import conditions
from lykeion.api.common import ApiModel, Status
from lykeion.api.kinds import BY_KIND, Kind
from lykeion.config import PlatformConfig
from lykeion.executors.base import Executor
from lykeion.metrics import RECONCILE_ERRORS, RECONCILE_SECONDS, RECONCILES, record_status
from lykeion.object_index import Key, ObjectIndex

log = logging.getLogger("lykeion")

MESSAGE_LIMIT = 2000
"""Characters of a `SpecInvalid` message kept (a condition's message holds at most 4096)."""


Spec = TypeVar("Spec", bound=ApiModel)
Observed = TypeVar("Observed", bound=Status)


@dataclass(frozen=True)
class Resource(Generic[Spec, Observed]):
    """One object as a reconcile reads it: the body the API server sent (metadata, and
    spec and status as stored), its spec parsed once into the kind's spec model and its
    status into the kind's status model. The status a reconcile writes starts from the
    stored one (`new_status`), so a part of it that `status` left out is kept unless the
    reconcile writes that field itself."""

    body: dict[str, Any]
    spec: Spec
    status: Observed
    """The stored status, parsed (`Status.from_stored`): empty when none was written yet;
    what the model refuses is left out (`status_problems`)."""
    status_problems: Mapping[str, str] = field(default_factory=dict)
    """What `status` left out of the stored status, by status field (`Status.from_stored`)."""

    @classmethod
    def parse(
        cls, body: dict[str, Any], model: type[Spec], status_model: type[Observed]
    ) -> Resource[Spec, Observed]:
        """Parse `body["spec"]` with `model`, raising `pydantic.ValidationError` naming the
        field when the spec does not fit it (`SpecInvalid`, `Runtime` says so in status);
        and `body["status"]` with `status_model`, which never raises
        (`Status.from_stored`)."""
        spec = model.model_validate(body.get("spec") or {})
        status, problems = status_model.from_stored(body.get("status"))
        return cls(body, spec, status, problems)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace") or "default")

    @property
    def generation(self) -> int:
        return int(self.body["metadata"].get("generation") or 0)


@dataclass(frozen=True)
class Stored(Generic[Observed]):
    """Another object a reconcile reads (a Deployment's Models and FeatureManifests): the
    body the API server sent and its status parsed once into its kind's status model
    (`Status.from_stored`; what the model refuses is read as absent, and said by that
    object's own reconcile). Its spec is read as stored: a spec its model now refuses
    still serves what its status says."""

    body: Mapping[str, Any]
    status: Observed

    @classmethod
    def read(cls, body: Mapping[str, Any], status_model: type[Observed]) -> Stored[Observed]:
        """`body` with its status parsed by `status_model` (never raises)."""
        status, _ = status_model.from_stored(body.get("status"))
        return cls(body, status)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass(frozen=True)
class StatusUpdate:
    """What a kind's pure `desired_status` returns: plain fields and condition checks."""

    fields: dict[str, Any]
    checks: list[conditions.Check]


# A kind's pure status builder, over its object with spec and status parsed into its models.
StatusBuilder = Callable[[Resource[Any, Any], ObjectIndex], StatusUpdate]
# The I/O step of a kind (e.g. running a pipeline), after its pure status builder.
Actor = Callable[[Resource[Any, Any], "Runtime", StatusUpdate], Awaitable[StatusUpdate]]
# What a kind does when an object is deleted, before kopf removes the finalizer; raising
# kopf.TemporaryError holds the finalizer and retries.
DeleteHook = Callable[[kopf.Body, "Runtime"], Awaitable[None]]


@dataclass(frozen=True)
class Clock:
    """A kopf timer that reconciles an object every `interval` seconds (None: the
    configured poll interval), first after one interval, while `when` holds (kopf's `when=`
    filter on the object's `spec`/`status`; None: always). `name` completes its kopf id."""

    name: str
    when: Callable[..., bool] | None = None
    interval: float | None = None


@dataclass(frozen=True)
class KindDeclaration:
    """Everything the operator does for one kind, declared once; `lykeion.handlers`
    registers its kopf handlers and timers from it, and the runtime reconciles with it.

    Every reconcile builds the status with `desired_status` (pure); a kind with an `act`
    then does its I/O and folds the outcome in, reading its own latest object from the API
    server (never an event's older copy of the status it wrote itself). The object is
    reconciled on create, resume and spec change (with the event's body), on each of its
    `clocks`, on annotation changes when `reconcile_on_annotations`, and `deleted` runs on
    deletion. kopf handler ids are `<name>_changed`, `<name>_deleted`,
    `<name>_annotated` and `<name>_<clock.name>`: stable, as kopf records handler progress
    by id in the object's annotations."""

    kind: Kind
    name: str
    desired_status: StatusBuilder
    act: Actor | None = None
    clocks: tuple[Clock, ...] = ()
    deleted: DeleteHook | None = None
    reconcile_on_annotations: bool = False


def new_status(body: dict[str, Any], update: StatusUpdate, timestamp: str) -> dict[str, Any]:
    """The full status to store: current status + fields + merged conditions + generation."""
    current = dict(body.get("status") or {})
    generation = int(body["metadata"].get("generation", 0))
    merged = conditions.merge(current.get("conditions", []), update.checks, generation, timestamp)
    return {**current, **update.fields, "conditions": merged, "observedGeneration": generation}


def spec_problems(error: ValidationError) -> str:
    """Each problem of a spec that does not fit its kind's model as `spec.<field>: <what is
    wrong>` joined by "; " (pure); a problem of the whole spec (a model validator's) reads
    `spec: <what is wrong>`, without pydantic's "Value error, " prefix."""
    return "; ".join(
        f"{'.'.join(['spec', *(str(p) for p in e['loc'])])}: "
        f"{e['msg'].removeprefix('Value error, ')}"
        for e in error.errors()
    )


def _comparable(status: dict[str, Any]) -> dict[str, Any]:
    # A field set to None is removed by the merge patch: absent and None are the same state.
    status = {k: v for k, v in status.items() if v is not None}
    return {
        **status,
        "conditions": [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions", [])
        ],
    }


@dataclass
class Runtime:
    kube: Any  # lykeion.kube.Kube; Any keeps this module importable without the API client
    declarations: Mapping[str, KindDeclaration]
    """By kind name (`Model`, ...)."""
    index: ObjectIndex = field(default_factory=ObjectIndex)
    executor: Executor | None = None
    """Where batch work runs; handlers use it without knowing which one it is."""
    config: PlatformConfig | None = None
    retry_limit: int = 8
    _locks: dict[Key, asyncio.Lock] = field(default_factory=dict)
    _pending: set[Key] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _status_problems: dict[Key, dict[str, str]] = field(default_factory=dict)

    # -- entry points ---------------------------------------------------------------------

    async def reconcile_now(self, key: Key, body: dict[str, Any] | None = None) -> None:
        """Reconcile from a kopf handler: errors propagate so kopf retries them."""
        async with self._lock(key):
            await self._reconcile(key, body)

    def enqueue(self, key: Key) -> None:
        """Reconcile soon because a dependency changed; repeated requests coalesce."""
        if key in self._pending:
            return
        self._pending.add(key)
        task = asyncio.get_running_loop().create_task(self._reconcile_later(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Feed a watch event to the object index and requeue whatever depends on the change."""
        meta = body["metadata"]
        if event_type == "DELETED":
            record_status(body["kind"], meta.get("namespace", "default"), meta["name"], None)
            keys = self.index.forget(body["kind"], meta.get("namespace", "default"), meta["name"])
            gone = Key(body["kind"], meta.get("namespace", "default"), meta["name"])
            self._locks.pop(gone, None)
            self._status_problems.pop(gone, None)
        else:
            keys = self.index.observe(body)
        for key in keys:
            self.enqueue(key)

    async def idle(self) -> None:
        """Wait until no requeued reconcile is pending (for tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    def _lock(self, key: Key) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _warn_status_problems(self, key: Key, problems: Mapping[str, str]) -> None:
        """Log what the reconcile of `key` read as absent from its stored status, once
        until it changes (a part left out stays stored until its field is written again,
        and the clocks reconcile every few seconds)."""
        told = self._status_problems.get(key)
        if problems == told or (not problems and told is None):
            return
        if problems:
            log.warning(
                "%s %s/%s: stored status read without what its model refuses: %s",
                key.kind, key.namespace, key.name, "; ".join(problems.values()),
            )  # fmt: skip
            self._status_problems[key] = dict(problems)
        else:
            self._status_problems.pop(key, None)

    async def _reconcile_later(self, key: Key) -> None:
        for attempt in range(self.retry_limit):
            async with self._lock(key):
                # Taken off pending once the lock is held: requests arriving from now on see
                # a state newer than the one this run reads, so they must run again.
                self._pending.discard(key)
                try:
                    await self._reconcile(key, None)
                    return
                except kopf.TemporaryError as error:
                    delay = float(error.delay or 1.0) * (attempt + 1)
                    log.warning("reconcile of %s failed (%s); retrying in %.0fs", key, error, delay)
                except (kopf.PermanentError, ApiException) as error:
                    log.error("reconcile of %s failed for good: %s", key, error)
                    return
            await asyncio.sleep(delay)
        log.error("reconcile of %s still failing after %d attempts", key, self.retry_limit)

    async def _refuse(self, key: Key, body: dict[str, Any], error: ValidationError) -> None:
        """Say in status that the spec does not fit the kind's model (the API server
        accepted it, so its schema and the model disagree): `Ready=False`, `SpecInvalid`,
        naming each field."""
        fields = spec_problems(error)
        check = conditions.Check("Ready", False, "SpecInvalid", fields[:MESSAGE_LIMIT])
        status = new_status(body, StatusUpdate({}, [check]), conditions.now())
        if _comparable(status) != _comparable(body.get("status") or {}):
            await self.kube.patch_status(BY_KIND[key.kind], key.namespace, key.name, status)
        record_status(key.kind, key.namespace, key.name, status)

    async def _reconcile(self, key: Key, body: dict[str, Any] | None) -> None:
        kind = BY_KIND[key.kind]
        started = time.perf_counter()
        try:
            declaration = self.declarations[key.kind]
            actor = declaration.act
            if body is None or actor is not None:
                # Kinds that act read their own latest status, never an event's older copy.
                body = await self.kube.get(kind, key.namespace, key.name)
                if body is None:
                    record_status(kind.kind, key.namespace, key.name, None)
                    return
            body.setdefault("kind", kind.kind)
            try:
                resource = Resource.parse(body, kind.spec, kind.status)
            except ValidationError as error:
                await self._refuse(key, body, error)
                raise kopf.PermanentError(f"{key.kind} {key.name}: {error}") from error
            self._warn_status_problems(key, resource.status_problems)
            update = declaration.desired_status(resource, self.index)
            if actor is not None:
                update = await actor(resource, self, update)
            status = new_status(body, update, conditions.now())
            current = body.get("status") or {}
            if _comparable(status) != _comparable(current):
                await self.kube.patch_status(kind, key.namespace, key.name, status)
            record_status(kind.kind, key.namespace, key.name, status)
            RECONCILES.labels(kind.kind).inc()
        except Exception:
            RECONCILE_ERRORS.labels(kind.kind).inc()
            raise
        finally:
            RECONCILE_SECONDS.labels(kind.kind).observe(time.perf_counter() - started)
