"""Properties every lykectl command keeps, checked by walking the typer app: each takes
`-o/--output`, each help reads whole at 80 columns; and every string pattern of the API
models reads as a sentence with a valid example, never as a regular expression."""

from __future__ import annotations

import enum
import json
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from lykectl.cli import app
from lykectl.patterns import PATTERNS
from lykeion.api.kinds import KINDS

runner = CliRunner()


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every leaf command under `group`."""
    children = getattr(group, "commands", None)  # typer's groups: not click.Group subclasses
    if isinstance(children, dict):
        for name, command in children.items():
            yield from commands(command, (*path, name))
    else:
        yield path


ROOT = typer.main.get_command(app)
COMMANDS = sorted(commands(ROOT))


def command_at(path: tuple[str, ...]) -> Any:
    command = ROOT
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def test_the_walk_finds_every_group_and_command() -> None:
    assert {p[0] for p in COMMANDS} >= {
        "families", "features", "models", "deployments", "predict", "init", "up", "down",
    }  # fmt: skip
    assert ("models", "train") in COMMANDS and ("features", "backfill") in COMMANDS
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_takes_an_output_format(path: tuple[str, ...]) -> None:
    options = {
        name: param
        for param in command_at(path).params
        if param.param_type_name == "option"  # typer ships its own copy of click
        for name in param.opts
    }
    assert "-o" in options and "--output" in options, f"lykectl {' '.join(path)} has no -o"
    annotation = options["-o"].type_descriptor.annotation  # the option's Enum (or Enum | None)
    formats = {
        member.value
        for kind in (annotation, *typing.get_args(annotation))
        if isinstance(kind, type) and issubclass(kind, enum.Enum)
        for member in kind
    }
    assert {"table", "yaml", "json"} <= formats


HELP_PATHS = [(), *sorted({p[:1] for p in COMMANDS if len(p) > 1}), *COMMANDS]


@pytest.mark.parametrize("path", HELP_PATHS, ids=[" ".join(p) or "lykectl" for p in HELP_PATHS])
def test_help_reads_whole_at_80_columns(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(x for x in lines if len(x) > 80)
    assert "…" not in result.stdout
    # Every option's every name is printed whole (none cut short to fit a column).
    for param in command_at(path).params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            for name in param.opts:
                assert re.search(rf"(^|[\s,]){re.escape(name)}([\s,=]|$)", result.stdout), name


def schema_patterns(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            yield schema["pattern"]
        for value in schema.values():
            yield from schema_patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from schema_patterns(value)


API_PATTERNS = sorted(
    {p for kind in KINDS for model in (kind.spec, kind.status)
     for p in schema_patterns(model.model_json_schema())}
)  # fmt: skip


def test_the_api_models_have_patterns_to_describe() -> None:
    assert len(API_PATTERNS) >= 10


@pytest.mark.parametrize("pattern", API_PATTERNS)
def test_every_api_pattern_has_a_sentence_and_a_valid_example(pattern: str) -> None:
    assert pattern in PATTERNS, f"no sentence for {pattern!r} in lykectl/patterns.py"
    form = PATTERNS[pattern]
    assert re.search(pattern, form.example), (pattern, form.example)
    assert not re.search(r"[\^$\\]|\[[a-z]", form.what), form.what  # words, not a regex


def test_a_pattern_mismatch_names_the_field_and_a_valid_value() -> None:
    result = runner.invoke(
        app,
        ["--kubeconfig", "/nonexistent/kubeconfig", "families", "create", "--alias", "Forward",
         "--name", "F", "--description", "d", "--authors", "ds@example.com,not-an-email"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith("error: spec.alias: 'Forward' is not valid: expected ")
    assert "e.g. forward;" in result.stderr
    assert (
        "spec.authors[1]: 'not-an-email' is not valid: expected an e-mail address, "
        "e.g. ds@example.com\n"
    ) in result.stderr
    assert "pattern" not in result.stderr and "^" not in result.stderr


def test_a_field_may_have_its_own_example() -> None:
    result = runner.invoke(
        app,
        ["--kubeconfig", "/nonexistent/kubeconfig", "models", "create", "forward",
         "--version", "1.x", "--description", "d", "--input-features", "rider.age",
         "--source-url", "git@host:p.git#sub@0123456789abcdef0123456789abcdef01234567",
         "--metric", "roc auc", "--threshold", "0.5"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "spec.version: '1.x' is not valid: expected one to three numbers" in result.stderr
    assert "spec.evaluation.metric: 'roc auc' is not valid" in result.stderr
    assert "e.g. roc_auc" in result.stderr


def test_init_and_down_print_documents(tmp_path: Path) -> None:
    created = runner.invoke(app, ["init", str(tmp_path / "project"), "-o", "json"])
    assert created.exit_code == 0, created.output
    document = json.loads(created.stdout)
    assert document["directory"] == str(tmp_path / "project")
    assert set(document["files"]) == {p.name for p in (tmp_path / "project").iterdir()}
    down = runner.invoke(app, ["down", "--workdir", str(tmp_path / "home"), "-o", "yaml"])
    assert down.exit_code == 0, down.output
    assert "stopped: false" in down.stdout
