"""Deployment: checks that every served version (and the shadow) exists as a Model."""

from __future__ import annotations

from typing import Any

import kopf

from lykeion import GROUP, VERSION
from lykeion.api.kinds import DEPLOYMENT
from lykeion.conditions import Check, ready
from lykeion.registry import Key, Registry
from lykeion.runtime import Runtime, StatusUpdate

MODELS_RESOLVED = "ModelsResolved"


def desired_status(body: dict[str, Any], registry: Registry) -> StatusUpdate:
    ns = body["metadata"].get("namespace", "default")
    spec = body["spec"]
    family, segment = spec["family"], spec["segment"]
    wanted = [v["version"] for v in spec["versions"]] + (
        [spec["shadow"]] if spec.get("shadow") else []
    )
    missing = [v for v in wanted if registry.model_for(ns, family, segment, v) is None]
    resolved = (
        Check(
            MODELS_RESOLVED,
            False,
            "ModelVersionNotFound",
            f"no Model for {family}/{segment} version(s) {', '.join(missing)} in namespace {ns}",
        )
        if missing
        else Check(
            MODELS_RESOLVED, True, "ModelsFound", f"Models exist for version(s) {', '.join(wanted)}"
        )
    )
    return StatusUpdate({}, [resolved, ready([resolved], "Resolved", "all versions resolved")])


@kopf.on.resume(GROUP, VERSION, DEPLOYMENT.plural)
@kopf.on.create(GROUP, VERSION, DEPLOYMENT.plural)
@kopf.on.update(GROUP, VERSION, DEPLOYMENT.plural, field="spec")
async def deployment_changed(
    body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo.runtime
    await runtime.reconcile_now(Key(DEPLOYMENT.kind, namespace or "default", name), dict(body))
