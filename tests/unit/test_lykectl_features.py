"""lykectl's Feature API commands and `models logs` without a server: argument errors,
the default URL, table rendering of plain answers, training-log paths and following."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lykectl import embedded, feature_api, training_logs
from lykectl.cli import app
from lykectl.errors import CliError
from tests import objects

runner = CliRunner()


def _platform(feature_api_url: str | None) -> dict[str, Any]:
    platform = embedded.Platform(
        api_server="https://127.0.0.1:1",
        kubeconfig="/nowhere/kubeconfig",
        kubectl="kubectl",
        operator_health_port=1,
        started_at="2026-01-01T00:00:00Z",
        processes=(),
        feature_api_url=feature_api_url,
    )
    return platform.to_json()


# --- help and argument errors ----------------------------------------------------------


@pytest.mark.parametrize("args", [["features", "read"], ["features", "search"], ["models", "logs"]])
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout


def test_features_group_lists_the_new_commands() -> None:
    result = runner.invoke(app, ["features", "--help"])
    assert "read" in result.stdout and "search" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["features", "read", "rider"], "--keys"),
        (["features", "read", "rider", "--keys", " , "], "at least one key"),
        (["features", "read", "rider", "--keys", "r1", "--features", ","], "feature name"),
        (["features", "read", "rider", "--keys", "r1", "-o", "wide"], "wide"),
        (["features", "search", " "], "words to search"),
        (["models", "logs", "forward", "--version", "1.0", "--tail", "-1"], "--tail"),
    ],
)
def test_usage_errors_exit_2(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_read_without_a_url_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["features", "read", "rider", "--keys", "r1", "--features", "age"],
        env={"LYKEION_HOME": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert result.output == ("error: no Feature API URL: pass --api-url or start `lykectl up`\n")


def test_search_of_an_unreachable_api_is_one_line(tmp_path: Path) -> None:
    (tmp_path / embedded.STATE_FILE).write_text(json.dumps(_platform("http://127.0.0.1:9")))
    result = runner.invoke(app, ["features", "search", "age", "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot reach the Feature API at http://127.0.0.1:9/")
    assert len(result.output.splitlines()) == 1


# --- the recorded URL -----------------------------------------------------------------


def test_api_url_prefers_the_option_then_platform_json(tmp_path: Path) -> None:
    assert feature_api.api_url("http://h:1/", tmp_path) == "http://h:1"
    (tmp_path / embedded.STATE_FILE).write_text(json.dumps(_platform("http://127.0.0.1:5/")))
    assert feature_api.api_url(None, tmp_path) == "http://127.0.0.1:5"


def test_platform_json_without_a_feature_api_is_still_read(tmp_path: Path) -> None:
    old = _platform(None)
    del old["feature_api_url"]  # written by a lykectl that did not start the Feature API
    (tmp_path / embedded.STATE_FILE).write_text(json.dumps(old))
    platform = embedded.read_state(tmp_path)
    assert platform is not None and platform.feature_api_url is None
    with pytest.raises(CliError, match="no Feature API URL"):
        feature_api.api_url(None, tmp_path)


# --- rendering plain answers ------------------------------------------------------------


def test_feature_rows_one_row_per_key_missing_as_dash() -> None:
    rows = [
        {"key": "r1", "values": [{"name": "age", "value": "42"}, {"name": "tags", "value": None}]},
        None,
        {"key": "r3", "values": [{"name": "age", "value": "7"}, {"name": "tags", "value": ["a"]}]},
    ]
    entries = feature_api.by_key(["r1", "nobody", "r3"], rows)
    assert entries[1] == {"key": "nobody", "features": None}
    headers, cells = feature_api.feature_rows(entries, ["age", "tags"])
    assert headers == ["KEY", "AGE", "TAGS"]
    assert cells == [["r1", "42", "-"], ["nobody", "-", "-"], ["r3", "7", '["a"]']]


def test_search_rows() -> None:
    hits = [
        {
            "ref": "rider.age",
            "namespace": "team-a",
            "manifest": "rider-activity",
            "type": "int64",
            "owner": "ds@example.com",
            "description": "Age of the\nrider",
        },
        {"ref": "rider.score", "manifest": "m", "type": "float64", "owner": "", "description": ""},
    ]
    headers, cells = feature_api.search_rows(hits)
    assert headers == ["FEATURE", "TYPE", "MANIFEST", "OWNER", "DESCRIPTION"]
    assert cells == [
        ["rider.age", "int64", "team-a/rider-activity", "ds@example.com", "Age of the rider"],
        ["rider.score", "float64", "m", "-", "-"],
    ]


def test_feature_names_of_an_entity_across_manifests() -> None:
    first = objects.manifest("a", "rider", {"age": "int64", "score": "float64"})
    second = objects.manifest("b", "rider", {"score": "float64", "tenure": "int64"})
    other = objects.manifest("c", "driver", {"age": "int64"})
    assert feature_api.feature_names([first, other, second], "rider") == ["age", "score", "tenure"]
    assert feature_api.feature_names([other], "rider") == []


# --- models logs ---------------------------------------------------------------------------


def _model(current: dict[str, Any] | None, last: dict[str, Any] | None) -> dict[str, Any]:
    status = {"currentTraining": current, "lastTraining": last}
    return {"metadata": {"name": "forward-default-1.0"}, "status": status}


def _record(name: str, result: str = "Running") -> dict[str, Any]:
    return {"name": name, "requests": 1, "startedAt": "2026-01-01T00:00:00Z", "result": result}


def test_log_path_of_the_current_training_first(tmp_path: Path) -> None:
    model = _model(_record("forward-default-1.0-t2"), _record("forward-default-1.0-t1", "Failed"))
    log = training_logs.training_log(tmp_path, "team-a", model)
    assert log == training_logs.TrainingLog(
        "forward-default-1.0-t2", True, tmp_path / "runs/team-a/forward-default-1.0-t2/log"
    )


def test_log_path_of_the_last_training(tmp_path: Path) -> None:
    log = training_logs.training_log(
        tmp_path, "default", _model(None, _record("forward-default-1.0-t1", "Succeeded"))
    )
    assert not log.running
    assert log.path == tmp_path / "runs/default/forward-default-1.0-t1/log"


def test_no_training_is_one_error(tmp_path: Path) -> None:
    model = {"metadata": {"name": "forward-default-1.0"}}
    with pytest.raises(CliError, match=r"^Model forward-default-1\.0 has no training yet"):
        training_logs.training_log(tmp_path, "default", model)


def test_show_with_tail_and_a_missing_log(tmp_path: Path) -> None:
    log = training_logs.training_log(tmp_path, "default", _model(None, _record("m-t1", "Failed")))
    with pytest.raises(CliError, match="has no log at"):
        training_logs.show(log, None, print)
    log.path.parent.mkdir(parents=True)
    log.path.write_text("one\ntwo\nthree\n")
    shown: list[str] = []
    training_logs.show(log, 2, shown.append)
    assert shown == ["two\nthree\n"]
    training_logs.show(log, 0, shown.append)
    assert shown[-1] == ""


def test_follow_prints_new_lines_until_the_training_ends(tmp_path: Path) -> None:
    log = training_logs.training_log(tmp_path, "default", _model(_record("m-t1"), None))
    log.path.parent.mkdir(parents=True)
    log.path.write_text("old 1\nold 2\npart")
    # Each status check is one poll: the training writes, then ends at the third check.
    writes = iter(["ial\nnew\n", "last line without newline"])
    checks = []

    def running() -> bool:
        checks.append(1)
        chunk = next(writes, None)
        if chunk is not None:
            with log.path.open("a") as handle:
                handle.write(chunk)
        return len(checks) < 3

    shown: list[str] = []
    training_logs.follow(log, 1, running, shown.append, timeout=60, sleep=lambda _: None)
    assert "".join(shown) == "old 2\npartial\nnew\nlast line without newline"
    assert len(checks) == 3


def test_follow_is_bounded(tmp_path: Path) -> None:
    log = training_logs.training_log(tmp_path, "default", _model(_record("m-t1"), None))
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(CliError, match="stopped following after 2s"):
        training_logs.follow(
            log, None, lambda: True, print, timeout=2, clock=lambda: now[0], sleep=sleep
        )
    assert now[0] == pytest.approx(2.0)


def test_still_running() -> None:
    model = _model(_record("m-t2"), None)
    assert training_logs.still_running(model, "m-t2")
    assert not training_logs.still_running(model, "m-t1")
    assert not training_logs.still_running(_model(None, _record("m-t2", "Succeeded")), "m-t2")
