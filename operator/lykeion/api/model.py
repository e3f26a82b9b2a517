"""Model: one version of a family/segment, its source, features, training and gate."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from lykeion.api.common import (
    DNS_LABEL,
    FEATURE_REF,
    IDENTIFIER,
    VERSION_PATTERN,
    ApiModel,
    Resources,
    Status,
    cel,
    cel_rules,
)
from lykeion.api.featuremanifest import BigQuerySource, FileSource

# `<git-url>#<subdir>@<40-hex SHA>` pins the exact code; `file://` is for the embedded mode.
SOURCE_URL = r"^([^#\s]+#[^@#\s]*@[0-9a-f]{40}|file://[^\s]+)$"

FeatureRef = Annotated[str, StringConstraints(pattern=FEATURE_REF, max_length=160)]

IMMUTABLE = "self == oldSelf"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ModelSource(ApiModel):
    """The MLflow project that trains the model, pinned to one commit."""

    url: str = Field(pattern=SOURCE_URL, max_length=2048)
    """`<git-url>#<subdir>@<40-hex SHA>`, or `file:///path` in the embedded mode."""
    entry_point: str = Field("main", pattern=r"^[A-Za-z0-9_.-]+$", max_length=63)
    """MLflow project entry point."""
    parameters: dict[str, str] = Field(default_factory=dict, max_length=64)
    """Parameters passed to the entry point; they override the project's defaults
    (`parameters` of its training contract, `lykeion.yaml`) key by key."""
    ssh_secret: str | None = Field(None, pattern=DNS_SUBDOMAIN, max_length=253)
    """Secret (same namespace) holding `ssh-privatekey` and `known_hosts` for an SSH git
    URL; the training Job mounts it (the `kubernetes` executor). Unset: the chart's
    `workload.gitSshSecret`, else the environment's own SSH configuration (local runs)."""


class LabelsSource(ApiModel):
    """Labelled examples: entity key, event time and target; exactly one of `file` or
    `bigquery`."""

    model_config = cel_rules(
        cel("has(self.bigquery) != has(self.file)", "set exactly one of bigquery or file")
    )

    file: FileSource | None = None
    bigquery: BigQuerySource | None = None
    """A BigQuery table or query returning the join key, the timestamp and the target."""
    timestamp_column: str = Field(pattern=IDENTIFIER, max_length=63)
    target: str = Field(pattern=IDENTIFIER, max_length=63)
    """Column holding the value to predict."""

    @model_validator(mode="after")
    def _one_of(self) -> LabelsSource:
        if (self.bigquery is None) == (self.file is None):
            raise ValueError("set exactly one of bigquery or file")
        return self


class Training(ApiModel):
    """How to build the training set and run the training."""

    labels: LabelsSource | None = None
    """Unset: the `labels` of the project's training contract (`lykeion.yaml` beside
    `MLproject`) at the pinned revision; set: these, whatever the project declares."""
    requests: int = Field(0, ge=0)
    """Training-request counter: each increment asks for one more training of this spec."""
    resources: Resources = Field(default_factory=Resources)
    """Requests of the training Job."""


class Evaluation(ApiModel):
    """The gate a trained version must pass before it may be deployed."""

    metric: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=63)
    threshold: float
    higher_is_better: bool = True


class FeatureDefault(ApiModel):
    """What serving sends the model when the online store has no value for a feature."""

    feature: str = Field(pattern=FEATURE_REF, max_length=160)
    """`entity.feature`, one of inputFeatures."""
    value: str | None = Field(None, max_length=256)
    """The value as text, parsed by the feature's type; omitted: a missing value (null /
    NaN) is sent, for models that impute, as their training set had them."""


class Serving(ApiModel):
    """How the model is served once trained."""

    defaults: list[FeatureDefault] = Field(
        default_factory=list,
        max_length=200,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["feature"],
        },
    )
    """Features that may be missing at request time, and what replaces them; a request
    whose features are missing without a declared default is refused (422)."""


