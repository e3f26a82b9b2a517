"""What a Deployment serves, and how much traffic each version gets (pure: no I/O).

The readiness gate admits a version when its Model is Evaluated and every input feature
is materialized, fresh and still of the type the model was trained on. Fresh means the
newest source event the stores hold (`status.newestEventTime`) is within the manifest's
TTL: past it every row-level value of every entity reads as null, whenever the pipeline
last ran. (Aggregations stay right without new events: they decay at read time.)
Traffic in effect moves only onto versions that are admitted and available: a new
version that never comes up leaves the others serving all requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from lykeion import conditions
from lykeion.api.deployment import DeploymentSpec
from lykeion.api.featuremanifest import FeatureManifestStatus
from lykeion.api.model import ModelStatus
from lykeion.conditions import Check, parse_time
from lykeion.config import PlatformConfig
from lykeion.executors.base import Endpoint, EndpointStatus, VersionServer
from lykeion.features.reference import (
    FeatureReference,
    UnresolvedFeature,
    defining,
    resolve,
    type_mismatch,
)
from lykeion.features.view import FeatureView, parse_duration
from lykeion.names import child_name
from lykeion.rollouts import labels
from lykeion.runtime import Stored
from lykeion.serving.config import ServerConfig

MODELS_EVALUATED = "ModelsEvaluated"
FEATURES_FRESH = "FeaturesFresh"
AVAILABLE = "Available"
TRAFFIC = "TrafficInEffect"


@dataclass(frozen=True)
class Admission:
    """The gate's verdict for one version: None when admitted, else reason and message."""

    version: str
    reason: str | None = None
    message: str = ""

    @property
    def admitted(self) -> bool:
        return self.reason is None


def wanted_versions(spec: DeploymentSpec | Mapping[str, Any]) -> list[str]:
    """The versions to serve: `spec.versions` in order, then the shadow (pure). `spec` is
    the Deployment's, or the split a rollout serves now (its `versions` replaced, as data)."""
    if isinstance(spec, DeploymentSpec):
        return [v.version for v in spec.versions] + ([spec.shadow] if spec.shadow else [])
    return [v["version"] for v in spec["versions"]] + (
        [spec["shadow"]] if spec.get("shadow") else []
    )


def _views(manifests: Sequence[Stored[FeatureManifestStatus]]) -> list[FeatureView]:
    """The views of the manifests whose spec is valid (an invalid one serves nothing)."""
    views = []
    for manifest in manifests:
        try:
            views.append(FeatureView.from_body(dict(manifest.body)))
        except ValidationError:
            continue
    return views


def admit_model(version: str, model: Stored[ModelStatus] | None) -> Admission:
    """The gate's verdict on the Model of `version` (None: there is none): Evaluated, and
    its status records the trained model and its inputs (pure)."""
    if model is None:
        return Admission(version, "ModelVersionNotFound", f"no Model for version {version}")
    status, name = model.status, model.name
    evaluated = next((c for c in status.conditions if c.type == "Evaluated"), None)
    if evaluated is None or evaluated.status != "True":
        why = (evaluated.message if evaluated is not None else "") or "not trained yet"
        return Admission(version, "ModelNotEvaluated", f"Model {name} is not Evaluated: {why}")
    if not status.model_uri or not status.features:
        return Admission(version, "ModelNotTrained", f"Model {name} records no trained model")
    return Admission(version)


def admit_features(
    version: str,
    model: Stored[ModelStatus],
    manifests: Sequence[Stored[FeatureManifestStatus]],
    now: datetime,
) -> Admission:
    """Every trained input: defined, of the trained type, materialized, and fresh."""
    problems: list[tuple[str, str]] = []
    views = _views(manifests)
    by_name = {m.name: m for m in manifests}
    for feature in model.status.features:
        ref, trained_type = feature["ref"], feature["type"]
        try:
            (resolved,) = resolve([ref], views)
        except UnresolvedFeature as error:
            if not error.manifests:
                problems.append(("FeatureMissing", f"{ref} is defined by no FeatureManifest"))
            else:
                problems.append(("FeatureConflict", str(error)))
            continue
        manifest = by_name[resolved.view.name]
        spec, status, name = manifest.body["spec"], manifest.status, manifest.name
        mismatch = type_mismatch(ref, trained_type, resolved.type, name, trained=True)
        if mismatch is not None:
            problems.append(("FeatureTypeChanged", str(mismatch)))
            continue
        # A generation in effect is complete (its backfill succeeded), also while the next
        # one is being built: servers keep reading it until the switch, never a gap.
        watermark = parse_time(status.watermark)
        if watermark is None or not status.materialized_generation:
            problems.append(
                ("FeaturesNotMaterialized", f"{ref}: FeatureManifest {name} is not materialized")
            )
            continue
        ttl = parse_duration(spec.get("ttl", "1d"))
        newest = parse_time(status.newest_event_time)
        if newest is None:
            problems.append(
                ("FeaturesStale", f"{ref}: FeatureManifest {name} has materialized no event")
            )
        elif now - newest > ttl:
            problems.append(
                (
                    "FeaturesStale",
                    f"{ref}: newest event of FeatureManifest {name} is from "
                    f"{conditions.rfc3339(newest)}, older than its TTL {spec.get('ttl')}",
                )
            )
    if problems:
        reason = problems[0][0]
        return Admission(version, reason, "; ".join(sorted({m for _, m in problems})))
    return Admission(version)


