"""Building blocks shared by the four kinds: base models, conditions, patterns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

# Patterns are RE2-compatible: the API server (Go) and pydantic (Rust regex) run the same ones.
DNS_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
IDENTIFIER = r"^[a-z][a-z0-9_]*$"
VERSION_PATTERN = r"^[0-9]+(\.[0-9]+){0,2}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
DURATION = r"^[0-9]+(s|m|h|d)$"
CRON = r"^(@(hourly|daily|weekly|monthly|yearly)|(\S+\s+){4}\S+)$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
CAMEL_REASON = r"^[A-Z][A-Za-z0-9]*$"

FeatureType = Literal[
    "int64",
    "float64",
    "string",
    "bool",
    "timestamp",
    "list<int64>",
    "list<float64>",
    "list<string>",
    "list<bool>",
    "list<timestamp>",
]
FEATURE_TYPES: tuple[str, ...] = FeatureType.__args__  # type: ignore[attr-defined]

# `entity.feature`, optionally `entity.feature:type` to pin the type the model expects.
FEATURE_REF = (
    r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*"
    r"(:(int64|float64|string|bool|timestamp|list<(int64|float64|string|bool|timestamp)>))?$"
)


def cel(rule: str, message: str, **extra: str) -> JsonDict:
    """One `x-kubernetes-validations` entry."""
    return {"rule": rule, "message": message, **extra}


def cel_rules(*rules: JsonDict) -> ConfigDict:
    """Model config that attaches CEL rules to the model's schema (merged with the base's)."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": list(rules)})


class ApiModel(BaseModel):
    """Base for every spec/status model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON the API server stores: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def wire_given(self) -> dict[str, Any]:
        """`wire()` of the fields given when the model was built or parsed only: a record
        read from a status and written back keeps its keys (no default is added)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json")


class Resources(ApiModel):
    """CPU and memory requested for the workload (Kubernetes quantities)."""

    cpu: str = Field("500m", pattern=QUANTITY, max_length=16)
    """CPU request, e.g. `500m` or `2`."""
    memory: str = Field("1Gi", pattern=QUANTITY, max_length=16)
    """Memory request, e.g. `512Mi` or `2Gi`."""


class Condition(ApiModel):
    """A condition per the Kubernetes API conventions."""

    type: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$", max_length=64)
    """PascalCase condition type; `Ready` aggregates the others."""
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=CAMEL_REASON, max_length=128)
    """CamelCase, machine-readable reason."""
    message: str = Field("", max_length=4096)
    """Human-readable explanation."""
    last_transition_time: str
    """When `status` last changed (RFC 3339)."""
    observed_generation: int = Field(0, ge=0)
    """The `metadata.generation` this condition was computed from."""


class Status(ApiModel):
    """Fields every kind's status has."""

    observed_generation: int | None = Field(None, ge=0)
    """The `metadata.generation` the operator last reconciled."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Conditions keyed by type; `Ready` aggregates the others."""

    @classmethod
    def from_stored(cls, stored: object) -> tuple[Self, dict[str, str]]:
        """The status as stored (the object's `status`, None when none was written yet),
        parsed, and what of it was left out (pure; never raises).

        A field the model refuses (a value written by another version of the operator, or
        by someone else) is read as absent, whole: a list is never read in part, so an
        ordered one (a Model's trained inputs) never silently loses an item. The problems
        are keyed by the status field, each a "; "-joined list of `status.<path>: <what is
        wrong>`; a stored status that is not an object is read as empty, keyed ""."""
        if stored is None:
            return cls(), {}
        if not isinstance(stored, Mapping):
            return cls(), {"": f"status: not an object ({type(stored).__name__})"}
        data: dict[str, Any] = {str(k): v for k, v in stored.items()}
        problems: dict[str, list[str]] = {}
        while True:
            try:
                return cls.model_validate(data), {k: "; ".join(v) for k, v in problems.items()}
            except ValidationError as error:
                refused: set[str | None] = set()
                for found in error.errors(include_url=False):
                    loc = found["loc"]
                    key = str(loc[0]) if loc and str(loc[0]) in data else None
                    path = ".".join(["status", *(str(p) for p in loc)])
                    problems.setdefault(key or "", []).append(f"{path}: {found['msg']}")
                    refused.add(key)
            if None in refused:  # a problem of no one field: nothing is kept
                return cls(), {k: "; ".join(v) for k, v in problems.items()}
            for key in refused:
                data.pop(str(key))

    def patched(self, fields: Mapping[str, Any]) -> Self:
        """This status with `fields` (status keys, as the reconcile writes them; None
        removes a field) set over its top-level fields, as a builder reads its own status
        after its changes (pure). Raises `pydantic.ValidationError` naming the field when
        a value does not fit."""
        merged = {**self.wire_given(), **fields}
        return self.model_validate({k: v for k, v in merged.items() if v is not None})
