"""The GraphQL schema generated from FeatureViews.

For an entity `rider` keyed by `rider_id`:

    type Rider { rider_id: ID!  age: Int64  tags: [String]  last_seen: DateTime ... }
    type Query {
      rider(id: ID!): Rider               # null when the key is unknown or expired
      riders(ids: [ID!]!): [Rider]        # one batched store read, in the order asked
      features(entity: String!, keys: [ID!]!, names: [String!]!): [FeatureRow]
    }

Entity fields read only the features the query selects; `features` reads `names`.
"""

from __future__ import annotations

from typing import Any, Protocol

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLField,
    GraphQLID,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    GraphQLString,
    InlineFragmentNode,
    SelectionSetNode,
    get_directive_values,
)

from lykeion.feature_api.entities import GENERIC_FIELD, Entities, Entity
from lykeion.feature_api.errors import UnknownEntity, UnknownFeature
from lykeion.feature_api.reads import RequestContext, read_entities
from lykeion.feature_api.scalars import JSON, graphql_type, json_value


class Info(Protocol):
    """What resolvers use of GraphQLResolveInfo (generic over the context only from
    graphql-core 3.3; 3.2 is what MLflow's graphene allows next to it)."""

    @property
    def context(self) -> RequestContext: ...
    @property
    def field_nodes(self) -> list[FieldNode]: ...
    @property
    def fragments(self) -> dict[str, FragmentDefinitionNode]: ...
    @property
    def variable_values(self) -> Any: ...


_ID_LIST = GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLID)))

FEATURE_VALUE = GraphQLObjectType(
    "FeatureValue",
    {
        "name": GraphQLField(GraphQLNonNull(GraphQLString)),
        "type": GraphQLField(GraphQLNonNull(GraphQLString), description="Manifest type."),
        "value": GraphQLField(JSON, description="Null when the entity has no value for it."),
    },
)

FEATURE_ROW = GraphQLObjectType(
    "FeatureRow",
    {
        "key": GraphQLField(GraphQLNonNull(GraphQLID)),
        "values": GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(FEATURE_VALUE))),
            description="One value per requested name, in the order requested.",
        ),
    },
)


def _included(node: FieldNode | InlineFragmentNode | FragmentSpreadNode, info: Info) -> bool:
    if not node.directives:
        return True
    skip = get_directive_values(GraphQLSkipDirective, node, info.variable_values)
    if skip and skip["if"]:
        return False
    include = get_directive_values(GraphQLIncludeDirective, node, info.variable_values)
    return not (include and not include["if"])


def selected_fields(info: Info) -> list[str]:
    """Names selected under the resolving field, through fragments and @skip/@include."""
    names: dict[str, None] = {}

    def visit(selection_set: SelectionSetNode) -> None:
        for selection in selection_set.selections:
            if not isinstance(selection, FieldNode | InlineFragmentNode | FragmentSpreadNode):
                continue
            if not _included(selection, info):
                continue
            if isinstance(selection, FieldNode):
                names[selection.name.value] = None
            elif isinstance(selection, InlineFragmentNode):
                visit(selection.selection_set)
            else:
                visit(info.fragments[selection.name.value].selection_set)

    for node in info.field_nodes:
        if node.selection_set:
            visit(node.selection_set)
    return list(names)


def _entity_type(entity: Entity) -> GraphQLObjectType:
    fields = {entity.join_key: GraphQLField(GraphQLNonNull(GraphQLID), description="Join key.")}
    for name, served in entity.features.items():
        view = served.view
        fields[name] = GraphQLField(
            graphql_type(served.feature.type),
            description=f"{entity.name}.{name} ({served.feature.type}), "
            f"FeatureManifest {view.namespace}/{view.name}",
        )
    return GraphQLObjectType(
        entity.type_name, fields, description=f"Online features of entity {entity.name}."
    )


def _entity_fields(entity: Entity) -> dict[str, GraphQLField]:
    def wanted(info: Info) -> list[str]:
        return [name for name in selected_fields(info) if name in entity.features]

    async def one(_root: Any, info: Info, id: str) -> dict[str, Any] | None:
        rows = await read_entities(
            info.context, entity, [id], wanted(info), f"{entity.lookup_field}(id:)"
        )
        return rows[0]

    async def many(_root: Any, info: Info, ids: list[str]) -> list[dict[str, Any] | None]:
        return await read_entities(
            info.context, entity, ids, wanted(info), f"{entity.batch_field}(ids:)"
        )

    object_type = _entity_type(entity)
    return {
        entity.lookup_field: GraphQLField(
            object_type,
            args={"id": GraphQLArgument(GraphQLNonNull(GraphQLID))},
            resolve=one,
            description=f"One {entity.name} by {entity.join_key}; null when unknown or expired.",
        ),
        entity.batch_field: GraphQLField(
            GraphQLList(object_type),
            args={"ids": GraphQLArgument(_ID_LIST)},
            resolve=many,
            description=f"{entity.name} rows in the order of `ids`, null for unknown keys.",
        ),
    }


def _generic_field(entities: Entities) -> GraphQLField:
    async def resolve(
        _root: Any,
        info: Info,
        entity: str,
        keys: list[str],
        names: list[str],
    ) -> list[dict[str, Any] | None]:
        found = entities.by_name.get(entity)
        if found is None:
            known = ", ".join(sorted(entities.by_name)) or "none"
            raise UnknownEntity(f"unknown entity {entity!r} (known: {known})")
        unknown = [name for name in names if name not in found.features]
        if unknown:
            raise UnknownFeature(
                "unknown feature(s): " + ", ".join(f"{entity}.{name}" for name in unknown)
            )
        context: RequestContext = info.context
        names = list(dict.fromkeys(names))
        rows = await read_entities(context, found, keys, names, f"{GENERIC_FIELD}(keys:)")
        return [
            None
            if row is None
            else {
                "key": row[found.join_key],
                "values": [
                    {
                        "name": name,
                        "type": found.features[name].feature.type,
                        "value": json_value(found.features[name].feature.type, row[name]),
                    }
                    for name in names
                ],
            }
            for row in rows
        ]

    return GraphQLField(
        GraphQLList(FEATURE_ROW),
        args={
            "entity": GraphQLArgument(GraphQLNonNull(GraphQLString)),
            "keys": GraphQLArgument(_ID_LIST),
            "names": GraphQLArgument(GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLString)))),
        },
        resolve=resolve,
        description="Any entity's features by name; rows in the order of `keys`, null when "
        "unknown. Values in JSON form: Int64 and DateTime as strings, Float64 NaN and "
        'infinities as "NaN", "Infinity", "-Infinity".',
    )


def build_schema(entities: Entities) -> GraphQLSchema:
    fields: dict[str, GraphQLField] = {}
    for entity in entities.by_name.values():
        fields.update(_entity_fields(entity))
    fields[GENERIC_FIELD] = _generic_field(entities)
    return GraphQLSchema(query=GraphQLObjectType("Query", fields))
