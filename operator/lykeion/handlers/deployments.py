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

import httpx
import kopf
from pydantic import ValidationError

from lykeion import conditions
from lykeion.api.deployment import DeploymentSpec, DeploymentStatus, RolloutSpec, RolloutStatus
from lykeion.api.featuremanifest import FeatureManifestStatus
from lykeion.api.kinds import DEPLOYMENT, FEATURE_MANIFEST, MODEL
from lykeion.api.model import Evaluation, ModelStatus
from lykeion.conditions import Check, ready
from lykeion.executors.base import Endpoint, EndpointStatus, ServingRejected
from lykeion.features.view import parse_duration
from lykeion.handlers import rollout
from lykeion.object_index import ObjectIndex
from lykeion.rollouts import analysis, plan, signals
from lykeion.runtime import Clock, KindDeclaration, Resource, Runtime, StatusUpdate, Stored
from lykeion.serving.config import ServerConfig

log = logging.getLogger("lykeion")

MODELS_RESOLVED = "ModelsResolved"
RECHECK_SECONDS = 60.0
"""How often a Ready Deployment re-checks that its features are still fresh."""

Deployment = Resource[DeploymentSpec, DeploymentStatus]
"""A Deployment as a reconcile reads it: spec and status parsed."""


def desired_status(deployment: Deployment, index: ObjectIndex) -> StatusUpdate:
    ns, spec = deployment.namespace, deployment.spec
    family, segment = spec.family, spec.segment
    wanted = rollout.wanted_versions(spec)
    missing = [v for v in wanted if index.model_for(ns, family, segment, v) is None]
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


async def act(deployment: Deployment, runtime: Runtime, update: StatusUpdate) -> StatusUpdate:
    """Gate, serve, observe, judge a rollout: one pass, idempotent (serving the same endpoint
    changes nothing)."""
    if runtime.executor is None or runtime.config is None:
        return update
    # `spec` as stored: the split served is it with `versions` replaced (`serving`).
    body, spec, ns = deployment.body, deployment.body["spec"], deployment.namespace
    family, segment = deployment.spec.family, deployment.spec.segment
    resolved = [c for c in update.checks if c.type != "Ready"]
    now = datetime.now(UTC)

    # 0. With a rollout, spec is the end state; the rollout says which split serves now.
    try:
        rollout_spec, state = _rollout_state(deployment, conditions.rfc3339(now))
    except RolloutStateUnreadable as unreadable:
        log.warning("rollout of %s held: %s", deployment.name, unreadable)
        held = Check(rollout.TRAFFIC, False, "StatusUnreadable", str(unreadable))
        return StatusUpdate({}, [*resolved, held, ready([*resolved, held])])
    serving = {**spec, "versions": plan.versions(state)} if state is not None else spec

    # 1. What the gate needs: the Models (with status) and their features' manifests.
    models: dict[str, Stored[ModelStatus] | None] = {}
    for version in rollout.wanted_versions(serving):
        found = runtime.index.model_for(ns, family, segment, version)
        model = await runtime.kube.get(MODEL, ns, found[0]) if found else None
        models[version] = Stored.read(model, ModelStatus) if model is not None else None
    features = sorted({f["ref"] for m in models.values() if m for f in m.status.features})
    manifests = [
        Stored.read(m, FeatureManifestStatus)
        for ref in runtime.index.manifests_for(ns, features)
        if (m := await runtime.kube.get(FEATURE_MANIFEST, ns, ref["metadata"]["name"]))
    ]

    # 2. The gate, then one server config per admitted version.
    gated = rollout.gate(body, models, manifests, runtime.config, now)
    admissions, configs = gated.admissions, gated.configs

    # 3. Serve with the traffic the last observation allows; re-split once if it moved.
    seen = {t.version: t.available for t in deployment.status.traffic}
    stable = state.stable if state is not None else None
    served, weights, rejected = await _serve(deployment, serving, configs, seen, runtime, stable)

    # 4. A rollout in progress reads both versions' servers and may move the split.
    extra: list[Check] = []
    if state is not None and rollout_spec is not None:
        gate = _gate(models.get(state.canary or "")) if rollout_spec.labels else None
        state, extra = await _analyse(deployment, rollout_spec, state, served, now, gate)
        moved = {**spec, "versions": plan.versions(state)}
        if moved["versions"] != serving["versions"]:
            serving = moved
            served, weights, rejected = await _serve(
                deployment,
                serving,
                configs,
                served.available if served else seen,
                runtime,
                state.stable,
            )
        extra.append(plan.rolled_back(state))
    elif any(c.type == plan.ROLLED_BACK for c in deployment.status.conditions):
        extra.append(Check(plan.ROLLED_BACK, False, "NoRollout", "spec.rollout is not set"))

    desired = {v["version"]: int(v["traffic"]) for v in serving["versions"]}
    stable = _stable(deployment, desired, state.stable if state is not None else None)
    fields, checks = rollout.outcome(serving, admissions, served, weights, stable)
    if rejected is not None:
        checks = [rejected if c.type == rollout.AVAILABLE else c for c in checks]
        # What served before still does, also versions the refused spec no longer names.
        fields["traffic"] = [t.wire_given() for t in deployment.status.traffic]
    stored = deployment.status.rollout
    fields["rollout"] = (
        plan.status_field(state, stored.wire_given() if stored is not None else None)
        if state is not None
        else None
    )
    everything = [*resolved, *checks]
    endpoint = fields.get("endpoint")
    # RolledBack and FeaturesConsistent inform; the endpoint serves either way (not in Ready).
    return StatusUpdate(
        fields, [*everything, ready(everything, "Serving", f"serving at {endpoint}"), *extra]
    )


