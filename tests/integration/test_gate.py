"""The evaluation gate on real trained MLflow models (`python -m lykeion.training.run`'s
code, in process): inputs of every declared type reach the model as the training set
had them, the metric reads what the model's signature says it outputs, and the model
server's predictions for served values equal what the gate saw."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import random
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from mlflow.tracking import MlflowClient

from lykectl.scaffold import mlproject
from lykeion.features.view import EVENT_TIME, KEY, FeatureView
from lykeion.serving.model import LoadedModel
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.offline.tables import history_schema
from lykeion.training import run
from tests.objects import manifest, model

FEATURES = {
    "city": "string",
    "vip": "bool",
    "rating": "float64",
    "signup": "timestamp",
    "tags": "list<string>",
    "trips": "int64",
}
COLUMNS = [f"rider__{name}" for name in FEATURES]
DAY1 = datetime(2026, 1, 1, tzinfo=UTC)

TRAIN_PY = '''
"""A pipeline over every declared type: a one-hot string, a bool, a float with NaN, a
timestamp, a list and an int; logged with the predict function it is given."""

import argparse

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def flags(frame):
    return frame.astype("float64").to_numpy()


def years(frame):
    # Needs real timestamps: object columns of datetimes have no `.dt`.
    return frame.apply(lambda c: c.dt.year + c.dt.day_of_year / 366).to_numpy()


def lengths(frame):
    return frame.apply(lambda c: c.map(len)).to_numpy(dtype="float64")


parser = argparse.ArgumentParser()
for name in ("train", "test", "target", "features", "predict_fn"):
    parser.add_argument(f"--{name}")
args = parser.parse_args()
features = args.features.split(",")
train = pd.read_parquet(args.train)
x, y = train[features], train[args.target]
model = make_pipeline(
    ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["rider__city"]),
            ("vip", FunctionTransformer(flags), ["rider__vip"]),
            ("rating", SimpleImputer(), ["rider__rating"]),
            ("signup", FunctionTransformer(years), ["rider__signup"]),
            ("tags", FunctionTransformer(lengths), ["rider__tags"]),
            ("trips", "passthrough", ["rider__trips"]),
        ]
    ),
    LogisticRegression(max_iter=2000),
)
model.fit(x, y)
outputs = getattr(model, args.predict_fn)(x)
with mlflow.start_run():  # the platform's run (MLFLOW_RUN_ID)
    mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(x.drop(columns=["rider__tags"]), outputs),
        pyfunc_predict_fn=args.predict_fn,
        serialization_format="cloudpickle",
    )
'''

MLPROJECT = mlproject(
    "every-type",
    "python train.py --train {train} --test {test} --target {target}\n"
    "--features {features} --predict_fn {predict_fn}",
    {"predict_fn": "{type: string, default: predict_proba}"},
    python_env=None,
)


@dataclass
class Platform:
    root: Path
    view: FeatureView
    manifest: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    """rider key -> feature values."""


def _target(values: dict[str, Any], kind: str, rng: random.Random) -> Any:
    if kind == "binary":
        positive = (values["vip"] and values["trips"] > 20) or values["city"] == "017"
        return int(positive) if rng.random() > 0.05 else int(not positive)
    return "low" if values["trips"] < 15 else "mid" if values["trips"] < 35 else "high"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    root = tmp_path_factory.mktemp("gate")
    project = root / "project"
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT)
    (project / "train.py").write_text(textwrap.dedent(TRAIN_PY))

    body = manifest("rider-profile", "rider", FEATURES)
    body["metadata"]["namespace"] = "default"
    body["spec"]["ttl"] = "365d"
    view = FeatureView.from_body(body)
    rng = random.Random(11)
    rows = {}
    for i in range(240):
        rows[f"{i:03d}"] = {  # numeric-looking keys with leading zeros
            "city": rng.choice(["001", "017", "London"]),
            "vip": rng.random() < 0.5,
            "rating": math.nan if rng.random() < 0.15 else round(rng.uniform(1, 5), 2),
            "signup": DAY1 - timedelta(days=rng.randint(1, 3000), microseconds=rng.randint(0, 999)),
            "tags": rng.sample(["a", "b", "c", "d"], rng.randint(0, 3)),
            "trips": rng.randint(0, 50),
        }
    table = pa.Table.from_pylist(
        [{KEY: key, EVENT_TIME: DAY1, **values} for key, values in rows.items()],
        schema=history_schema(view),
    )
    DuckDBOfflineStore(root / "offline.duckdb").write_history(view, table)
    for kind in ("binary", "classes"):
        with (root / f"labels-{kind}.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["rider_id", "label_time", "target"])
            for n, (key, values) in enumerate(sorted(rows.items(), key=lambda _: rng.random())):
                at = DAY1 + timedelta(days=1, minutes=n)
                writer.writerow(
                    [key, at.strftime("%Y-%m-%dT%H:%M:%SZ"), _target(values, kind, rng)]
                )
    # The tracking database's default experiment keeps its artifacts where the database
    # was created: under the test's folder, not the working directory.
    with contextlib.chdir(root):
        MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()
    return Platform(root, view, body, rows)


def train(
    platform: Platform, name: str, labels: str, metric: str, threshold: float, predict_fn: str
) -> dict[str, Any]:
    body = model(version=name, features=[f"rider.{f}" for f in FEATURES])
    spec = body["spec"]
    spec["source"] = {
        "url": f"file://{platform.root / 'project'}",
        "parameters": {"predict_fn": predict_fn},
    }
    spec["training"]["labels"] = {
        "file": {"path": labels, "format": "csv"},
        "timestampColumn": "label_time",
        "target": "target",
    }
    spec["evaluation"] = {"metric": metric, "threshold": threshold}
    root = platform.root
    result = root / f"result-{name}.json"
    code = run.main(
        [
            "--model-json",
            json.dumps(body),
            "--manifests-json",
            json.dumps([platform.manifest]),
            "--offline",
            f"duckdb://{root / 'offline.duckdb'}",
            "--tracking-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--cache-dir",
            str(root / "cache"),
            "--data-root",
            str(root),
            "--artifact-root",
            str(root / "artifacts"),
            "--result",
            str(result),
        ]
    )
    outcome: dict[str, Any] = json.loads(result.read_text())
    assert (code == 0) == outcome["succeeded"]
    return outcome


def served_columns(platform: Platform, keys: list[str]) -> dict[str, list[Any]]:
    """What the model server's enrichment hands the model for `keys`: the values as the
    online store returns them (Python values, NaN a float)."""
    return {f"rider__{f}": [platform.rows[k][f] for k in keys] for f in FEATURES}


def test_binary_classifier_with_every_type_passes_and_serves_nan(platform: Platform) -> None:
    outcome = train(platform, "1.0", "labels-binary.csv", "roc_auc", 0.8, "predict_proba")
    assert outcome["succeeded"], outcome["message"]
    assert outcome["gate_passed"] is True, outcome["message"]
    assert outcome["metric_value"] > 0.8

    # The model server: the registered version, called with served values. A float64 NaN
    # (the reported case) is a value the model imputes, as in training.
    served = LoadedModel(outcome["model_uri"], f"sqlite:///{platform.root / 'mlflow.db'}")
    nan_keys = [k for k, v in platform.rows.items() if math.isnan(v["rating"])][:3]
    keys = [*nan_keys, "007", "017"]
    prediction = served.predict(served_columns(platform, keys))
    assert prediction.shape == [len(keys), 2]
    # What the gate called the model with, for the same rows, gives the same answer.
    table = _training_rows(platform, keys)
    np.testing.assert_array_equal(np.asarray(prediction.values), served.outputs(table))


def _training_rows(platform: Platform, keys: list[str]) -> pa.Table:
    """The training set's columns for `keys`, in their declared types (the gate's input)."""
    view = platform.view
    schema = history_schema(view)
    return pa.table(
        {
            f"rider__{f.name}": pa.array(
                [platform.rows[k][f.name] for k in keys], schema.field(f.name).type
            )
            for f in view.features
        }
    )


def test_three_classes_by_probabilities(platform: Platform) -> None:
    outcome = train(platform, "2.0", "labels-classes.csv", "roc_auc", 0.9, "predict_proba")
    assert outcome["succeeded"], outcome["message"]
    assert outcome["gate_passed"] is True, outcome["message"]
    assert 0.9 < outcome["metric_value"] <= 1.0


def test_labels_output_is_scored_as_labels(platform: Platform) -> None:
    outcome = train(platform, "3.0", "labels-classes.csv", "accuracy", 0.7, "predict")
    assert outcome["succeeded"], outcome["message"]
    assert outcome["gate_passed"] is True, outcome["message"]


def test_ranking_metric_on_a_labels_output_is_an_evaluation_failure(platform: Platform) -> None:
    outcome = train(platform, "4.0", "labels-classes.csv", "roc_auc", 0.5, "predict")
    assert not outcome["succeeded"]
    assert outcome["reason"] == "EvaluationFailed"
    assert (
        "roc_auc ranks scores, but the model's signature says it outputs labels"
        in (outcome["message"])
    )
