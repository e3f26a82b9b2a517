"""FeatureManifest: an entity's features, their source and their schedule."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from lykeion.api.common import (
    CRON,
    DURATION,
    IDENTIFIER,
    ApiModel,
    FeatureType,
    Status,
    cel,
    cel_rules,
)

Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][-a-z0-9_.]*$", max_length=63)]


class Entity(ApiModel):
    """The thing features describe (a rider, a store...) and its join key."""

    name: str = Field(pattern=IDENTIFIER, max_length=63)
    """Entity name, the first half of a feature reference `entity.feature`."""
    join_key: str = Field(pattern=IDENTIFIER, max_length=63)
    """Column that identifies the entity in sources, labels and requests, e.g. `rider_id`."""
    key_type: Literal["string", "int64"] = "string"
    """Type of the join key."""


class BigQuerySource(ApiModel):
    """Read from BigQuery: exactly one of `query` or `table`."""

    model_config = cel_rules(
        cel("has(self.query) != has(self.table)", "set exactly one of query or table")
    )

    query: str | None = Field(None, min_length=1, max_length=65536)
    """Standard SQL returning the join key, the timestamp column and the feature columns."""
    table: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_$-]+$", max_length=1024
    )
    """Fully qualified table `project.dataset.table`."""

    @model_validator(mode="after")
    def _one_of(self) -> BigQuerySource:
        if (self.query is None) == (self.table is None):
            raise ValueError("set exactly one of query or table")
        return self


class FileSource(ApiModel):
    """Read from a Parquet or CSV file (local path or object-store URI)."""

    path: str = Field(min_length=1, max_length=2048)
    """Path or URI, relative paths resolved against the platform's data directory."""
    format: Literal["parquet", "csv"] = "parquet"


class Source(ApiModel):
    """Where the raw rows come from: exactly one of `bigquery` or `file`."""

    model_config = cel_rules(
        cel("has(self.bigquery) != has(self.file)", "set exactly one of bigquery or file")
    )

    bigquery: BigQuerySource | None = None
    file: FileSource | None = None
    timestamp_column: str = Field(pattern=IDENTIFIER, max_length=63)
    """Event-time column; drives point-in-time joins and watermarks."""

    @model_validator(mode="after")
    def _one_of(self) -> Source:
        if (self.bigquery is None) == (self.file is None):
            raise ValueError("set exactly one of bigquery or file")
        return self


class Aggregation(ApiModel):
    """A per-entity aggregation over a trailing time window, valued at any time `t` (a
    label's time, a request's time) over the entity's valid source rows with event time
    in (t - window, t]; duplicates at one time all count; TTL does not apply."""

    function: Literal["count", "sum", "mean", "min", "max", "last"]
    """count: the column's non-null values (0 for an empty window); sum, mean, min, max:
    over the non-null values, null when there is none (min and max are NaN when a value
    is NaN); last: the value of the newest row whose value is not null (of several at
    that time, the greatest; NaN above all). sum and mean read the column as float64;
    the DuckDB offline store (training sets, online steps) adds the window's values
    exactly and rounds once (the value of Python's math.fsum), whatever the order, when
    each is a finite multiple of 2^-64 below 2^42 in magnitude and so is the total, and
    otherwise adds them in event-time order; values at one key and time are added first.
    BigQuery adds in its windowed SUM's order."""
    column: str = Field(pattern=IDENTIFIER, max_length=63)
    window: str = Field(pattern=DURATION, max_length=16)
    """Trailing window such as `30d` or `12h`: open at its start, closed at `t` (at
    microsecond precision [t - window + 1us, t]). The value decays as rows leave it, also
    long after the entity's last event."""


class Feature(ApiModel):
    """One feature: a name, a type, and exactly one way to compute it."""

    model_config = cel_rules(
        cel(
            "[has(self.column), has(self.expression), has(self.aggregation)]"
            ".filter(x, x).size() == 1",
            "set exactly one of column, expression or aggregation",
        )
    )

    name: str = Field(pattern=IDENTIFIER, max_length=63)
    type: FeatureType
    """The value's type; a source row whose column or expression does not cast to it is
    invalid: counted in the run's badRows and excluded from every feature."""
    column: str | None = Field(None, pattern=IDENTIFIER, max_length=63)
    """Source column copied as is: at time `t` the value of the entity's latest valid row
    at or before `t`, null when that row is older than the TTL. Of several valid rows at
    one time, one gives every row-level value: the first by the row-level features in
    order, ascending, NaN after numbers, null last."""
    expression: str | None = Field(None, min_length=1, max_length=4096)
    """SQL expression over the source row's columns; valued at `t` like `column`."""
    aggregation: Aggregation | None = None
    description: str | None = Field(None, max_length=1024)

    @model_validator(mode="after")
    def _one_way(self) -> Feature:
        ways = [self.column, self.expression, self.aggregation]
        if sum(way is not None for way in ways) != 1:
            raise ValueError("set exactly one of column, expression or aggregation")
        return self


