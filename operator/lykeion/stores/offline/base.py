"""The offline store contract. Implementations: `duckdb.py` (embedded), `bigquery.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from lykeion.features.reference import ResolvedFeature as ResolvedFeature
from lykeion.features.view import FeatureView

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class LabelSpec:
    """How to read a labels table: entity key column, event-time column, target column."""

    join_key: str
    timestamp_column: str
    target: str


@dataclass(frozen=True)
class TrainingSet:
    table: pa.Table
    """Label columns (key, timestamp, target) then one column per feature, in the
    requested order; one row per label row, label order kept."""
    content_hash: str
    """sha256 of the table's content in a canonical form (column names, types, values)."""
    rows: int


class OfflineStore(Protocol):
    def write_history(self, view: FeatureView, table: pa.Table) -> int:
        """Insert history rows (columns: `entity_key`, `event_time`, then
        `view.history_columns`: each row-level feature and each aggregation's partial
        aggregates of the rows at that key and time).
        Idempotent on (entity_key, event_time): re-running a range writes each row once.
        Returns the number of rows in the table written."""
        ...

    def history(self, view: FeatureView) -> pa.Table:
        """All history rows of the view, ordered by (entity_key, event_time)."""
        ...

    def count_history(self, view: FeatureView, until: datetime) -> int:
        """The number of history rows of the view with event time at or before `until`
        (timezone-aware); 0 when the view has no table. Counted inside the store."""
        ...

    def drop(self, view: FeatureView) -> None:
        """Remove the view's table (of its generation); nothing when there is none."""
        ...

    def training_set(
        self, labels: pa.Table, spec: LabelSpec, features: Sequence[ResolvedFeature]
    ) -> TrainingSet:
        """Feature values at each label's time, computed inside the store. A row-level
        feature: the value of the entity's latest history row at or before the label's
        timestamp when not older than the view's TTL, else null. An aggregation: its
        window (t - w, t] at the label's time t over the history's partial aggregates
        (count 0 for an empty window; null for an entity with no row at or before t).
        Every label row is kept, in order."""
        ...

    def close(self) -> None: ...