async def _serve(
    deployment: Deployment,
    serving: dict[str, Any],
    configs: dict[str, ServerConfig],
    seen: dict[str, bool],
    runtime: Runtime,
    rollout_stable: str | None = None,
) -> tuple[EndpointStatus | None, dict[str, int], Check | None]:
    """Serve `serving`'s split as far as the versions are available (`seen`), then once more
    if the executor's answer moved it; (what it reported, weights in effect, rejection)."""
    assert runtime.executor is not None and runtime.config is not None
    desired = {v["version"]: int(v["traffic"]) for v in serving["versions"]}
    weights = rollout.effective_weights(
        desired, {v: v in configs and seen.get(v, False) for v in desired}
    )
    stable = _stable(deployment, desired, rollout_stable)
    backend = serving.get("backend", "lykeion")

    def endpoint(split: dict[str, int]) -> Endpoint:
        assert runtime.config is not None
        # Over the admitted versions only: a split that sums to 100 across what is
        # rendered (Seldon refuses any other), 0 for a version declared at 0%.
        given = rollout.rendered_weights(backend, desired, configs, split)
        body = {**deployment.body, "spec": serving}
        return rollout.endpoint(body, configs, given, runtime.config, stable)

    served: EndpointStatus | None = None
    try:
        if configs:
            served = await runtime.executor.serve(endpoint(weights))
            now_up = {v: v in configs and served.available.get(v, False) for v in desired}
            moved = rollout.effective_weights(desired, now_up)
            if moved != weights:
                weights = moved
                served = await runtime.executor.serve(endpoint(weights))
        else:
            await runtime.executor.unserve(deployment.namespace, deployment.name)
    except ServingRejected as error:
        # Nothing was applied: the split in effect is still the one the status reports.
        before = {t.version: t.traffic for t in deployment.status.traffic}
        return served, before, Check(rollout.AVAILABLE, False, "ServingRejected", str(error))
    return served, weights, None


def _stable(
    deployment: Deployment, desired: dict[str, int], rollout_stable: str | None
) -> str | None:
    """`rollout.stable_version` from the status: traffic in effect and the recorded stable."""
    before = deployment.status.traffic
    in_effect = {t.version: t.traffic for t in before}
    recorded = next((t.version for t in before if t.stable), None)
    return rollout.stable_version(desired, in_effect, rollout_stable, recorded)


def _rollout_state(
    deployment: Deployment, now: str
) -> tuple[RolloutSpec | None, RolloutStatus | None]:
    """`spec.rollout`, and the rollout's state before analysis (None without one)."""
    body, spec, status = deployment.body, deployment.spec, deployment.status
    rollout_spec = spec.rollout
    # `rollout: {}` declares no rollout, as the timer's filter (`_rolling`) and `lykectl
    # deployments status` read it: only a non-empty one is analysed.
    if rollout_spec is None or not (body.get("spec") or {}).get("rollout"):
        return None, None
    previous = status.rollout
    refused = deployment.status_problems.get("rollout")
    if refused is not None:
        # A state from another version of Lykeion: the rollout restarts in this pass, from
        # the traffic in effect and the stable version it records (its first step for a
        # declared version that is not the stable one), never from spec's end state: a
        # pass without a rollout would serve that at once, and the next would find it
        # stable, promoted without analysis.
        unreadable_traffic = deployment.status_problems.get("traffic")
        if unreadable_traffic is not None:
            raise RolloutStateUnreadable(
                f"status.rollout and status.traffic are in a form this operator cannot read "
                f"(written by another version of Lykeion?), so it cannot tell which version "
                f"serves now and changes nothing. To go on, clear both: kubectl patch "
                f"deployments.lykeion.io {deployment.name} -n {deployment.namespace} "
                f"--subresource=status --type=merge "
                f"""-p '{{"status":{{"rollout":null,"traffic":null}}}}'; the rollout then """
                f"starts from the version spec declares (declare the one serving now first "
                f"if the new one must be analysed). rollout: {refused}; traffic: "
                f"{unreadable_traffic}"
            )
        log.warning("rollout of %s restarts: %s", deployment.name, refused)
        previous = None
    in_effect = {t.version: t.traffic for t in status.traffic}
    recorded = next((t.version for t in status.traffic if t.stable), None)
    annotation = (body["metadata"].get("annotations") or {}).get(plan.PROMOTE)
    state = plan.begin(
        spec.versions[0].version,
        rollout_spec,
        previous,
        in_effect,
        int(body["metadata"].get("generation", 0)),
        now,
        annotation,
        recorded,
    )
    return rollout_spec, state


