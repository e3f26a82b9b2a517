"""Deployment: which versions of a family/segment serve traffic, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lykeion.api.common import (
    DNS_LABEL,
    VERSION_PATTERN,
    ApiModel,
    Resources,
    Status,
    cel,
    cel_rules,
)

TRAFFIC_SUM = "traffic of spec.versions must sum to 100"
SHADOW_NOT_LIVE = "shadow must not also be one of spec.versions"


class VersionTraffic(ApiModel):
    """One served version and the share of requests it receives."""

    version: str = Field(pattern=VERSION_PATTERN, max_length=15)
    traffic: int = Field(ge=0, le=100)
    """Percent of requests routed to this version."""


class DeploymentSpec(ApiModel):
    """A prediction endpoint for one family/segment."""

    model_config = cel_rules(
        cel("self.versions.map(v, v.traffic).sum() == 100", TRAFFIC_SUM, fieldPath=".versions"),
        cel(
            "!has(self.shadow) || !self.versions.exists(v, v.version == self.shadow)",
            SHADOW_NOT_LIVE,
            fieldPath=".shadow",
        ),
    )

    family: str = Field(pattern=DNS_LABEL, max_length=20)
    segment: str = Field(pattern=DNS_LABEL, max_length=20)
    versions: list[VersionTraffic] = Field(
        min_length=1,
        max_length=10,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["version"],
        },
    )
    shadow: str | None = Field(None, pattern=VERSION_PATTERN, max_length=15)
    """Version that receives a copy of every request; its answers are logged, not returned."""
    replicas: int = Field(1, ge=0, le=100)
    backend: Literal["seldon", "kserve", "lykeion"] = "lykeion"
    """Serving system: Seldon Core, KServe, or plain Deployments running the Lykeion server."""
    resources: Resources = Field(default_factory=Resources)

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        versions = [v.version for v in self.versions]
        if len(set(versions)) != len(versions):
            raise ValueError("spec.versions must not repeat a version")
        if sum(v.traffic for v in self.versions) != 100:
            raise ValueError(TRAFFIC_SUM)
        if self.shadow is not None and self.shadow in versions:
            raise ValueError(SHADOW_NOT_LIVE)
        return self


class VersionStatus(ApiModel):
    version: str
    traffic: int
    """Percent of requests this version receives now (may differ from spec while held)."""
    available: bool = False
    shadow: bool | None = None
    """Receives a copy of every request; its answers are not returned."""


class DeploymentStatus(Status):
    """Observed state of a Deployment."""

    endpoint: str | None = None
    ready_replicas: int | None = None
    traffic: list[VersionStatus] = Field(default_factory=list)
    """Traffic actually in effect per version."""
