"""The four kinds: names, printer columns and the rules that span metadata and spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic.config import JsonDict

from lykeion import API_VERSION, GROUP, VERSION
from lykeion.api.common import ApiModel, Status, cel
from lykeion.api.deployment import DeploymentSpec, DeploymentStatus
from lykeion.api.featuremanifest import FeatureManifestSpec, FeatureManifestStatus
from lykeion.api.model import ModelSpec, ModelStatus
from lykeion.api.modelfamily import ModelFamilySpec, ModelFamilyStatus

READY = '.status.conditions[?(@.type=="Ready")].status'
REASON = '.status.conditions[?(@.type=="Ready")].reason'


@dataclass(frozen=True)
class Column:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0


@dataclass(frozen=True)
class NameRule:
    """`metadata.name` must equal a function of the spec: one CEL rule, one Python mirror."""

    cel: str
    message: str
    fields: tuple[str, ...]

    def expected(self, spec: dict[str, Any]) -> str:
        return "-".join(str(spec[f]) for f in self.fields)


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[ApiModel]
    status: type[Status]
    columns: tuple[Column, ...]
    name_rule: NameRule | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    def parse_spec(self, spec: dict[str, Any]) -> Any:
        return self.spec.model_validate(spec)

    def check_name(self, name: str, spec: dict[str, Any]) -> str | None:
        """The name-rule message if `name` breaks it, else None."""
        if self.name_rule is None:
            return None
        if name != self.name_rule.expected(spec):
            return self.name_rule.message
        return None

    def build(self, name: str, spec: ApiModel, namespace: str | None = None) -> dict[str, Any]:
        """A complete object of this kind, checked the way the API server checks it."""
        if self.name_rule is not None and name != self.name_rule.expected(spec.wire()):
            expected = self.name_rule.expected(spec.wire())
            raise ValueError(f"metadata.name: {self.name_rule.message} (expected {expected!r})")
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": metadata,
            "spec": spec.wire(),
        }


def _name_rule(*fields: str) -> NameRule:
    expr = " + '-' + ".join(f"self.spec.{f}" for f in fields)
    shape = "-".join(f"<{f}>" for f in fields)
    return NameRule(f"self.metadata.name == {expr}", f"metadata.name must be {shape}", fields)


MODEL_FAMILY = Kind(
    kind="ModelFamily",
    plural="modelfamilies",
    singular="modelfamily",
    short_names=("mfam", "family"),
    spec=ModelFamilySpec,
    status=ModelFamilyStatus,
    columns=(
        Column("Display Name", ".spec.displayName"),
        Column("Models", ".status.modelCount", "integer"),
        Column("Ready", READY),
        Column("Reason", REASON, priority=1),
    ),
    name_rule=_name_rule("alias"),
)

FEATURE_MANIFEST = Kind(
    kind="FeatureManifest",
    plural="featuremanifests",
    singular="featuremanifest",
    short_names=("fm", "features"),
    spec=FeatureManifestSpec,
    status=FeatureManifestStatus,
    columns=(
        Column("Entity", ".spec.entity.name"),
        Column("Features", ".status.featureCount", "integer"),
        Column("Schedule", ".spec.schedule"),
        Column("Watermark", ".status.watermark"),
        Column("Ready", READY),
        Column("Reason", REASON, priority=1),
    ),
)

MODEL = Kind(
    kind="Model",
    plural="models",
    singular="model",
    short_names=("mdl",),
    spec=ModelSpec,
    status=ModelStatus,
    columns=(
        Column("Family", ".spec.family"),
        Column("Segment", ".spec.segment"),
        Column("Version", ".spec.version"),
        Column("Ready", READY),
        Column("Reason", REASON),
        Column("Model URI", ".status.modelUri", priority=1),
    ),
    name_rule=_name_rule("family", "segment", "version"),
)

DEPLOYMENT = Kind(
    kind="Deployment",
    plural="deployments",
    singular="deployment",
    short_names=("ldeploy", "ld"),
    spec=DeploymentSpec,
    status=DeploymentStatus,
    columns=(
        Column("Family", ".spec.family"),
        Column("Segment", ".spec.segment"),
        Column("Backend", ".spec.backend"),
        Column("Ready", READY),
        Column("Reason", REASON),
        Column("Endpoint", ".status.endpoint", priority=1),
    ),
    name_rule=_name_rule("family", "segment"),
)

KINDS: tuple[Kind, ...] = (MODEL_FAMILY, FEATURE_MANIFEST, MODEL, DEPLOYMENT)
BY_KIND = {k.kind: k for k in KINDS}


def kind_of(body: dict[str, Any]) -> Kind:
    """The Kind of a Lykeion object, or a ValueError naming what is wrong."""
    if body.get("apiVersion") != API_VERSION:
        raise ValueError(f"apiVersion must be {API_VERSION}, got {body.get('apiVersion')!r}")
    try:
        return BY_KIND[body["kind"]]
    except KeyError:
        raise ValueError(f"unknown kind {body.get('kind')!r}; one of {sorted(BY_KIND)}") from None


def validate_object(body: dict[str, Any]) -> Any:
    """Parse a full object as the API server would: kind, spec schema, name rule."""
    kind = kind_of(body)
    spec = kind.parse_spec(body.get("spec") or {})
    problem = kind.check_name(body.get("metadata", {}).get("name", ""), spec.wire())
    if problem:
        raise ValueError(f"metadata.name: {problem}")
    return spec


def root_rules(kind: Kind) -> list[JsonDict]:
    return [cel(kind.name_rule.cel, kind.name_rule.message)] if kind.name_rule else []


__all__ = [
    "BY_KIND",
    "DEPLOYMENT",
    "FEATURE_MANIFEST",
    "KINDS",
    "MODEL",
    "MODEL_FAMILY",
    "VERSION",
    "Kind",
    "ValidationError",
    "kind_of",
    "validate_object",
]
