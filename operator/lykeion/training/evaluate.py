"""The evaluation gate: one named metric on the held-out split, compared to a threshold.

The logged model is called as the model server calls it (`serving.model.LoadedModel`):
the held-out rows' feature columns in their declared types, as the training set had them
(`serving/frames.py`) — never cast to float first, so a model with string, bool,
timestamp or list inputs is judged on what it was trained with.

What the metric reads depends on what the model outputs, as its MLflow signature says:
an output of a floating-point type is a *score*, of an integer, boolean or string type a
*label* (a model logged without an output schema: the output's own dtype decides). A
score output with one column per class (n x k, k >= 2) holds class *probabilities*,
column j for class `classes[j]`; a score output with one value per row (n, or n x 1) is
the probability of the positive class (the greater of two classes, scikit-learn's
`classes_[1]`) for a classifier, the predicted value for a regressor. `classes` come from
the model (`classes_` of a scikit-learn model, a pipeline's included; the column names
of a DataFrame output), else from the sorted distinct targets of the training set.

- `roc_auc`, `average_precision`: need scores. Two classes: of the positive class's
  probability (its column, or the one score per row). More classes: one-vs-rest per
  class, macro average; one score per row is refused. Labels are refused: these
  metrics rank scores.
- `log_loss`: needs scores: of the class probabilities (one score per row: two classes
  only, as p(positive)). Labels are refused.
- `accuracy`: labels as given; scores decide the class: of two, `positive if
  p(positive) >= 0.5 else negative` (either shape); of more, the most probable one (of equals,
  the first in sorted class order).
- `f1`, `precision`, `recall`: on labels decided as for accuracy; two classes: of the
  positive class, more: macro average over the classes (0 where undefined).
- `rmse`, `mae`, `r2`: on one numeric value per row (a score or a numeric label); an
  output of several columns is refused.

A refused combination, an output of the wrong length, or targets outside `classes`
raise `EvaluationError` (a ValueError) naming the reason; training reports it as
`EvaluationFailed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn import metrics

if TYPE_CHECKING:
    import pyarrow as pa

    from lykeion.serving.model import LoadedModel

Kind = Literal["scores", "labels"]

_SCORE = ("roc_auc", "average_precision", "log_loss")
_LABEL: dict[str, Callable[..., float]] = {
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


class EvaluationError(ValueError):
    """The gate's metric cannot be computed on this model's output (see the module
    docstring for which combinations are refused)."""


def kind_of_dtype(dtype: Any) -> Kind:
    """`scores` for a floating-point numpy dtype, `labels` for anything else (integer,
    boolean, string, object)."""
    return "scores" if np.dtype(dtype).kind == "f" else "labels"


def signature_kind(output_schema: Any) -> Kind | None:
    """What an MLflow output schema says the model outputs, or None when it has none
    (or types this module cannot map, e.g. arrays or objects)."""
    if output_schema is None:
        return None
    kinds = set()
    for spec in output_schema.inputs:
        type_ = spec.type
        to_numpy = getattr(type_, "to_numpy", None)
        try:
            dtype = to_numpy() if callable(to_numpy) else np.dtype(type_)
        except (TypeError, ValueError, NotImplementedError):
            return None
        kinds.add(kind_of_dtype(dtype))
    if len(kinds) != 1:
        return None
    kind: Kind = kinds.pop()
    return kind


def _matrix(outputs: Any) -> tuple[np.ndarray, list[Any] | None]:
    """The output as a 1-D or 2-D array, and its column names when it was a DataFrame."""
    names = None
    columns = getattr(outputs, "columns", None)
    if columns is not None:
        names = list(columns)
    to_numpy = getattr(outputs, "to_numpy", None)
    array = np.asarray(to_numpy() if callable(to_numpy) else outputs)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim not in (1, 2):
        raise EvaluationError(f"the model outputs an array of shape {array.shape}")
    return array, names


def _probabilities(
    array: np.ndarray, classes: list[Any], metric: str
) -> tuple[np.ndarray, list[Any]]:
    """n x k class probabilities from either score shape, columns in sorted class order
    (what scikit-learn's metrics assume), and that order."""
    if array.ndim == 1:
        if len(classes) != 2:
            raise EvaluationError(
                f"{metric}: the model outputs one score per row, but the targets have "
                f"{len(classes)} classes; output one probability per class (predict_proba)"
            )
        positive = array.astype("float64")
        return np.column_stack([1 - positive, positive]), sorted(classes)
    if array.shape[1] != len(classes):
        raise EvaluationError(
            f"{metric}: the model outputs {array.shape[1]} scores per row for "
            f"{len(classes)} classes {classes}"
        )
    order = np.argsort(np.asarray(classes), kind="stable")
    return array.astype("float64")[:, order], [classes[i] for i in order]


def score(
    metric: str,
    truth: np.ndarray,
    outputs: Any,
    kind: Kind | None = None,
    classes: Sequence[Any] | None = None,
) -> float:
    """`metric` of a model's `outputs` (array, Series or DataFrame: n or n x k) against
    `truth` (n targets).

    `kind` is what the model's signature says it outputs (None: the output's dtype
    decides); `classes` the class order of probability columns (None: the column names
    of a DataFrame output, else the sorted distinct values of `truth`). How each metric
    reads each kind of output is tabled in the module docstring. Raises EvaluationError
    for a combination it refuses, ValueError for an unknown metric.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    truth = np.asarray(truth)
    array, names = _matrix(outputs)
    if len(array) != len(truth):
        raise EvaluationError(f"the model outputs {len(array)} rows for {len(truth)} labels")
    kind = kind or kind_of_dtype(array.dtype)
    if classes is None:
        classes = names if names is not None and array.ndim == 2 else np.unique(truth).tolist()
    classes = list(classes)

    if metric in _REGRESSION:
        if array.ndim == 2:
            raise EvaluationError(
                f"{metric}: the model outputs {array.shape[1]} values per row, not one"
            )
        if array.dtype.kind not in "fiub":
            raise EvaluationError(f"{metric}: the model outputs non-numeric labels")
        return float(_REGRESSION[metric](truth.astype("float64"), array.astype("float64")))

    unknown = sorted({str(t) for t in truth} - {str(c) for c in classes})
    if unknown:
        raise EvaluationError(f"{metric}: targets {unknown} are not among classes {classes}")
    binary = len(classes) == 2
    if metric in _SCORE:
        if kind == "labels":
            raise EvaluationError(
                f"{metric} ranks scores, but the model's signature says it outputs labels; "
                "log it with class probabilities as its output (e.g. pyfunc_predict_fn="
                "'predict_proba')"
            )
        probabilities, order = _probabilities(array, classes, metric)
        if metric == "log_loss":
            return float(metrics.log_loss(truth, probabilities, labels=order))
        # Two classes: of the positive one; more: one-vs-rest per class, macro average.
        ranked = metrics.roc_auc_score if metric == "roc_auc" else metrics.average_precision_score
        columns = [1] if binary else range(len(order))
        return float(np.mean([ranked(truth == order[j], probabilities[:, j]) for j in columns]))

    # Label metrics.
    if kind == "scores":
        probabilities, order = _probabilities(array, classes, metric)
        if binary:
            decided = np.where(probabilities[:, 1] >= 0.5, order[1], order[0])
        else:
            decided = np.asarray(order, dtype=object)[np.argmax(probabilities, axis=1)]
        predicted = np.asarray(decided.tolist())
    else:
        predicted = array
    function = _LABEL[metric]
    if metric == "accuracy":
        return float(function(truth.tolist(), predicted.tolist()))
    options: dict[str, Any] = (
        {"pos_label": sorted(classes)[1], "average": "binary"}
        if binary
        else {"average": "macro", "labels": classes}
    )
    return float(function(truth.tolist(), predicted.tolist(), zero_division=0, **options))


def passes(value: float, threshold: float, higher_is_better: bool) -> bool:
    return value >= threshold if higher_is_better else value <= threshold


def model_classes(model: Any) -> list[Any] | None:
    """The class order of a classifier's probability columns when the model states it
    (`classes_` of a scikit-learn model, a pipeline's last step included), else None."""
    classes = getattr(model, "classes_", None)
    if classes is None:
        return None
    return np.asarray(classes).tolist()


def evaluate_model(
    model: LoadedModel, test: pa.Table, target: str, metric: str, targets: pa.ChunkedArray
) -> float:
    """The gate's `metric` of a logged model on the held-out rows `test` (the training
    set's columns in their declared types, `target` among them), calling the model as
    the model server does. `targets` is the whole training set's target column: its
    sorted distinct values are the class order when the model states none. Raises
    EvaluationError (see `score`) and whatever the model raises when called."""
    from mlflow.exceptions import MlflowException

    outputs = model.outputs(test)
    kind = signature_kind(model.pyfunc.metadata.get_output_schema())
    classes = None
    if metric not in _REGRESSION:
        try:
            classes = model_classes(model.pyfunc.get_raw_model())
        except (AttributeError, NotImplementedError, MlflowException):
            classes = None  # a flavor without a raw model (a pyfunc PythonModel raises)
        if classes is None and getattr(outputs, "columns", None) is None:
            classes = np.unique(targets.drop_null().to_numpy(zero_copy_only=False)).tolist()
    truth = test.column(target).to_numpy(zero_copy_only=False)
    return score(metric, truth, outputs, kind, classes)
