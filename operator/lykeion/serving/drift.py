"""Drift of served features against the training set: per-feature statistics and the
population stability index (PSI) over a rolling window of served values.

What a statistic is (the training records it, `training/statistics.py`; the server bins
its served values by the same edges):

- a *missing* value is a null, or a float NaN (the model sees both as NaN);
- numeric features (`int64`, `float64`, `timestamp` as epoch seconds): interior bin edges
  are the lower empirical quantiles at k/10, k = 1..9, of the n non-missing values (the
  smallest value `x` with `10 * count(v <= x) >= k * n`, numpy's `inverted_cdf` without
  its float rounding), duplicates removed; bin `i` is `(edges[i-1], edges[i]]` with
  `-inf` and `+inf` outside, so a value's bin is the number of edges below it;
  `proportions` are the shares of non-missing values per bin;
- categorical features (`string`, `bool` as `"true"`/`"false"`): the `TOP` most frequent
  values (ties by value) with their shares of non-missing values; all other values share
  the bin `other`;
- `nullRate`: the share of missing values; `count`: the number of values. List features
  are not profiled (no PSI).

The window of a feature is its last `window` served values, each with the moment it was
served; `GET /analysis?since=T` computes the PSI over the window's values served at or
after `T` only (a rollout passes the start of the step it judges, so values served before
the step never count), and reports how many that was (`counted`), how full the window is
(`filled`) and when its oldest value was served (`start`). Fewer than `min_served` such
values: no PSI.

PSI over the categories (the bins, `other` where it applies, and one for missing values),
with `t` the training share and `s` the served share of a category, both raised to at
least `EPSILON` so an empty category counts without dividing by zero:
`PSI = sum((s - t) * ln(s / t))`. Common reading: below 0.1 stable, 0.1-0.25 moderate,
above 0.25 shifted.

Library choice: numpy alone (already in the serving image). `scipy.stats` has distances
(`wasserstein_distance`, `ks_2samp`, `entropy`) but no PSI and no binning of a stream
against stored edges; `evidently` and `alibi-detect` compute PSI/KS on whole frames and
pull pandas extensions, plotting, scikit-learn and (alibi-detect) deep-learning backends
into the image — hundreds of MB for a three-line formula evaluated on a counter array.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

DECILES = 10
"""Interior bin edges of a numeric feature: its quantiles at 1/10, ..., 9/10."""
TOP = 20
"""How many most frequent values a categorical feature keeps."""
EPSILON = 1e-4
"""Floor of a category's share in the PSI."""
ARTIFACT = "training_set/statistics.json"
"""Where a training's statistics are, relative to its MLflow run's artifacts."""

NUMERIC = ("int64", "float64", "timestamp")
CATEGORICAL = ("string", "bool")


class FeatureStatistics(BaseModel):
    """One feature of a training set, as the training recorded it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: str
    """The manifest type."""
    count: int
    """Values (rows of the training set)."""
    null_rate: float = Field(alias="nullRate")
    """Share of missing values (null or NaN), 0..1."""
    edges: list[float] | None = None
    """Numeric: interior bin edges, increasing."""
    proportions: list[float] | None = None
    """Numeric: share of non-missing values per bin (len(edges) + 1 of them)."""
    top: dict[str, float] | None = None
    """Categorical: value -> share of non-missing values."""
    other: float | None = None
    """Categorical: share of non-missing values not in `top`."""

    def categories(self) -> int:
        """Number of PSI categories, the missing one included."""
        if self.edges is not None:
            return len(self.edges) + 2
        return len(self.top or {}) + 2

    def expected(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Training share of each category (bins or top values, other, then missing)."""
        present = 1.0 - self.null_rate
        if self.proportions is not None:
            shares = [p * present for p in self.proportions]
        else:
            shares = [p * present for p in (self.top or {}).values()]
            shares.append((self.other or 0.0) * present)
        shares.append(self.null_rate)
        return np.asarray(shares, dtype="float64")


class TrainingStatistics(BaseModel):
    """The artifact `training_set/statistics.json` of a training run."""

    model_config = ConfigDict(extra="forbid")

    rows: int
    features: dict[str, FeatureStatistics]
    """`entity.feature` -> its statistics (list features are absent)."""