class ModelSpec(ApiModel):
    """One version of a model in a family and segment."""

    model_config = cel_rules(
        cel(
            "!has(self.serving) || !has(self.serving.defaults) || self.serving.defaults.all("
            "d, self.inputFeatures.exists(f, f == d.feature || f.startsWith(d.feature + ':')))",
            "serving.defaults may only name features of inputFeatures",
            fieldPath=".serving.defaults",
        ),
    )

    family: str = Field(pattern=DNS_LABEL, max_length=20)
    """Alias of the ModelFamily."""
    segment: str = Field(pattern=DNS_LABEL, max_length=20)
    """Population the model serves, e.g. `default` or `eu`."""
    version: str = Field(
        pattern=VERSION_PATTERN,
        max_length=15,
        json_schema_extra={"x-kubernetes-validations": [cel(IMMUTABLE, "version is immutable")]},
    )
    description: str = Field(min_length=1, max_length=2048)
    source: ModelSource = Field(
        json_schema_extra={"x-kubernetes-validations": [cel(IMMUTABLE, "source is immutable")]}
    )
    input_features: list[FeatureRef] = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={
            "x-kubernetes-validations": [cel(IMMUTABLE, "inputFeatures is immutable")]
        },
    )
    """Features the model reads, as `entity.feature` (optionally `:type`), in model input order."""
    training: Training = Field(default_factory=Training)
    """Unset `training.labels` are read from the project's training contract."""
    evaluation: Evaluation | None = None
    """Unset: the `evaluation` of the project's training contract at the pinned revision."""
    serving: Serving = Field(default_factory=Serving)

    @model_validator(mode="after")
    def _features_unique(self) -> ModelSpec:
        # Here, not at the top: `features.reference` reads its pattern from `api.common`.
        from lykeion.features.reference import feature_name

        names = [feature_name(ref) for ref in self.input_features]
        if len(set(names)) != len(names):
            raise ValueError("inputFeatures must not repeat a feature")
        unknown = [d.feature for d in self.serving.defaults if d.feature not in names]
        if unknown:
            raise ValueError(f"serving.defaults name features not in inputFeatures: {unknown}")
        return self


class TrainingSetRecord(ApiModel):
    """The exact training-set snapshot a version was trained on."""

    hash: str
    rows: int


class ProjectRun(ApiModel):
    """A docker_env project's entry point, run in the image the project names: the
    training's second Job (`job`), once the first prepared the MLflow run `runId` and its
    training set. Its init container runs `command` in `image`, in `directory` (the
    pinned checkout on the data volume) with `env`; its main container (the Lykeion image)
    evaluates and registers."""

    job: str = Field(max_length=63)
    image: str = Field(min_length=1, max_length=1024)
    command: str = Field(min_length=1, max_length=16384)
    directory: str = Field(min_length=1, max_length=4096)
    run_id: str = Field(min_length=1, max_length=256)
    env: dict[str, str] = Field(default_factory=dict)
    """The docker_env's variables and `MLFLOW_RUN_ID`/`MLFLOW_EXPERIMENT_ID`."""


class TrainingRecord(ApiModel):
    """One training of this Model: its run name and how it ended."""

    name: str
    """`<model>-t<requests>` (a hash of the exact Model name when it has dots or is long):
    found again by this name and the Model's UID after a restart."""
    requests: int
    """The `spec.training.requests` value this training answers."""
    started_at: str
    result: Literal["Running", "Succeeded", "Failed"] = "Running"
    reason: str | None = None
    message: str | None = None
    finished_at: str | None = None
    duration_seconds: float | None = None
    project_seconds: float | None = None
    """Time spent in the MLflow project itself (the rest is platform overhead)."""
    gate_passed: bool | None = None
    project: ProjectRun | None = None
    """Set while a docker_env project's entry point runs in its own image (a second Job)."""


Origin = Literal["spec", "project"]


class ContractOrigins(ApiModel):
    """Where each part of the resolved training contract came from."""

    labels: Origin
    evaluation: Origin
    parameters: dict[str, Origin] = Field(default_factory=dict)
    """Per parameter: `spec` (spec.source.parameters) or `project` (the contract's defaults)."""
    project_file: str | None = None
    """The contract file as read: `<source url without revision>/lykeion.yaml@<revision>`;
    None when the project has none."""
    overridden: list[str] = Field(default_factory=list)
    """Parts the project file declares that the spec overrode, e.g. `labels`."""


class ResolvedContract(ApiModel):
    """The labels, gate and parameters a training actually used, and where each came from."""

    labels: LabelsSource
    evaluation: Evaluation
    parameters: dict[str, str] = Field(default_factory=dict)
    origins: ContractOrigins


class ModelStatus(Status):
    """Observed state of a Model."""

    observed_training_requests: int | None = None
    """The `spec.training.requests` value last acted upon."""
    current_training: TrainingRecord | None = None
    last_training: TrainingRecord | None = None
    registered_model: str | None = None
    registered_version: str | None = None
    features: list[dict[str, str]] = Field(default_factory=list)
    """Input features as trained: reference, training-set column and type, in input order."""
    missing: list[str] = Field(default_factory=list)
    """References (family, features) that could not be resolved."""
    mlflow_run_id: str | None = None
    model_uri: str | None = None
    artifact_uri: str | None = None
    """Where the registered version's files are (KServe's storageUri)."""
    metrics: dict[str, float] = Field(default_factory=dict)
    training_set: TrainingSetRecord | None = None
    source_sha: str | None = None
    image: str | None = None
    contract: ResolvedContract | None = None
    """The training contract of the last successful training (reproducible from it)."""
