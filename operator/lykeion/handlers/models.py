"""Model: resolves its family and input features (name and type) before anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import kopf

from lykeion.api.kinds import MODEL
from lykeion.conditions import Check, ready
from lykeion.features.reference import (
    FeatureReference,
    TypeMismatch,
    feature_name,
    type_mismatch,
)
from lykeion.handlers.training import Model, train
from lykeion.object_index import ObjectIndex
from lykeion.runtime import Clock, KindDeclaration, Runtime, StatusUpdate

FAMILY_RESOLVED = "FamilyResolved"
FEATURES_RESOLVED = "FeaturesResolved"


def check_family(ns: str, family: str, index: ObjectIndex) -> Check:
    if index.family_exists(ns, family):
        return Check(FAMILY_RESOLVED, True, "FamilyFound", f"ModelFamily {family} exists")
    return Check(
        FAMILY_RESOLVED,
        False,
        "FamilyNotFound",
        f"ModelFamily {family} does not exist in namespace {ns}",
    )


def check_features(ns: str, refs: list[str], index: ObjectIndex) -> tuple[Check, list[str]]:
    """One condition for all input features, and the list of what is missing."""
    undefined: list[str] = []
    mismatched: list[TypeMismatch] = []
    conflicting: dict[str, list[str]] = {}
    for text in refs:
        ref = FeatureReference.parse(text)
        definitions = index.definitions(ns, ref.name)
        if not definitions:
            undefined.append(ref.name)
        elif len(definitions) > 1:
            conflicting[ref.name] = list(definitions)
        else:
            ((manifest, actual),) = definitions.items()
            mismatch = type_mismatch(ref.name, ref.type, actual, manifest, trained=False)
            if mismatch is not None:
                mismatched.append(mismatch)
    if undefined:
        message = "not defined by any FeatureManifest: " + ", ".join(undefined)
        return Check(FEATURES_RESOLVED, False, "FeaturesNotDefined", message), undefined
    if mismatched:
        message = "; ".join(str(m) for m in mismatched)
        return Check(FEATURES_RESOLVED, False, "FeatureTypeMismatch", message), [
            m.name for m in mismatched
        ]
    if conflicting:
        message = "defined by more than one FeatureManifest: " + "; ".join(
            f"{name} (defined by {', '.join(manifests)})" for name, manifests in conflicting.items()
        )
        return Check(FEATURES_RESOLVED, False, "FeatureConflict", message), list(conflicting)
    return Check(
        FEATURES_RESOLVED, True, "FeaturesDefined", f"all {len(refs)} input feature(s) are defined"
    ), []


def desired_status(model: Model, index: ObjectIndex) -> StatusUpdate:
    ns, spec = model.namespace, model.spec
    family = check_family(ns, spec.family, index)
    features, missing_features = check_features(ns, list(spec.input_features), index)
    missing = ([f"family:{spec.family}"] if not family.ok else []) + [
        f"feature:{feature_name(f)}" for f in missing_features
    ]
    checks = [family, features]
    return StatusUpdate(
        {"missing": missing}, [*checks, ready(checks, "Resolved", "family and features resolved")]
    )


async def act(model: Model, runtime: Runtime, update: StatusUpdate) -> StatusUpdate:
    """Train when asked (and only once the references resolve); fold in the outcome."""
    if runtime.executor is None or runtime.config is None:
        return update
    resolved_checks = [c for c in update.checks if c.type != "Ready"]
    resolved = all(c.ok for c in resolved_checks)
    manifests = runtime.index.manifests_for(model.namespace, list(model.spec.input_features))
    # The training set is read from each manifest's generation in effect: none yet means
    # nothing to read, so the training waits for the first backfill to complete.
    materialized = all((m.get("status") or {}).get("materializedGeneration") for m in manifests)
    fields, trained, evaluated = await train(
        model,
        manifests,
        resolved and materialized,
        runtime.executor,
        runtime.config,
        datetime.now(UTC),
    )
    requests = model.spec.training.requests
    # Ready means "what was asked is done": a Model nobody asked to train is Ready once
    # resolved; one asked to train is Ready when trained and through its gate.
    gate = [trained, evaluated] if requests > 0 else []
    checks = [*resolved_checks, trained, evaluated]
    message = "trained and evaluated" if gate else "family and features resolved; not trained"
    return StatusUpdate(
        {**update.fields, **fields},
        [*checks, ready([*resolved_checks, *gate], "Ready" if gate else "Resolved", message)],
    )


def _training_in_flight(status: kopf.Status, **_: Any) -> bool:
    return bool(status.get("currentTraining"))


DECLARATION = KindDeclaration(
    MODEL,
    "model",
    desired_status,
    act=act,
    # Only Models with a training in flight get a timer (local runs raise no events):
    # 500 idle Models cost no tasks.
    clocks=(Clock("tick", when=_training_in_flight),),
)
