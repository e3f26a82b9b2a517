"""A project's training contract: `lykeion.yaml` beside its `MLproject`.

What a training needs besides the code — which labels, which target, which gate, which
default parameters — is versioned with the code, so a Model may name only its source and
input features. The file is read at the pinned revision and validated by the same models
as the Model CRD (`LabelsSource`, `Evaluation`)::

    # lykeion.yaml
    labels:
      file: {path: data/labels.csv, format: csv}   # relative: the platform's data directory
      # or: bigquery: {table: project.dataset.labels}   (or {query: "SELECT ..."})
      timestampColumn: label_time
      target: ordered_again
    evaluation: {metric: roc_auc, threshold: 0.6, higherIsBetter: true}
    parameters: {c: "0.5"}                         # defaults; spec.source.parameters win

Precedence, part by part: a part set in the Model's spec (`spec.training.labels`,
`spec.evaluation`, a key of `spec.source.parameters`) wins over the file; a part neither
declares is an error (`TrainingUndeclared`). The resolved contract and the origin of each
part go to the Model's status, so a version stays reproducible and traceable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from lykeion.api.common import ApiModel
from lykeion.api.model import (
    ContractOrigins,
    Evaluation,
    LabelsSource,
    ModelSpec,
    Origin,
    ResolvedContract,
)

CONTRACT_FILE = "lykeion.yaml"
MAX_BYTES = 64 * 1024


class ProjectContract(ApiModel):
    """The training contract a project declares in `lykeion.yaml` (every part optional)."""

    labels: LabelsSource | None = None
    """Labelled examples, as `spec.training.labels` of a Model."""
    evaluation: Evaluation | None = None
    """The gate, as `spec.evaluation` of a Model."""
    parameters: dict[str, str] = Field(default_factory=dict, max_length=64)
    """Default entry-point parameters (numbers and booleans are accepted and kept as text)."""


class ContractError(Exception):
    """The contract is invalid or incomplete; `reason` is the condition's CamelCase reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def location(url: str, revision: str) -> str:
    """Where the contract file of `url` is, at `revision`, in the URL's own syntax.

    `git@host:p.git#ml/forward@<sha>` -> `git@host:p.git#ml/forward/lykeion.yaml@<sha>`;
    `file://examples/x` -> `file://examples/x/lykeion.yaml@<revision>`.
    """
    base = url if url.startswith("file://") else url.rsplit("@", 1)[0]
    return f"{base.rstrip('/')}/{CONTRACT_FILE}@{revision}"


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    return value


def _errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or '(file)'}: {item['msg']}"
        for item in error.errors()
    )


def read_project_contract(directory: Path, where: str) -> ProjectContract | None:
    """The contract in `directory` (an exported project), or None when it has no file.

    Raises `ContractError("InvalidTrainingContract")` naming `where` and the field when the
    file is not YAML, not a mapping, too large, or fails validation.
    """
    path = directory / CONTRACT_FILE
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_BYTES:
        raise ContractError("InvalidTrainingContract", f"{where} is larger than {MAX_BYTES} bytes")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ContractError("InvalidTrainingContract", f"{where} is not YAML: {error}") from error
    if data is None:
        return ProjectContract()
    if not isinstance(data, dict):
        raise ContractError("InvalidTrainingContract", f"{where} must be a mapping")
    if isinstance(data.get("parameters"), dict):
        data["parameters"] = {str(k): _text(v) for k, v in data["parameters"].items()}
    try:
        return ProjectContract.model_validate(data)
    except ValidationError as error:
        raise ContractError("InvalidTrainingContract", f"{where}: {_errors(error)}") from error


def resolve(spec: ModelSpec, project: ProjectContract | None, where: str) -> ResolvedContract:
    """The contract a training uses: the spec's parts, else the project's (pure).

    `where` names the project file (see `location`) in messages and origins. Raises
    `ContractError("TrainingUndeclared")` naming both places when labels or the gate are
    declared in neither.
    """
    declared = project or ProjectContract()
    labels = spec.training.labels or declared.labels
    evaluation = spec.evaluation or declared.evaluation
    missing = []
    if labels is None:
        missing.append(f"labels (spec.training.labels of the Model, or `labels:` in {where})")
    if evaluation is None:
        missing.append(f"the evaluation gate (spec.evaluation, or `evaluation:` in {where})")
    if labels is None or evaluation is None:
        state = "has no such file" if project is None else "does not declare it"
        raise ContractError(
            "TrainingUndeclared",
            f"training undeclared: no {' and no '.join(missing)}; the project {state}",
        )
    parameters = {**declared.parameters, **spec.source.parameters}
    origins: dict[str, Origin] = {
        key: "spec" if key in spec.source.parameters else "project" for key in parameters
    }
    both = {
        "labels": spec.training.labels is not None and declared.labels is not None,
        "evaluation": spec.evaluation is not None and declared.evaluation is not None,
    }
    overridden = [part for part, twice in both.items() if twice] + [
        f"parameters.{key}" for key in sorted(declared.parameters) if key in spec.source.parameters
    ]
    return ResolvedContract(
        labels=labels,
        evaluation=evaluation,
        parameters=parameters,
        origins=ContractOrigins(
            labels="spec" if spec.training.labels is not None else "project",
            evaluation="spec" if spec.evaluation is not None else "project",
            parameters=origins,
            project_file=where if project is not None else None,
            overridden=overridden,
        ),
    )
