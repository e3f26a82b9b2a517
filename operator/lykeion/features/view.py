"""A FeatureManifest resolved into what stores and pipelines need: names, types, TTL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.names import table_name

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
    uid: str = ""
    """The FeatureManifest object's UID: a recreated object never reads its predecessor's
    tables."""
    generation: int = 0
    """The store generation the view reads or writes (`status.materializedGeneration` for
    readers, the run's generation for a pipeline run; 0: none materialized yet)."""

    @classmethod
    def from_manifest(
        cls,
        namespace: str,
        name: str,
        spec: FeatureManifestSpec,
        uid: str = "",
        generation: int = 0,
    ) -> FeatureView:
        return cls(
            namespace=namespace,
            name=name,
            entity=spec.entity.name,
            join_key=spec.entity.join_key,
            key_type=spec.entity.key_type,
            features=tuple(FeatureDef(f.name, f.type) for f in spec.features),
            ttl=parse_duration(spec.ttl),
            uid=uid,
            generation=generation,
        )

    @classmethod
    def from_body(cls, body: dict[str, Any], generation: int | None = None) -> FeatureView:
        """The view of a FeatureManifest object (metadata with uid, spec, status).

        Readers (Feature API, model servers, trainings) leave `generation` out and get the
        generation in effect, `status.materializedGeneration`: they switch to a new
        generation only once its backfill completed. A run passes its own generation.
        """
        meta = body["metadata"]
        spec = FeatureManifestSpec.model_validate(body["spec"])
        if generation is None:
            generation = int((body.get("status") or {}).get("materializedGeneration") or 0)
        return cls.from_manifest(
            meta.get("namespace", "default"), meta["name"], spec, meta.get("uid", ""), generation
        )

    @cached_property
    def table(self) -> str:
        """Storage name of this view's tables: `<namespace>__<manifest>__g<generation>_<hash>`,
        unique per namespace, manifest, object UID and generation (`names.table_name`)."""
        return table_name(self.namespace, self.name, self.uid, self.generation)

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
