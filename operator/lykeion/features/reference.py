"""A feature reference, `entity.feature[:type]`: one type, one parser, one resolver, one check.

A Model names its inputs by reference (`spec.inputFeatures`); a training records the type
each input was trained as. Everything that turns that text into data goes through here —
the Model check, the object index, the training set, the readiness gate, the catalog and the
model server — so the training/serving skew guarantee ("an input is served with the type
it was trained as") is one function, `type_mismatch`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lykeion.api.common import FEATURE_REF, FEATURE_TYPES

if TYPE_CHECKING:
    from lykeion.features.view import FeatureView

_PATTERN = re.compile(FEATURE_REF)


class InvalidFeatureReference(ValueError):
    """The text is not `entity.feature` or `entity.feature:type`."""


@dataclass(frozen=True, order=True)
class FeatureReference:
    """`entity.feature`, optionally pinned to the type the model expects (`:int64`)."""

    entity: str
    feature: str
    type: str | None = None
    """One of `api.common.FEATURE_TYPES`, or None: any type the manifest declares."""

    @classmethod
    def parse(cls, text: str) -> FeatureReference:
        """Raises InvalidFeatureReference naming the text and the expected form (the rule
        is `api.common.FEATURE_REF`, the same pattern the CRD validates)."""
        if not isinstance(text, str) or not _PATTERN.fullmatch(text):
            raise InvalidFeatureReference(
                f"{text!r} is not a feature reference: expected entity.feature or "
                f"entity.feature:type (lower-case names of letters, digits and _, starting "
                f"with a letter; type one of {', '.join(FEATURE_TYPES)})"
            )
        name, _, type_ = text.partition(":")
        entity, feature = name.split(".", 1)
        return cls(entity, feature, type_ or None)

    @property
    def name(self) -> str:
        """`entity.feature`, without the type: the key features are known by."""
        return f"{self.entity}.{self.feature}"

    def __str__(self) -> str:
        """The text `parse` reads back: `entity.feature[:type]`."""
        return self.name if self.type is None else f"{self.name}:{self.type}"


def feature_name(text: str) -> str:
    """`rider.age:int64` -> `rider.age` (raises InvalidFeatureReference)."""
    return FeatureReference.parse(text).name


@dataclass(frozen=True)
class ResolvedFeature:
    """One feature of the FeatureManifest (view) that defines it."""

    view: FeatureView
    feature: str

    @property
    def name(self) -> str:
        """`entity.feature`."""
        return f"{self.view.entity}.{self.feature}"

    @property
    def column(self) -> str:
        """Column name in a training set: `<entity>__<feature>`."""
        return f"{self.view.entity}__{self.feature}"

    @property
    def type(self) -> str:
        """The type the manifest declares now (what is served)."""
        return self.view.feature(self.feature).type


class UnresolvedFeature(ValueError):
    """A reference not defined by exactly one FeatureManifest (`manifests`: those that do)."""

    def __init__(self, reference: FeatureReference, manifests: Sequence[str]) -> None:
        self.reference = reference
        self.manifests = tuple(manifests)
        super().__init__(
            f"{reference.name} is defined by {len(self.manifests)} FeatureManifests, expected 1"
        )


def defining(reference: FeatureReference, views: Sequence[FeatureView]) -> list[FeatureView]:
    """The views (in the given order) whose entity and features include the reference."""
    return [
        v for v in views if v.entity == reference.entity and reference.feature in v.feature_names
    ]


def resolve(
    references: Iterable[FeatureReference | str], views: Sequence[FeatureView]
) -> list[ResolvedFeature]:
    """Each reference (text is parsed) resolved to the one view defining it, in the given
    order. Raises InvalidFeatureReference, or UnresolvedFeature for the first reference
    that no view or more than one view defines. Declared types are not compared here:
    that is `type_mismatch`."""
    resolved = []
    for item in references:
        ref = item if isinstance(item, FeatureReference) else FeatureReference.parse(item)
        matches = defining(ref, views)
        if len(matches) != 1:
            raise UnresolvedFeature(ref, [v.name for v in matches])
        resolved.append(ResolvedFeature(matches[0], ref.feature))
    return resolved


class TypeMismatch(ValueError):
    """A feature's served type is not the type the model expects or was trained as."""

    def __init__(
        self, name: str, expected: str, served: str, manifest: str, *, trained: bool
    ) -> None:
        self.name, self.expected, self.served, self.manifest = name, expected, served, manifest
        if trained:
            message = (
                f"{name} was trained as {expected} but FeatureManifest {manifest} now "
                f"defines it as {served}"
            )
        else:
            message = (
                f"{name} is {served} in FeatureManifest {manifest}, the model expects {expected}"
            )
        super().__init__(message)


def type_mismatch(
    name: str, expected: str | None, served: str, manifest: str, *, trained: bool
) -> TypeMismatch | None:
    """The one compatibility rule between a model and the features it reads: the served
    type must equal the expected one exactly (no widening: a model trained on int64 is
    not fed float64). `expected` None (a reference without `:type`) accepts any type.
    `trained`: the expectation is the type recorded by a training (else the Model's
    `:type`); it only chooses the message's wording. Returns the mismatch, or None."""
    if expected is None or expected == served:
        return None
    return TypeMismatch(name, expected, served, manifest, trained=trained)
