"""ModelFamily: lists its segments and versions; cannot be deleted while Models use it."""

from __future__ import annotations

import kopf

from lykeion.api.kinds import MODEL_FAMILY
from lykeion.api.modelfamily import ModelFamilySpec, ModelFamilyStatus
from lykeion.conditions import Check, ready
from lykeion.object_index import Key, ObjectIndex
from lykeion.runtime import KindDeclaration, Resource, Runtime, StatusUpdate

IN_USE = "InUse"


def desired_status(
    family: Resource[ModelFamilySpec, ModelFamilyStatus], index: ObjectIndex
) -> StatusUpdate:
    ns, alias = family.namespace, family.name
    models = index.models_of_family(ns, alias)
    segments: dict[str, dict[str, set[str]]] = {}
    for name in models:
        model = index.models[(ns, name)]
        segments.setdefault(model.segment, {"versions": set(), "deployed": set()})
        segments[model.segment]["versions"].add(model.version)
    for name in index.deployments_of(ns, alias):
        deployment = index.deployments[(ns, name)]
        entry = segments.setdefault(deployment.segment, {"versions": set(), "deployed": set()})
        entry["deployed"] |= set(deployment.versions)
    fields = {
        "modelCount": len(models),
        "segments": [
            {
                "name": segment,
                "versions": _sorted_versions(v["versions"]),
                "deployed": _sorted_versions(v["deployed"]),
            }
            for segment, v in sorted(segments.items())
        ],
    }
    in_use = Check(
        IN_USE,
        bool(models),
        "ModelsReferenceFamily" if models else "NoModels",
        f"used by {len(models)} Model(s): {', '.join(models[:10])}"
        if models
        else "no Model uses this family",
    )
    deleting = bool(family.body["metadata"].get("deletionTimestamp"))
    if deleting and models:
        blocked = Check(
            "Ready",
            False,
            "DeletionBlocked",
            f"deletion waits until these Models are deleted: {', '.join(models[:10])}",
        )
        return StatusUpdate(fields, [in_use, blocked])
    return StatusUpdate(fields, [in_use, ready([], "Registered", "family registered")])


def _sorted_versions(versions: set[str]) -> list[str]:
    return sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")))


async def family_deleted(body: kopf.Body, runtime: Runtime) -> None:
    """The finalizer stays until no Model references the family; status says which ones."""
    ns, name = body["metadata"].get("namespace") or "default", body["metadata"]["name"]
    await runtime.reconcile_now(Key(MODEL_FAMILY.kind, ns, name), dict(body))
    models = runtime.index.models_of_family(ns, name)
    if models:
        raise kopf.TemporaryError(
            f"ModelFamily {name} is used by {', '.join(models[:10])}", delay=5
        )


DECLARATION = KindDeclaration(MODEL_FAMILY, "family", desired_status, deleted=family_deleted)