class RolloutStateUnreadable(Exception):
    """The stored rollout state and the traffic in effect are both unreadable: nothing
    tells which version serves, so a pass changes nothing (the message says what to do)."""


async def _analyse(
    deployment: Deployment,
    rollout_spec: RolloutSpec,
    state: RolloutStatus,
    served: EndpointStatus | None,
    moment: datetime,
    gate: analysis.Gate | None = None,
) -> tuple[RolloutStatus, list[Check]]:
    """Read both versions' servers; open the window, or judge it. No data: nothing moves.
    Drift and, with `gate`, its metric on live traffic are asked for over the window."""
    now = conditions.rfc3339(moment)
    urls = served.servers if served else {}
    wanted = [v for v in (state.canary, state.stable) if v is not None]
    since = state.step_started_at if state.baseline else None
    metric = gate.metric if gate is not None and since is not None else None
    async with httpx.AsyncClient() as client:
        read = {
            v: await signals.read(client, v, urls[v], since, metric) for v in wanted if v in urls
        }
    found = {v: s for v, s in read.items() if s is not None}
    checks: list[Check] = []
    consistent = plan.consistency(
        {
            v: [(c.feature, c.checked, c.mismatches) for c in s.counters.skew or []]
            for v, s in found.items()
        },
        {v: s.last_mismatch for v, s in found.items()},
        rollout_spec.checks.max_skew_rate,
    )
    if consistent is not None:
        checks.append(consistent)
    if state.phase != "Progressing" or state.canary is None or state.stable is None:
        return state, checks
    canary, stable = found.get(state.canary), found.get(state.stable)
    available = served.available if served else {}
    if canary is None or stable is None or not available.get(state.canary):
        # A version not up (yet): the window starts once both answer.
        return state.model_copy(update={"step_started_at": None, "baseline": None}), checks
    base = {c.version: c for c in state.baseline or []}
    started = conditions.parse_time(state.step_started_at)
    if started is None or state.canary not in base or state.stable not in base:
        return plan.open_window(state, canary.counters, stable.counters, now), checks
    verdict = analysis.decide(
        rollout_spec.checks,
        base[state.canary],
        canary.counters,
        base[state.stable],
        stable.counters,
        canary.drift,
        (moment - started).total_seconds(),
        parse_duration(rollout_spec.interval).total_seconds(),
        gate,
        canary.live,
        stable.live,
        # Outcomes arrive up to `horizon` after a request: a step is not judged before.
        parse_duration(rollout_spec.labels.horizon).total_seconds() if rollout_spec.labels else 0,
    )
    generation = deployment.generation
    judged = plan.judge(
        state, verdict, rollout_spec, generation, now, canary.counters, stable.counters
    )
    if judged.phase != state.phase or judged.weight != state.weight:
        log.info("rollout of %s: %s", deployment.name, judged.decisions[-1].message)
    return judged, checks


def _gate(model: Stored[ModelStatus] | None) -> analysis.Gate | None:
    """The canary Model's evaluation gate as its last training resolved it (else its spec);
    None when it has none yet."""
    if model is None:
        return None
    contract = model.status.contract
    gate = contract.evaluation if contract is not None else None
    declared = model.body["spec"].get("evaluation")
    if gate is None and declared:
        try:
            gate = Evaluation.model_validate(declared)
        except ValidationError:
            return None
    if gate is None:
        return None
    return analysis.Gate(gate.metric, gate.threshold, gate.higher_is_better)


def _settling(status: kopf.Status, **_: Any) -> bool:
    """Not Ready yet: versions starting, rollouts held, the gate waiting on features."""
    return not any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def _rolling(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """A rollout to analyse: declared, and its canary walking (not paused, not done)."""
    if not spec.get("rollout"):
        return False
    state = status.get("rollout") or {}
    return not state or state.get("phase") == "Progressing"


async def deployment_deleted(body: kopf.Body, runtime: Runtime) -> None:
    """Owner references remove Kubernetes children; local processes must be stopped here."""
    if runtime.executor is not None:
        ns = body["metadata"].get("namespace") or "default"
        await runtime.executor.unserve(ns, body["metadata"]["name"])


DECLARATION = KindDeclaration(
    DEPLOYMENT,
    "deployment",
    desired_status,
    act=act,
    clocks=(
        # Local servers raise no Kubernetes events: poll until everything is up.
        Clock("settling", when=_settling),
        # Each pass reads the versions' counters: the window is judged when its interval is
        # over, a failing check as soon as the canary has answered enough requests.
        Clock("rollout", when=_rolling),
        # Features go stale with time alone, and servers may die: re-check Ready ones too.
        Clock("recheck", interval=RECHECK_SECONDS),
    ),
    deleted=deployment_deleted,
    # `lykectl models promote` annotates (metadata, not spec): act on it at once.
    reconcile_on_annotations=True,
)
