"""What one model server serves: a model version, its features, and where they live."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lykeion.request_body import MODEL_SERVER_MAX_BYTES

CONFIG_ENV = "LYKEION_SERVER_CONFIG"
"""The environment variable a model server container reads its `ServerConfig` (JSON) from."""


class TrainedFeature(BaseModel):
    """One model input as the training recorded it (MLflow tag `lykeion.features`)."""

    model_config = ConfigDict(extra="forbid")

    ref: str
    """`entity.feature`."""
    column: str
    """Column name in the training set and in the model's input frame."""
    type: str
    """The manifest type the model was trained on."""


class LabelsConfig(BaseModel):
    """Delayed outcomes the server joins to its request log (`serving/outcomes.py`); the
    Deployment's `spec.rollout.labels`."""

    model_config = ConfigDict(extra="forbid")

    source: dict[str, Any]
    """A `LabelsSource` (as data): a file or BigQuery, its time and target columns."""
    horizon_seconds: float = Field(gt=0)
    """A request takes the first label of its key at most this long after it."""
    data_root: str
    """Relative label file paths are resolved against this directory."""


class ServerConfig(BaseModel):
    """Rendered by the operator for each served version; read by `python -m lykeion.serving`.
    The operator builds it (`handlers.rollout.server_config`, checked here as it is built)
    and writes `wire()` where a server reads it (an environment variable, a file)."""

    model_config = ConfigDict(extra="forbid")

    # The fields in the order the operator writes them (`wire`): the compact JSON is part of
    # each server's pod template, so another order would restart every model server.

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Endpoint name: the Deployment's name, and the model name of the V2 protocol."""
    namespace: str = "default"
    """The Deployment's namespace: where callers need the right to predict."""
    access: Literal["off", "kubernetes"] = "off"
    """kubernetes: predictions and model metadata need a bearer token the cluster accepts
    and `create` on `deployments/predict` (group lykeion.io) of this Deployment;
    health, readiness and metrics stay open (`lykeion.access`)."""
    version: str
    """The Model version served (e.g. `1.0`)."""
    model_uri: str
    """`models:/<name>/<version>`, `runs:/<id>/model` or an artifact location."""
    storage_uri: str | None = None
    """Where the model's files are (KServe's predictor fetches them from there)."""
    tracking_uri: str | None = None
    """MLflow tracking server, for registry and run URIs and for the model's metadata."""
    features: list[TrainedFeature] | None = None
    """Inputs in model order, as the operator last saw them in the Model's status; the
    server checks them against the model's own metadata and refuses to start on a
    difference. None: take the model's metadata alone."""
    manifests: list[dict[str, Any]] = Field(default_factory=list)
    """FeatureManifest objects (metadata + spec) defining the inputs: their views tell
    the server the join keys, types and TTLs of the online store."""
    online_store: str
    """Online store URI (`sqlite:///...`, `bigtable://project/instance`)."""
    offline_store: str | None = None
    """Offline store URI (`duckdb:///...`, `bigquery://project/dataset`) the skew check
    recomputes sampled requests' features from; None: no skew check."""
    defaults: dict[str, str | None] = Field(default_factory=dict)
    """`entity.feature` -> value used when the store has none (text parsed by the feature's
    type; null: send a missing value to the model). Undeclared missing features: 422."""
    skew_sample_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    """Share of requests whose features the skew check recomputes offline (0: none)."""
    request_log: str | None = None
    """JSON Lines file receiving each request's keys, features and predictions."""
    labels: LabelsConfig | None = None
    """Delayed outcomes: `GET /analysis?metric=...` joins them to `request_log` (needs it)."""
    output: str = "score"
    """Name of the prediction output (V2 output, Seldon name)."""
    max_body_bytes: int = Field(MODEL_SERVER_MAX_BYTES, gt=0)
    """Larger request bodies (declared by Content-Length or streamed, binary tensor
    extension included) are refused with 413 in the protocol's error object before they
    are parsed (`lykeion.request_body`)."""
    request_log_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """The request log is rotated before an append would take it past this size
    (`serving/request_log.py`); the live metric sees only the rows still kept. The server
    holds parsed in memory the kept rows of its version from the last `since` asked for on
    (`/analysis`): of 4 full files of 64 MiB (1.56M rows), the last tenth peaked at 32 MiB,
    all of them at 254 MiB, and a first read took 20 s on a loaded 2-core machine
    (`benchmarks/request_log.py`), so the default is a quarter of that; size it with the
    pod's memory. Those figures are of one line per row (168 bytes a row); with a line per
    request (`request_log.line`) a row of a 50-row request takes 42 bytes, so the same size
    keeps four times the rows (a longer window of time) and a reader that holds them all
    3.3 times the memory (136 bytes a row held instead of 168)."""
    request_log_files: int = Field(default=4, ge=1, le=1000)
    """Files of the request log kept, the current one included (`P`, `P.1`, ...): at most
    about `request_log_files * request_log_max_bytes` bytes on disk."""
    request_log_queue: int = Field(default=1024, ge=1)
    """Answered requests waiting for the request log's writer thread at most; more are not
    logged (counted: `lykeion_request_log_dropped_total`), never waited for
    (`request_log.QueuedLog`)."""
    skew_queue: int = Field(default=256, ge=1)
    """Sampled requests waiting for the check at most; more are dropped (counted)."""
    skew_batch_seconds: float = Field(default=2.0, ge=0.0)
    """How long the check gathers samples before one offline query checks them all."""
    drift_window: int = Field(default=1000, ge=1)
    """Served values per feature the drift PSI is computed over (the latest ones)."""
    drift_min_served: int = Field(default=100, ge=1)
    """Values a window needs before its PSI is reported (else null)."""

    def wire(self) -> dict[str, Any]:
        """The configuration as the operator writes it, for `json.dumps`: the fields given
        when it was built only, in the order above (a default the server applies itself is
        not written, so a new default changes no rendered server)."""
        return self.model_dump(exclude_unset=True)
