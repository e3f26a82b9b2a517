"""MLflow project environments (`python -m lykeion.training.run`'s code, in process): a
project that declares a python_env trains in its own environment, made by uv with a
library this environment lacks, kept for the next training, which installs nothing; a
docker_env project trains in two phases with its entry point between them, run here as
the init container in its image would run it (`tests/cluster/test_faults.py` runs it in
the image); conda projects, docker_env ones without a container runtime and docker_env
volumes are refused with a reason that says what to do instead, and a malformed
python_env.yaml or docker_env environment with one that names the file and the problem."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from lykeion.local.tracking_server import TrackingServer
from lykeion.training import run
from lykeion.training.run import (
    ENV_COMPLETE,
    INVALID_ENV,
    UNSUPPORTED_ENV,
    prepare_environment,
    uv_settings,
)
from tests.integration import test_gate
from tests.integration.test_gate import FEATURES, Platform
from tests.objects import model

# The gate test's data: a rider feature view in an offline store, and binary labels.
platform = test_gate.platform

LIBRARY = "tabulate"
"""A small pure-Python library on the package index that the dev environment lacks."""

TRAIN_PY = """
import argparse
import sys

import mlflow
import pandas as pd
import tabulate


class Majority(mlflow.pyfunc.PythonModel):
    def __init__(self, label):
        self.label = label

    def predict(self, context, model_input, params=None):
        return [self.label] * len(model_input)


parser = argparse.ArgumentParser()
for name in ("train", "test", "target", "features"):
    parser.add_argument(f"--{name}")
args = parser.parse_args()
train = pd.read_parquet(args.train)
counts = train[args.target].value_counts()
print(tabulate.tabulate(list(counts.items()), headers=["target", "rows"]))
with mlflow.start_run():  # the platform's run (MLFLOW_RUN_ID)
    mlflow.log_param("library_version", tabulate.__version__)
    mlflow.log_param("python_prefix", sys.prefix)
    mlflow.pyfunc.log_model(name="model", python_model=Majority(int(counts.idxmax())))
"""

MLPROJECT = """
name: own-environment
{environment}
entry_points:
  main:
    parameters:
      train: path
      test: path
      target: string
      features: string
    command: >-
      python train.py --train {{train}} --test {{test}} --target {{target}}
      --features {{features}}