@dataclass(frozen=True)
class Gated:
    """The gate's verdicts and the server configs of the versions it admitted."""

    admissions: list[Admission]
    """One per version, in the order the versions were given."""
    configs: dict[str, ServerConfig]
    """By admitted version: its server's configuration (`server_config`)."""


def gate(
    deployment: Mapping[str, Any],
    models: Mapping[str, Stored[ModelStatus] | None],
    manifests: Sequence[Stored[FeatureManifestStatus]],
    config: PlatformConfig,
    now: datetime,
) -> Gated:
    """The readiness gate over `models` (by version; None: no Model for it), then one
    server config per admitted version (pure). A version whose config the model server
    would refuse is not admitted after all: `ServerConfigInvalid`, naming the fields
    (`config_problem`)."""
    admissions: list[Admission] = []
    configs: dict[str, ServerConfig] = {}
    for version, model in models.items():
        admission = admit_model(version, model)
        if admission.admitted and model is not None:
            admission = admit_features(version, model, manifests, now)
        if admission.admitted and model is not None:
            try:
                configs[version] = server_config(deployment, version, model, manifests, config)
            except ValidationError as error:
                admission = Admission(
                    version, "ServerConfigInvalid", config_problem(version, error)
                )
        admissions.append(admission)
    return Gated(admissions, configs)


