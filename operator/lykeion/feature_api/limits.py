"""What one request may cost: body size, query depth, keys read, parser tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024
    """Larger request bodies are refused with 413 before they are parsed."""
    max_depth: int = 6
    """Deepest selection allowed on the feature graph (entity queries are 2-3 deep)."""
    max_introspection_depth: int = 20
    """Deepest selection under `__schema`/`__type`: graphql-core's introspection query is 15
    deep, and unbounded `fields { type { fields ... } }` nesting multiplies the work."""
    max_keys: int = 500
    """Entity keys read per request, summed over every field of the request."""
    max_tokens: int = 5000
    """Parser budget: a query with more tokens is rejected before a document is built."""
    document_cache_size: int = 1000
    """Validated documents kept per schema, keyed by query text; 0 turns the cache off."""
    persisted_queries: int = 10_000
    """Automatic persisted queries remembered (hash -> query text), least recently used out."""
    max_errors: int = 20
    """Validation stops after this many errors."""


@dataclass(frozen=True)
class Depth:
    feature: int
    introspection: int


def measure_depth(
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    introspecting: bool = False,
    memo: dict[tuple[str, bool], Depth] | None = None,
) -> Depth:
    """Depth of a selection set, following fragments; paths through introspection apart."""
    memo = {} if memo is None else memo
    feature = introspection = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            inner = introspecting or selection.name.value in INTROSPECTION_ROOTS
            below = (
                measure_depth(selection.selection_set, fragments, inner, memo)
                if selection.selection_set
                else Depth(0, 0)
            )
            if inner:
                introspection = max(introspection, 1 + below.introspection)
            else:
                feature = max(feature, 1 + below.feature)
                if below.introspection:
                    introspection = max(introspection, 1 + below.introspection)
            continue
        if isinstance(selection, InlineFragmentNode):
            below = measure_depth(selection.selection_set, fragments, introspecting, memo)
        elif isinstance(selection, FragmentSpreadNode):
            below = _fragment_depth(selection.name.value, fragments, introspecting, memo)
        else:  # pragma: no cover - the three selection kinds above are all GraphQL has
            continue
        feature = max(feature, below.feature)
        introspection = max(introspection, below.introspection)
    return Depth(feature, introspection)


def _fragment_depth(
    name: str,
    fragments: dict[str, FragmentDefinitionNode],
    introspecting: bool,
    memo: dict[tuple[str, bool], Depth],
) -> Depth:
    key = (name, introspecting)
    if key in memo:
        return memo[key]
    fragment = fragments.get(name)
    # Unknown fragments and cycles are reported by the standard rules; count them as flat.
    memo[key] = Depth(0, 0)
    if fragment is not None:
        memo[key] = measure_depth(fragment.selection_set, fragments, introspecting, memo)
    return memo[key]


def depth_limit_rule(limits: Limits) -> type[ASTValidationRule]:
    """A validation rule refusing operations deeper than the limits."""

    class DepthLimit(ASTValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            fragments = {
                d.name.value: d
                for d in self.context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            depth = measure_depth(node.selection_set, fragments)
            for measured, limit, what in (
                (depth.feature, limits.max_depth, "query depth"),
                (depth.introspection, limits.max_introspection_depth, "introspection depth"),
            ):
                if measured > limit:
                    self.report_error(
                        GraphQLError(
                            f"{what} {measured} exceeds the limit of {limit}",
                            node,
                            extensions={"code": "DEPTH_LIMIT_EXCEEDED"},
                        )
                    )

    return DepthLimit