def numeric_value(value: Any) -> float | None:
    """A value as a float for binning, or None when missing (null, NaN)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    number = float(value)
    return None if math.isnan(number) else number


def categorical_value(value: Any) -> str | None:
    """A value as the text a categorical statistic keys it by, or None when null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def profile(type_: str, values: Sequence[Any]) -> FeatureStatistics | None:
    """The statistics of one feature's values (Python values of the manifest type; None
    for null). None for a list type, which is not profiled."""
    count = len(values)
    if type_ in NUMERIC:
        numbers = [n for n in map(numeric_value, values) if n is not None]
        nulls = count - len(numbers)
        array = np.sort(np.asarray(numbers, dtype="float64"))
        n = array.size
        # The lower empirical quantile at k/10 in integers (no float rounding of k*n/10):
        # the value at sorted position ceil(k*n/10) - 1.
        chosen = [array[(k * n + DECILES - 1) // DECILES - 1] for k in range(1, DECILES) if n]
        edges = np.unique(np.asarray(chosen, dtype="float64"))
        bins = np.searchsorted(edges, array, side="left")
        counts = np.bincount(bins, minlength=edges.size + 1)
        shares = counts / array.size if array.size else np.zeros(edges.size + 1)
        return FeatureStatistics(
            type=type_,
            count=count,
            null_rate=nulls / count if count else 0.0,
            edges=edges.tolist(),
            proportions=shares.tolist(),
        )
    if type_ in CATEGORICAL:
        texts = [t for t in map(categorical_value, values) if t is not None]
        frequency: dict[str, int] = {}
        for text in texts:
            frequency[text] = frequency.get(text, 0) + 1
        kept = sorted(frequency.items(), key=lambda item: (-item[1], item[0]))[:TOP]
        present = len(texts)
        top = {value: n / present for value, n in kept}
        return FeatureStatistics(
            type=type_,
            count=count,
            null_rate=(count - present) / count if count else 0.0,
            top=top,
            other=(present - sum(n for _, n in kept)) / present if present else 0.0,
        )
    return None


def psi(
    expected: Sequence[float] | np.ndarray[Any, Any],
    observed: Sequence[float] | np.ndarray[Any, Any],
) -> float:
    """Population stability index of two share vectors over the same categories (each
    summing to 1); shares below `EPSILON` count as `EPSILON`."""
    t = np.maximum(np.asarray(expected, dtype="float64"), EPSILON)
    s = np.maximum(np.asarray(observed, dtype="float64"), EPSILON)
    return float(np.sum((s - t) * np.log(s / t)))


class _Window:
    """The categories of the last `size` served values of one feature, with counts and
    the moment each was served.

    Plain lists and a local loop: this runs for every served value, where numpy's
    per-element indexing would cost ten times as much."""

    def __init__(self, statistics: FeatureStatistics, size: int) -> None:
        self.statistics = statistics
        self.size = size
        self.ring = [0] * size
        self.times = [0.0] * size
        """When each value in `ring` was served (epoch seconds)."""
        self.counts = [0] * statistics.categories()
        self.filled = 0
        self.position = 0
        self.missing = statistics.categories() - 1
        self.edges = statistics.edges
        self.timed = statistics.type == "timestamp"
        self.top = {value: i for i, value in enumerate(statistics.top or {})}

    def add(self, values: Sequence[Any], moment: float) -> None:
        ring, counts, size, times = self.ring, self.counts, self.size, self.times
        position, filled, missing, edges = self.position, self.filled, self.missing, self.edges
        for value in values:
            if value is None:
                category = missing
            elif edges is not None:
                number = value.timestamp() if self.timed else value
                # NaN is the one value not equal to itself: missing, as in training.
                category = missing if number != number else bisect.bisect_left(edges, number)
            else:
                text = (
                    ("true" if value else "false")
                    if value is True or value is False
                    else str(value)
                )
                category = self.top.get(text, missing - 1)
            if filled == size:
                counts[ring[position]] -= 1
            else:
                filled += 1
            ring[position] = category
            times[position] = moment
            counts[category] += 1
            position = position + 1 if position + 1 < size else 0
        self.position, self.filled = position, filled

    def since(self, moment: float) -> tuple[list[int], int, float | None]:
        """(counts per category, values) of the window's values served at or after
        `moment`, and when the oldest value in the window was served (None: empty)."""
        filled, size = self.filled, self.size
        # Oldest first: ring positions from `position` on when full, from 0 while filling.
        start = self.position if filled == size else 0
        order = [(start + i) % size for i in range(filled)]
        counts = [0] * len(self.counts)
        taken = 0
        for index in order:
            if self.times[index] >= moment:
                counts[self.ring[index]] += 1
                taken += 1
        return counts, taken, (self.times[order[0]] if order else None)


class DriftMonitor:
    """PSI per feature between the training set and the last `window` served values.

    `observe` is called on the request path: per value one `bisect` (numeric) or one dict
    lookup (categorical) and two counter updates under a lock, no allocation."""

    def __init__(
        self,
        features: Mapping[str, str],
        statistics: TrainingStatistics | None,
        window: int = 1000,
        min_served: int = 100,
    ) -> None:
        """`features`: model column -> `entity.feature` of each served input; a feature
        without statistics (none recorded, a list type) has PSI None."""
        if window < 1 or min_served < 1:
            raise ValueError("drift window and minimum must be positive")
        self.refs = dict(features)
        self.size = window
        self.min_served = min(min_served, window)
        self.served = dict.fromkeys(self.refs.values(), 0)
        found = statistics.features if statistics is not None else {}
        self._windows = {
            column: _Window(found[ref], window) for column, ref in self.refs.items() if ref in found
        }
        self._lock = threading.Lock()

    def observe(self, columns: Mapping[str, Sequence[Any]], moment: float | None = None) -> None:
        """Add one request's served values (model column -> one value per row), served at
        `moment` (epoch seconds; None: now)."""
        moment = time.time() if moment is None else moment
        with self._lock:
            for column, values in columns.items():
                ref = self.refs.get(column)
                if ref is None:
                    continue
                self.served[ref] += len(values)
                window = self._windows.get(column)
                if window is not None:
                    window.add(values, moment)

    @property
    def window(self) -> dict[str, int]:
        """The window's size and the values it needs for a PSI (`GET /analysis`)."""
        return {"size": self.size, "minServed": self.min_served}

    def values(
        self, since: datetime | None = None
    ) -> Iterator[tuple[str, float | None, int, dict[str, Any]]]:
        """(`entity.feature`, PSI or None, values served since start, the window) per
        feature. The PSI is over the window's values served at or after `since` (all of
        them without): None without statistics or with fewer than `min_served` such values.
        The window: `filled` values in it, `counted` of them at or after `since`, `start`
        when its oldest was served (RFC 3339; absent while empty)."""
        with self._lock:
            moment = since.timestamp() if since is not None else -math.inf
            snapshot = {column: w.since(moment) for column, w in self._windows.items()}
            filled = {column: w.filled for column, w in self._windows.items()}
            served = dict(self.served)
        for column, ref in self.refs.items():
            value: float | None = None
            window: dict[str, Any] = {}
            if column in snapshot:
                counts, counted, oldest = snapshot[column]
                window = {"filled": filled[column], "counted": counted}
                if oldest is not None:
                    window["start"] = (
                        datetime.fromtimestamp(oldest, UTC).isoformat().replace("+00:00", "Z")
                    )
                if counted >= self.min_served:
                    shares = np.asarray(counts, dtype="float64") / counted
                    value = psi(self._windows[column].statistics.expected(), shares)
            yield ref, value, served[ref], window

    def analysis(self, since: datetime | None = None) -> dict[str, dict[str, Any]]:
        """The `drift.features` object of `GET /analysis` (see `values`)."""
        return {
            ref: {"psi": value, "served": n, "window": window}
            for ref, value, n, window in self.values(since)
        }


def load(tracking_uri: str | None, run_id: str) -> TrainingStatistics | None:
    """The statistics a training run recorded; None when it has none (a model trained
    before they were recorded, or elsewhere). Raises ValueError for an unreadable file."""
    import tempfile

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="lykeion-statistics-") as folder:
        try:
            path = client.download_artifacts(run_id, ARTIFACT, folder)
        except (MlflowException, OSError):
            return None
        with open(path, "rb") as source:
            return TrainingStatistics.model_validate_json(source.read())
