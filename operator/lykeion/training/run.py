"""Train one Model version (what the executors launch).

    python -m lykeion.training.run --model-json '{...}' --manifests-json '[...]' \\
        --offline duckdb:///data/offline.duckdb --tracking-uri http://127.0.0.1:5000 \\
        --cache-dir DIR --data-root DIR [--result result.json]

Steps: resolve the source at its exact revision; resolve the training contract (labels,
gate, parameters: the Model's spec, else the project's `lykeion.yaml` at that revision);
build the point-in-time training set and log it (artifact + MLflow dataset input with its
content hash); run the MLflow project's entry point on the time-ordered train split;
evaluate the logged model on the last 20% of label times; register it as
`<namespace>.<family>.<segment>` (`names.registry_name`; the experiment has the same
name; alias `candidate` when the gate passes) with the input features,
their types and order as version tags. The outcome goes to result.json; the exit code is
0 when training succeeded, whatever the gate said. Namespaces are tenants: the same family
and segment in two namespaces are two experiments and two registered models.

Project environments (`project_environment`): a project that declares a python_env
(MLproject `python_env:`, or a `python_env.yaml` beside it) trains in its own virtual
environment, created by MLflow's `uv` env manager with the packages it lists; projects
without one run in this process's environment (`env_manager="local"`). The environments
are kept under `--env-root` (default `<cache-dir>/envs`, on the data volume in the
cluster), one per distinct python_env, so a second training with the same one installs
nothing. uv takes the package index from the environment: `UV_INDEX_URL`, else
`PIP_INDEX_URL` (likewise the extra index, find-links, trusted hosts and `PIP_CERT`; on
Kubernetes the chart's `workload.packageIndex` sets pip's in every Job), and never downloads
a Python build (the declared version must be the image's). A docker_env project runs its
entry point in the image it names when the executor runs containers (`--docker-env`, the
`kubernetes` executor): this process then stops after the training set (the run is open,
the train/test split and the state are under `--stage-dir/<run id>`) and
reports the image, the entry point's command and its environment (`TrainingResult.project`);
the operator runs the command in that image as the init container of a second Job, whose
main container is this module again (`--phase finish --run-id ID`): the evaluation and the
registration, in the Lykeion image. conda projects, and docker_env ones where no container
runtime is (the local executor), are refused with `UnsupportedProjectEnvironment`, saying
why and what to declare instead; a python_env file MLflow could not use (YAML syntax, no
`python`, a list that is not a list of strings) with `InvalidProjectEnvironment`, naming
the file and the field, before the training set is built.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lykeion.api.model import ModelSpec

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput
    from mlflow.tracking import MlflowClient

TEST_FRACTION = 0.2
CANDIDATE = "candidate"
UNSUPPORTED_ENV = "UnsupportedProjectEnvironment"
INVALID_ENV = "InvalidProjectEnvironment"
PYTHON_ENV_KEYS = ("python", "build_dependencies", "dependencies")
"""The keys of a python_env file (MLflow's `_PythonEnv`): the Python version, the packages
installed first (pip, setuptools, wheel), and the project's own requirements."""
ENV_FAILED = "EnvironmentFailed"
ENV_COMPLETE = ".lykeion-complete"
"""Written in a project environment once it was fully created: one without it was cut
short (a killed pod) and is created again."""
CONDA_UNSUPPORTED = (
    "the project declares a conda environment ({path}); conda environments are not "
    "supported (no conda is available to Lykeion's trainings): list the packages in a "
    'python_env.yaml instead (`python: "3.11"` and `dependencies: [...]`, MLproject '
    "`python_env: python_env.yaml`), which Lykeion installs with uv; MLflow reads a "
    "conda.yaml beside MLproject as the environment even when MLproject names none, so "
    "delete it if the training image's libraries are enough"
)
DOCKER_UNSUPPORTED = (
    "the project declares docker_env (image {image}); docker_env runs only where trainings "
    "are Kubernetes Jobs (the kubernetes executor: the entry point runs in that image in the "
    "training's second Job), and this platform runs trainings as local processes, with no "
    "container runtime to start the image from; list the packages in a python_env.yaml "
    "instead, or train on a cluster"
)
DOCKER_VOLUMES = (
    "the project's docker_env declares volumes ({volumes}): host paths mean nothing to a "
    "training that runs as a Kubernetes Job; remove them (the platform's data volume is "
    "mounted at its own path in the entry point's container, and the project's directory "
    "is its working directory)"
)
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
"""A variable name every Kubernetes version the chart supports takes in a container's `env`
(from 1.34 the API server takes more, but never `=`)."""
STATE_FILE = "state.json"
"""In a docker_env training's stage folder: what the finish phase needs of the prepare
phase (the result so far, the gate, the label columns)."""


@dataclass(frozen=True)
class ProjectEnvironment:
    """How a project's entry point runs: `manager` is MLflow's env manager, `local` (this
    process's environment), `uv` (its own, from `python_env`, the python_env.yaml) or
    `docker` (in `image`, the docker_env's, with `environment`: each variable's value, or
    None for one the container takes from its own environment, the platform's variables,
    as `docker run -e NAME` takes it from the host's)."""

    manager: str
    python_env: Path | None = None
    image: str = ""
    environment: tuple[tuple[str, str | None], ...] = ()


def project_environment(directory: Path, containers: bool = False) -> ProjectEnvironment:
    """The environment the MLflow project in `directory` declares, read as MLflow reads it
    (MLproject's `python_env`/`conda_env`/`docker_env`, else a `python_env.yaml`, else a
    `conda.yaml` beside it). `containers`: whether the executor can run the entry point in
    an image of its own (docker_env). Raises `StepError` with `UnsupportedProjectEnvironment`
    for conda, for docker_env without `containers` and for docker_env `volumes` (the message
    says what to declare instead), with `InvalidProjectEnvironment` for a python_env file
    that `check_python_env` refuses, a docker_env `environment` that is not MLflow's list
    of names and `[name, value]` pairs or names a variable a container cannot have
    (`ENV_NAME`) and a docker_env `image` with spaces around it (the API server would refuse
    the second Job), and `ProjectFailed` for an MLproject file MLflow cannot read."""
    from mlflow.exceptions import MlflowException
    from mlflow.projects import _project_spec, env_type

    try:
        project = _project_spec.load_project(str(directory))
    except MlflowException as error:  # ExecutionException is one
        raise StepError("ProjectFailed", f"the MLflow project is invalid: {error}") from error
    if project.docker_env:
        image = project.docker_env.get("image")
        if not containers:
            raise StepError(UNSUPPORTED_ENV, DOCKER_UNSUPPORTED.format(image=image))
        if project.docker_env.get("volumes"):
            volumes = project.docker_env["volumes"]
            raise StepError(UNSUPPORTED_ENV, DOCKER_VOLUMES.format(volumes=volumes))
        if str(image) != str(image).strip():
            raise StepError(
                INVALID_ENV,
                f"the MLproject's docker_env.image {str(image)!r} has spaces around it: a "
                "container's image is refused with them",
            )
        return ProjectEnvironment(
            "docker",
            image=str(image),
            environment=docker_environment(project.docker_env.get("environment")),
        )
    if project.env_type == env_type.CONDA:
        where = Path(project.env_config_path).name
        raise StepError(UNSUPPORTED_ENV, CONDA_UNSUPPORTED.format(path=where))
    if project.env_type == env_type.PYTHON and project.env_config_path:
        path = Path(project.env_config_path)
        shown = path.relative_to(directory) if path.is_relative_to(directory) else path
        check_python_env(path, shown.as_posix())
        return ProjectEnvironment("uv", path)
    return ProjectEnvironment("local")


def docker_environment(declared: Any) -> tuple[tuple[str, str | None], ...]:
    """A docker_env's `environment` (MLflow's form: a list whose items are a variable name,
    copied from the environment that runs the project, or a `[name, value]` pair) as
    (name, value or None) pairs, in order. Raises `StepError` with
    `InvalidProjectEnvironment` naming the item's index for anything else, and for a name
    that `ENV_NAME` does not match."""
    if declared is None:
        return ()
    if not isinstance(declared, list):
        raise StepError(
            INVALID_ENV,
            f"the MLproject's docker_env.environment must be a list, not {declared!r} "
            '(items: a variable name, or a [name, value] pair such as ["MODE", "fast"])',
        )
    pairs: list[tuple[str, str | None]] = []
    for index, item in enumerate(declared):
        if isinstance(item, str) and item:
            pair: tuple[str, str | None] = (item, None)
        elif (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0]
            and isinstance(item[1], str | int | float | bool)
        ):
            pair = (item[0], str(item[1]))
        else:
            raise StepError(
                INVALID_ENV,
                f"the MLproject's docker_env.environment[{index}] is {item!r}: each item is a "
                'variable name or a [name, value] pair such as ["MODE", "fast"]',
            )
        if not ENV_NAME.fullmatch(pair[0]):
            # The API server would refuse the second Job (422), after the training set.
            raise StepError(
                INVALID_ENV,
                f"the MLproject's docker_env.environment[{index}] names the variable "
                f"{pair[0]!r}: a container's variable name is letters, digits, '_', '-' and "
                "'.', not starting with a digit (write a value as [name, value])",
            )
        pairs.append(pair)
    return tuple(pairs)


