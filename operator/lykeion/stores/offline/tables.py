"""Arrow shapes shared by the offline stores, so that both return the same tables.

Both stores conform what they are given (history rows, labels) and what they return
(history, training sets) to the schemas built here. That is what makes a training set's
content hash the same whichever store built it: same column names, same Arrow types,
same values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lykeion.features.hashing import table_hash
from lykeion.features.view import ARROW_TYPES, EVENT_TIME, KEY, FeatureDef, FeatureView, is_list
from lykeion.features.view import element_type as element_of
from lykeion.stores.offline.base import LabelSpec, ResolvedFeature, TrainingSet

TIMESTAMP = pa.timestamp("us", tz="UTC")

ROW = "__row"
"""Label position, carried through the stores' SQL to give the label order back."""
POSITION = "__pos"
"""Position of an incoming history row: among duplicates of (key, time) the last one wins."""


def arrow_type(type_: str) -> pa.DataType:
    """The Arrow type of a manifest type; lists use the canonical `item` child name."""
    if is_list(type_):
        return pa.list_(arrow_type(element_of(type_)))
    if type_ == "timestamp":
        return TIMESTAMP
    return pa.type_for_alias(ARROW_TYPES[type_])


def key_type(view: FeatureView) -> pa.DataType:
    return arrow_type(view.key_type)


def history_schema(view: FeatureView) -> pa.Schema:
    return pa.schema(
        [
            pa.field(KEY, key_type(view)),
            pa.field(EVENT_TIME, TIMESTAMP),
            *(pa.field(name, arrow_type(type_)) for name, type_ in view.history_columns),
        ]
    )


def empty_history(view: FeatureView) -> pa.Table:
    return history_schema(view).empty_table()


def conform_history(view: FeatureView, table: pa.Table) -> pa.Table:
    """Incoming history rows in the view's column order and types, checked.

    Every history column must be present (`FeatureView.history_columns`: row-level
    features, then the aggregations' partial aggregates): a missing column would
    overwrite stored values with nulls on a re-write. Null list elements are refused
    because BigQuery arrays cannot hold them, and both stores must accept the same data.
    """
    expected = history_schema(view)
    missing = [name for name in expected.names if name not in table.column_names]
    extra = [name for name in table.column_names if name not in expected.names]
    if missing or extra:
        raise ValueError(
            f"history rows for {view.table} must have columns {expected.names}; "
            f"missing {missing}, unexpected {extra}"
        )
    conformed = table.select(expected.names).cast(expected)
    for name in (KEY, EVENT_TIME):
        if conformed.column(name).null_count:
            raise ValueError(f"history rows for {view.table}: {name} must not be null")
    for name, type_ in view.history_columns:
        column = conformed.column(name)
        if is_list(type_) and pc.list_flatten(column).null_count:
            raise ValueError(
                f"history rows for {view.table}: list feature {name} has null "
                "elements (a list may be null, its elements may not)"
            )
    return conformed


def micros(delta: timedelta) -> int:
    """Whole microseconds, exactly (a TTL goes into SQL as an integer interval)."""
    return delta // timedelta(microseconds=1)


def with_positions(table: pa.Table, name: str) -> pa.Table:
    return table.append_column(name, pa.array(np.arange(table.num_rows, dtype=np.int64)))


@dataclass(frozen=True)
class ViewJoin:
    """One history table joined to the labels."""

    view: FeatureView
    key_column: str
    """Label column that holds this view's entity key."""
    features: tuple[FeatureDef, ...]
    """The view's requested features, each once."""


@dataclass(frozen=True)
class Output:
    join: int
    """Index into `TrainingPlan.joins`."""
    feature: FeatureDef
    column: str


@dataclass(frozen=True)
class TrainingPlan:
    """What a store needs to build a training set, independent of its SQL dialect."""

    labels: pa.Table
    """Normalized label columns (those in `label_columns`, then other entity keys), and
    `ROW`: the label position."""
    spec: LabelSpec
    label_columns: tuple[str, str, str]
    """Join key, timestamp, target: the first columns of the result."""
    joins: tuple[ViewJoin, ...]
    outputs: tuple[Output, ...]
    """Feature columns of the result, in requested order."""
    schema: pa.Schema
    """The result's schema."""


