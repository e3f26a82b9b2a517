"""The evaluation gate: one named metric on the held-out split, compared to a threshold.

The logged model is called as the model server calls it (`serving.model.LoadedModel`):
the held-out rows' feature columns in their declared types, as the training set had them
(`serving/frames.py`) — never cast to float first, so a model with string, bool,
timestamp or list inputs is judged on what it was trained with. How each metric reads
the model's outputs is `evaluation/scoring.py`'s, shared with the model server's live
metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lykeion.evaluation.scoring import REGRESSION_METRICS, model_classes, score, signature_kind

if TYPE_CHECKING:
    import pyarrow as pa

    from lykeion.serving.model import LoadedModel


def passes(value: float, threshold: float, higher_is_better: bool) -> bool:
    return value >= threshold if higher_is_better else value <= threshold


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
    if metric not in REGRESSION_METRICS:
        try:
            classes = model_classes(model.pyfunc.get_raw_model())
        except (AttributeError, NotImplementedError, MlflowException):
            classes = None  # a flavor without a raw model (a pyfunc PythonModel raises)
        if classes is None and getattr(outputs, "columns", None) is None:
            classes = np.unique(targets.drop_null().to_numpy(zero_copy_only=False)).tolist()
    truth = test.column(target).to_numpy(zero_copy_only=False)
    return score(metric, truth, outputs, kind, classes)
