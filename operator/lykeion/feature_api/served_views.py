"""The FeatureViews being served, swapped whole when manifests change."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from graphql import GraphQLSchema, assert_valid_schema

from lykeion.feature_api.documents import DocumentCache
from lykeion.feature_api.entities import Entities, group_views
from lykeion.feature_api.limits import Limits
from lykeion.feature_api.plans import compile_plan
from lykeion.feature_api.schema import build_schema
from lykeion.features.view import FeatureView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """One schema and everything derived from it; requests hold on to the one they started
    with, so a swap never mixes two schemas within a request."""

    views: tuple[FeatureView, ...]
    entities: Entities
    schema: GraphQLSchema
    documents: DocumentCache


def _order(views: Sequence[FeatureView]) -> tuple[FeatureView, ...]:
    return tuple(sorted(views, key=lambda v: (v.namespace, v.name)))


class ServedViews:
    """The FeatureViews the Feature API serves and the `Snapshot` built from them (entities,
    GraphQL schema, document cache); `update` swaps it whole while requests run."""

    def __init__(self, views: Sequence[FeatureView] | None = None, limits: Limits | None = None):
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self.loaded = views is not None
        """False until the first `update` (or views given here): readiness waits for it."""
        self.generation = 0
        self._snapshot = self._build(_order(views or ()))

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def documents(self) -> DocumentCache:
        return self._snapshot.documents

    def update(self, views: Sequence[FeatureView]) -> bool:
        """Serve `views` from now on; returns False (and keeps the cache) when nothing changed."""
        ordered = _order(views)
        with self._lock:
            changed = ordered != self._snapshot.views
            if changed:
                # A schema that fails to build raises here and the last one keeps serving.
                self._snapshot = self._build(ordered)
                self.generation += 1
            self.loaded = True
            return changed

    def _build(self, views: tuple[FeatureView, ...]) -> Snapshot:
        entities = group_views(views)
        for conflict in entities.conflicts:
            log.warning("feature API schema: %s", conflict)
        schema = build_schema(entities)
        assert_valid_schema(schema)
        planner = partial(compile_plan, entities)
        return Snapshot(views, entities, schema, DocumentCache(schema, self.limits, planner))