def _label_type(labels: pa.Table, column: str) -> pa.DataType:
    """Target and key types are normalized to the five manifest scalar types."""
    type_ = labels.schema.field(column).type
    if pa.types.is_integer(type_):
        return pa.int64()
    if pa.types.is_floating(type_):
        return pa.float64()
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return pa.string()
    if pa.types.is_boolean(type_):
        return pa.bool_()
    if pa.types.is_timestamp(type_):
        return TIMESTAMP
    raise ValueError(f"label column {column} has unsupported type {type_}")


def plan_training_set(
    labels: pa.Table, spec: LabelSpec, features: Sequence[ResolvedFeature]
) -> TrainingPlan:
    """Check the request and normalize the labels.

    A view's entity key is read from the label column named like the view's join key
    when the labels have one (so one label row can join several entities), else from
    `spec.join_key`. Naive label timestamps are taken as UTC.
    """
    label_columns = (spec.join_key, spec.timestamp_column, spec.target)
    for column in label_columns:
        if column not in labels.column_names:
            raise ValueError(f"labels have no column {column!r}: {labels.column_names}")
    if len(set(label_columns)) != len(label_columns):
        raise ValueError(f"join key, timestamp and target must differ: {label_columns}")
    if not pa.types.is_timestamp(labels.schema.field(spec.timestamp_column).type):
        raise ValueError(f"label column {spec.timestamp_column} must be a timestamp")

    joins: dict[str, ViewJoin] = {}
    outputs: list[Output] = []
    key_types: dict[str, pa.DataType] = {}
    for ref in features:
        feature = ref.view.feature(ref.feature)
        join = joins.get(ref.view.table)
        if join is None:
            own_key = ref.view.join_key in labels.column_names
            join = ViewJoin(ref.view, ref.view.join_key if own_key else spec.join_key, ())
            wanted = key_type(ref.view)
            if key_types.setdefault(join.key_column, wanted) != wanted:
                raise ValueError(
                    f"label column {join.key_column} keys views of different key types"
                )
            actual = _label_type(labels, join.key_column)
            if actual != wanted:
                raise ValueError(
                    f"label column {join.key_column} is {actual}, "
                    f"but {ref.view.table} has {ref.view.key_type} keys"
                )
        if feature not in join.features:
            join = ViewJoin(join.view, join.key_column, (*join.features, feature))
        joins[ref.view.table] = join
        outputs.append(Output(list(joins).index(ref.view.table), feature, ref.column))

    names = [*label_columns, *(o.column for o in outputs)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"training set would repeat columns {duplicates}")

    kept = list(dict.fromkeys([*label_columns, *key_types]))
    label_schema = pa.schema(
        [
            pa.field(c, TIMESTAMP if c == spec.timestamp_column else _label_type(labels, c))
            for c in kept
        ]
    )
    normalized = with_positions(labels.select(kept).cast(label_schema), ROW)
    schema = pa.schema(
        [
            *(label_schema.field(c) for c in label_columns),
            *(pa.field(o.column, arrow_type(o.feature.type)) for o in outputs),
        ]
    )
    return TrainingPlan(
        labels=normalized,
        spec=spec,
        label_columns=label_columns,
        joins=tuple(joins.values()),
        outputs=tuple(outputs),
        schema=schema,
    )


def finish(plan: TrainingPlan, table: pa.Table) -> TrainingSet:
    """The store's result in the plan's schema, hashed."""
    result = table.select(plan.schema.names).cast(plan.schema)
    if result.num_rows != plan.labels.num_rows:
        raise RuntimeError(
            f"training set has {result.num_rows} rows for {plan.labels.num_rows} labels"
        )
    return TrainingSet(result, table_hash(result), result.num_rows)