def renormalise(declared: Mapping[str, int], over: Iterable[str]) -> dict[str, int]:
    """The declared percents of the versions in `over`, scaled to whole percents summing to
    100 (largest remainder: each share is its exact quota `100 * w / total` rounded down,
    the percents left go one each to the largest fractional parts, ties to the larger
    declared share, then to the version declared first); every other version gets 0.

    Pure. A version declared at 0 gets 0 (its quota is 0 and has no fraction, so it is never
    rounded up). When the versions in `over` declare 0 in total, every share is 0: the
    split is never invented, so a version declared at 0% never receives traffic.
    """
    chosen = set(over)
    up = {v: int(w) for v, w in declared.items() if v in chosen and int(w) > 0}
    total = sum(up.values())
    if total == 0:
        return {v: 0 for v in declared}
    shares = {v: w * 100 // total for v, w in up.items()}
    order = list(declared)
    left = 100 - sum(shares.values())
    by_fraction = sorted(up, key=lambda v: (-(up[v] * 100 % total), -up[v], order.index(v)))
    for version in by_fraction[:left]:
        shares[version] += 1
    return {v: shares.get(v, 0) for v in declared}


def effective_weights(desired: Mapping[str, int], serving: Mapping[str, bool]) -> dict[str, int]:
    """Traffic in effect: the declared percents renormalised over the versions serving now
    (`renormalise`), so each version's declared share comes back as it becomes available.
    All zero when no serving version has a declared share (nothing may take traffic)."""
    return renormalise(desired, [v for v in desired if serving.get(v)])


def rendered_weights(
    backend: str,
    desired: Mapping[str, int],
    admitted: Iterable[str],
    in_effect: Mapping[str, int],
) -> dict[str, int]:
    """The split given to the backend (pure), over the admitted (rendered) versions only,
    so it always sums to 100 when any admitted version has a declared share (Seldon's
    webhook wants several predictors to sum to 100) and is all zero otherwise.

    - `lykeion`, `seldon`: the traffic in effect while any version takes traffic (a
      version starting gets 0 until it is available); with none available yet, the
      declared split over the admitted versions (requests wait on them).
    - `kserve`: the declared split over the admitted versions: KServe itself keeps the
      remainder on the revision it rolled out last until the canary's is ready, and a
      canary that is not rendered never starts.
    """
    admitted = list(admitted)
    if backend != "kserve" and any(in_effect.get(v, 0) for v in admitted):
        return renormalise(in_effect, admitted)
    return renormalise(desired, admitted)


def stable_version(
    desired: Mapping[str, int],
    in_effect: Mapping[str, int],
    rollout_stable: str | None,
    recorded: str | None = None,
) -> str | None:
    """The version a canary's remainder belongs to, by meaning, never by list order (pure).

    Of the versions with a declared share (`desired`, percents), in this order:
    the rollout's stable version; else the one recorded as stable before
    (`status.traffic[].stable`): once recorded it stays the stable one while it has a
    share, whatever the shares (a canary declared above 50% stays the canary, KServe
    still keeps the remainder on the revision it rolled out last), and a moment with
    nothing available does not forget it; else, with no record, the one serving the
    largest share now (`in_effect`, `status.traffic`; ties: the lower version number).
    None when none of them is recorded or has served: there is nothing a canary could
    be measured against (and KServe would send it everything).

    Fixed point: fed the status it leads to (`outcome` records the result), it gives the
    same version again, so consecutive reconcile passes never swap canary and stable."""
    live = [v for v in desired if desired[v] > 0]
    if rollout_stable in live:
        return rollout_stable
    if recorded in live:
        return recorded
    serving = [v for v in live if in_effect.get(v, 0) > 0]
    if serving:
        return max(serving, key=lambda v: (in_effect[v], _older(v)))
    return None


def _older(version: str) -> tuple[int, ...]:
    """Sorts the lower version number last-first: `max` by it picks the older version."""
    return tuple(-int(p) for p in version.split("."))


def server_config(
    deployment: Mapping[str, Any],
    version: str,
    model: Stored[ModelStatus],
    manifests: Sequence[Stored[FeatureManifestStatus]],
    config: PlatformConfig,
) -> ServerConfig:
    """The `ServerConfig` of one version's model server, built with the server's own model
    (`lykeion.serving.config.ServerConfig`) and so checked here, where it is built: a
    server is never rendered with a configuration it would refuse at start. The fields
    given are the ones its `wire()` writes. Raises `pydantic.ValidationError` naming the
    field (the handler turns it into the version's `ServerConfigInvalid` admission)."""
    status = model.status
    uri = (
        f"models:/{status.registered_model}/{status.registered_version}"
        if status.registered_model and status.registered_version
        else status.model_uri
    )
    refs = [FeatureReference.parse(f["ref"]) for f in status.features]
    views = _views(manifests)
    defined = {view.name for ref in refs for view in defining(ref, views)}
    used = [m for m in manifests if m.name in defined]
    defaults = (model.body["spec"].get("serving") or {}).get("defaults") or []
    rate = deployment["spec"].get("skewSampleRate")
    data = {
        "name": deployment["metadata"]["name"],
        "namespace": deployment["metadata"].get("namespace", "default"),
        "access": config.access,
        "version": version,
        "model_uri": uri,
        "storage_uri": status.artifact_uri,
        "tracking_uri": config.tracking_uri or None,
        "features": [
            {"ref": f["ref"], "column": f["column"], "type": f["type"]} for f in status.features
        ],
        "manifests": [
            {
                "metadata": {
                    "name": m.name,
                    "namespace": m.body["metadata"].get("namespace", "default"),
                    "uid": m.body["metadata"].get("uid", ""),
                },
                "spec": m.body["spec"],
                # The generation in effect names the tables the server reads; a switch
                # changes this config, so the server is re-rendered onto the new tables.
                "status": {"materializedGeneration": m.status.materialized_generation},
            }
            for m in used
        ],
        "online_store": config.online_store,
        "offline_store": config.offline_store,  # the skew check's (serving/skew.py)
        "defaults": {d["feature"]: d.get("value") for d in defaults},
        **({} if rate is None else {"skew_sample_rate": float(rate)}),
        **labels.server_fields(deployment, version, config),  # spec.rollout.labels
    }
    return ServerConfig.model_validate(data)


def config_problem(version: str, error: ValidationError) -> str:
    """The message of a version whose `ServerConfig` the server's model refuses: each
    field (dotted path) with pydantic's reason, and what to do."""
    fields = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in error.errors()
    )
    return (
        f"the model server of {version} would refuse its configuration ({fields}); fix what "
        "it is built from (the Deployment's spec, the Model's status or the platform "
        "configuration) or report it as a bug"
    )


def endpoint(
    deployment: Mapping[str, Any],
    configs: Mapping[str, ServerConfig],
    weights: Mapping[str, int],
    config: PlatformConfig,
    stable: str | None = None,
) -> Endpoint:
    """The endpoint to serve: one server per admitted version, traffic as given
    (`rendered_weights`), `stable` the version a canary's remainder belongs to."""
    meta, spec = deployment["metadata"], deployment["spec"]
    name = meta["name"]
    resources = spec.get("resources") or {}
    shadow = spec.get("shadow")
    return Endpoint(
        name=name,
        namespace=meta.get("namespace", "default"),
        backend=spec.get("backend", "lykeion"),
        servers=tuple(
            VersionServer(version, child_name(name, version), configs[version])
            for version in wanted_versions(spec)
            if version in configs
        ),
        weights={v: w for v, w in weights.items() if v in configs},
        shadow=shadow if shadow in configs else None,
        stable=stable,
        replicas=int(spec.get("replicas", 1)),
        image=config.serving_image,
        kserve_mode=config.kserve_mode,
        kserve_storage_schemes=config.kserve_storage_schemes,
        cpu=resources.get("cpu", "500m"),
        memory=resources.get("memory", "1Gi"),
        owner=dict(deployment),
        python=config.python,
    )


