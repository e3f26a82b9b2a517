"""`lykectl init DIR`: a new MLflow project that Lykeion trains as it is.

The files: `MLproject` (the entry point Lykeion calls with the training set; no
environment of its own: it trains with the training image's mlflow, scikit-learn, pandas
and pyarrow, so a first training installs nothing), the training contract
`lykeion.yaml` (labels, gate, default parameters; validated by the same models as the
Model CRD), a `train.py` that reads the training set and logs an MLflow model, and a
README of the three commands. The defaults fit the example features and labels
(`examples/forward`); the options name your own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError

from lykectl.errors import CliError, validation_message
from lykectl.output import DataOutput, print_data
from lykeion.training.contract import CONTRACT_FILE, ProjectContract

TRAIN_PY = '''\
"""Train on the training set Lykeion builds, and log an MLflow model.

Lykeion calls the `main` entry point of MLproject with the point-in-time training set split
by time: `--train` and `--test` are Parquet files with the label columns and one column per
input feature, `--features` names those columns in the model's input order, `--target` the
column to predict. Whatever is logged as `model` is what Lykeion evaluates (its gate, from
lykeion.yaml), registers and serves; serving sends the features in the same order.
"""

from __future__ import annotations

import argparse

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True, help="Parquet: labels + feature columns")
    parser.add_argument("--test", required=True, help="Parquet: the later, held-out labels")
    parser.add_argument("--target", required=True, help="column to predict")
    parser.add_argument("--features", required=True, help="feature columns, comma-separated")
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularization strength")
    args = parser.parse_args()

    features = args.features.split(",")
    train = pd.read_parquet(args.train)
    x_train = train[features].astype("float64")
    # A missing feature value (no history yet) is imputed inside the model, so serving
    # may send NaN for it and get the same treatment as in training.
    model = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=args.c)
    )
    model.fit(x_train, train[args.target])
    mlflow.log_metric("train_rows", len(train))
    mlflow.sklearn.log_model(
        model,
        name="model",
        # The served prediction: the probability of each class (columns in the order of
        # classes_); the signature says what the pyfunc returns.
        signature=infer_signature(x_train, model.predict_proba(x_train)),
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=["numpy.dtype"],
    )


if __name__ == "__main__":
    main()
'''

LYKEION_PARAMETERS = {"train": "path", "test": "path", "target": "string", "features": "string"}
"""The `main` entry point's parameters Lykeion passes to every training (MLflow types)."""


def mlproject(
    name: str,
    command: str,
    parameters: dict[str, str] | None = None,
    python_env: str | None = "python_env.yaml",
) -> str:
    """MLproject text of a project Lykeion trains (pure): entry point `main` with
    LYKEION_PARAMETERS, then `parameters` (name -> its MLflow declaration, YAML flow text),
    running `command` (folded: each of its lines one line of the command); `python_env` the
    environment file, or None for none."""
    lines = [f"name: {name}", ""]
    if python_env is not None:
        lines += [f"python_env: {python_env}", ""]
    lines += [
        "entry_points:",
        "  main:",
        "    # train, test, target and features are passed by Lykeion; the others are yours",
        "    # (defaults here, in lykeion.yaml's parameters, or the Model's"
        " spec.source.parameters).",
        "    parameters:",
        *(f"      {k}: {v}" for k, v in {**LYKEION_PARAMETERS, **(parameters or {})}.items()),
        "    command: >-",
        *(f"      {line}" for line in command.splitlines()),
    ]
    return "\n".join(lines) + "\n"


README = """\
# {name}

An MLflow project trained, evaluated and served by Lykeion. What the training needs
besides the code is in `lykeion.yaml` (labels, the evaluation gate, default parameters):
versioned with the code, read at the commit a Model pins.

Commit and push this directory, then (with the features it reads published):

```
{commands}
```

`<SHA1>` is the 40-hex commit (`git rev-parse HEAD`). Locally, `--source-url
file:///abs/path/to/{name}` trains the working tree as it is. `lykectl models get {family}
--version 1.0 --wait` follows the training; `status.contract` shows the labels and gate
used and where each came from.

Files: `MLproject` (the entry point Lykeion calls), `lykeion.yaml` (the training
contract), `train.py` (reads the training set, logs the model). The project trains with
the training image's libraries (mlflow, scikit-learn, pandas, pyarrow). To add one it
lacks, write a `python_env.yaml` (`python: "3.11"`, `dependencies: [...]`) and add
`python_env: python_env.yaml` to `MLproject`: Lykeion then builds that environment with uv
from the platform's package index, once, and reuses it.
"""