class FeatureManifestSpec(ApiModel):
    """Features of one entity, computed from one source."""

    entity: Entity
    source: Source
    features: list[Feature] = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    schedule: str | None = Field(None, pattern=CRON, max_length=128)
    """Cron schedule for incremental runs; none means backfill once."""
    ttl: str = Field("30d", pattern=DURATION, max_length=16)
    """How long a row-level value stays valid for serving and point-in-time joins: at `t`
    it is null when the entity's latest valid row at or before `t` is older than
    `t - ttl`. Aggregations do not expire (their window decides)."""
    allowed_lateness: str = Field("1h", pattern=DURATION, max_length=16)
    """How far behind the watermark source rows may arrive and still be picked up: each
    incremental run re-reads event times after `watermark - allowedLateness` (plus the
    longest window, for full windows) and rewrites those keyed rows idempotently. Default
    `1h`; `0s` re-reads nothing. Rows that arrive later are not dropped silently: the run
    counts the source rows at or before that boundary the stores do not hold
    (`status.lateRows`) and the `LateData` condition asks for a backfill."""
    backfill_requests: int = Field(0, ge=0)
    """Backfill-request counter (`lykectl features backfill`): each increment is a new spec
    generation, whose backfill builds new tables in both stores from the whole source (rows
    deleted or changed in the source are gone, so are entities no longer in it); readers
    keep the previous generation until the new one is complete, then switch at once."""
    description: str = Field(min_length=1, max_length=2048)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    owner: str = Field(min_length=1, max_length=254)
    """Team or person accountable for these features."""

    @model_validator(mode="after")
    def _names_unique(self) -> FeatureManifestSpec:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("features must not repeat a name")
        return self

    def defines(self) -> dict[str, str]:
        """`entity.feature` -> type for every feature of this manifest."""
        return {f"{self.entity.name}.{f.name}": f.type for f in self.features}


class RunRecord(ApiModel):
    """One materialization run: its event-time range and what it did."""

    name: str
    """Deterministic run name (`<manifest>-g<generation>-r<n>`, shortened with a hash past
    63 characters); the executor finds the run again by it and the object's UID."""
    generation: int
    start: str | None = None
    """Exclusive start of the event-time range (none: from the beginning)."""
    end: str
    """Inclusive end of the event-time range; the watermark after success."""
    result: Literal["Running", "Succeeded", "Failed"] = "Running"
    started_at: str
    finished_at: str | None = None
    rows_read: int | None = None
    """Source rows read in the run's range."""
    rows_written: int | None = None
    """History rows written: one per entity key and event time."""
    bad_rows: int | None = None
    """Invalid source rows (null key or time, a value that does not cast): never stored."""
    duplicate_rows: int | None = None
    """Valid source rows at a key and time another valid row has: all count in
    aggregations, one gives the row-level values."""
    online_rows: int | None = None
    late_rows: int | None = None
    """Source rows at or before `start` (the re-read boundary) the stores do not hold."""
    drop_generations: list[int] = Field(default_factory=list)
    """Store generations whose tables this run dropped before writing (backfills only)."""
    duration_seconds: float | None = None
    message: str | None = None


class FeatureManifestStatus(Status):
    """Observed state of a FeatureManifest."""

    features: list[str] = Field(default_factory=list)
    """Registered features as `entity.feature:type`."""
    feature_count: int | None = None
    watermark: str | None = None
    """Event time up to which both stores are complete (RFC 3339); moves only on success."""
    rows_written: int | None = None
    """History rows written by the last successful run."""
    last_run_time: str | None = None
    """When the last successful run finished."""
    newest_event_time: str | None = None
    """The newest valid source event materialized (RFC 3339): what freshness is about."""
    materialized_generation: int | None = None
    """The generation in effect: the spec generation whose backfill last completed. Readers
    (Feature API, model servers, trainings) read this generation's tables, so a new
    generation becomes visible to all of them at once, and only once complete."""
    stored_generations: list[int] = Field(default_factory=list)
    """Generations whose tables may still exist (the one in effect, the previous one until
    the next backfill starts, a backfill in progress)."""
    late_rows: int | None = None
    """Source rows at or before `lateRowsBoundary` that the stores do not hold: they
    arrived later than `allowedLateness`; a backfill brings them in."""
    late_rows_boundary: str | None = None
    """The re-read boundary of the run that counted `lateRows` (RFC 3339)."""
    run_count: int = 0
    current_run: RunRecord | None = None
    runs: list[RunRecord] = Field(default_factory=list, max_length=10)
    """The latest runs, newest last."""
