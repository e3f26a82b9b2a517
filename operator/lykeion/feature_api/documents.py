"""Validated documents kept by query text, and Apollo's automatic persisted queries.

Parsing and validating a query costs about fifteen times what executing it does, and
clients send the same few queries over and over: both are done once per query text and
schema. A schema change starts a new cache (see `served_views.py`).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    parse,
    specified_rules,
    validate,
)

from lykeion.feature_api.errors import BadUserInput, PersistedQueryNotFound
from lykeion.feature_api.limits import Limits, depth_limit_rule
from lykeion.feature_api.plans import Plan


class InvalidDocument(Exception):
    """The query does not parse or does not validate against the schema."""

    def __init__(self, errors: Sequence[GraphQLError], code: str) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = list(errors)
        self.code = code
        """`GRAPHQL_PARSE_FAILED` or `GRAPHQL_VALIDATION_FAILED`, as Apollo Server says."""


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Prepared:
    document: DocumentNode
    plan: Plan | None
    """How to answer it without graphql-core's executor, when it is a plain lookup."""


class DocumentCache:
    """Query text -> validated document (and its plan) for one schema. `misses` counts
    parse+validate runs."""

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        planner: Callable[[DocumentNode], Plan | None] = lambda _: None,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.planner = planner
        self._rules: Collection[type[ASTValidationRule]] = (
            *specified_rules,
            depth_limit_rule(limits),
        )
        self._documents: _Lru[str, Prepared] = _Lru(limits.document_cache_size)
        self.hits = 0
        self.misses = 0

    def get(self, query: str) -> Prepared:
        """The validated document of `query` and its plan; raises InvalidDocument."""
        prepared = self._documents.get(query)
        if prepared is not None:
            self.hits += 1
            return prepared
        self.misses += 1
        try:
            document = parse(query, no_location=False, max_tokens=self.limits.max_tokens)
        except GraphQLError as error:
            raise InvalidDocument([error], "GRAPHQL_PARSE_FAILED") from None
        errors = validate(self.schema, document, self._rules, max_errors=self.limits.max_errors)
        if errors:
            # Invalid documents are not kept: the cache must not be fillable with junk.
            raise InvalidDocument(errors, "GRAPHQL_VALIDATION_FAILED")
        prepared = Prepared(document, self.planner(document))
        self._documents.put(query, prepared)
        return prepared

    def __len__(self) -> int:
        return len(self._documents)


def query_hash(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


class PersistedQueries:
    """sha256 hash -> query text, per Apollo's automatic persisted queries (APQ)."""

    def __init__(self, size: int) -> None:
        self._queries: _Lru[str, str] = _Lru(size)

    def resolve(self, query: str | None, sha256: str) -> str:
        """The query text to run for a request carrying `sha256` (and maybe the text)."""
        if query is None:
            known = self._queries.get(sha256)
            if known is None:
                raise PersistedQueryNotFound()
            return known
        if query_hash(query) != sha256.lower():
            raise BadUserInput("provided sha does not match query")
        return query

    def remember(self, query: str, sha256: str) -> None:
        """Called once the query validated, so that junk never takes a slot."""
        self._queries.put(sha256.lower(), query)

    def __len__(self) -> int:
        return len(self._queries)