def commands(family: str, name: str, features: str) -> str:
    """The three commands of the README, for this project (pure)."""
    title = family.capitalize()
    return "\n".join(
        [
            f"lykectl families create --alias {family} --name {title} "
            f'--description "{title} model" --authors "you@example.com"',
            f"lykectl models create {family} --segment default --version 1.0 "
            '--description "Version description" \\',
            f'    --source-url "git@host:projects.git#path/to/{name}@<SHA1>" '
            f'--input-features "{features}"',
            f"lykectl models train {family} --segment default --version 1.0",
            f"lykectl models deploy {family} --segment default --version 1.0",
        ]
    )


def contract_text(contract: ProjectContract) -> str:
    """lykeion.yaml for `contract`, with a header saying what it is."""
    header = (
        "# Lykeion's training contract, read at the commit a Model pins. A Model's\n"
        "# spec.training.labels, spec.evaluation and spec.source.parameters override it.\n"
        "# Relative label paths resolve against the platform's data directory.\n"
    )
    body = yaml.safe_dump(json.loads(json.dumps(contract.wire())), sort_keys=False)
    return header + body


def project_files(
    name: str, contract: ProjectContract, family: str, features: str
) -> dict[str, str]:
    """The scaffold's files by relative path (pure)."""
    return {
        "MLproject": mlproject(
            name,
            "python train.py --train {train} --test {test} --target {target}\n"
            "--features {features} --c {c}",
            {"c": "{type: float, default: 1.0}"},
            python_env=None,
        ),
        CONTRACT_FILE: contract_text(contract),
        "train.py": TRAIN_PY,
        "README.md": README.format(
            name=name, family=family, commands=commands(family, name, features)
        ),
    }


def init(
    directory: Annotated[Path, typer.Argument(help="Where to create the project (new or empty).")],
    name: Annotated[
        str | None,
        typer.Option(help="Project name (default: the directory's name).", show_default=False),
    ] = None,
    family: Annotated[str, typer.Option(help="Family alias used in the README.")] = "forward",
    features: Annotated[
        str, typer.Option(help="Input features used in the README.")
    ] = "rider.age,rider.drop_offs_count",
    labels_path: Annotated[
        str, typer.Option(help="Labels file (relative: the platform's data directory).")
    ] = "examples/forward/data/labels.csv",
    labels_timestamp_column: Annotated[
        str, typer.Option(help="Event-time column of the labels.")
    ] = "label_time",
    target: Annotated[str, typer.Option(help="Label column to predict.")] = "ordered_again",
    metric: Annotated[str, typer.Option(help="Metric of the evaluation gate.")] = "roc_auc",
    threshold: Annotated[float, typer.Option(help="Value the metric must reach.")] = 0.6,
    lower_is_better: Annotated[
        bool, typer.Option("--lower-is-better", help="The metric must stay below the threshold.")
    ] = False,
    output: Annotated[
        DataOutput, typer.Option("--output", "-o", help="Output format.")
    ] = DataOutput.table,
) -> None:
    """Create an MLflow project that Lykeion trains as it is: MLproject,
    lykeion.yaml (the training contract), train.py and a README of the three commands."""
    try:
        contract = ProjectContract.model_validate(
            {
                "labels": {
                    "file": {
                        "path": labels_path,
                        "format": "csv" if labels_path.lower().endswith(".csv") else "parquet",
                    },
                    "timestampColumn": labels_timestamp_column,
                    "target": target,
                },
                "evaluation": {
                    "metric": metric,
                    "threshold": threshold,
                    "higherIsBetter": not lower_is_better,
                },
            }
        )
    except ValidationError as error:
        raise CliError(validation_message(error, CONTRACT_FILE)) from None
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise CliError(f"{directory} exists and is not an empty directory")
    project = name or directory.resolve().name
    files = project_files(project, contract, family, features)
    directory.mkdir(parents=True, exist_ok=True)
    for relative, text in files.items():
        (directory / relative).write_text(text)
    if output is DataOutput.table:
        typer.echo(f"created {directory}: {', '.join(files)}")
    else:
        print_data({"directory": str(directory), "files": list(files)}, output)
    typer.echo(f"next: see {directory / 'README.md'}", err=True)
