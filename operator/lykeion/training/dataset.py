"""The training set of a Model: labels joined point-in-time with its input features."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from lykeion.evaluation.labels import DatasetError as DatasetError  # this module's errors too
from lykeion.features.reference import ResolvedFeature, resolve
from lykeion.features.view import FeatureView
from lykeion.stores.offline.base import LabelSpec, OfflineStore, TrainingSet


def feature_refs(
    input_features: Sequence[str], views: Sequence[FeatureView]
) -> list[ResolvedFeature]:
    """`entity.feature[:type]` references, in model input order, resolved to their views
    (`features.reference.resolve`); raises DatasetError naming the unresolved one."""
    try:
        return resolve(input_features, views)
    except ValueError as error:  # UnresolvedFeature, InvalidFeatureReference
        raise DatasetError(str(error)) from error


def build(
    labels: pa.Table, spec: LabelSpec, refs: Sequence[ResolvedFeature], offline: OfflineStore
) -> TrainingSet:
    if spec.join_key not in labels.column_names:
        raise DatasetError(f"labels have no column {spec.join_key!r} (the entity's join key)")
    for column in (spec.timestamp_column, spec.target):
        if column not in labels.column_names:
            raise DatasetError(f"labels have no column {column!r}")
    return offline.training_set(labels, spec, refs)


def split_by_time(
    table: pa.Table, timestamp_column: str, test_fraction: float = 0.2
) -> tuple[pa.Table, pa.Table]:
    """Train on the earlier labels, evaluate on the last `test_fraction` of label times."""
    order = pc.sort_indices(table, sort_keys=[(timestamp_column, "ascending")])
    ordered = table.take(order)
    cut = round(ordered.num_rows * (1 - test_fraction))
    return ordered.slice(0, cut), ordered.slice(cut)
