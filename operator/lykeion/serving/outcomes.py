"""Delayed outcomes joined to the requests a model server logged: the evaluation gate's
metric on live traffic (`spec.rollout.labels`).

The request log (`ServerConfig.request_log`, JSON Lines written by `app.ModelServer`,
rotated by size and read incrementally: `request_log.py`) holds one line per answered
request: `time` (epoch seconds when the answer was made), `version`, and per row `keys`
(the row's entity keys, typed as declared), `features` and `prediction`; each row is one
logged request below (`request_log.Logged`).

The labels are a table like a Model's training labels (`evaluation/labels.py` reads it, keys
typed as the manifests declare them): the entity key column(s), a label time and a target.

The join, per version, over a window `[since, until]` of request times:

- a logged request `r` (key `k`, time `t`) takes the label `l` with key `k` whose time
  `u` is the earliest with `t <= u <= t + horizon`; of labels at the same earliest time,
  the first in the source's row order. One label per request; one label may answer
  several requests of the same key (each takes the first outcome after it).
- label rows with a null key, time or target are not labels; requests with no label in
  their horizon (none arrived yet, or none exists) are left out, and counted.
- times are compared in whole microseconds (the log's float seconds rounded).

The metric is then the gate's (`evaluation.scoring.score`) over the joined pairs:
predictions as the model returned them (one score per row, a list of class scores per
row, or labels), targets as the labels source has them.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lykeion.serving.request_log import Key, Logged, LogReader, micros

if TYPE_CHECKING:
    import pyarrow as pa

    from lykeion.api.model import LabelsSource


@dataclass(frozen=True)
class Label:
    """One delayed outcome."""

    time: int
    """Microseconds since the epoch."""
    key: Key
    target: Any


@dataclass(frozen=True)
class LiveMetric:
    """The gate's metric of one version over a window (`GET /analysis` → `labels`): the one
    type the server reports and the operator's `liveMetric` checks judge
    (`rollouts/analysis.py`)."""

    metric: str
    value: float | None
    """None when it cannot be computed (no labelled request, one class only, ...)."""
    labelled: int
    """Requests in the window with a label."""
    requests: int
    """Requests logged in the window."""
    message: str = ""

    def wire(self) -> dict[str, Any]:
        """The `labels` object of `GET /analysis`."""
        return {
            "metric": self.metric,
            "value": self.value,
            "labelled": self.labelled,
            "requests": self.requests,
            "message": self.message,
        }

    @classmethod
    def from_wire(cls, found: Any) -> LiveMetric | None:
        """The inverse of `wire` (what rollouts read from a server); None for anything not
        shaped as `wire` writes it. A value that is not a finite number is no value; the
        message is cut to 256 characters."""
        if not isinstance(found, dict):
            return None
        metric, value = found.get("metric"), found.get("value")
        labelled, requests = found.get("labelled"), found.get("requests")
        if not (
            isinstance(metric, str)
            and isinstance(labelled, int)
            and not isinstance(labelled, bool)
            and isinstance(requests, int)
            and not isinstance(requests, bool)
        ):
            return None
        number = (
            float(value)
            if isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            else None
        )
        return cls(metric, number, labelled, requests, str(found.get("message") or "")[:256])


def read_log(
    path: Path, version: str, key_names: Sequence[str], since: int | None, until: int | None
) -> list[Logged]:
    """The rows of `version` logged at `path` alone (no rotated files) with
    `since <= time <= until` (microseconds; None: unbounded), in log order, read whole
    (`request_log.LogReader` reads a rotated log incrementally). A missing file is no rows;
    a line that is not a logged row (a torn last line of a crashed writer) is skipped."""
    return LogReader(path, 1, version, key_names, bounded=True).rows(since, until)


def labels_of(table: pa.Table, key_names: Sequence[str], time: str, target: str) -> list[Label]:
    """Labels from a table read by `evaluation.labels.read` (time as UTC timestamps), in row
    order; rows with a null key, time or target are dropped. Raises ValueError naming a
    missing column."""
    missing = [c for c in [*key_names, time, target] if c not in table.column_names]
    if missing:
        raise ValueError(f"labels have no column(s) {', '.join(missing)}")
    keys = [table[name].to_pylist() for name in key_names]
    stamps = table[time].cast("int64").to_pylist()  # timestamp[us] -> microseconds
    targets = table[target].to_pylist()
    found = []
    for index, (moment, value) in enumerate(zip(stamps, targets, strict=True)):
        key = tuple(column[index] for column in keys)
        if moment is None or value is None or any(k is None for k in key):
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        found.append(Label(moment, key, value))
    return found


def join(
    requests: Iterable[Logged], labels: Iterable[Label], horizon: int
) -> tuple[list[tuple[Any, Any]], int]:
    """(prediction, target) per labelled request, in request order, and the number of
    requests; the join is the module docstring's (`horizon` in microseconds)."""
    by_key: dict[Key, list[tuple[int, int, Any]]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_key[label.key].append((label.time, index, label.target))
    for candidates in by_key.values():
        candidates.sort(key=lambda item: (item[0], item[1]))
    times = {key: [t for t, _, _ in candidates] for key, candidates in by_key.items()}
    pairs = []
    count = 0
    for request in requests:
        count += 1
        found = by_key.get(request.key)
        if not found:
            continue
        at = bisect.bisect_left(times[request.key], request.time)
        if at < len(found) and found[at][0] <= request.time + horizon:
            pairs.append((request.prediction, found[at][2]))
    return pairs, count


def metric_of(
    metric: str,
    pairs: Sequence[tuple[Any, Any]],
    requests: int,
    classes: Sequence[Any] | None = None,
) -> LiveMetric:
    """The gate's `metric` over joined pairs (`evaluation.scoring.score`: a float output is
    a score, one per row or one per class; `classes` the class order of per-class scores,
    None: the targets' sorted distinct values). A metric the pairs cannot give (none, one
    class for a ranking metric, a refused output) has value None and says why."""
    import numpy as np

    from lykeion.evaluation.scoring import score

    if not pairs:
        return LiveMetric(metric, None, 0, requests, "no labelled request")
    truth = np.asarray([t for _, t in pairs])
    outputs = np.asarray([p for p, _ in pairs])
    if metric in ("roc_auc", "average_precision") and len({str(t) for t in truth}) < 2:
        return LiveMetric(
            metric, None, len(pairs), requests, f"{metric} needs both classes among the labels"
        )
    try:
        with warnings.catch_warnings():
            # Undefined cases (no positive prediction for precision, ...) come back as
            # values or NaN; a NaN is reported as no value below.
            warnings.simplefilter("ignore")
            value = score(metric, truth, outputs, None, classes)
    except ValueError as error:  # EvaluationError, and scikit-learn's one-class refusals
        return LiveMetric(metric, None, len(pairs), requests, str(error)[:256])
    if not math.isfinite(value):
        return LiveMetric(metric, None, len(pairs), requests, f"{metric} is {value}")
    return LiveMetric(metric, value, len(pairs), requests)


@dataclass(frozen=True)
class LiveLabels:
    """What a server needs to judge itself on delayed outcomes. Keep one per server: its
    reader remembers how far it read each file of the request log (`request_log.py`)."""

    source: LabelsSource
    horizon_seconds: float
    data_root: Path
    offline_store: str
    log: Path
    version: str
    key_types: Mapping[str, str]
    """Join key -> declared key type, in the order of the log's keys."""
    log_files: int = 1
    """Files of the rotated request log (`ServerConfig.request_log_files`)."""
    reader: LogReader = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Bounded: a rollout asks from its step's start; rows before it are not kept.
        reader = LogReader(
            self.log, self.log_files, self.version, list(self.key_types), bounded=True
        )
        object.__setattr__(self, "reader", reader)

    def measure(
        self,
        metric: str,
        since: datetime | None,
        until: datetime,
        classes: Sequence[Any] | None = None,
    ) -> LiveMetric:
        """`metric` of this version's requests logged in `[since, until]` against the labels
        as they are now. An unreadable labels source is no data with its reason."""
        from lykeion.evaluation import labels as reader
        from lykeion.evaluation.labels import DatasetError

        names = list(self.key_types)
        requests = self.reader.rows(
            micros(since.timestamp()) if since else None, micros(until.timestamp())
        )
        try:
            table = reader.read(self.source, self.data_root, self.offline_store, self.key_types)
            labels = labels_of(table, names, self.source.timestamp_column, self.source.target)
        except (DatasetError, ValueError) as error:
            return LiveMetric(metric, None, 0, len(requests), f"labels: {error}"[:256])
        pairs, count = join(requests, labels, micros(self.horizon_seconds))
        return metric_of(metric, pairs, count, classes)
