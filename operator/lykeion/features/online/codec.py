"""Feature values <-> JSON-compatible values, exact per manifest type, shared by the stores.

Timestamps travel as integer microseconds since the epoch (UTC) so that no precision or
zone is lost; lists carry their elements the same way. Values of the wrong type are
rejected rather than coerced, so a pipeline bug cannot silently turn `5` into `"5"`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from lykeion.features.view import FeatureView, element_type, is_list

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise TypeError(f"naive datetime {moment!r}: online stores need timezone-aware times")
    return (moment - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _scalar_to_json(type_: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "int64" and isinstance(value, int) and not isinstance(value, bool):
        return value
    # An integral float64 often arrives as an int (JSON, pandas); the value is the same.
    if type_ == "float64" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if type_ == "string" and isinstance(value, str):
        return value
    if type_ == "bool" and isinstance(value, bool):
        return value
    if type_ == "timestamp" and isinstance(value, datetime):
        return to_micros(value)
    raise TypeError(f"{value!r} is not a {type_}")


def _scalar_from_json(type_: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "timestamp":
        return from_micros(value)
    if type_ == "bool":
        return bool(value)
    if type_ == "float64":
        return float(value)
    return value


def to_json(type_: str, value: Any) -> Any:
    """A value the `json` module writes and reads back unchanged."""
    if value is None or not is_list(type_):
        return _scalar_to_json(type_, value)
    if not isinstance(value, list | tuple):
        raise TypeError(f"{value!r} is not a {type_}")
    element = element_type(type_)
    return [_scalar_to_json(element, item) for item in value]


def from_json(type_: str, value: Any) -> Any:
    if value is None or not is_list(type_):
        return _scalar_from_json(type_, value)
    element = element_type(type_)
    return [_scalar_from_json(element, item) for item in value]


def normalize_key(view: FeatureView, key: str | int) -> str | int:
    """The key as the view types it, so that `42` and `"42"` name the same int64 entity."""
    if view.key_type == "int64":
        if isinstance(key, bool):
            raise TypeError(f"{key!r} is not an int64 key")
        return int(key)
    if key == "":
        # Bigtable cannot store an empty row key; refuse it in every store alike.
        raise ValueError("an entity key cannot be empty")
    return str(key)


def checked_features(view: FeatureView, features: Sequence[str]) -> list[str]:
    """The requested names, each a feature of the view (KeyError names the missing one)."""
    return [view.feature(name).name for name in features]


def checked_values(view: FeatureView, values: dict[str, Any]) -> dict[str, Any]:
    """Every feature of the view -> JSON-compatible value; a missing feature is null."""
    unknown = set(values) - set(view.feature_names)
    if unknown:
        raise ValueError(f"not features of {view.name}: {sorted(unknown)}")
    out = {}
    for feature in view.features:
        try:
            out[feature.name] = to_json(feature.type, values.get(feature.name))
        except TypeError as exc:
            raise TypeError(f"{view.entity}.{feature.name}: {exc}") from None
    return out
