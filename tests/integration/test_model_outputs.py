"""V2 metadata describes what infer returns, for every kind of model the server loads.

Real MLflow models logged into a SQLite-backed tracking store, loaded by the server's own
`LoadedModel`: the output it declares before any request (`LoadedModel.output`, what the
V2 metadata reports) must be the datatype and per-row shape of what `predict` then
returns for real rows — also when the logged signature says otherwise, as the example
project's did (a signature of `predict_proba(x)[:, 1]`, a pyfunc calling `predict_proba`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PythonModel

from lykeion.serving.model import LoadedModel, OutputSpec
from tests.integration.serving_fixture import COLUMNS, TRAINED, _tracking

ROWS = {COLUMNS[0]: [23, 41, None, 67], COLUMNS[1]: [8.5, float("nan"), 17.25, 3.0]}


def _data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    x = pd.DataFrame(
        {COLUMNS[0]: rng.integers(18, 80, 120).astype("float64"),
         COLUMNS[1]: rng.uniform(5.0, 40.0, 120)}
    )  # fmt: skip
    y = (x[COLUMNS[0]] / 80 + x[COLUMNS[1]] / 40 + rng.normal(0, 0.3, 120) > 1.0).to_numpy()
    return x, y.astype(int)


def _classifier() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = _data()
    return make_pipeline(SimpleImputer(strategy="median"), LogisticRegression()).fit(x, y)


def _regressor() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    x, y = _data()
    return make_pipeline(SimpleImputer(), LinearRegression()).fit(x, y * 2.5)


def _named_classifier() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x, y = _data()
    labels = np.where(y == 1, "again", "gone")
    return make_pipeline(SimpleImputer(), LogisticRegression()).fit(x, labels)


class ThreeScores(PythonModel):  # type: ignore[misc]
    """A plain pyfunc (no sklearn): three scores per row as a DataFrame; refuses rows
    whose age is 0, so a probe of zeros falls through to the row of missing values."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        age = model_input[COLUMNS[0]].astype("float64")
        if (age == 0).any():
            raise ValueError("age 0 is not a rider")
        age = age.fillna(30.0)
        return pd.DataFrame({"low": age / 100, "mid": age / 50, "high": age / 10})


class Picky(PythonModel):  # type: ignore[misc]
    """A plain pyfunc that refuses every probe row (zeros and missing values alike): the
    declared output comes from its signature."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        age = model_input[COLUMNS[0]]
        if age.isna().any() or (age == 0).any():
            raise ValueError("a real rider only")
        return np.asarray(age, dtype="int64") % 2


def _log(folder: Path, name: str, log: Callable[[], None]) -> tuple[str, str]:
    import mlflow

    tracking = f"sqlite:///{folder}/mlflow.db"
    with _tracking(tracking):
        experiment = mlflow.get_experiment_by_name("outputs")
        experiment_id = (
            experiment.experiment_id
            if experiment
            else mlflow.create_experiment("outputs", (folder / "artifacts").as_uri())
        )
        with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
            mlflow.set_tag("lykeion.features", json.dumps(TRAINED))
            log()
    return tracking, f"runs:/{run.info.run_id}/model"


def _sklearn(model: Any, predict_fn: str, signature_of: Callable[[pd.DataFrame], Any]) -> Any:
    def log() -> None:
        import mlflow
        from mlflow.models import infer_signature

        x, _ = _data()
        mlflow.sklearn.log_model(
            model, name="model", signature=infer_signature(x, signature_of(x)),
            pyfunc_predict_fn=predict_fn, skops_trusted_types=["numpy.dtype"],
        )  # fmt: skip

    return log


def _pyfunc(python_model: Any, signature_output: Any) -> Any:
    def log() -> None:
        import mlflow
        from mlflow.models import infer_signature

        x, _ = _data()
        mlflow.pyfunc.log_model(
            name="model", python_model=python_model,
            signature=infer_signature(x, signature_output),
        )  # fmt: skip

    return log


def _kinds() -> dict[str, tuple[Callable[[], Any], OutputSpec]]:
    classifier, regressor, named = _classifier(), _regressor(), _named_classifier()
    return {
        # The example project's model: a signature of one column, predict_proba's two.
        "probabilities-signature-of-one-column": (
            _sklearn(classifier, "predict_proba", lambda x: classifier.predict_proba(x)[:, 1]),
            OutputSpec("FP64", [-1, 2]),
        ),
        "probabilities": (
            _sklearn(classifier, "predict_proba", classifier.predict_proba),
            OutputSpec("FP64", [-1, 2]),
        ),
        "integer-labels": (
            _sklearn(classifier, "predict", classifier.predict),
            OutputSpec("INT64", [-1]),
        ),
        "string-labels": (_sklearn(named, "predict", named.predict), OutputSpec("BYTES", [-1])),
        "regression": (_sklearn(regressor, "predict", regressor.predict), OutputSpec("FP64", [-1])),
        "pyfunc-three-scores": (
            _pyfunc(ThreeScores(), pd.DataFrame({"low": [0.1], "mid": [0.2], "high": [0.3]})),
            OutputSpec("FP64", [-1, 3]),
        ),
        "pyfunc-refusing-probes": (
            _pyfunc(Picky(), np.array([0, 1], dtype="int64")),
            OutputSpec("INT64", [-1]),
        ),
    }


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str, OutputSpec]]:
    folder = tmp_path_factory.mktemp("model-outputs")
    return {
        name: (*_log(folder, name, log), expected) for name, (log, expected) in _kinds().items()
    }


@pytest.mark.parametrize("kind", list(_kinds()))
def test_the_declared_output_is_what_predict_returns(
    logged: dict[str, tuple[str, str, OutputSpec]], kind: str
) -> None:
    tracking, uri, expected = logged[kind]
    model = LoadedModel(uri, tracking)
    rows = ROWS if kind != "pyfunc-refusing-probes" else {**ROWS, COLUMNS[0]: [23, 41, 5, 67]}
    prediction = model.predict(rows)
    assert prediction.shape[0] == 4
    assert model.output == prediction.output == expected