def _invalid(shown: str, problem: str) -> StepError:
    return StepError(
        INVALID_ENV,
        f"the project's {shown} is not a valid python_env: {problem} (a python_env has "
        '`python: "3.11"`, optional `build_dependencies:` and `dependencies:`, each a list '
        "of requirement strings)",
    )


def check_python_env(path: Path, shown: str) -> None:
    """Refuse a python_env file that MLflow's `uv` env manager could not use, as MLflow
    reads one (`mlflow.utils.environment._PythonEnv`): a YAML mapping with only the keys
    `PYTHON_ENV_KEYS`; `python`, when given, a version string (absent: MLflow takes the
    running interpreter's, the image's); `build_dependencies` and `dependencies`
    absent or lists of non-empty requirement strings. `shown` is how the message names the
    file (its path in the project).

    Raises `StepError` with `InvalidProjectEnvironment`, whose message names the file, the
    field (and the item's index in a list) and the problem."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as error:
        raise _invalid(shown, f"cannot read it: {error.strerror}") from error
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        what = getattr(error, "problem", None) or str(error)
        raise _invalid(shown, f"YAML syntax error{at}: {what}") from error
    if loaded is None:
        raise _invalid(shown, "it is empty")
    if not isinstance(loaded, dict):
        raise _invalid(shown, f"it is a YAML {type(loaded).__name__}, not a mapping")
    unknown = sorted(str(key) for key in loaded if key not in PYTHON_ENV_KEYS)
    if unknown:
        raise _invalid(shown, f"unknown key(s) {', '.join(unknown)}")
    python = loaded.get("python")
    # No `python`: MLflow uses the running interpreter's version, the image's.
    if python is not None and (not isinstance(python, str) or not python.strip()):
        hint = " (quote it: YAML reads 3.10 as the number 3.1)" if isinstance(python, float) else ""
        raise _invalid(
            shown, f'`python` must be a version string such as "3.11", not {python!r}{hint}'
        )
    for key in ("build_dependencies", "dependencies"):
        listed = loaded.get(key)
        if listed is None:
            continue
        if not isinstance(listed, list):
            raise _invalid(
                shown, f"`{key}` must be a list of requirements, not a {type(listed).__name__}"
            )
        for index, item in enumerate(listed):
            if not isinstance(item, str) or not item.strip():
                raise _invalid(
                    shown,
                    f'`{key}[{index}]` must be a requirement string (e.g. "pandas==2.2.3"), '
                    f"not {item!r}",
                )


def uv_settings(env: Mapping[str, str], env_root: Path) -> dict[str, str]:
    """The environment variables that make MLflow's `uv` env manager keep its environments
    under `env_root` and install from the configured index (pure; `env` is the process's
    environment, read not changed).

    `MLFLOW_ENV_ROOT` is `env_root/virtualenvs`, uv's download cache `env_root/uv-cache`
    unless `UV_CACHE_DIR` is set. uv does not read pip's settings: `PIP_INDEX_URL`,
    `PIP_EXTRA_INDEX_URL`, `PIP_FIND_LINKS`, `PIP_TRUSTED_HOST` pass on as `UV_INDEX_URL`,
    `UV_EXTRA_INDEX_URL`, `UV_FIND_LINKS`, `UV_INSECURE_HOST` (space-separated hosts, as
    pip's) and `PIP_CERT` as `SSL_CERT_FILE`, unless the uv (or SSL) variable is set
    itself. Python builds are never downloaded
    (`UV_PYTHON_DOWNLOADS=never`) and files are copied, not linked, from the cache (the
    cache and the environments may be on different file systems) unless set otherwise."""
    settings = {
        "MLFLOW_ENV_ROOT": str(env_root / "virtualenvs"),
        "UV_CACHE_DIR": env.get("UV_CACHE_DIR") or str(env_root / "uv-cache"),
        "UV_PYTHON_DOWNLOADS": env.get("UV_PYTHON_DOWNLOADS") or "never",
        "UV_LINK_MODE": env.get("UV_LINK_MODE") or "copy",
        "PIP_NO_INPUT": "1",
    }
    for uv, pip in (
        ("UV_INDEX_URL", "PIP_INDEX_URL"),
        ("UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL"),
        ("UV_FIND_LINKS", "PIP_FIND_LINKS"),
        ("UV_INSECURE_HOST", "PIP_TRUSTED_HOST"),
        ("SSL_CERT_FILE", "PIP_CERT"),
    ):
        value = env.get(uv) or env.get(pip)
        if value:
            settings[uv] = value
    return settings


@contextlib.contextmanager
def _environ(settings: Mapping[str, str]) -> Iterator[None]:
    """`settings` in `os.environ` while the block runs (MLflow and uv read them there, also
    in the processes they start); the previous values afterwards."""
    before = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def prepare_environment(directory: Path, python_env: Path, envs: Path) -> Path:
    """Create (or find) the virtual environment of the project in `directory` declared by
    `python_env`, where MLflow's `uv` env manager will look for it (`envs` is its
    `MLFLOW_ENV_ROOT`), and return its folder.

    MLflow itself creates an environment that is missing and reuses one that exists, but
    two trainings at once would create the same folder together, and one killed while
    creating leaves a broken folder that later ones would reuse: so the creation runs under
    a file lock beside the folder and ends by writing `ENV_COMPLETE`; a folder without it is
    removed and created again. Raises `StepError` (`EnvironmentFailed`) when uv is missing
    or cannot create it (the message ends with uv's output)."""
    import fcntl

    from mlflow.exceptions import MlflowException
    from mlflow.utils.environment import _PythonEnv
    from mlflow.utils.process import ShellCommandException
    from mlflow.utils.virtualenv import _create_virtualenv, _get_virtualenv_name

    if shutil.which("uv") is None:
        raise StepError(
            ENV_FAILED,
            "the project declares a python_env, which trains in an environment made by uv, "
            "and uv is not installed here: install lykeion[training], which brings it",
        )
    try:
        declared = _PythonEnv.from_yaml(str(python_env))
    except (OSError, TypeError, ValueError) as error:
        raise StepError(ENV_FAILED, f"{python_env.name} is invalid: {error}") from error
    envs.mkdir(parents=True, exist_ok=True)
    env_dir = envs / _get_virtualenv_name(declared, directory)
    with (envs / f"{env_dir.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if env_dir.exists() and not (env_dir / ENV_COMPLETE).exists():
            shutil.rmtree(env_dir)  # cut short before: never reuse half an environment
        if not env_dir.exists():
            try:
                _create_virtualenv(
                    directory, declared, env_dir, env_manager="uv", capture_output=True
                )
            except (MlflowException, ShellCommandException) as error:
                detail = str(error).strip()[-1500:]
                raise StepError(
                    ENV_FAILED,
                    f"uv could not create the project's environment from {python_env.name} "
                    f"(python {declared.python}): {detail}",
                ) from error
            (env_dir / ENV_COMPLETE).write_text(python_env.read_text())
    return env_dir


def experiment_for(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of the MLflow experiment `name`, created when missing.

    Trainings of several versions of one family/segment share the experiment and may start
    at the same moment: when another creates it first (MLflow's `RESOURCE_ALREADY_EXISTS`),
    this one uses it. Raises `MlflowException` for any other tracking-server error.
    """
    import mlflow.exceptions

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def log_dataset_input(
    client: MlflowClient, run_id: str, dataset_input: DatasetInput, attempts: int = 3
) -> None:
    """Log `dataset_input` to run `run_id`, sharing the experiment's dataset record.

    MLflow keeps one dataset row per (experiment, name, digest) and its SQL store looks the
    row up before inserting it, without a lock: when two trainings of one family/segment
    log the same training set at the same moment, the second insert breaks the unique
    constraint and the server answers BAD_REQUEST (`IntegrityError` on SQLite,
    `UniqueViolation` on PostgreSQL). The failed request changed nothing, and the row now
    exists, so logging again attaches it. Retried up to `attempts` times in all; raises
    `MlflowException` for any other error or when the conflict persists.
    """
    import mlflow.exceptions

    for attempt in range(1, attempts + 1):
        try:
            client.log_inputs(run_id, [dataset_input])
            return
        except mlflow.exceptions.MlflowException as error:
            text = str(error).lower()
            conflict = "unique" in text or "duplicate" in text
            if not conflict or attempt == attempts:
                raise


@dataclass
class TrainingResult:
    succeeded: bool = False
    reason: str = ""
    message: str = ""
    run_id: str | None = None
    experiment_id: str | None = None
    model_uri: str | None = None
    registered_model: str | None = None
    registered_version: str | None = None
    artifact_uri: str | None = None
    """Where the model's files are (what serving systems fetch, e.g. KServe's storageUri)."""
    metric: str | None = None
    metric_value: float | None = None
    gate_passed: bool | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    training_set_hash: str | None = None
    training_set_rows: int | None = None
    source_revision: str | None = None
    contract: dict[str, Any] | None = None
    """The resolved training contract and where each part came from (wire form)."""
    features: list[dict[str, str]] = field(default_factory=list)
    duration_seconds: float | None = None
    project_seconds: float | None = None
    project: dict[str, Any] | None = None
    """Set by the prepare phase of a docker_env training (`project_step`): the entry point
    still has to run in its image; the operator runs it, then `--phase finish`."""


class StepError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Gate:
    """The evaluation gate a training applies: `metric` on the held-out labels against
    `threshold` (`higher_is_better`: pass when at or above it, else at or below)."""

    metric: str
    threshold: float
    higher_is_better: bool


@dataclass(frozen=True)
class Prepared:
    """What the steps after the project's entry point need of the steps before it: the run,
    where the split and the training set are, the label columns and the gate. Written as
    `STATE_FILE` for a docker_env training's finish phase."""

    run_id: str
    experiment_id: str
    registered: str
    """The registered model's name (`names.registry_name`)."""
    folder: Path
    """Holds `training_set.parquet`, `train.parquet` and `test.parquet`."""
    target: str
    gate: Gate


def train(args: argparse.Namespace, result: TrainingResult) -> None:
    """Every step in this process (`--phase all`), or up to the training set for a
    docker_env project when `--docker-env` is given (a project without docker_env then
    trains to the end all the same). Fills `result`; raises `StepError`."""
    import mlflow
    from mlflow.exceptions import ExecutionException

    body = json.loads(args.model_json)
    spec = ModelSpec.model_validate(body["spec"])
    with contextlib.ExitStack() as stack:
        prepared, directory, environment, parameters = prepare(args, result, body, stack)
        if environment.manager == "docker":
            result.project = project_step(
                directory, spec.source.entry_point, parameters, environment, prepared
            )
            return

        # 3. The project's own entry point, logging into this run. Its `python` must be the
        # interpreter of this environment (env_manager=local), not whatever PATH finds first;
        # uv comes from there too. MLflow and uv read their settings from the environment.
        os.environ["PATH"] = (
            f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
        started = time.perf_counter()
        settings: dict[str, str] = {}
        if environment.python_env is not None:
            env_root = Path(args.env_root) if args.env_root else Path(args.cache_dir) / "envs"
            settings = uv_settings(os.environ, env_root)
            with _environ(settings):
                env_dir = prepare_environment(
                    directory, environment.python_env, Path(settings["MLFLOW_ENV_ROOT"])
                )
            from mlflow.tracking import MlflowClient

            MlflowClient(args.tracking_uri).set_tag(
                prepared.run_id, "lykeion.project.environment", str(env_dir)
            )
        try:
            with _environ(settings):
                mlflow.projects.run(
                    str(directory),
                    entry_point=spec.source.entry_point,
                    parameters=parameters,
                    experiment_id=prepared.experiment_id,
                    run_id=prepared.run_id,
                    env_manager=environment.manager,
                    synchronous=True,
                )
        except ExecutionException as error:
            raise StepError("ProjectFailed", f"the MLflow project failed: {error}") from error
        result.project_seconds = time.perf_counter() - started
        evaluate_and_register(args, result, body, prepared)


def prepare(
    args: argparse.Namespace,
    result: TrainingResult,
    body: dict[str, Any],
    stack: contextlib.ExitStack,
) -> tuple[Prepared, Path, ProjectEnvironment, dict[str, str]]:
    """Steps 1-2: the source at its revision, the contract, the project's environment,
    the point-in-time training set, the MLflow run with the training set logged and the
    time-ordered split written. Returns what the later steps need, the project's directory,
    its environment and the entry point's parameters. The files go to a temporary folder
    that `stack` removes, or for a docker_env project (with `--docker-env`) to
    `--stage-dir/<run id>`, which outlives this process, with `STATE_FILE`. Raises
    `StepError`."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.tracking import MlflowClient

    from lykeion.evaluation.labels import read as read_labels
    from lykeion.features.view import FeatureView
    from lykeion.names import registry_name
    from lykeion.stores import open_offline
    from lykeion.stores.offline.base import LabelSpec
    from lykeion.training import contract, dataset
    from lykeion.training.source import SourceError, resolve
    from lykeion.training.statistics import log_statistics, training_statistics

    spec = ModelSpec.model_validate(body["spec"])
    name = body["metadata"]["name"]
    namespace = body["metadata"].get("namespace", "default")
    data_root = Path(args.data_root)

    # 1. The code, at exactly the pinned revision.
    try:
        source = resolve(spec.source.url, Path(args.cache_dir), data_root)
    except SourceError as error:
        raise StepError(error.reason, str(error)) from error
    result.source_revision = source.revision

    # 1b. What to train on and the gate: the spec's parts, else the project's at that revision.
    where = contract.location(spec.source.url, source.revision)
    try:
        declared = contract.read_project_contract(source.directory, where)
        resolved = contract.resolve(spec, declared, where)
    except contract.ContractError as error:
        raise StepError(error.reason, str(error)) from error
    result.contract = resolved.wire()
    labels_spec, gate = resolved.labels, resolved.evaluation

    # 1c. The project's environment: refused early when it cannot be made here.
    environment = project_environment(source.directory, containers=args.docker_env)

    # 2. The point-in-time training set, from the same definitions serving will use.
    views = [FeatureView.from_body(m) for m in json.loads(args.manifests_json)]
    try:
        refs = dataset.feature_refs(spec.input_features, views)
        labels = read_labels(
            labels_spec,
            data_root,
            args.offline,
            {ref.view.join_key: ref.view.key_type for ref in refs},
        )
        label_spec = LabelSpec(
            refs[0].view.join_key, labels_spec.timestamp_column, labels_spec.target
        )
        offline = open_offline(args.offline)
        try:
            training_set = dataset.build(labels, label_spec, refs, offline)
        finally:
            offline.close()
    except (dataset.DatasetError, ValueError) as error:
        raise StepError("TrainingSetFailed", str(error)) from error
    result.training_set_hash = training_set.content_hash
    result.training_set_rows = training_set.rows
    columns = [ref.column for ref in refs]
    result.features = [{"ref": ref.name, "column": ref.column, "type": ref.type} for ref in refs]

    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    family_segment = registry_name(namespace, spec.family, spec.segment)
    # Without a tracking server, artifacts go where the platform keeps its data.
    location = (
        None if args.tracking_uri.startswith("http") else f"{args.artifact_root}/{family_segment}"
    )
    experiment_id = experiment_for(client, family_segment, location)
    run = client.create_run(
        experiment_id,
        run_name=f"{name}-t{spec.training.requests}",
        tags={
            "lykeion.model": name,
            "lykeion.namespace": namespace,
            "lykeion.model.uid": body["metadata"].get("uid", ""),
            "lykeion.version": spec.version,
            "lykeion.source.url": spec.source.url,
            "lykeion.source.revision": source.revision,
            "lykeion.training.requests": str(spec.training.requests),
            "lykeion.features": json.dumps(result.features),
            "lykeion.contract": json.dumps(result.contract, separators=(",", ":")),
        },
    )
    run_id = run.info.run_id
    result.run_id, result.experiment_id = run_id, experiment_id

    if environment.manager == "docker":
        folder = stage_folder(args, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        # Kept for the second Job only when this phase succeeds: after a failure here (or
        # in `project_step`) no second Job runs, and nothing else would remove it.
        stack.push(_remove_on_failure(folder))
    else:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lykeion-train-")))
    import pyarrow.parquet as pq

    pq.write_table(training_set.table, folder / "training_set.parquet")
    client.log_artifact(run_id, str(folder / "training_set.parquet"), "training_set")
    frame = training_set.table.to_pandas()
    # The digest is our content hash, so MLflow shows the same identity the status does.
    data = from_pandas(
        frame,
        name="training_set",
        targets=labels_spec.target,
        digest=training_set.content_hash[:36],
    )
    context = [InputTag("mlflow.data.context", "training")]
    log_dataset_input(client, run_id, DatasetInput(data._to_mlflow_entity(), context))
    client.log_param(run_id, "lykeion.training_set.sha256", training_set.content_hash)
    client.log_param(run_id, "lykeion.training_set.rows", str(training_set.rows))
    # What the model server measures drift against (`serving/drift.py`).
    log_statistics(
        client,
        run_id,
        training_statistics(
            training_set.table, {f["ref"]: (f["column"], f["type"]) for f in result.features}
        ),
    )

    train_part, test_part = dataset.split_by_time(
        training_set.table, labels_spec.timestamp_column, TEST_FRACTION
    )
    if train_part.num_rows == 0 or test_part.num_rows == 0:
        raise StepError("TrainingSetFailed", f"{training_set.rows} label rows are too few to split")
    pq.write_table(train_part, folder / "train.parquet")
    pq.write_table(test_part, folder / "test.parquet")
    prepared = Prepared(
        run_id=run_id,
        experiment_id=experiment_id,
        registered=family_segment,
        folder=folder,
        target=labels_spec.target,
        gate=Gate(gate.metric, gate.threshold, gate.higher_is_better),
    )
    if environment.manager == "docker":
        state = {
            "result": asdict(result),
            "target": prepared.target,
            "gate": asdict(prepared.gate),
            "registered": prepared.registered,
        }
        (folder / STATE_FILE).write_text(json.dumps(state))
    parameters = {
        **resolved.parameters,
        "train": str(folder / "train.parquet"),
        "test": str(folder / "test.parquet"),
        "target": labels_spec.target,
        "features": ",".join(columns),
    }
    return prepared, source.directory, environment, parameters


def stage_folder(args: argparse.Namespace, run_id: str) -> Path:
    """Where a docker_env training keeps its split and state between its two Jobs:
    `--stage-dir/<run id>` (default `<cache-dir>/../trainings`, on the data volume)."""
    root = Path(args.stage_dir) if args.stage_dir else Path(args.cache_dir).parent / "trainings"
    return root / run_id


def project_step(
    directory: Path,
    entry_point: str,
    parameters: Mapping[str, str],
    environment: ProjectEnvironment,
    prepared: Prepared,
) -> dict[str, Any]:
    """What runs the entry point of a docker_env project in its image (the `project` of
    the result, wire form): `image`; `command`, the entry point's shell command with the
    parameters in, as MLflow composes it (`EntryPoint.compute_command`; MLflow's own
    docker backend runs the same command in the image); `directory`, its working directory
    (the pinned checkout, on the data volume); `env`, the docker_env's `[name, value]`
    variables and MLflow's `MLFLOW_RUN_ID` and `MLFLOW_EXPERIMENT_ID`, as MLflow's docker
    backend sets them. A variable the docker_env names without a value (MLflow: copied from
    the environment that starts the container) is not copied here: the entry point's
    container gets the platform's variables itself, as this one did, so nothing of this
    environment (which may hold credentials) goes into the Model's status. Raises
    `StepError` (`ProjectFailed`) when the entry point or a parameter is not the
    project's."""
    from mlflow.exceptions import MlflowException
    from mlflow.projects import _project_spec

    try:
        project = _project_spec.load_project(str(directory))
        command = project.get_entry_point(entry_point).compute_command(
            dict(parameters), str(prepared.folder)
        )
    except MlflowException as error:
        raise StepError("ProjectFailed", f"the MLflow project failed: {error}") from error
    env = {name: value for name, value in environment.environment if value is not None}
    env |= {"MLFLOW_RUN_ID": prepared.run_id, "MLFLOW_EXPERIMENT_ID": prepared.experiment_id}
    return {
        "image": environment.image,
        "command": command,
        "directory": str(directory),
        "env": env,
    }


def finish(args: argparse.Namespace, result: TrainingResult) -> None:
    """`--phase finish` of a docker_env training: once the entry point ran in its image
    (the init container before this one), the evaluation and the registration, from the
    state the prepare phase left under `--stage-dir/<--run-id>`; the folder is removed
    afterwards, registered or not (the Job is not retried: the training ends). Fills
    `result` (the prepare phase's fields too); raises `StepError` (`TrainingFailed` when
    the state is missing: the prepare phase's folder was removed)."""
    body = json.loads(args.model_json)
    folder = stage_folder(args, args.run_id)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError) as error:
        raise StepError(
            "TrainingFailed",
            f"the training's prepared state {folder / STATE_FILE} cannot be read ({error}): "
            "train again (lykectl models train)",
        ) from error
    for key, value in state["result"].items():
        if hasattr(result, key) and key not in ("succeeded", "reason", "message"):
            setattr(result, key, value)
    prepared = Prepared(
        run_id=args.run_id,
        experiment_id=str(result.experiment_id),
        registered=state["registered"],
        folder=folder,
        target=state["target"],
        gate=Gate(**state["gate"]),
    )
    try:
        evaluate_and_register(args, result, body, prepared)
    finally:
        # Once per training: the Job is not retried (backoffLimit 0), so a failed finish
        # ends the training and nothing would read the folder again.
        shutil.rmtree(folder, ignore_errors=True)


def _remove_on_failure(folder: Path) -> Callable[..., bool]:
    """An `ExitStack.push` callback that removes `folder` when the block raised (and lets
    the exception go on)."""

    def exit_(exc_type: type[BaseException] | None, *_: object) -> bool:
        if exc_type is not None:
            shutil.rmtree(folder, ignore_errors=True)
        return False

    return exit_


def evaluate_and_register(
    args: argparse.Namespace, result: TrainingResult, body: dict[str, Any], prepared: Prepared
) -> None:
    """Steps 4-5: the gate's metric on the held-out labels, the registration (alias
    `candidate` when the gate passes) and the run ended. Raises `StepError`."""
    import mlflow
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    from lykeion.serving.model import LoadedModel, ModelLoadError
    from lykeion.training import evaluate

    spec = ModelSpec.model_validate(body["spec"])
    name = body["metadata"]["name"]
    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    run_id, gate = prepared.run_id, prepared.gate

    # 4. Evaluation by the platform, on the held-out (latest) labels: the model is
    # called as the model server calls it, with the columns in their declared types.
    model_uri = f"runs:/{run_id}/model"
    try:
        test_part = pq.read_table(prepared.folder / "test.parquet")
        targets = pq.read_table(prepared.folder / "training_set.parquet", columns=[prepared.target])
        value = evaluate.evaluate_model(
            LoadedModel(model_uri),
            test_part,
            prepared.target,
            gate.metric,
            targets.column(prepared.target),
        )
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        ModelLoadError,
        mlflow.exceptions.MlflowException,
    ) as error:
        raise StepError("EvaluationFailed", f"cannot evaluate {model_uri}: {error}") from error
    client.log_metric(run_id, f"eval_{gate.metric}", value)
    result.metric, result.metric_value = gate.metric, value
    result.gate_passed = evaluate.passes(value, gate.threshold, gate.higher_is_better)

    # 5. MLflow's model registry: one registered model per family/segment, one version per training.
    registered = prepared.registered
    try:
        version = mlflow.register_model(
            model_uri, registered, tags={"lykeion.version": spec.version}
        )
        for key, text in (
            ("lykeion.model", name),
            ("lykeion.features", json.dumps(result.features)),
            ("lykeion.training_set.sha256", str(result.training_set_hash)),
            ("lykeion.source.revision", str(result.source_revision)),
            ("lykeion.gate", "passed" if result.gate_passed else "failed"),
        ):
            client.set_model_version_tag(registered, version.version, key, text)
        if result.gate_passed:
            client.set_registered_model_alias(registered, CANDIDATE, version.version)
    except mlflow.exceptions.MlflowException as error:
        raise StepError("RegistryFailed", str(error)) from error
    result.registered_model, result.registered_version = registered, str(version.version)
    result.model_uri = f"models:/{registered}/{version.version}"
    try:
        result.artifact_uri = client.get_model_version_download_uri(registered, version.version)
        result.metrics = {k: float(v) for k, v in client.get_run(run_id).data.metrics.items()}
    except mlflow.exceptions.MlflowException as error:
        raise StepError("RegistryFailed", str(error)) from error
    # Last: a run is FINISHED only when the training succeeded (else `fail_run` ends it).
    client.set_terminated(run_id, "FINISHED")


PREPARED_ONLY = ("features", "contract")
"""What a docker_env prepare phase's report leaves out: the operator reads only its outcome,
run and `project` from it, and the finish phase reports these again (from `STATE_FILE`)."""


def report(result: TrainingResult) -> str:
    """What the training reports (its termination message on Kubernetes, which keeps at
    most 4 KiB, the end of a longer one): `result` as compact JSON, without
    `PREPARED_ONLY` when it is a docker_env prepare phase's (`project` set), whose entry
    point command already names every feature column (pure)."""
    wire = asdict(result)
    if result.project is not None:
        for key in PREPARED_ONLY:
            wire.pop(key)
    return json.dumps(wire, separators=(",", ":"))


FAILURE_TAG = "lykeion.failure"
"""The tag a failed training's MLflow run carries: `<reason>: <message>` (at most
`FAILURE_TAG_CHARS`)."""
FAILURE_TAG_CHARS = 4000


def fail_run(tracking_uri: str, run_id: str | None, result: TrainingResult) -> None:
    """Ends the MLflow run of a training that failed after opening it as `FAILED`, tagged
    with `FAILURE_TAG` (the reason and message status gets), so that the run does not stay
    `RUNNING` in MLflow (a docker_env finish phase, a failed training-set log, an
    evaluation or registry failure) or `FINISHED` (an entry point that succeeded before
    the evaluation failed). Nothing when no run was opened; best effort otherwise: a
    tracking server that cannot be reached is reported on stderr, the training's outcome
    stays the one it had."""
    if not run_id:
        return
    # One retry, 10 s each: the failure may be the tracking server's own, and its report
    # must not wait on MLflow's default retries (minutes).
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    try:
        from mlflow.tracking import MlflowClient

        with _environ(quick):
            client = MlflowClient(tracking_uri)
            tag = f"{result.reason}: {result.message}"[:FAILURE_TAG_CHARS]
            client.set_tag(run_id, FAILURE_TAG, tag)
            client.set_terminated(run_id, "FAILED")
    except Exception as error:  # noqa: BLE001 - best effort, the outcome is reported anyway
        print(f"could not mark MLflow run {run_id} FAILED: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lykeion.training.run",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--model-json", required=True, help="the Model object as JSON")
    parser.add_argument(
        "--manifests-json", required=True, help="FeatureManifests defining its inputs, JSON list"
    )
    parser.add_argument("--offline", required=True, help="offline store URI")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking (and registry) URI")
    parser.add_argument("--cache-dir", required=True, help="where git sources are fetched")
    parser.add_argument("--data-root", default=".", help="relative paths resolve from here")
    parser.add_argument(
        "--env-root",
        help="where projects' python_env environments are kept (default: <cache-dir>/envs)",
    )
    parser.add_argument(
        "--docker-env",
        action="store_true",
        help="the executor runs containers: a docker_env project stops after the training "
        "set and reports the image and command of its entry point (see --phase)",
    )
    parser.add_argument(
        "--phase",
        choices=("all", "finish"),
        default="all",
        help="all: every step (a docker_env project with --docker-env stops before its entry "
        "point); finish: evaluate and register the run --run-id once its entry point ran",
    )
    parser.add_argument("--run-id", help="with --phase finish: the prepared run")
    parser.add_argument(
        "--stage-dir",
        help="where docker_env trainings keep their split and state between the phases "
        "(default: <cache-dir>/../trainings)",
    )
    parser.add_argument(
        "--artifact-root",
        default="mlartifacts",
        help="artifact location when tracking is not a server",
    )
    parser.add_argument(
        "--result",
        type=Path,
        # On Kubernetes the executor points this at the container's termination message.
        default=Path(os.environ.get("LYKEION_RESULT_PATH", "result.json")),
    )
    args = parser.parse_args(argv)
    if args.phase == "finish" and not args.run_id:
        parser.error("--phase finish needs --run-id")
    started = time.perf_counter()
    result = TrainingResult()
    try:
        if args.phase == "finish":
            finish(args, result)
        else:
            train(args, result)
        result.succeeded = True
        gate = "passed" if result.gate_passed else "failed"
        if result.project is not None:
            result.message = (
                f"prepared run {result.run_id}: its entry point runs next, in the project's "
                f"image {result.project['image']}"
            )
        else:
            result.message = (
                f"{result.metric}={result.metric_value:.4f}, gate {gate}; "
                f"registered {result.model_uri}"
            )
    except StepError as error:
        result.reason, result.message = error.reason, str(error)
    except Exception as error:  # noqa: BLE001 - reported as the training's outcome
        traceback.print_exc()
        result.reason, result.message = "TrainingFailed", f"{type(error).__name__}: {error}"
    if not result.succeeded:
        fail_run(args.tracking_uri, result.run_id or args.run_id, result)
    result.duration_seconds = time.perf_counter() - started
    args.result.write_text(report(result))
    print(result.message)
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
