"""Deployment: which versions of a family/segment serve traffic, and how."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import Field, model_validator

from lykeion.api.common import (
    CAMEL_REASON,
    DNS_LABEL,
    DURATION,
    VERSION_PATTERN,
    ApiModel,
    Resources,
    Status,
    cel,
    cel_rules,
)
from lykeion.api.model import LabelsSource

TRAFFIC_SUM = "traffic of spec.versions must sum to 100"
SHADOW_NOT_LIVE = "shadow must not also be one of spec.versions"
ROLLOUT_END_STATE = (
    "with spec.rollout, spec.versions declares the end state: one version at 100% "
    "(the rollout walks it there from the version serving now)"
)
STEPS_ASCENDING = "spec.rollout.steps must be strictly ascending percents in 1..100"
STEPS_END = "spec.rollout.steps must end at 100"
ROLLOUT_BACKEND = (
    "spec.rollout needs backend lykeion: seldon and kserve report no per-version server "
    "whose requests a rollout could analyse, so its canary would never move; use backend "
    "lykeion for analysed rollouts, or drop spec.rollout and declare the split in "
    "spec.versions"
)
SELDON_NAME_SUFFIX = len("-v") + len("-svc-orch")
SELDON_NAMES = (
    "with backend seldon, every version must fit Seldon's derived names in a 63-character "
    "DNS label: <family>-<segment>-v<version>-svc-orch is too long"
)


class VersionTraffic(ApiModel):
    """One served version and the share of requests it receives."""

    version: str = Field(pattern=VERSION_PATTERN, max_length=15)
    traffic: int = Field(ge=0, le=100)
    """Percent of requests routed to this version."""


class RolloutChecks(ApiModel):
    """Thresholds a canary must hold over each step's interval (`lykeion/rollouts/analysis.py`
    defines each value). A check whose data is absent (no `/analysis`, too few requests on the
    stable version) is `NoData`: it neither passes nor fails the step."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    """Most server errors (5xx answers) per request."""
    max_latency_ratio: float = Field(3.0, ge=1, le=1000)
    """Most p99 latency of the canary as a multiple of the stable version's (p99 read as the
    upper bound of the histogram bucket holding the 99th percentile request; neighbouring
    buckets are 2-2.5x apart, so below 2.5 one bucket of noise fails the check)."""
    max_missing_feature_rate: float = Field(0.05, ge=0, le=1)
    """Most requests refused for a missing feature (422: a key lacked a feature the Model
    declares no default for), per request. Defaulted values are served as trained: not counted."""
    max_skew_rate: float = Field(0.01, ge=0, le=1)
    """Most served-vs-offline mismatches per checked value, for the worst feature."""
    max_drift_psi: float = Field(0.2, ge=0, le=1000)
    """Most population stability index against the training set, for the worst feature."""
    min_requests: int = Field(20, ge=1, le=1_000_000)
    """Requests the canary must answer within a step before a check can pass or fail."""
    max_live_metric_drop: float = Field(0.05, ge=0, le=1e9)
    """With `labels`: most the canary's live metric may be worse than the stable version's
    over the same window (in the metric's units, in the direction the gate says is worse)."""
    min_labels: int = Field(20, ge=1, le=1_000_000)
    """With `labels`: labelled requests each version needs within a step before the live
    metric checks can pass or fail."""


class RolloutLabels(LabelsSource):
    """Delayed outcomes of served requests, shaped like a Model's training labels: the
    entity key column(s), the time the outcome became known and the target. Each version's
    server joins them to the requests it logged (`serving/outcomes.py`): a request takes the
    first label of its key at or after its time, within `horizon`; unlabelled requests do
    not count. The canary Model's evaluation metric over those pairs is a rollout check."""

    horizon: str = Field("1h", pattern=DURATION, max_length=16)
    """How long after a request its outcome may arrive, e.g. `30s`, `1h`, `7d`."""


class RolloutSpec(ApiModel):
    """A canary walk: traffic steps, each held for `interval` while the checks pass."""

    model_config = cel_rules(
        cel(
            "self.steps.isSorted() && self.steps.all(s, s >= 1 && s <= 100)"
            " && self.steps.all(s, self.steps.filter(t, t == s).size() == 1)",
            STEPS_ASCENDING,
            fieldPath=".steps",
        ),
        cel("self.steps[size(self.steps) - 1] == 100", STEPS_END, fieldPath=".steps"),
    )

    steps: list[int] = Field(
        default=[10, 50, 100],
        min_length=1,
        max_length=10,
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 100}},
    )
    """Percent of requests the canary gets at each step; reaching 100 is the promotion."""
    interval: str = Field("1m", pattern=DURATION, max_length=16)
    """How long each step is analysed before the canary advances, e.g. `10s`, `5m`."""
    checks: RolloutChecks = Field(default_factory=RolloutChecks)
    labels: RolloutLabels | None = None
    """Judge each step also on the evaluation gate's metric of live traffic (`liveMetric`
    against the canary Model's threshold, `liveMetricDrop` against the stable version)."""
    paused: bool = False
    """Hold the canary at its step: no decision is taken while paused."""

    @model_validator(mode="after")
    def _check(self) -> RolloutSpec:
        steps = self.steps
        if any(not 1 <= s <= 100 for s in steps) or any(
            a >= b for a, b in itertools.pairwise(steps)
        ):
            raise ValueError(STEPS_ASCENDING)
        if steps[-1] != 100:
            raise ValueError(STEPS_END)
        return self


