"""One module per kind. Each has a pure `desired_status(resource, index)` (the object with
its spec parsed into the kind's model, `runtime.Resource`, and the operator's
`object_index.ObjectIndex`) and declares what the operator
does for its kind in one `DECLARATION` (`runtime.KindDeclaration`).

`register(poll_seconds)`, once, from the operator's `main()`, registers every kind's kopf
handlers and timers from those declarations (the poll interval is configuration).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from lykeion import GROUP, VERSION
from lykeion.handlers import deployments, families, features, models
from lykeion.object_index import Key
from lykeion.runtime import Clock, DeleteHook, KindDeclaration, Runtime

DECLARATIONS: tuple[KindDeclaration, ...] = (
    families.DECLARATION,
    features.DECLARATION,
    models.DECLARATION,
    deployments.DECLARATION,
)

__all__ = ["DECLARATIONS", "deployments", "families", "features", "models", "register"]


def register(poll_seconds: float) -> None:
    """Register the kopf handlers and timers of every declared kind; clocks without an
    interval of their own tick every `poll_seconds` seconds."""
    for declaration in DECLARATIONS:
        _register(declaration, poll_seconds)


def _register(declaration: KindDeclaration, poll_seconds: float) -> None:
    kind, prefix = declaration.kind.kind, declaration.name
    resource = (GROUP, VERSION, declaration.kind.plural)

    async def changed(
        body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
    ) -> None:
        runtime: Runtime = memo.runtime
        await runtime.reconcile_now(Key(kind, namespace or "default", name), dict(body))

    async def reconcile(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        await runtime.reconcile_now(Key(kind, namespace or "default", name))

    changed_id = f"{prefix}_changed"
    kopf.on.resume(*resource, id=changed_id)(changed)
    kopf.on.create(*resource, id=changed_id)(changed)
    kopf.on.update(*resource, id=changed_id, field="spec")(changed)
    if declaration.reconcile_on_annotations:
        kopf.on.update(*resource, id=f"{prefix}_annotated", field="metadata.annotations")(reconcile)
    for clock in declaration.clocks:
        _register_clock(resource, f"{prefix}_{clock.name}", clock, poll_seconds, reconcile)
    if declaration.deleted is not None:
        kopf.on.delete(*resource, id=f"{prefix}_deleted")(_on_delete(declaration.deleted))


def _on_delete(hook: DeleteHook) -> Callable[..., Awaitable[None]]:
    async def deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await hook(body, memo.runtime)

    return deleted


def _register_clock(
    resource: tuple[str, str, str],
    handler_id: str,
    clock: Clock,
    poll_seconds: float,
    reconcile: Callable[..., Awaitable[None]],
) -> None:
    interval = clock.interval if clock.interval is not None else poll_seconds
    when = clock.when

    async def tick(**kwargs: Any) -> None:
        # Only while the filter holds, also for a tick already due when it stopped holding.
        if when is None or when(**kwargs):
            await reconcile(**kwargs)

    kopf.timer(*resource, id=handler_id, interval=interval, initial_delay=interval, when=when)(tick)
