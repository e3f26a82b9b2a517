"""How `lykectl models deploy` moves traffic: a full switch or a canary beside one version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lykectl.errors import CliError


class TrafficError(CliError):
    """The requested split cannot be derived from what serves now."""


def next_versions(
    current: Sequence[Mapping[str, Any]], version: str, traffic: int | None
) -> list[dict[str, Any]]:
    """`spec.versions` after deploying `version` with `traffic` percent (None: all of it).

    A canary takes its share from the one version that serves the rest; with several
    versions serving, which one should give up traffic is ambiguous, so it is refused.
    """
    if traffic is None or traffic == 100:
        return [{"version": version, "traffic": 100}]
    if not 0 < traffic < 100:
        raise TrafficError(f"--traffic must be between 1 and 100, got {traffic}")
    others = [str(v["version"]) for v in current if v["version"] != version]
    if not others:
        raise TrafficError(
            f"a canary of {version} needs another version serving the remaining "
            f"{100 - traffic}%; deploy a version without --traffic first"
        )
    if len(others) > 1:
        raise TrafficError(
            f"versions {', '.join(others)} all serve traffic, so it is ambiguous which one "
            f"gives {traffic}% to {version}; deploy one version without --traffic first"
        )
    return [
        {"version": others[0], "traffic": 100 - traffic},
        {"version": version, "traffic": traffic},
    ]
