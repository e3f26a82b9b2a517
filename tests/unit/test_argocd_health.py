"""The chart's Argo CD health script, run by a real Lua runtime on Lykeion statuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa
import pytest

from lykectl.wait import TRANSIENT_REASONS

SCRIPT = Path(__file__).resolve().parents[2] / "charts" / "lykeion" / "argocd" / "health.lua"


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT.read_text())
    return result["status"], result["message"]


def _obj(generation: int, observed: int | None, ready: tuple[str, str] | None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": []}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [
            {"type": "Available", "status": "True", "reason": "VersionsAvailable", "message": ""},
            {"type": "Ready", "status": ready[0], "reason": ready[1], "message": "why"},
        ]
    return {"metadata": {"generation": generation}, "status": status}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_obj(2, 2, ("True", "Serving")), "Healthy"),
        (_obj(2, 2, ("False", "VersionsStarting")), "Progressing"),
        (_obj(2, 2, ("False", "TrainingRunning")), "Progressing"),
        (_obj(2, 2, ("False", "WaitingForFeatures")), "Progressing"),
        (_obj(2, 2, ("False", "ModelNotEvaluated")), "Degraded"),
        (_obj(2, 2, ("False", "FeaturesStale")), "Degraded"),
        # Ready of an older generation says nothing about the current spec.
        (_obj(3, 2, ("True", "Serving")), "Progressing"),
        ({"metadata": {"generation": 1}}, "Progressing"),
    ],
)
def test_health_follows_ready_and_observed_generation(obj: dict[str, Any], expected: str) -> None:
    assert health(obj)[0] == expected


def test_progressing_reasons_are_ones_lykectl_also_waits_on() -> None:
    text = SCRIPT.read_text()
    listed = text.split("local progressing = {", 1)[1].split("}", 1)[0]
    names = {part.split("=")[0].strip() for part in listed.split(",") if "=" in part}
    assert names <= TRANSIENT_REASONS
