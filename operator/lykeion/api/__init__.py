"""The Lykeion API: one pydantic spec and status model per kind (the single source of truth)."""

from lykeion.api.deployment import DeploymentSpec, DeploymentStatus
from lykeion.api.featuremanifest import FeatureManifestSpec, FeatureManifestStatus
from lykeion.api.kinds import (
    BY_KIND,
    DEPLOYMENT,
    FEATURE_MANIFEST,
    KINDS,
    MODEL,
    MODEL_FAMILY,
    Kind,
    kind_of,
    validate_object,
)
from lykeion.api.model import ModelSpec, ModelStatus
from lykeion.api.modelfamily import ModelFamilySpec, ModelFamilyStatus

__all__ = [
    "BY_KIND",
    "DEPLOYMENT",
    "FEATURE_MANIFEST",
    "KINDS",
    "MODEL",
    "MODEL_FAMILY",
    "DeploymentSpec",
    "DeploymentStatus",
    "FeatureManifestSpec",
    "FeatureManifestStatus",
    "Kind",
    "ModelFamilySpec",
    "ModelFamilyStatus",
    "ModelSpec",
    "ModelStatus",
    "kind_of",
    "validate_object",
]
