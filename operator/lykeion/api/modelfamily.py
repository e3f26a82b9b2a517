"""ModelFamily: groups the models of one business problem."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from lykeion.api.common import DNS_LABEL, EMAIL, ApiModel, Status

Email = Annotated[str, StringConstraints(pattern=EMAIL, max_length=254)]


class ModelFamilySpec(ApiModel):
    """A family of models solving one problem, split into segments and versions."""

    alias: str = Field(pattern=DNS_LABEL, max_length=20)
    """Short DNS-label name used in model and deployment names; equals `metadata.name`."""
    display_name: str = Field(min_length=1, max_length=128)
    """Human name shown in listings."""
    description: str = Field(min_length=1, max_length=2048)
    """What the models of this family predict, and for whom."""
    authors: list[Email] = Field(min_length=1, max_length=32)
    """E-mail addresses of the people accountable for the family."""


class SegmentStatus(ApiModel):
    """The versions known in one segment of a family."""

    name: str
    versions: list[str] = Field(default_factory=list)
    """Model versions declared in this segment."""
    deployed: list[str] = Field(default_factory=list)
    """Versions a Deployment currently routes traffic to."""


class ModelFamilyStatus(Status):
    """Observed state of a ModelFamily."""

    segments: list[SegmentStatus] = Field(default_factory=list)
    """Segments with their model versions."""
    model_count: int = 0
    """How many Models reference this family."""
