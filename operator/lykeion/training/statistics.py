"""Per-feature statistics of a training set, logged with it as an MLflow artifact.

The model server loads them at start (`serving/drift.py`, which defines what a statistic
is) and reports the population stability index of its served values against them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lykeion.serving.drift import ARTIFACT, TrainingStatistics, profile

if TYPE_CHECKING:
    import pyarrow as pa
    from mlflow.tracking import MlflowClient


def training_statistics(
    table: pa.Table, features: Mapping[str, tuple[str, str]]
) -> TrainingStatistics:
    """The statistics of `table`'s feature columns. `features`: `entity.feature` ->
    (column, manifest type); list features are left out. Raises KeyError for a column the
    table lacks."""
    found = {}
    for ref, (column, type_) in features.items():
        statistics = profile(type_, table.column(column).to_pylist())
        if statistics is not None:
            found[ref] = statistics
    return TrainingStatistics(rows=table.num_rows, features=found)


def log_statistics(client: MlflowClient, run_id: str, statistics: TrainingStatistics) -> None:
    """Write `statistics` as the run's artifact `training_set/statistics.json`."""
    folder, name = ARTIFACT.rsplit("/", 1)
    with tempfile.TemporaryDirectory(prefix="lykeion-statistics-") as tmp:
        path = Path(tmp) / name
        path.write_text(statistics.model_dump_json(by_alias=True, indent=1))
        client.log_artifact(run_id, str(path), folder)