class DeploymentSpec(ApiModel):
    """A prediction endpoint for one family/segment."""

    model_config = cel_rules(
        cel("self.versions.map(v, v.traffic).sum() == 100", TRAFFIC_SUM, fieldPath=".versions"),
        cel(
            "!has(self.shadow) || !self.versions.exists(v, v.version == self.shadow)",
            SHADOW_NOT_LIVE,
            fieldPath=".shadow",
        ),
        cel(
            "!has(self.rollout) || (size(self.versions) == 1 && self.versions[0].traffic == 100)",
            ROLLOUT_END_STATE,
            fieldPath=".versions",
        ),
        cel(
            "!has(self.rollout) || !has(self.backend) || self.backend == 'lykeion'",
            ROLLOUT_BACKEND,
            fieldPath=".rollout",
        ),
        # metadata.name is <family>-<segment> (the name rule); the namespace is not visible
        # here, so KServe's host labels are checked when rendering (a False condition).
        cel(
            "!has(self.backend) || self.backend != 'seldon' || "
            "self.versions.all(v, size(self.family) + size(self.segment) + size(v.version)"
            f" + {1 + SELDON_NAME_SUFFIX} <= 63) && (!has(self.shadow) || size(self.family)"
            f" + size(self.segment) + size(self.shadow) + {1 + SELDON_NAME_SUFFIX} <= 63)",
            SELDON_NAMES,
            fieldPath=".versions",
        ),
    )

    family: str = Field(pattern=DNS_LABEL, max_length=20)
    segment: str = Field(pattern=DNS_LABEL, max_length=20)
    versions: list[VersionTraffic] = Field(
        min_length=1,
        max_length=10,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["version"],
        },
    )
    shadow: str | None = Field(None, pattern=VERSION_PATTERN, max_length=15)
    """Version that receives a copy of every request; its answers are logged, not returned."""
    replicas: int = Field(1, ge=0, le=100)
    backend: Literal["seldon", "kserve", "lykeion"] = "lykeion"
    """Serving system: Seldon Core, KServe, or plain Deployments running the Lykeion server."""
    resources: Resources = Field(default_factory=Resources)
    rollout: RolloutSpec | None = None
    """Walk a newly declared version to 100% in steps judged on live traffic; without it a
    declared split takes effect as soon as its versions are available."""
    skew_sample_rate: float | None = Field(None, ge=0, le=1)
    """Share of requests each version's model server recomputes from the offline store for
    the skew check (`serving/skew.py`; 0: none); absent: the server's default, 0.01."""

    @model_validator(mode="after")
    def _check(self) -> DeploymentSpec:
        versions = [v.version for v in self.versions]
        if len(set(versions)) != len(versions):
            raise ValueError("spec.versions must not repeat a version")
        if sum(v.traffic for v in self.versions) != 100:
            raise ValueError(TRAFFIC_SUM)
        if self.shadow is not None and self.shadow in versions:
            raise ValueError(SHADOW_NOT_LIVE)
        if self.rollout is not None and (
            len(self.versions) != 1 or self.versions[0].traffic != 100
        ):
            raise ValueError(ROLLOUT_END_STATE)
        if self.rollout is not None and self.backend != "lykeion":
            raise ValueError(ROLLOUT_BACKEND)
        name = len(self.family) + 1 + len(self.segment)
        served = [*versions, *([self.shadow] if self.shadow else [])]
        if self.backend == "seldon" and any(
            name + len(v) + SELDON_NAME_SUFFIX > 63 for v in served
        ):
            raise ValueError(SELDON_NAMES)
        return self


