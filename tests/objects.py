"""Plain object builders for tests (valid by default; tests break one thing at a time)."""

from __future__ import annotations

from typing import Any

from lykeion import API_VERSION
from lykeion.serving.config import ServerConfig

SHA = "0123456789abcdef0123456789abcdef01234567"


def family(alias: str = "forward") -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelFamily",
        "metadata": {"name": alias},
        "spec": {
            "alias": alias,
            "displayName": alias.title(),
            "description": "test family",
            "authors": ["ds@example.com"],
        },
    }


def manifest(
    name: str = "rider-activity", entity: str = "rider", features: dict[str, str] | None = None
) -> dict[str, Any]:
    features = features if features is not None else {"age": "int64", "drop_offs_count": "int64"}
    return {
        "apiVersion": API_VERSION,
        "kind": "FeatureManifest",
        "metadata": {"name": name},
        "spec": {
            "description": "test features",
            "owner": "team@example.com",
            "entity": {"name": entity, "joinKey": f"{entity}_id"},
            "source": {
                "file": {"path": "rides.csv", "format": "csv"},
                "timestampColumn": "event_time",
            },
            "features": [{"name": n, "type": t, "column": n} for n, t in features.items()],
        },
    }


def model(
    family_alias: str = "forward",
    segment: str = "default",
    version: str = "1.0",
    features: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {"name": f"{family_alias}-{segment}-{version}"},
        "spec": {
            "family": family_alias,
            "segment": segment,
            "version": version,
            "description": "test model",
            "source": {"url": f"git@example.com:org/projects.git#ml/forward@{SHA}"},
            "inputFeatures": features
            if features is not None
            else ["rider.age", "rider.drop_offs_count"],
            "training": {
                "labels": {
                    "file": {"path": "labels.csv", "format": "csv"},
                    "timestampColumn": "label_time",
                    "target": "ordered_again",
                }
            },
            "evaluation": {"metric": "roc_auc", "threshold": 0.6},
        },
    }


def deployment(
    family_alias: str = "forward", segment: str = "default", versions: dict[str, int] | None = None
) -> dict[str, Any]:
    versions = versions if versions is not None else {"1.0": 100}
    return {
        "apiVersion": API_VERSION,
        "kind": "Deployment",
        "metadata": {"name": f"{family_alias}-{segment}"},
        "spec": {
            "family": family_alias,
            "segment": segment,
            "versions": [{"version": v, "traffic": t} for v, t in versions.items()],
        },
    }


def server_config(
    version: str = "1.0", name: str = "forward-default", **fields: Any
) -> ServerConfig:
    """A model server's configuration for `version` of Deployment `name`, with the fields a
    server needs and `fields` (the model's field names) over them."""
    return ServerConfig(
        name=name,
        version=version,
        model_uri=f"models:/{name}/{version}",
        online_store="sqlite:///data/online.db",
        **fields,
    )
