"""The evaluation gate: one named metric on the held-out split, compared to a threshold."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn import metrics

# Metrics on scores (probabilities) vs on decided labels (score >= 0.5) vs on regressions.
_SCORE: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "roc_auc": metrics.roc_auc_score,
    "log_loss": metrics.log_loss,
    "average_precision": metrics.average_precision_score,
}
_LABEL: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": metrics.accuracy_score,
    "f1": metrics.f1_score,
    "precision": metrics.precision_score,
    "recall": metrics.recall_score,
}
_REGRESSION: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "rmse": lambda y, p: float(np.sqrt(metrics.mean_squared_error(y, p))),
    "mae": metrics.mean_absolute_error,
    "r2": metrics.r2_score,
}
METRICS = sorted({*_SCORE, *_LABEL, *_REGRESSION})


def score(metric: str, truth: np.ndarray, predictions: np.ndarray) -> float:
    """`metric` of `predictions` (a score per row, or the last column of a 2-D output)."""
    predictions = np.asarray(predictions, dtype="float64")
    if predictions.ndim == 2:
        predictions = predictions[:, -1]
    if metric in _SCORE:
        return float(_SCORE[metric](truth, predictions))
    if metric in _LABEL:
        return float(_LABEL[metric](truth, (predictions >= 0.5).astype(int)))
    if metric in _REGRESSION:
        return float(_REGRESSION[metric](truth, predictions))
    raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")


def passes(value: float, threshold: float, higher_is_better: bool) -> bool:
    return value >= threshold if higher_is_better else value <= threshold
