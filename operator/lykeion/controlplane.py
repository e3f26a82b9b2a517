"""Kept so that existing imports keep working: the control plane lives in
`lykeion.local.controlplane`, ports in `lykeion.local.ports`."""

from lykeion.local.controlplane import (
    BUILD_SCRIPT,
    LYKEION_CRDS,
    REPO_ROOT,
    ControlPlane,
    ControlPlaneError,
    binaries_dir,
    running,
    third_party_crds,
)
from lykeion.local.ports import _ephemeral_range, free_port
from lykeion.local.processes import stop as terminate

__all__ = [
    "BUILD_SCRIPT",
    "LYKEION_CRDS",
    "REPO_ROOT",
    "ControlPlane",
    "ControlPlaneError",
    "_ephemeral_range",
    "binaries_dir",
    "free_port",
    "running",
    "terminate",
    "third_party_crds",
]
