"""The training contract: the project's lykeion.yaml, the spec's overrides, and what neither
declares; held to the precedence rule written out by hand on random combinations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lykeion.api.model import ModelSpec
from lykeion.training.contract import (
    CONTRACT_FILE,
    ContractError,
    ProjectContract,
    location,
    read_project_contract,
    resolve,
)

ROOT = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"
URL = f"git@host:projects.git#mlprojects/forward@{SHA}"
WHERE = location(URL, SHA)
SPEC_LABELS = {
    "file": {"path": "spec.csv", "format": "csv"},
    "timestampColumn": "t",
    "target": "y",
}
PROJECT_LABELS = {
    "file": {"path": "project.parquet"},
    "timestampColumn": "label_time",
    "target": "ordered_again",
}
SPEC_GATE = {"metric": "roc_auc", "threshold": 0.9}
PROJECT_GATE = {"metric": "accuracy", "threshold": 0.6, "higherIsBetter": True}


def _spec(
    labels: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    parameters: dict[str, str] | None = None,
) -> ModelSpec:
    body: dict[str, Any] = {
        "family": "forward",
        "segment": "default",
        "version": "1.0",
        "description": "d",
        "source": {"url": URL, "parameters": parameters or {}},
        "inputFeatures": ["rider.age"],
    }
    if labels is not None:
        body["training"] = {"labels": labels}
    if evaluation is not None:
        body["evaluation"] = evaluation
    return ModelSpec.model_validate(body)


def test_a_model_needs_only_its_source_and_features() -> None:
    spec = _spec()
    assert spec.training.labels is None and spec.evaluation is None
    assert "evaluation" not in spec.wire() and "labels" not in spec.wire()["training"]


def test_the_project_file_is_read_and_named_at_its_revision(tmp_path: Path) -> None:
    assert location(URL, SHA) == f"git@host:projects.git#mlprojects/forward/{CONTRACT_FILE}@{SHA}"
    assert location("file://examples/x/", "sha256:ab") == "file://examples/x/lykeion.yaml@sha256:ab"
    declared = read_project_contract(ROOT / "examples" / "forward" / "mlproject", WHERE)
    assert declared is not None and declared.labels is not None and declared.evaluation
    assert declared.labels.target == "ordered_again"
    assert declared.parameters == {"c": "0.5"}  # a YAML number, kept as the entry point's text
    assert read_project_contract(tmp_path, WHERE) is None


def test_project_only() -> None:
    project = ProjectContract.model_validate(
        {"labels": PROJECT_LABELS, "evaluation": PROJECT_GATE, "parameters": {"c": "1"}}
    )
    resolved = resolve(_spec(), project, WHERE)
    assert resolved.labels == project.labels and resolved.evaluation == project.evaluation
    origins = resolved.origins
    assert (origins.labels, origins.evaluation, origins.parameters) == (
        "project",
        "project",
        {"c": "project"},
    )
    assert origins.project_file == WHERE and origins.overridden == []


def test_both_given_the_spec_wins_and_says_so() -> None:
    project = ProjectContract.model_validate(
        {"labels": PROJECT_LABELS, "evaluation": PROJECT_GATE, "parameters": {"c": "1", "k": "2"}}
    )
    resolved = resolve(_spec(SPEC_LABELS, SPEC_GATE, {"c": "9"}), project, WHERE)
    assert resolved.labels.target == "y" and resolved.evaluation.metric == "roc_auc"
    assert resolved.parameters == {"c": "9", "k": "2"}
    assert resolved.origins.overridden == ["labels", "evaluation", "parameters.c"]
    wire = resolved.wire()
    assert wire["origins"] == {
        "labels": "spec",
        "evaluation": "spec",
        "parameters": {"c": "spec", "k": "project"},
        "projectFile": WHERE,
        "overridden": ["labels", "evaluation", "parameters.c"],
    }


def test_neither_is_training_undeclared_naming_both_places() -> None:
    with pytest.raises(ContractError) as raised:
        resolve(_spec(), None, WHERE)
    assert raised.value.reason == "TrainingUndeclared"
    message = str(raised.value)
    for place in ("spec.training.labels", "spec.evaluation", WHERE, "has no such file"):
        assert place in message
    with pytest.raises(ContractError) as half:
        resolve(_spec(SPEC_LABELS), ProjectContract(), WHERE)
    assert half.value.reason == "TrainingUndeclared"
    assert "evaluation" in str(half.value) and "labels (" not in str(half.value)
    assert "does not declare it" in str(half.value)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("labels: [1, 2]", "labels"),
        ("evaluation: {metric: auc}", "evaluation.threshold"),
        ("evaluation: {metric: auc, threshold: 1, extra: 2}", "evaluation.extra"),
        ("labels: {file: {path: x}, timestampColumn: T!, target: y}", "labels.timestampColumn"),
        ("just text", "must be a mapping"),
        ("labels: {", "not YAML"),
    ],
)
def test_an_invalid_file_names_the_file_and_the_field(
    tmp_path: Path, text: str, named: str
) -> None:
    (tmp_path / CONTRACT_FILE).write_text(text)
    with pytest.raises(ContractError) as raised:
        read_project_contract(tmp_path, WHERE)
    assert raised.value.reason == "InvalidTrainingContract"
    assert WHERE in str(raised.value) and named in str(raised.value)


KEYS = st.sampled_from(["a", "b", "c", "d"])
VALUES = st.sampled_from(["1", "2", "x"])


@given(
    spec_labels=st.booleans(),
    project_labels=st.booleans(),
    spec_gate=st.booleans(),
    project_gate=st.booleans(),
    has_file=st.booleans(),
    spec_params=st.dictionaries(KEYS, VALUES, max_size=4),
    project_params=st.dictionaries(KEYS, VALUES, max_size=4),
)
def test_precedence_part_by_part(
    spec_labels: bool,
    project_labels: bool,
    spec_gate: bool,
    project_gate: bool,
    has_file: bool,
    spec_params: dict[str, str],
    project_params: dict[str, str],
) -> None:
    project_labels, project_gate = project_labels and has_file, project_gate and has_file
    project_params = project_params if has_file else {}
    spec = _spec(
        SPEC_LABELS if spec_labels else None, SPEC_GATE if spec_gate else None, spec_params
    )
    project = (
        ProjectContract.model_validate(
            {
                **({"labels": PROJECT_LABELS} if project_labels else {}),
                **({"evaluation": PROJECT_GATE} if project_gate else {}),
                "parameters": project_params,
            }
        )
        if has_file
        else None
    )
    # The rule, by hand: each part from the spec if set there, else from the file, else none.
    labels = "spec" if spec_labels else "project" if project_labels else None
    gate = "spec" if spec_gate else "project" if project_gate else None
    if labels is None or gate is None:
        with pytest.raises(ContractError) as raised:
            resolve(spec, project, WHERE)
        assert raised.value.reason == "TrainingUndeclared"
        assert (labels is None) == ("labels (" in str(raised.value))
        assert (gate is None) == ("evaluation gate" in str(raised.value))
        return
    resolved = resolve(spec, project, WHERE)
    assert resolved.labels.target == ("y" if labels == "spec" else "ordered_again")
    assert resolved.evaluation.metric == ("roc_auc" if gate == "spec" else "accuracy")
    keys = set(spec_params) | set(project_params)
    assert resolved.parameters == {
        k: spec_params[k] if k in spec_params else project_params[k] for k in keys
    }
    assert resolved.origins.parameters == {
        k: "spec" if k in spec_params else "project" for k in keys
    }
    assert (resolved.origins.labels, resolved.origins.evaluation) == (labels, gate)
    expected = (
        (["labels"] if spec_labels and project_labels else [])
        + (["evaluation"] if spec_gate and project_gate else [])
        + [f"parameters.{k}" for k in sorted(set(spec_params) & set(project_params))]
    )
    assert resolved.origins.overridden == expected
    assert resolved.origins.project_file == (WHERE if has_file else None)
