"""Entity keys -> the model's input columns, read from the online store.

The inputs come in the order and with the types the training recorded; one batched read
per FeatureManifest serves a whole batch of keys. A value the store lacks (unknown key,
expired by TTL, or null) takes the model's declared default, or is reported missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lykeion.features.keys import InvalidKey, parse_key
from lykeion.features.reference import resolve, type_mismatch
from lykeion.features.view import FeatureView
from lykeion.serving.config import TrainedFeature
from lykeion.stores.online.base import OnlineStore


class BadRequest(ValueError):
    """The request cannot be understood (400)."""


class FeatureMismatch(ValueError):
    """The model's inputs and the registered FeatureManifests disagree: serving would skew."""


@dataclass(frozen=True)
class Input:
    ref: str
    column: str
    type: str
    view: FeatureView
    feature: str


@dataclass(frozen=True)
class Enriched:
    columns: dict[str, list[Any]]
    """Column -> one value per request row, in model input order."""
    missing: list[list[str]]
    """Per row: features that had no value and no declared default."""
    defaulted: list[list[str]]
    """Per row: features that took their declared default."""

    @property
    def complete(self) -> bool:
        return not any(self.missing)

    def row(self, index: int) -> dict[str, Any]:
        return {column: values[index] for column, values in self.columns.items()}


def _parse(type_: str, text: str | None) -> Any:
    if text is None:
        return None
    if type_ == "int64":
        return int(text)
    if type_ == "float64":
        return float(text)
    if type_ == "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(f"{text!r} is not a bool")
        return text.lower() == "true"
    if type_ == "string":
        return text
    raise ValueError(f"no default can be declared for a {type_} feature")


class Enricher:
    def __init__(
        self,
        features: Sequence[TrainedFeature],
        views: Sequence[FeatureView],
        defaults: Mapping[str, str | None] | None = None,
    ) -> None:
        inputs = []
        for trained in features:
            try:
                (resolved,) = resolve([trained.ref], views)
            except ValueError as error:  # UnresolvedFeature, InvalidFeatureReference
                raise FeatureMismatch(str(error)) from error
            mismatch = type_mismatch(
                resolved.name, trained.type, resolved.type, resolved.view.name, trained=True
            )
            if mismatch is not None:
                raise FeatureMismatch(str(mismatch))
            inputs.append(
                Input(resolved.name, trained.column, trained.type, resolved.view, resolved.feature)
            )
        self.inputs = tuple(inputs)
        self.defaults: dict[str, Any] = {}
        for ref, text in (defaults or {}).items():
            known = [i for i in self.inputs if i.ref == ref]
            if not known:
                raise FeatureMismatch(f"default declared for {ref}, which is not a model input")
            try:
                self.defaults[ref] = _parse(known[0].type, text)
            except ValueError as error:
                raise FeatureMismatch(f"default of {ref}: {error}") from error
        self.views = list({i.view.name: i.view for i in self.inputs}.values())
        self.key_names = list(dict.fromkeys(v.join_key for v in self.views))
        self.key_types = {v.join_key: v.key_type for v in self.views}
        """Entity key name -> declared key type (`string`, `int64`), in model order."""

    def keys(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str | int]]:
        """Check and type each row's entity keys (BadRequest naming what is wrong)."""
        if not rows:
            raise BadRequest("no rows: send at least one set of entity keys")
        typed = []
        for index, row in enumerate(rows):
            absent = [k for k in self.key_names if k not in row]
            if absent:
                raise BadRequest(
                    f"row {index}: missing entity key(s) {', '.join(absent)} "
                    f"(this model needs {', '.join(self.key_names)})"
                )
            typed.append({k: self._key(k, row[k], index) for k in self.key_names})
        return typed

    def _key(self, name: str, value: Any, index: int) -> str | int:
        try:
            return parse_key(self.key_types[name], value)
        except InvalidKey as error:
            raise BadRequest(f"row {index}: {name}: {error}") from None

    def lookup(
        self,
        store: OnlineStore,
        rows: Sequence[Mapping[str, Any]],
        now: datetime | None = None,
    ) -> Enriched:
        """One batched store read per view for all rows, every view at the same moment
        `now` (default: the current time, the request's); raises StoreUnavailable."""
        keys = self.keys(rows)
        now = now or datetime.now(UTC)
        found: dict[str, list[dict[str, Any] | None]] = {}
        for view in self.views:
            names = [i.feature for i in self.inputs if i.view is view]
            found[view.name] = store.read(view, [k[view.join_key] for k in keys], names, now)
        columns: dict[str, list[Any]] = {i.column: [] for i in self.inputs}
        missing: list[list[str]] = [[] for _ in keys]
        defaulted: list[list[str]] = [[] for _ in keys]
        for i in self.inputs:
            out = columns[i.column]
            for index, entry in enumerate(found[i.view.name]):
                value = None if entry is None else entry.get(i.feature)
                if value is None:
                    if i.ref in self.defaults:
                        value = self.defaults[i.ref]
                        defaulted[index].append(i.ref)
                    else:
                        missing[index].append(i.ref)
                out.append(value)
        return Enriched(columns, missing, defaulted)
