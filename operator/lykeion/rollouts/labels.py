"""What a version's model server needs for `spec.rollout.labels` (pure: no I/O): a request
log to join delayed outcomes to, and the labels source with its horizon."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lykeion.api.deployment import RolloutLabels
from lykeion.config import PlatformConfig
from lykeion.features.view import parse_duration


def request_log(data_dir: Path, namespace: str, name: str, version: str) -> Path:
    """Where the server of `version` of Deployment `namespace/name` logs its requests: under
    the platform's data directory, which the `kubernetes` executor mounts in every server
    (`PlatformConfig.data_volume`), so a restarted server appends to the same file."""
    return data_dir / "requests" / namespace / name / f"{version}.jsonl"


def server_fields(
    deployment: Mapping[str, Any], version: str, config: PlatformConfig
) -> dict[str, Any]:
    """`request_log` and `labels` of the version's `ServerConfig` (as data) when the
    Deployment declares `spec.rollout.labels`, else nothing."""
    declared = (deployment["spec"].get("rollout") or {}).get("labels")
    if not declared:
        return {}
    labels = RolloutLabels.model_validate(declared)
    meta = deployment["metadata"]
    source = labels.model_dump(by_alias=True, exclude_none=True, exclude={"horizon"})
    return {
        "request_log": str(
            request_log(config.data_dir, meta.get("namespace", "default"), meta["name"], version)
        ),
        "labels": {
            "source": source,
            "horizon_seconds": parse_duration(labels.horizon).total_seconds(),
            "data_root": config.data_root,
        },
    }