def _verdicts(type_: str, problems: Sequence[Admission], ok_reason: str, ok_message: str) -> Check:
    """One condition over the versions: the first problem's reason, every version's message."""
    if not problems:
        return Check(type_, True, ok_reason, ok_message)
    message = "; ".join(f"{a.version}: {a.message}" for a in problems)
    return Check(type_, False, problems[0].reason or "", message)


def outcome(
    spec: Mapping[str, Any],
    admissions: Sequence[Admission],
    served: EndpointStatus | None,
    weights: Mapping[str, int],
    stable: str | None = None,
) -> tuple[dict[str, Any], list[Check]]:
    """Status fields and conditions from the gate and what the executor observed; `stable`
    is recorded on its version while another one has a declared share (a canary)."""
    by_version = {a.version: a for a in admissions}
    model_problems = [a for a in admissions if not a.admitted and a.reason in _MODEL_REASONS]
    feature_problems = [a for a in admissions if not a.admitted and a.reason not in _MODEL_REASONS]
    evaluated = _verdicts(
        MODELS_EVALUATED, model_problems, "ModelsEvaluated", "every version passed its gate"
    )
    fresh = _verdicts(
        FEATURES_FRESH, feature_problems, "FeaturesFresh", "input features materialized and fresh"
    )
    available = served.available if served else {}
    messages = served.messages if served else {}
    live = [v["version"] for v in spec["versions"]]
    desired = {v["version"]: int(v["traffic"]) for v in spec["versions"]}
    # A version declared at 0% that the backend does not run by design (KServe) is idle,
    # not down: nothing is meant to start for it.
    idle_by_design = {
        v
        for v in (served.unserved if served else frozenset())
        if desired.get(v, 0) == 0 and v != spec.get("shadow") and by_version[v].admitted
    }
    down = [
        v
        for v in wanted_versions(spec)
        if by_version[v].admitted and not available.get(v) and v not in idle_by_design
    ]
    crashed = served.crashed if served else frozenset()
    availability = (
        Check(
            AVAILABLE,
            False,
            # Starting is progress (lykectl --wait keeps waiting); a crash needs a look.
            "VersionsCrashed" if crashed & set(down) else "VersionsStarting",
            "; ".join(f"{v}: {messages.get(v, 'not available')}" for v in down),
        )
        if down
        else Check(
            AVAILABLE,
            True,
            "VersionsAvailable",
            "every admitted version is serving"
            + (
                f" ({', '.join(sorted(idle_by_design))} declared at 0%: the backend runs no "
                "server for it until it has a share)"
                if idle_by_design
                else ""
            ),
        )
    )
    if all(weights.get(v, 0) == 0 for v in live):
        # Never the 0% versions instead: name what the declared shares are waiting on.
        waiting = "; ".join(
            f"{v} ({desired[v]}%): "
            + (
                messages.get(v, "not available")
                if by_version[v].admitted
                else f"not admitted: {by_version[v].message}"
            )
            for v in live
            if desired[v] > 0
        )
        idle = [v for v in live if desired[v] == 0]
        message = f"no version declared with a share is serving: {waiting}" + (
            f"; declared at 0%, {', '.join(idle)} receive(s) no traffic" if idle else ""
        )
        traffic = Check(TRAFFIC, False, "NoVersionServing", message)
    elif dict(weights) != desired:
        held = ", ".join(f"{v} {weights.get(v, 0)}%" for v in live)
        traffic = Check(
            TRAFFIC,
            False,
            "RolloutHeld",
            f"traffic held at {held} until every version is admitted and available",
        )
    else:
        traffic = Check(TRAFFIC, True, "TrafficAsDesired", "traffic is split as spec.versions says")
    fields = {
        "endpoint": served.url if served else None,
        "readyReplicas": served.ready_replicas if served else 0,
        "traffic": [
            {
                "version": v,
                "traffic": weights.get(v, 0),
                "available": bool(available.get(v)),
                **({"shadow": True} if v == spec.get("shadow") else {}),
                **({"stable": True} if v == stable and len(live) > 1 else {}),
            }
            for v in wanted_versions(spec)
        ],
    }
    checks = [evaluated, fresh, availability, traffic]
    return fields, checks


_MODEL_REASONS = {
    "ModelVersionNotFound",
    "ModelNotEvaluated",
    "ModelNotTrained",
    "ServerConfigInvalid",
}
