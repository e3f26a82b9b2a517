"""FeatureManifest: registers its features in the catalog and flags conflicting definitions;
runs its pipeline; on deletion drops its tables in a run (`materialization.drop_tables`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from lykeion import conditions
from lykeion.api.featuremanifest import FeatureManifestSpec, FeatureManifestStatus
from lykeion.api.kinds import FEATURE_MANIFEST
from lykeion.conditions import Check, ready
from lykeion.handlers.materialization import (
    MATERIALIZED,
    FeatureManifest,
    drop_tables,
    late_data_check,
    materialize,
)
from lykeion.object_index import ObjectIndex
from lykeion.runtime import Clock, KindDeclaration, Resource, Runtime, StatusUpdate

REGISTERED = "Registered"


def desired_status(manifest: FeatureManifest, index: ObjectIndex) -> StatusUpdate:
    ns, name = manifest.namespace, manifest.name
    entity = manifest.spec.entity.name
    defines = manifest.spec.defines()
    conflicts = []
    for feature in sorted(defines):
        others = [other for other in index.definitions(ns, feature) if other != name]
        if others:
            conflicts.append(f"{feature} (also in {', '.join(others)})")
    registered = (
        Check(
            REGISTERED,
            False,
            "FeatureConflict",
            "defined by more than one FeatureManifest: " + "; ".join(conflicts),
        )
        if conflicts
        else Check(
            REGISTERED,
            True,
            "FeaturesRegistered",
            f"{len(defines)} feature(s) of entity {entity} registered",
        )
    )
    fields = {
        "features": [f"{ref}:{type_}" for ref, type_ in sorted(defines.items())],
        "featureCount": len(defines),
    }
    return StatusUpdate(fields, [registered, ready([registered], "Registered")])


async def act(manifest: FeatureManifest, runtime: Runtime, update: StatusUpdate) -> StatusUpdate:
    """Run the manifest's pipeline (backfill, then on schedule) once it is registered."""
    registered = next(c for c in update.checks if c.type == REGISTERED)
    if runtime.executor is None or runtime.config is None:
        return update
    if manifest.body["metadata"].get("deletionTimestamp"):
        # Deleting: no new run may write tables the finalizer is about to drop.
        return update
    if registered.ok:
        fields, materialized = await materialize(
            manifest, runtime.executor, runtime.config, datetime.now(UTC)
        )
    else:
        fields = {}
        materialized = Check(
            MATERIALIZED, False, "NotRegistered", "runs wait until the features register"
        )
    checks = [registered, materialized]
    # LateData is advice (served values stay valid up to the watermark): not part of Ready.
    late = late_data_check(manifest.status.patched(fields), manifest.name)
    return StatusUpdate(
        {**update.fields, **fields},
        [*checks, late, ready(checks, "Materialized", materialized.message)],
    )


def _needs_clock(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """A run in flight, a cron schedule, or a failed run waiting for its retry."""
    runs = status.get("runs") or []
    failed = bool(runs) and runs[-1].get("result") == "Failed"
    return bool(status.get("currentRun") or spec.get("schedule") or failed)


async def manifest_deleted(body: kopf.Body, runtime: Runtime) -> None:
    """The finalizer stays until the run in flight has stopped and a drop run dropped every
    generation's tables from both stores (`materialization.drop_tables`); kopf retries the
    TemporaryErrors raised here while it holds. A failed drop shows as `TablesDropped=False`
    and a Warning event; giving up shows as a `TablesLeftBehind` Warning event."""
    if runtime.executor is None or runtime.config is None:
        return
    manifest: FeatureManifest
    try:
        manifest = Resource.parse(dict(body), FeatureManifestSpec, FeatureManifestStatus)
    except ValidationError:
        # A spec the model refuses (stored before the model changed) must not hold the
        # finalizer for good: the drop reads the manifest's metadata and status, and hands
        # the spec as stored to the drop run.
        stored: dict[str, Any] = dict(body.get("spec") or {})
        status, problems = FeatureManifestStatus.from_stored(body.get("status"))
        spec = FeatureManifestSpec.model_construct(**stored)
        manifest = Resource(dict(body), spec, status, problems)
    step = await drop_tables(manifest, runtime.executor, runtime.config, datetime.now(UTC))
    if step.check is not None:
        await _set_condition(runtime, manifest.body, step.check)
    if step.warning is not None:
        kopf.warn(body, reason="DropFailed", message=step.warning)
    if not step.release:
        raise kopf.TemporaryError(step.waiting, delay=step.delay)
    if step.tables_left:
        kopf.warn(
            body,
            reason="TablesLeftBehind",
            message=(step.check.message + "; " if step.check else "the drop kept failing; ")
            + "drop these tables by hand: "
            + ", ".join(step.tables_left),
        )


async def _set_condition(runtime: Runtime, body: dict[str, Any], check: Check) -> None:
    """Merge `check` into the object's conditions (one status patch, none when unchanged)."""
    status = body.get("status") or {}
    current = status.get("conditions") or []
    generation = int(body["metadata"].get("generation", 0))
    merged = conditions.merge(current, [check], generation, conditions.now())
    if merged != current:
        meta = body["metadata"]
        await runtime.kube.patch_status(
            FEATURE_MANIFEST, meta.get("namespace", "default"), meta["name"], {"conditions": merged}
        )


DECLARATION = KindDeclaration(
    FEATURE_MANIFEST,
    "manifest",
    desired_status,
    act=act,
    # Local runs raise no Kubernetes events and cron schedules need a clock.
    clocks=(Clock("tick", when=_needs_clock),),
    deleted=manifest_deleted,
)
