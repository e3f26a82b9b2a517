"""FeatureViews grouped by entity: what one GraphQL type serves and where each field is read.

Several FeatureManifests may describe the same entity; their features merge into one
type. Definitions that cannot merge are left out and reported, never guessed:
a second manifest declaring another join key or key type for the entity, a feature name
already defined by another manifest (the first by namespace and name wins, as the
operator flags such manifests with a `FeatureConflict`), or names GraphQL reserves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from lykeion.feature_api.errors import BadUserInput
from lykeion.features.keys import InvalidKey, parse_key
from lykeion.features.view import FeatureDef, FeatureView

# Root fields and type names the schema defines itself.
GENERIC_FIELD = "features"
RESERVED_TYPES = frozenset(
    {"Query", "FeatureRow", "FeatureValue", "Int64", "Float64", "DateTime", "JSON"}
    | {"String", "Int", "Float", "Boolean", "ID"}
)


def type_name(entity: str) -> str:
    """`rider_trip` -> `RiderTrip`."""
    return "".join(part[:1].upper() + part[1:] for part in entity.split("_") if part)


def plural(entity: str) -> str:
    """`rider` -> `riders`, `city` -> `cities`, `address` -> `addresses`."""
    if re.search(r"[^aeiou]y$", entity):
        return entity[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", entity):
        return entity + "es"
    return entity + "s"


@dataclass(frozen=True)
class ServedFeature:
    view: FeatureView
    feature: FeatureDef


@dataclass
class Entity:
    """One GraphQL object type: the entity's key and every feature it serves."""

    name: str
    join_key: str
    key_type: str
    type_name: str
    lookup_field: str
    """Root field reading one key, e.g. `rider`."""
    batch_field: str
    """Root field reading a list of keys in one batch, e.g. `riders`."""
    features: dict[str, ServedFeature] = field(default_factory=dict)
    views: list[FeatureView] = field(default_factory=list)
    """Every manifest merged into this entity, in namespace/name order."""
    _plans: dict[tuple[str, ...], dict[FeatureView, list[str]]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def key(self, raw: object, where: str) -> str | int:
        """A key as the store holds it (`lykeion.features.keys`: int64 keys as int in
        range, others as non-empty text); BadUserInput naming `where` otherwise."""
        try:
            return parse_key(self.key_type, raw)
        except InvalidKey as error:
            raise BadUserInput(f"{where}: {self.name} key {error}") from None

    def plan(self, names: Iterable[str]) -> Mapping[FeatureView, Sequence[str]]:
        """The store reads that cover `names`: view -> its features among them. Kept per
        selection, as clients ask for the same few over and over (the entity's features
        do not change: a new manifest makes a new Entity)."""
        wanted = tuple(names)
        reads = self._plans.get(wanted)
        if reads is None:
            reads = {}
            for name in wanted:
                served = self.features[name]
                reads.setdefault(served.view, []).append(name)
            if len(self._plans) < 1024:
                self._plans[wanted] = reads
        return reads


@dataclass(frozen=True)
class Entities:
    by_name: dict[str, Entity]
    conflicts: tuple[str, ...]
    """What was left out of the schema, and why."""


def group_views(views: Sequence[FeatureView]) -> Entities:
    by_name: dict[str, Entity] = {}
    conflicts: list[str] = []
    taken_fields = {GENERIC_FIELD}
    taken_types = set(RESERVED_TYPES)
    for view in sorted(views, key=lambda v: (v.namespace, v.name)):
        source = f"FeatureManifest {view.namespace}/{view.name}"
        entity = by_name.get(view.entity)
        if entity is None:
            name = type_name(view.entity)
            if name in RESERVED_TYPES:
                name += "Entity"
            fields = (view.entity, plural(view.entity))
            clash = [f for f in fields if f in taken_fields] + (
                [name] if name in taken_types else []
            )
            if clash:
                conflicts.append(
                    f"{source}: entity {view.entity} is left out, {', '.join(clash)} is taken"
                )
                continue
            entity = Entity(view.entity, view.join_key, view.key_type, name, *fields)
            by_name[view.entity] = entity
            taken_fields.update(fields)
            taken_types.add(name)
        elif (view.join_key, view.key_type) != (entity.join_key, entity.key_type):
            conflicts.append(
                f"{source}: left out, it keys {view.entity} by {view.join_key} "
                f"({view.key_type}) where others use {entity.join_key} ({entity.key_type})"
            )
            continue
        entity.views.append(view)
        for feature in view.features:
            if feature.name == entity.join_key:
                conflicts.append(f"{source}: {view.entity}.{feature.name} is the join key")
            elif feature.name in entity.features:
                first = entity.features[feature.name].view
                conflicts.append(
                    f"{source}: {view.entity}.{feature.name} is left out, already defined by "
                    f"FeatureManifest {first.namespace}/{first.name}"
                )
            else:
                entity.features[feature.name] = ServedFeature(view, feature)
    return Entities(by_name, tuple(conflicts))
