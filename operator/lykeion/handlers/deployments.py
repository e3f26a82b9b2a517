"""Deployment: resolves its versions, gates them, serves them, and reports what is live.

A reconcile reads the Models and FeatureManifests it depends on, admits the versions that
pass the readiness gate (`rollout.py`, pure), asks the executor to serve them with the
traffic in effect, and moves traffic onto a version only once the executor reports it
available, so a version that never comes up leaves the previous one serving.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from lykeion import GROUP, VERSION
from lykeion.api.kinds import DEPLOYMENT, FEATURE_MANIFEST, MODEL
from lykeion.conditions import Check, ready
from lykeion.executors.base import EndpointStatus, ServingRejected
from lykeion.handlers import rollout
from lykeion.handlers.features import POLL_SECONDS
from lykeion.registry import Key, Registry
from lykeion.runtime import Runtime, StatusUpdate

log = logging.getLogger("lykeion")

MODELS_RESOLVED = "ModelsResolved"
RECHECK_SECONDS = 60.0
"""How often a Ready Deployment re-checks that its features are still fresh."""


def desired_status(body: dict[str, Any], registry: Registry) -> StatusUpdate:
    ns = body["metadata"].get("namespace", "default")
    spec = body["spec"]
    family, segment = spec["family"], spec["segment"]
    wanted = rollout.wanted_versions(spec)
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


async def act(body: dict[str, Any], runtime: Runtime, update: StatusUpdate) -> StatusUpdate:
    """Gate, serve, observe: one pass, idempotent (serving the same endpoint changes nothing)."""
    if runtime.executor is None or runtime.config is None:
        return update
    meta, spec = body["metadata"], body["spec"]
    ns = meta.get("namespace", "default")
    resolved = [c for c in update.checks if c.type != "Ready"]

    # 1. What the gate needs: the Models (with status) and their features' manifests.
    models: dict[str, dict[str, Any] | None] = {}
    for version in rollout.wanted_versions(spec):
        found = runtime.registry.model_for(ns, spec["family"], spec["segment"], version)
        models[version] = await runtime.kube.get(MODEL, ns, found[0]) if found else None
    features = sorted(
        {
            f["ref"]
            for m in models.values()
            if m
            for f in (m.get("status") or {}).get("features", [])
        }
    )
    manifests = [
        m
        for ref in runtime.registry.manifests_for(ns, features)
        if (m := await runtime.kube.get(FEATURE_MANIFEST, ns, ref["metadata"]["name"]))
    ]

    # 2. The gate, then one server config per admitted version.
    now = datetime.now(UTC)
    admissions = []
    for version, model in models.items():
        admission = rollout.admit_model(version, model)
        if admission.admitted and model is not None:
            admission = rollout.admit_features(version, model, manifests, now)
        admissions.append(admission)
    configs = {
        a.version: rollout.server_config(
            body, a.version, models[a.version] or {}, manifests, runtime.config
        )
        for a in admissions
        if a.admitted
    }

    # 3. Serve with the traffic the last observation allows; re-split once if it moved.
    desired = {v["version"]: int(v["traffic"]) for v in spec["versions"]}
    seen = {
        t["version"]: bool(t.get("available"))
        for t in (body.get("status") or {}).get("traffic", [])
    }
    weights = rollout.effective_weights(
        desired, {v: v in configs and seen.get(v, False) for v in desired}
    )

    def rendered(split: dict[str, int]) -> dict[str, int]:
        # With nothing up yet, backends still need a valid split (Seldon wants 100 in
        # total); no request is served by it until a version becomes available.
        return split if any(split.values()) else desired

    served: EndpointStatus | None = None
    rejected: Check | None = None
    try:
        if configs:
            served = await runtime.executor.serve(
                rollout.endpoint(body, configs, rendered(weights), runtime.config)
            )
            now_up = {v: v in configs and served.available.get(v, False) for v in desired}
            moved = rollout.effective_weights(desired, now_up)
            if moved != weights:
                weights = moved
                served = await runtime.executor.serve(
                    rollout.endpoint(body, configs, rendered(weights), runtime.config)
                )
        else:
            await runtime.executor.unserve(ns, meta["name"])
    except ServingRejected as error:
        rejected = Check(rollout.AVAILABLE, False, "ServingRejected", str(error))

    fields, checks = rollout.outcome(spec, admissions, served, weights)
    if rejected is not None:
        checks = [rejected if c.type == rollout.AVAILABLE else c for c in checks]
    everything = [*resolved, *checks]
    endpoint = fields.get("endpoint")
    return StatusUpdate(
        fields, [*everything, ready(everything, "Serving", f"serving at {endpoint}")]
    )


def _settling(status: kopf.Status, **_: Any) -> bool:
    """Not Ready yet: versions starting, rollouts held, the gate waiting on features."""
    return not any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


@kopf.timer(
    GROUP, VERSION, DEPLOYMENT.plural, interval=POLL_SECONDS, initial_delay=POLL_SECONDS,
    when=_settling,
)  # fmt: skip
async def deployment_settling(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    # Local servers raise no Kubernetes events: poll until everything is up.
    runtime: Runtime = memo.runtime
    await runtime.reconcile_now(Key(DEPLOYMENT.kind, namespace or "default", name))


@kopf.timer(
    GROUP, VERSION, DEPLOYMENT.plural, interval=RECHECK_SECONDS, initial_delay=RECHECK_SECONDS
)
async def deployment_recheck(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    # Features go stale with time alone, and servers may die: re-check Ready ones too.
    runtime: Runtime = memo.runtime
    await runtime.reconcile_now(Key(DEPLOYMENT.kind, namespace or "default", name))


@kopf.on.resume(GROUP, VERSION, DEPLOYMENT.plural)
@kopf.on.create(GROUP, VERSION, DEPLOYMENT.plural)
@kopf.on.update(GROUP, VERSION, DEPLOYMENT.plural, field="spec")
async def deployment_changed(
    body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    runtime: Runtime = memo.runtime
    await runtime.reconcile_now(Key(DEPLOYMENT.kind, namespace or "default", name), dict(body))


@kopf.on.delete(GROUP, VERSION, DEPLOYMENT.plural)
async def deployment_deleted(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    # Owner references remove Kubernetes children; local processes must be stopped here.
    runtime: Runtime = memo.runtime
    if runtime.executor is not None:
        await runtime.executor.unserve(namespace or "default", name)