class VersionStatus(ApiModel):
    version: str
    traffic: int
    """Percent of requests this version receives now (may differ from spec while held)."""
    available: bool = False
    shadow: bool | None = None
    """Receives a copy of every request; its answers are not returned."""
    stable: bool | None = None
    """Serves the rest of a canary's split: the version serving before the canary (KServe
    renders the other one as its canary)."""


class LatencyBucket(ApiModel):
    """One cumulative histogram bucket: requests that took at most `le` seconds."""

    le: float | None = None
    """Upper bound in seconds; absent for the `+Inf` bucket."""
    count: int = Field(ge=0)


class SkewCount(ApiModel):
    feature: str = Field(max_length=128)
    checked: int = Field(ge=0)
    mismatches: int = Field(ge=0)


class Counters(ApiModel):
    """Cumulative counters of one version's model server at one moment (since it started)."""

    version: str = Field(pattern=VERSION_PATTERN, max_length=15)
    requests: int = Field(0, ge=0)
    server_errors: int = Field(0, ge=0)
    """Answers with a 5xx code."""
    missing_features: int = Field(0, ge=0)
    """Requests refused (422) because a key lacked a feature without a declared default."""
    latency: list[LatencyBucket] = Field(default_factory=list, max_length=64)
    skew: list[SkewCount] | None = Field(None, max_length=256)
    """Served-vs-offline comparisons per feature; absent when the server reports none."""


class CheckResult(ApiModel):
    """The last value of one check against its threshold."""

    name: Literal[
        "requests",
        "errorRate",
        "latencyRatio",
        "missingFeatures",
        "skewRate",
        "driftPsi",
        "liveMetric",
        "liveMetricDrop",
    ]
    value: float | None = None
    """Absent when there is no data (or the value is unbounded, see `message`)."""
    threshold: float
    at_least: bool | None = None
    """True: the value must be at least the threshold (a metric where higher is better);
    absent: at most."""
    result: Literal["Pass", "Fail", "NoData"]
    message: str = Field("", max_length=512)


class Decision(ApiModel):
    """One step of the rollout's history."""

    time: str
    action: Literal["Start", "Advance", "RollBack", "Promote", "Abort"]
    canary: str = Field(max_length=15)
    weight: int = Field(ge=0, le=100)
    """Canary percent after the decision."""
    reason: str = Field(pattern=CAMEL_REASON, max_length=64)
    message: str = Field("", max_length=1024)


class RolloutStatus(ApiModel):
    """Where the rollout is; kept in status only (spec is never written), so an operator
    restart resumes from here: the step, when it began, and the counters at that moment."""

    phase: Literal["Progressing", "Paused", "Promoted", "RolledBack"]
    stable: str | None = Field(None, max_length=15)
    """The version that served 100% before the canary (gets the rest of the traffic)."""
    canary: str | None = Field(None, max_length=15)
    """The declared version walking through the steps; absent once promoted."""
    step: int = Field(0, ge=0, le=10)
    """Index into `spec.rollout.steps`."""
    weight: int = Field(0, ge=0, le=100)
    """Percent of requests the canary gets now."""
    started_at: str | None = None
    """When this canary's rollout began; `lykectl models promote` names it."""
    step_started_at: str | None = None
    """When the current analysis window began (absent until both versions are up)."""
    baseline: list[Counters] | None = Field(None, max_length=2)
    """Counters of the canary and the stable version at `stepStartedAt`."""
    generation: int = Field(0, ge=0)
    """`metadata.generation` when the phase was last set: a rolled-back canary is retried
    only after the spec changes again."""
    checks: list[CheckResult] = Field(default_factory=list, max_length=12)
    decisions: list[Decision] = Field(default_factory=list, max_length=10)
    """The last decisions, oldest first."""


class DeploymentStatus(Status):
    """Observed state of a Deployment."""

    endpoint: str | None = None
    ready_replicas: int | None = None
    traffic: list[VersionStatus] = Field(default_factory=list)
    """Traffic actually in effect per version."""
    rollout: RolloutStatus | None = None
    """The rollout's state and analysis, when `spec.rollout` is set."""
