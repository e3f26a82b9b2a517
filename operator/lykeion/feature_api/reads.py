"""Store reads for one request: batched per FeatureView, within budget; network stores are
read off the event loop, local ones (SQLite) on it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from anyio import to_thread

from lykeion import access
from lykeion.access import READ_FEATURES, AccessReviewer, Caller, Forbidden, Right
from lykeion.feature_api.entities import Entity
from lykeion.feature_api.errors import AccessDenied, ReviewUnavailable, StoreDown, TooManyKeys
from lykeion.features.view import FeatureView
from lykeion.stores.online.base import OnlineStore, StoreUnavailable


@dataclass
class RequestContext:
    """The GraphQL context value: the store, who asks, and what this request has used."""

    store: OnlineStore
    max_keys: int
    keys: int = 0
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """The request's time: every read of the request gets the values at this moment
    (windows decayed to it; row-level values within the TTL of it)."""
    access: AccessReviewer | None = None
    """None: access control is off."""
    caller: Caller | None = None
    """Who the request's bearer token belongs to (set when `access` is on)."""

    async def may_read(self, view: FeatureView) -> None:
        """AccessDenied unless the caller may `get featuremanifests/data` of `view`."""
        if self.access is None:
            return
        assert self.caller is not None, "the endpoint authenticates before executing"
        right = Right.of(READ_FEATURES, view.namespace, view.name)
        try:
            await self.access.require(self.caller, right)
        except Forbidden as error:
            raise AccessDenied(str(error)) from None
        except access.ReviewUnavailable as error:
            raise ReviewUnavailable(str(error)) from None

    def take_keys(self, count: int) -> None:
        """Count keys against the request's budget before anything is read."""
        if self.keys + count > self.max_keys:
            raise TooManyKeys(
                f"the request asks for {self.keys + count} keys, the limit is {self.max_keys}"
            )
        self.keys += count


async def _read(
    store: OnlineStore,
    view: FeatureView,
    keys: Sequence[str | int],
    features: Sequence[str],
    at: datetime,
) -> list[dict[str, Any] | None]:
    try:
        if store.reads_inline:
            rows = store.read(view, keys, features, at)
        else:
            rows = await to_thread.run_sync(partial(store.read, view, keys, features, at))
    except StoreUnavailable as error:
        raise StoreDown(error) from error
    if len(rows) != len(keys):
        raise RuntimeError(f"the store answered {len(rows)} rows for {len(keys)} keys")
    return rows


async def read_entities(
    context: RequestContext,
    entity: Entity,
    raw_keys: Sequence[str],
    names: Sequence[str],
    argument: str,
) -> list[dict[str, Any] | None]:
    """One row per key, in order: join key and the `names` features at the request's
    time, or None when no FeatureView read knows the key.

    `argument` names where the keys came from (`rider(id:)`, `riders(ids:)`); a key its
    entity's type cannot hold raises BadUserInput naming it and the element, before any
    read. Every path (typed fields, compiled plans, `features`) reads through here."""
    context.take_keys(len(raw_keys))
    if argument.endswith("(id:)"):
        keys = [entity.key(raw, argument) for raw in raw_keys]
    else:
        keys = [entity.key(raw, f"{argument} element {i}") for i, raw in enumerate(raw_keys)]
    unique = list(dict.fromkeys(keys))
    plan = entity.plan(names)
    if not plan and entity.views:
        # Only the key was selected: existence is still the first manifest's answer.
        plan = {entity.views[0]: []}
    for view in plan:
        await context.may_read(view)
    if not unique or not plan:
        return [None for _ in keys]
    reads = [
        _read(context.store, view, unique, features, context.at) for view, features in plan.items()
    ]
    # One manifest is the common case: awaiting it directly spares gather's task.
    answers = [await reads[0]] if len(reads) == 1 else await asyncio.gather(*reads)
    rows: dict[str | int, dict[str, Any] | None] = {}
    for index, key in enumerate(unique):
        found = [answer[index] for answer in answers]
        if all(values is None for values in found):
            rows[key] = None
            continue
        row: dict[str, Any] = {entity.join_key: str(key)}
        for features, values in zip(plan.values(), found, strict=True):
            row.update({name: None if values is None else values.get(name) for name in features})
        rows[key] = row
    return [rows[key] for key in keys]
