"""Which environment an MLflow project trains in, and the settings uv gets (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lykeion.api.model import ModelStatus, TrainingRecord
from lykeion.executors.base import State, WorkStatus
from lykeion.handlers.training import checks, finish
from lykeion.training.run import (
    INVALID_ENV,
    UNSUPPORTED_ENV,
    ProjectEnvironment,
    StepError,
    project_environment,
    uv_settings,
)

ENTRY = "entry_points:\n  main:\n    command: python train.py\n"


def _project(tmp_path: Path, mlproject: str | None, **files: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    if mlproject is not None:
        (tmp_path / "MLproject").write_text(mlproject + ENTRY)
    for name, text in files.items():
        (tmp_path / name.replace("_yaml", ".yaml")).write_text(text)
    return tmp_path


def test_a_project_without_an_environment_runs_locally(tmp_path: Path) -> None:
    assert project_environment(_project(tmp_path, "name: p\n")) == ProjectEnvironment("local")


def test_a_python_env_named_or_beside_the_project_gets_its_own(tmp_path: Path) -> None:
    named = _project(tmp_path / "a", "python_env: env.yaml\n", env_yaml="python: '3.11'\n")
    assert project_environment(named) == ProjectEnvironment("uv", named / "env.yaml")
    beside = _project(tmp_path / "b", None, python_env_yaml="python: '3.11'\n")
    assert project_environment(beside) == ProjectEnvironment("uv", beside / "python_env.yaml")


@pytest.mark.parametrize(
    ("mlproject", "files", "says"),
    [
        ("conda_env: conda.yaml\n", {"conda_yaml": "dependencies: []\n"}, "conda.yaml"),
        (None, {"conda_yaml": "dependencies: []\n"}, "conda.yaml"),
        ("docker_env:\n  image: repo/img:1\n", {}, "image repo/img:1"),
    ],
)
def test_conda_and_docker_are_refused_with_what_to_do(
    tmp_path: Path, mlproject: str | None, files: dict[str, str], says: str
) -> None:
    with pytest.raises(StepError) as raised:
        project_environment(_project(tmp_path, mlproject, **files))
    assert raised.value.reason == UNSUPPORTED_ENV
    message = str(raised.value)
    assert says in message and "python_env.yaml" in message
    assert "not supported" in message or "runs only where trainings are Kubernetes Jobs" in message


def test_a_docker_env_where_images_run_is_its_image_and_variables(tmp_path: Path) -> None:
    mlproject = (
        "docker_env:\n  image: repo/img:1\n"
        '  environment: [["MODE", "fast"], ["RETRIES", 3], "TOKEN"]\n'
    )
    found = project_environment(_project(tmp_path, mlproject), containers=True)
    assert found == ProjectEnvironment(
        "docker",
        image="repo/img:1",
        environment=(("MODE", "fast"), ("RETRIES", "3"), ("TOKEN", None)),
    )


def test_a_missing_python_env_file_is_a_project_error(tmp_path: Path) -> None:
    with pytest.raises(StepError) as raised:
        project_environment(_project(tmp_path, "python_env: nosuch.yaml\n"))
    assert raised.value.reason == "ProjectFailed" and "nosuch.yaml" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("python: '3.11'\ndependencies: [pandas\n", "YAML syntax error at line 3"),
        ("", "it is empty"),
        ("- python: '3.11'\n", "a YAML list, not a mapping"),
        ("python: 3.11\ndependencies: [tabulate\n", "YAML syntax error at line 3"),
        ("python: 3.10\n", "not 3.1 (quote it"),
        ("python: ''\n", "`python` must be a version string"),
        ("python: '3.11'\nbuild_dependencies: pip\n", "`build_dependencies` must be a list"),
        ("python: '3.11'\ndependencies: {pandas: 2}\n", "`dependencies` must be a list"),
        ("python: '3.11'\ndependencies: [pandas, {pip: [x]}]\n", "`dependencies[1]`"),
        ("python: '3.11'\ndependencies: [pandas, null]\n", "`dependencies[1]`"),
        ("python: '3.11'\npip: [pandas]\n", "unknown key(s) pip"),
    ],
)
def test_a_malformed_python_env_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, text: str, says: str
) -> None:
    project = _project(tmp_path, "python_env: envs/train.yaml\n")
    (project / "envs").mkdir()
    (project / "envs" / "train.yaml").write_text(text)
    with pytest.raises(StepError) as raised:
        project_environment(project)
    assert raised.value.reason == INVALID_ENV
    message = str(raised.value)
    assert message.startswith("the project's envs/train.yaml is not a valid python_env: ")
    assert says in message, message


def test_a_malformed_python_env_beside_the_project_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(StepError) as raised:
        project_environment(_project(tmp_path, None, python_env_yaml="python: [3, 11]\n"))
    assert raised.value.reason == INVALID_ENV
    assert "python_env.yaml" in str(raised.value) and "[3, 11]" in str(raised.value)


def test_a_complete_python_env_is_accepted(tmp_path: Path) -> None:
    text = (
        'python: "3.11.4"\nbuild_dependencies: [pip, "setuptools>=70"]\n'
        "dependencies:\n  - pandas==2.2.3\n  - -r requirements.txt\n"
    )
    project = _project(tmp_path, None, python_env_yaml=text)
    assert project_environment(project) == ProjectEnvironment("uv", project / "python_env.yaml")
    # Lists may be left out or empty, as MLflow reads them.
    empty = _project(tmp_path / "e", None, python_env_yaml="python: '3.11'\ndependencies:\n")
    assert project_environment(empty).manager == "uv"
    # `python` may be left out too: MLflow then takes the running interpreter's version.
    bare = _project(tmp_path / "b", None, python_env_yaml="dependencies: [tabulate]\n")
    assert project_environment(bare).manager == "uv"


def test_the_invalid_environment_is_the_trained_conditions_reason(tmp_path: Path) -> None:
    project = _project(tmp_path, None, python_env_yaml="python: 3.10\n")
    with pytest.raises(StepError) as raised:
        project_environment(project)
    # What `lykeion.training.run` reports for it, as the Model's training handler reads it.
    reported = {"succeeded": False, "reason": raised.value.reason, "message": str(raised.value)}
    current = TrainingRecord(name="envs-t1", requests=1, started_at="2026-01-01T00:00:00Z")
    fields = finish(
        current, WorkStatus(State.FAILED, "BackoffLimitExceeded", reported), datetime.now(UTC)
    )
    trained, _ = checks(ModelStatus().patched(fields), 1, None)
    assert (trained.ok, trained.reason) == (False, INVALID_ENV)
    assert "python_env.yaml" in trained.message and "not 3.1 (quote it" in trained.message


def test_uv_gets_pips_index_settings_unless_its_own_are_set(tmp_path: Path) -> None:
    pip = {
        "PIP_INDEX_URL": "https://pypi.internal/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra/simple",
        "PIP_FIND_LINKS": "/opt/wheels",
        "PIP_CERT": "/etc/ca.crt",
    }
    settings = uv_settings(pip, tmp_path)
    assert settings["UV_INDEX_URL"] == "https://pypi.internal/simple"
    assert settings["UV_EXTRA_INDEX_URL"] == "https://extra/simple"
    assert settings["UV_FIND_LINKS"] == "/opt/wheels"
    assert settings["SSL_CERT_FILE"] == "/etc/ca.crt"
    own = uv_settings({**pip, "UV_INDEX_URL": "https://uv/simple"}, tmp_path)
    assert own["UV_INDEX_URL"] == "https://uv/simple"
    assert pip == {
        "PIP_INDEX_URL": "https://pypi.internal/simple",
        "PIP_EXTRA_INDEX_URL": "https://extra/simple",
        "PIP_FIND_LINKS": "/opt/wheels",
        "PIP_CERT": "/etc/ca.crt",
    }  # read, not changed


def test_environments_and_the_cache_live_under_the_root(tmp_path: Path) -> None:
    settings = uv_settings({}, tmp_path)
    assert settings["MLFLOW_ENV_ROOT"] == str(tmp_path / "virtualenvs")
    assert settings["UV_CACHE_DIR"] == str(tmp_path / "uv-cache")
    assert settings["UV_PYTHON_DOWNLOADS"] == "never"
    assert "UV_INDEX_URL" not in settings  # uv's default index
    assert uv_settings({"UV_CACHE_DIR": "/c"}, tmp_path)["UV_CACHE_DIR"] == "/c"


@pytest.mark.parametrize(
    ("docker_env", "says"),
    [
        (
            '  image: repo/img:1\n  environment: [["MODE=fast", "1"]]\n',
            "docker_env.environment[0] names the variable 'MODE=fast'",
        ),
        (
            '  image: repo/img:1\n  environment: ["MODE", "1ST"]\n',
            "docker_env.environment[1] names the variable '1ST'",
        ),
        ("  image: ' repo/img:1'\n", "docker_env.image ' repo/img:1' has spaces around it"),
    ],
)
def test_a_docker_env_the_api_server_would_refuse_is_refused_first(
    tmp_path: Path, docker_env: str, says: str
) -> None:
    """What the second Job's init container would carry: the API server refuses the Job
    for a variable name with `=` (before 1.34 for any name that is not letters, digits and
    `_-.`, not starting with a digit) and its pod for an image with spaces around it (1.36:
    "must not have leading or trailing whitespace"); the training would wait forever."""
    with pytest.raises(StepError) as raised:
        project_environment(_project(tmp_path, "docker_env:\n" + docker_env), containers=True)
    assert raised.value.reason == INVALID_ENV
    assert says in str(raised.value), str(raised.value)