"""


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _python_env() -> str:
    """Pinned to this environment's versions (the platform unpickles the logged model here),
    plus the library this environment lacks."""
    pins = [f"{p}=={_version(p)}" for p in ("cloudpickle", "numpy", "pandas", "pyarrow")]
    lines = [f"mlflow-skinny=={_version('mlflow')}", *pins, f"{LIBRARY}==0.10.0"]
    return 'python: "3.11"\ndependencies:\n' + "".join(f"  - {line}\n" for line in lines)


def _project(root: Path, name: str, environment: str, files: dict[str, str]) -> Path:
    project = root / name
    project.mkdir()
    (project / "MLproject").write_text(MLPROJECT.format(environment=environment))
    (project / "train.py").write_text(textwrap.dedent(TRAIN_PY))
    for file, text in files.items():
        (project / file).write_text(text)
    return project


@pytest.fixture
def uv_on_path() -> Iterator[None]:
    """uv comes with lykeion[training]: in this environment's bin (the training puts that
    first on PATH), or on PATH already."""
    here = Path(sys.executable).parent
    if shutil.which("uv") is None and not (here / "uv").exists():
        pytest.fail("uv is not installed: pip install -e .[dev] (lykeion[training] has it)")
    yield


def _train(
    platform: Platform,
    tracking: TrackingServer,
    project: Path,
    version: str,
    env_root: Path,
    *extra: str,
) -> dict[str, Any]:
    body = model("envs", version=version, features=[f"rider.{f}" for f in FEATURES])
    body["metadata"]["namespace"] = "default"
    spec = body["spec"]
    spec["source"] = {"url": f"file://{project}"}
    spec["training"]["labels"] = {
        "file": {"path": "labels-binary.csv", "format": "csv"},
        "timestampColumn": "label_time",
        "target": "target",
    }
    spec["evaluation"] = {"metric": "accuracy", "threshold": 0.5}
    root = platform.root
    result = root / f"result-envs-{version}.json"
    code = run.main(
        [
            "--model-json", json.dumps(body),
            "--manifests-json", json.dumps([platform.manifest]),
            "--offline", f"duckdb://{root / 'offline.duckdb'}",
            "--tracking-uri", tracking.url,
            "--cache-dir", str(root / "cache"),
            "--env-root", str(env_root),
            "--data-root", str(root),
            "--result", str(result),
            *extra,
        ]
    )  # fmt: skip
    outcome: dict[str, Any] = json.loads(result.read_text())
    assert (code == 0) == outcome["succeeded"]
    return outcome


def test_a_python_env_project_trains_with_its_own_library_and_reuses_the_environment(
    platform: Platform, tracking_server: TrackingServer, uv_on_path: None
) -> None:
    assert importlib.util.find_spec(LIBRARY) is None, f"{LIBRARY} must not be installed here"
    env_root = platform.root / "envs"
    project = _project(
        platform.root,
        "own-env",
        "python_env: python_env.yaml",
        {"python_env.yaml": _python_env()},
    )
    first = _train(platform, tracking_server, project, "1.0", env_root)
    assert first["succeeded"], first["message"]
    client = MlflowClient(tracking_server.url)
    params = client.get_run(first["run_id"]).data.params
    assert params["library_version"] == "0.10.0"
    prefix = Path(params["python_prefix"])
    assert prefix.parent == env_root / "virtualenvs"
    tags = client.get_run(first["run_id"]).data.tags
    assert tags["mlflow.project.env"] == "uv"
    assert Path(tags["lykeion.project.environment"]) == prefix
    marker = prefix / ENV_COMPLETE
    before = (prefix.stat().st_ino, marker.stat().st_mtime_ns)
    installed = next(prefix.glob(f"lib/python*/site-packages/{LIBRARY}*"))
    installed_before = installed.stat().st_ino

    # The same python_env again: the same environment, not created or installed again.
    second = _train(platform, tracking_server, project, "1.1", env_root)
    assert second["succeeded"], second["message"]
    params = client.get_run(second["run_id"]).data.params
    assert Path(params["python_prefix"]) == prefix
    assert (prefix.stat().st_ino, marker.stat().st_mtime_ns) == before
    assert installed.stat().st_ino == installed_before


def test_an_environment_cut_short_is_created_again(
    tmp_path: Path, uv_on_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    declared = project / "python_env.yaml"
    declared.write_text(f'python: "3.11"\ndependencies:\n  - {LIBRARY}==0.10.0\n')
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for key, value in uv_settings(os.environ, tmp_path).items():
        monkeypatch.setenv(key, value)
    envs = tmp_path / "virtualenvs"

    env_dir = prepare_environment(project, declared, envs)
    installed = next(env_dir.glob(f"lib/python*/site-packages/{LIBRARY}/__init__.py"))
    # A training killed while uv installed: the folder is there, the marker is not.
    (env_dir / ENV_COMPLETE).unlink()
    installed.unlink()
    assert prepare_environment(project, declared, envs) == env_dir
    assert installed.exists() and (env_dir / ENV_COMPLETE).exists()
    # Complete: found as it is.
    before = installed.stat().st_ino
    assert prepare_environment(project, declared, envs) == env_dir
    assert installed.stat().st_ino == before


DOCKER_ENV = """docker_env:
  image: registry.example/team/trainer:1
  environment: [["PROJECT_MODE", "from-mlproject"], "COPIED_VARIABLE", "NOT_SET_ANYWHERE"]"""

DOCKER_TRAIN_PY = (
    TRAIN_PY.replace("import tabulate\n", "import os\n")
    .replace(
        'print(tabulate.tabulate(list(counts.items()), headers=["target", "rows"]))',
        "print(dict(counts))",
    )
    .replace(
        'mlflow.log_param("library_version", tabulate.__version__)',
        'mlflow.log_param("mode", os.environ["PROJECT_MODE"] + "/" + os.environ["COPIED_"'
        ' + "VARIABLE"])',
    )
)


@pytest.mark.parametrize(
    ("environment", "files", "says", "extra"),
    [
        (
            "conda_env: conda.yaml",
            {"conda.yaml": "dependencies: [python=3.11]\n"},
            "conda environments are not supported",
            (),
        ),
        (
            "",
            {"conda.yaml": "dependencies: [python=3.11]\n"},
            "conda environments are not supported",
            (),
        ),
        (
            "docker_env:\n  image: python:3.11",
            {},
            "docker_env runs only where trainings are Kubernetes Jobs",
            (),
        ),
        (
            "docker_env:\n  image: python:3.11\n  volumes: ['/srv/data:/data']",
            {},
            "docker_env declares volumes (['/srv/data:/data']): host paths mean nothing",
            ("--docker-env",),
        ),
    ],
)
def test_conda_and_docker_projects_are_refused_saying_what_to_do(
    platform: Platform,
    tracking_server: TrackingServer,
    environment: str,
    files: dict[str, str],
    says: str,
    extra: tuple[str, ...],
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, "refused", environment, files)
    outcome = _train(platform, tracking_server, project, "3.0", tmp_path / "envs", *extra)
    assert not outcome["succeeded"]
    assert outcome["reason"] == UNSUPPORTED_ENV
    assert says in outcome["message"], outcome["message"]
    assert "instead" in outcome["message"] or "remove them" in outcome["message"]
    assert not (tmp_path / "envs").exists()  # refused before anything was installed
    assert outcome["run_id"] is None  # and before the MLflow run


def test_a_docker_env_project_trains_in_two_phases_with_its_entry_point_between(
    platform: Platform,
    tracking_server: TrackingServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = _project(tmp_path, "in-image", DOCKER_ENV, {})
    (project / "train.py").write_text(textwrap.dedent(DOCKER_TRAIN_PY))
    stage = tmp_path / "trainings"
    monkeypatch.setenv("COPIED_VARIABLE", "from-the-training")
    staging = ("--docker-env", "--stage-dir", str(stage))
    prepared = _train(platform, tracking_server, project, "5.0", tmp_path / "envs", *staging)
    assert prepared["succeeded"], prepared["message"]
    step = prepared["project"]
    run_id = prepared["run_id"]
    assert step["image"] == "registry.example/team/trainer:1"
    assert prepared["model_uri"] is None and prepared["gate_passed"] is None
    assert f"in the project's image {step['image']}" in prepared["message"]
    # As MLflow's docker backend sets them: the run, the experiment, the declared pairs. A
    # name without a value is the container's own (the platform's variables): never a value
    # of this environment in the report, which the Model's status keeps.
    assert step["env"] == {
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_EXPERIMENT_ID": prepared["experiment_id"],
        "PROJECT_MODE": "from-mlproject",
    }
    assert "from-the-training" not in json.dumps(prepared)
    folder = stage / run_id
    assert f"--train {folder / 'train.parquet'}" in step["command"]
    assert {p.name for p in folder.iterdir()} == {
        "state.json", "training_set.parquet", "train.parquet", "test.parquet"
    }  # fmt: skip
    client = MlflowClient(tracking_server.url)
    assert client.get_run(run_id).info.status == "RUNNING"
    assert "mode" not in client.get_run(run_id).data.params  # the entry point has not run

    finish = ("--phase", "finish", "--run-id", run_id)
    # The init container: the command in the project's directory, with the platform's
    # variables (COPIED_VARIABLE among them) and its own (the image's own environment: here
    # this one's Python, as the image's would be).
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COPIED_VARIABLE": "from-the-training",
        "MLFLOW_TRACKING_URI": tracking_server.url,
        **step["env"],
    }
    subprocess.run(["sh", "-c", step["command"]], cwd=step["directory"], env=env, check=True)

    done = _train(platform, tracking_server, project, "5.0", tmp_path / "envs", *staging, *finish)
    assert done["succeeded"], done["message"]
    assert done["run_id"] == run_id and done["gate_passed"] is True
    assert done["model_uri"].startswith("models:/") and done["registered_version"]
    # The prepare phase's report carries on: training set and source; the features (left
    # out of its report, which names them in the command) from its state.
    for key in ("training_set_hash", "training_set_rows", "source_revision"):
        assert done[key] == prepared[key], key
    assert "features" not in prepared and "contract" not in prepared
    columns = [f["column"] for f in done["features"]]
    assert len(columns) == len(FEATURES) and f"--features {','.join(columns)}" in step["command"]
    assert done["contract"]["evaluation"]["metric"] == "accuracy"
    run = client.get_run(run_id)
    assert run.data.params["mode"] == "from-mlproject/from-the-training"
    assert run.info.status == "FINISHED"
    assert "eval_accuracy" in run.data.metrics
    assert not folder.exists()  # the stage folder goes once registered

    # Finishing again (a Job retried after the folder went): a clear failure, no stack.
    again = _train(platform, tracking_server, project, "5.0", tmp_path / "envs", *staging, *finish)
    assert not again["succeeded"] and again["reason"] == "TrainingFailed"
    assert "prepared state" in again["message"] and "train again" in again["message"]


@pytest.mark.parametrize(
    ("environment", "reason", "says"),
    [
        # MLflow's own check of the MLproject file.
        (
            "docker_env:\n  image: x:1\n  environment: MODE",
            "ProjectFailed",
            "the MLflow project is invalid: Project configuration (MLproject file) was "
            "invalid: environment must be a list",
        ),
        # What MLflow lets through and `docker run -e` could not take.
        (
            "docker_env:\n  image: x:1\n  environment: [[MODE]]",
            INVALID_ENV,
            "docker_env.environment[0] is ['MODE']: each item is a variable name or a "
            "[name, value] pair",
        ),
    ],
)
def test_a_malformed_docker_env_environment_is_refused_naming_the_item(
    platform: Platform,
    tracking_server: TrackingServer,
    environment: str,
    reason: str,
    says: str,
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, "bad-docker", environment, {})
    outcome = _train(platform, tracking_server, project, "6.0", tmp_path / "envs", "--docker-env")
    assert not outcome["succeeded"] and outcome["reason"] == reason
    assert says in outcome["message"], outcome["message"]
    assert outcome["run_id"] is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('python: "3.11"\ndependencies: [tabulate\n', "YAML syntax error"),
        (f"python: 3.10\ndependencies: [{LIBRARY}]\n", "not 3.1 (quote it"),
        ('python: "3.11"\nbuild_dependencies: pip\n', "`build_dependencies` must be a list"),
    ],
)
def test_a_malformed_python_env_is_refused_before_the_training_set_and_the_run(
    platform: Platform, tracking_server: TrackingServer, text: str, says: str, tmp_path: Path
) -> None:
    project = _project(
        tmp_path, "malformed", "python_env: python_env.yaml", {"python_env.yaml": text}
    )
    outcome = _train(platform, tracking_server, project, "4.0", tmp_path / "envs")
    assert not outcome["succeeded"]
    assert outcome["reason"] == INVALID_ENV
    assert outcome["message"].startswith("the project's python_env.yaml is not a valid python_env")
    assert says in outcome["message"]
    # Refused before the training set was built and before an MLflow run or environment.
    assert outcome["training_set_rows"] is None and outcome["run_id"] is None
    assert not (tmp_path / "envs").exists()


def test_a_docker_env_training_that_fails_leaves_no_stage_folder(
    platform: Platform, tracking_server: TrackingServer, tmp_path: Path
) -> None:
    """The stage folder outlives the first Job only for the second: a prepare phase that
    fails after the folder was made (an entry point parameter the spec does not give), and a
    finish phase that fails (no model logged: the entry point never logged one), remove it;
    nothing else would (the second Job's failure ends the training). Both runs end FAILED
    in MLflow with the reason as a tag."""
    stage = tmp_path / "trainings"
    staging = ("--docker-env", "--stage-dir", str(stage))
    needs = _project(tmp_path, "needs-alpha", DOCKER_ENV, {})
    mlproject = (needs / "MLproject").read_text()
    declared = mlproject.replace("      train: path", "      alpha: float\n      train: path")
    (needs / "MLproject").write_text(declared)
    refused = _train(platform, tracking_server, needs, "7.0", tmp_path / "envs", *staging)
    assert not refused["succeeded"] and refused["reason"] == "ProjectFailed", refused
    assert "alpha" in refused["message"] and refused["run_id"]
    assert not (stage / refused["run_id"]).exists()

    project = _project(tmp_path, "never-logs", DOCKER_ENV, {})
    prepared = _train(platform, tracking_server, project, "7.0", tmp_path / "envs", *staging)
    assert prepared["succeeded"], prepared["message"]
    folder = stage / prepared["run_id"]
    assert (folder / "state.json").exists()
    finish = ("--phase", "finish", "--run-id", prepared["run_id"])
    failed = _train(platform, tracking_server, project, "7.0", tmp_path / "envs", *staging, *finish)
    assert not failed["succeeded"] and failed["reason"] == "EvaluationFailed", failed
    assert not folder.exists()

    # Neither run stays RUNNING in MLflow: both end FAILED, saying why.
    client = MlflowClient(tracking_server.url)
    for outcome in (refused, failed):
        run_ = client.get_run(outcome["run_id"])
        assert run_.info.status == "FAILED", outcome
        assert run_.data.tags[run.FAILURE_TAG].startswith(f"{outcome['reason']}: "), outcome
