"""A FeatureManifest resolved into what stores and pipelines need: names, types, TTL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from lykeion.api.featuremanifest import Feature, FeatureManifestSpec
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


AGGREGATE_PREFIX = "__agg_"
"""History columns of an aggregation's partial aggregates: `__agg_<feature>_<part>`."""

# What the history keeps per (key, event time) for each function: partial aggregates of
# that moment's rows, from which any window's value is the aggregate of the partials.
# `n` counts non-null values (int64), `sum` adds them as float64; `min`, `max` and `last`
# hold a value of the feature's type.
_PARTS = {
    "count": ("n",),
    "sum": ("n", "sum"),
    "mean": ("n", "sum"),
    "min": ("min",),
    "max": ("max",),
    "last": ("last",),
}


@dataclass(frozen=True)
class AggregationDef:
    """A trailing-window aggregation: `function` over the window (t - window, t]."""

    function: str
    """count, sum, mean, min, max or last."""
    window: timedelta


@dataclass(frozen=True)
class FeatureDef:
    name: str
    type: str
    """One of the API's feature types: int64, float64, string, bool, timestamp, list<...>."""
    aggregation: AggregationDef | None = None
    """Set for a windowed aggregation; None for a row-level column or expression."""

    def parts(self) -> tuple[tuple[str, str], ...]:
        """(history column, manifest type) of each partial aggregate; () when row-level."""
        if self.aggregation is None:
            return ()
        return tuple(
            (
                f"{AGGREGATE_PREFIX}{self.name}_{part}",
                "int64" if part == "n" else "float64" if part == "sum" else self.type,
            )
            for part in _PARTS[self.aggregation.function]
        )


def feature_def(feature: Feature) -> FeatureDef:
    """A manifest's feature as the stores see it: name, type, and its window if any."""
    agg = feature.aggregation
    window = AggregationDef(agg.function, parse_duration(agg.window)) if agg else None
    return FeatureDef(feature.name, feature.type, window)


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
            features=tuple(feature_def(f) for f in spec.features),
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

    @cached_property
    def row_features(self) -> tuple[FeatureDef, ...]:
        """Row-level columns and expressions: a value per source row, TTL applies."""
        return tuple(f for f in self.features if f.aggregation is None)

    @cached_property
    def aggregations(self) -> tuple[FeatureDef, ...]:
        """Windowed aggregations: a value at any time from the rows in its window."""
        return tuple(f for f in self.features if f.aggregation is not None)

    @cached_property
    def aggregation_types(self) -> dict[str, str]:
        """Aggregation name -> type."""
        return {f.name: f.type for f in self.aggregations}

    @cached_property
    def history_columns(self) -> tuple[tuple[str, str], ...]:
        """(name, manifest type) of the stored history's value columns: each row-level
        feature, then the partial aggregates of each aggregation (`FeatureDef.parts`)."""
        row = tuple((f.name, f.type) for f in self.row_features)
        return row + tuple(part for f in self.aggregations for part in f.parts())

    # Views are immutable and read on every online request: lookups derived from the
    # fields are computed once. (Not the hash: a pickled view must not carry one process's
    # string hashes into another.)
    @cached_property
    def _by_name(self) -> dict[str, FeatureDef]:
        return {f.name: f for f in self.features}
