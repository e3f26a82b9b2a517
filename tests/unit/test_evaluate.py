"""The gate's metrics against brute-force definitions, per kind of model output."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.evaluation.scoring import METRICS, EvaluationError, score, signature_kind

EPS = np.finfo("float64").eps


def auc(positive: list[bool], scores: list[float]) -> float:
    """P(score of a random positive > score of a random negative), ties counting half."""
    pos = [s for p, s in zip(positive, scores, strict=True) if p]
    neg = [s for p, s in zip(positive, scores, strict=True) if not p]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def f1(truth: list[Any], predicted: list[Any], cls: Any) -> float:
    tp = sum(t == cls and p == cls for t, p in zip(truth, predicted, strict=True))
    fp = sum(t != cls and p == cls for t, p in zip(truth, predicted, strict=True))
    fn = sum(t == cls and p != cls for t, p in zip(truth, predicted, strict=True))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


probability = st.floats(0.0, 1.0, allow_nan=False).map(lambda p: round(p, 3))


@st.composite
def binary_case(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    n = draw(st.integers(2, 30))
    truth = draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n))
    truth[0], truth[1] = 0, 1  # both classes present
    scores = draw(st.lists(probability, min_size=n, max_size=n))
    return truth, scores


@st.composite
def multi_case(draw: st.DrawFn) -> tuple[list[str], np.ndarray]:
    classes = ["a", "b", "c"]
    n = draw(st.integers(3, 30))
    truth = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    truth[:3] = classes  # every class present
    raw = draw(
        st.lists(
            st.lists(st.integers(1, 20), min_size=3, max_size=3),
            min_size=n,
            max_size=n,
        )
    )
    weights = np.array(raw, dtype="float64")
    return truth, weights / weights.sum(axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(binary_case())
def test_binary_scores_one_per_row_or_one_column_per_class(
    case: tuple[list[int], list[float]],
) -> None:
    truth, scores = case
    y = np.array(truth)
    one = np.array(scores)
    two = np.column_stack([1 - one, one])
    expected_auc = auc([t == 1 for t in truth], scores)
    decided = [1 if s >= 0.5 else 0 for s in scores]
    clipped = [
        min(max(s if t == 1 else 1 - s, EPS), 1 - EPS) for t, s in zip(truth, scores, strict=True)
    ]
    for outputs in (one, two):
        assert score("roc_auc", y, outputs) == pytest.approx(expected_auc)
        assert score("accuracy", y, outputs) == pytest.approx(
            sum(d == t for d, t in zip(decided, truth, strict=True)) / len(truth)
        )
        assert score("f1", y, outputs) == pytest.approx(f1(truth, decided, 1))
        assert score("log_loss", y, outputs) == pytest.approx(
            -sum(math.log(p) for p in clipped) / len(truth), rel=1e-6
        )


@settings(max_examples=60, deadline=None)
@given(multi_case())
def test_multiclass_probabilities(case: tuple[list[str], np.ndarray]) -> None:
    truth, probabilities = case
    classes = ["a", "b", "c"]
    y = np.array(truth, dtype=object)
    per_class = [
        auc([t == c for t in truth], probabilities[:, j].tolist()) for j, c in enumerate(classes)
    ]
    assert score("roc_auc", y, probabilities, "scores", classes) == pytest.approx(
        sum(per_class) / 3
    )
    decided = [classes[int(np.argmax(row))] for row in probabilities]
    assert score("accuracy", y, probabilities, "scores", classes) == pytest.approx(
        sum(d == t for d, t in zip(decided, truth, strict=True)) / len(truth)
    )
    assert score("f1", y, probabilities, "scores", classes) == pytest.approx(
        sum(f1(truth, decided, c) for c in classes) / 3
    )
    true_p = [probabilities[i, classes.index(t)] for i, t in enumerate(truth)]
    assert score("log_loss", y, probabilities, "scores", classes) == pytest.approx(
        -sum(math.log(min(max(p, EPS), 1 - EPS)) for p in true_p) / len(truth), rel=1e-6
    )
    # The class order is the model's: columns swapped with the classes, same answer.
    swapped = probabilities[:, [2, 0, 1]]
    assert score("roc_auc", y, swapped, "scores", ["c", "a", "b"]) == pytest.approx(
        sum(per_class) / 3
    )
    # A DataFrame output names its columns' classes.
    frame = pd.DataFrame(swapped, columns=["c", "a", "b"])
    assert score("accuracy", y, frame) == score("accuracy", y, probabilities, "scores", classes)


def test_labels_are_used_as_given_and_refused_by_ranking_metrics() -> None:
    truth = np.array(["x", "y", "z", "x"], dtype=object)
    predicted = np.array(["x", "y", "y", "z"], dtype=object)
    assert score("accuracy", truth, predicted) == 0.5
    assert score("recall", truth, predicted) == pytest.approx((0.5 + 1 + 0) / 3)
    for metric in ("roc_auc", "average_precision", "log_loss"):
        with pytest.raises(EvaluationError, match="outputs labels"):
            score(metric, truth, predicted)
    # Booleans: labels too, whatever they look like as numbers.
    flags = np.array([True, False, True])
    assert score("precision", flags, np.array([True, True, True])) == pytest.approx(2 / 3)


def test_one_score_per_row_for_three_classes_is_refused() -> None:
    with pytest.raises(EvaluationError, match="3 classes"):
        score("roc_auc", np.array([0, 1, 2]), np.array([0.1, 0.5, 0.9]))
    with pytest.raises(EvaluationError, match="4 scores per row for 3 classes"):
        score("log_loss", np.array([0, 1, 2]), np.full((3, 4), 0.25))
    with pytest.raises(EvaluationError, match="not among classes"):
        score("accuracy", np.array([0, 1, 5]), np.full((3, 2), 0.5), "scores", [0, 1])


def test_regression_metrics() -> None:
    truth = np.array([1.0, 2.0, 4.0])
    predicted = np.array([1.5, 2.0, 3.0])
    assert score("rmse", truth, predicted) == pytest.approx(math.sqrt((0.25 + 0 + 1) / 3))
    assert score("mae", truth, predicted) == pytest.approx(0.5)
    assert score("mae", truth, np.array([1, 2, 4])) == 0.0  # integer values are numbers
    with pytest.raises(EvaluationError, match="2 values per row"):
        score("rmse", truth, np.ones((3, 2)))
    with pytest.raises(ValueError, match="unknown metric"):
        score("auc", truth, predicted)
    assert "roc_auc" in METRICS


def test_signature_kind() -> None:
    from mlflow.models import infer_signature

    frame = pd.DataFrame({"x": [1.0, 2.0]})
    assert signature_kind(infer_signature(frame, np.array([0.1, 0.2])).outputs) == "scores"
    assert signature_kind(infer_signature(frame, np.array([[0.1, 0.9]] * 2)).outputs) == "scores"
    assert signature_kind(infer_signature(frame, np.array([0, 1])).outputs) == "labels"
    assert signature_kind(infer_signature(frame, pd.Series(["a", "b"])).outputs) == "labels"
    assert signature_kind(infer_signature(frame, pd.Series([True, False])).outputs) == "labels"
    assert signature_kind(None) is None
