"""A FeatureManifest resolved into what stores and pipelines need: names, types, TTL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from lykeion.api.featuremanifest import FeatureManifestSpec

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

# Manifest type -> Arrow type name (pyarrow is imported only where data flows).
ARROW_TYPES = {
    "int64": "int64",
    "float64": "float64",
    "string": "string",
    "bool": "bool",
    "timestamp": "timestamp[us, tz=UTC]",
}

# Column names the stores reserve next to the features.
KEY = "entity_key"
EVENT_TIME = "event_time"


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `15m`, `90s` (the DURATION pattern of the API)."""
    match = re.fullmatch(r"([0-9]+)(s|m|h|d)", text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def is_list(type_: str) -> bool:
    return type_.startswith("list<")


def element_type(type_: str) -> str:
    return type_[5:-1] if is_list(type_) else type_


@dataclass(frozen=True)
class FeatureDef:
    name: str
    type: str
    """One of the API's feature types: int64, float64, string, bool, timestamp, list<...>."""


@dataclass(frozen=True)
class FeatureView:
    """The features of one manifest, as stored: one row per entity key and event time."""

    namespace: str
    name: str
    """The FeatureManifest's name."""
    entity: str
    join_key: str
    key_type: str
    """`string` or `int64`."""
    features: tuple[FeatureDef, ...]
    ttl: timedelta

    @classmethod
    def from_manifest(cls, namespace: str, name: str, spec: FeatureManifestSpec) -> FeatureView:
        return cls(
            namespace=namespace,
            name=name,
            entity=spec.entity.name,
            join_key=spec.entity.join_key,
            key_type=spec.entity.key_type,
            features=tuple(FeatureDef(f.name, f.type) for f in spec.features),
            ttl=parse_duration(spec.ttl),
        )

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> FeatureView:
        meta = body["metadata"]
        spec = FeatureManifestSpec.model_validate(body["spec"])
        return cls.from_manifest(meta.get("namespace", "default"), meta["name"], spec)

    @property
    def table(self) -> str:
        """Storage name, unique per namespace and manifest: `<namespace>__<manifest>`."""
        return f"{self.namespace}__{self.name}".replace("-", "_")

    def feature(self, name: str) -> FeatureDef:
        found = self._by_name.get(name)
        if found is None:
            raise KeyError(f"{self.entity}.{name} is not a feature of FeatureManifest {self.name}")
        return found

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    # Views are immutable and read on every online request: lookups derived from the
    # fields are computed once. (Not the hash: a pickled view must not carry one process's
    # string hashes into another.)
    @cached_property
    def _by_name(self) -> dict[str, FeatureDef]:
        return {f.name: f for f in self.features}
