"""lykectl without a server: help, client-side validation, traffic splits, JSONPath, --wait
verdicts, object loading and rendering, and stopping recorded processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from lykectl import embedded
from lykectl.cli import app
from lykectl.client import context_namespace, default_kubeconfig
from lykectl.errors import CliError
from lykectl.features import load_manifests
from lykectl.jsonpath import cell, evaluate
from lykectl.models import deployment_spec, model_spec
from lykectl.output import Output, human_duration, rows
from lykectl.traffic import TrafficError, next_versions
from lykectl.wait import State, assess
from lykeion.api import DEPLOYMENT, MODEL
from tests import objects

SHA = objects.SHA
runner = CliRunner()

GROUPS = {
    "families": ["create", "list", "get", "delete"],
    "features": ["apply", "list", "get", "delete"],
    "models": ["create", "list", "get", "delete", "train", "deploy", "rollback"],
    "deployments": ["list", "get", "delete"],
}


# --- help ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--help"], ["up", "--help"], ["down", "--help"], ["init", "--help"]]
    + [[group, "--help"] for group in GROUPS]
    + [[group, command, "--help"] for group, commands in GROUPS.items() for command in commands],
)
def test_help_of_every_command(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    if len(args) == 2 and args[0] in GROUPS:
        for command in GROUPS[args[0]]:
            assert command in result.stdout


def test_completion_options_are_offered() -> None:
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.stdout
    assert "--show-completion" in result.stdout


# --- client-side validation: fails before any connection is tried --------------------


def _create_model(**overrides: str) -> list[str]:
    values = {
        "--version": "1.0",
        "--description": "Forward test model",
        "--source-url": f"git@host:org/projects.git#mlprojects/forward@{SHA}",
        "--input-features": "rider.age,rider.drop_offs_count",
        "--labels-path": "labels.parquet",
        "--labels-timestamp-column": "event_time",
        "--target": "ordered_again",
        "--metric": "roc_auc",
        "--threshold": "0.7",
        **overrides,
    }
    # A kubeconfig that does not exist: reaching the client would fail differently.
    args = ["--kubeconfig", "/nonexistent/kubeconfig", "models", "create", "forward"]
    for option, value in values.items():
        args += [option, value]
    return args


@pytest.mark.parametrize(
    ("override", "field", "problem"),
    [
        (
            {"--source-url": "git@host:org/p.git#ml/forward@abc123"},
            "spec.source.url",
            "40-hex commit SHA>, or file://<path>, e.g. git@github.com:",
        ),
        ({"--version": "1.0-beta"}, "spec.version", "'1.0-beta' is not valid: expected one to"),
        (
            {"--input-features": "rider.age,riderage"},
            "spec.inputFeatures[1]",
            "'riderage' is not valid: expected entity.feature",
        ),
        ({"--input-features": "rider.age,rider.age:int64"}, "spec", "must not repeat a feature"),
        ({"--segment": "EU"}, "spec.segment", "'EU' is not valid: expected lowercase letters"),
    ],
)
def test_models_create_rejects_bad_input_before_connecting(
    override: dict[str, str], field: str, problem: str
) -> None:
    result = runner.invoke(app, _create_model(**override))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {field}: ")
    assert problem in lines[0]
    assert "Traceback" not in result.output
    assert "kubeconfig" not in result.stderr


def test_models_create_without_bad_input_gets_as_far_as_the_kubeconfig() -> None:
    result = runner.invoke(app, _create_model())
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: no kubeconfig at /nonexistent/kubeconfig (start the embedded platform with "
        "`lykectl up`, or pass --kubeconfig)"
    )


ORIGINAL = ["--version", "1.0", "--description", "Version description",
            "--source-url", f"git@host:projects.git#mlprojects/forward@{SHA}",
            "--input-features", "rider.age,rider.drop_offs_count"]  # fmt: skip


def test_models_create_takes_the_original_flags_alone() -> None:
    args = ["--kubeconfig", "/nonexistent/kubeconfig", "models", "create", "forward"]
    result = runner.invoke(app, [*args, "--segment", "default", *ORIGINAL])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no kubeconfig at /nonexistent/kubeconfig")
    spec = model_spec(
        family="forward", segment="default", version="1.0", description="d",
        source_url=f"git@host:projects.git#mlprojects/forward@{SHA}", entry_point="main",
        parameters={}, input_features=["rider.age,rider.drop_offs_count"],
    )  # fmt: skip
    assert "evaluation" not in spec and spec["training"] == {"requests": 0}
    assert MODEL.parse_spec(spec).wire()["inputFeatures"] == ["rider.age", "rider.drop_offs_count"]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--labels-path", "l.csv"], "also pass --labels-timestamp-column, --target"),
        (["--target", "y", "--labels-timestamp-column", "t"], "also pass --labels-path"),
        (["--metric", "roc_auc"], "also pass --threshold"),
        (["--threshold", "0.5"], "also pass --metric"),
    ],
)
def test_half_an_override_is_refused(extra: list[str], problem: str) -> None:
    args = ["--kubeconfig", "/nonexistent/kubeconfig", "models", "create", "forward"]
    result = runner.invoke(app, [*args, *ORIGINAL, *extra])
    assert result.exit_code == 1
    assert problem in result.stderr and "lykeion.yaml" in result.stderr


def test_the_kubeconfig_context_names_the_namespace(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
            {"name": "b", "context": {"cluster": "c", "user": "u"}},
        ],
        "current-context": "a",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    assert context_namespace(str(path)) == "team-a"
    path.write_text(yaml.safe_dump({**config, "current-context": "b"}))
    assert context_namespace(str(path)) is None
    assert context_namespace(str(tmp_path / "missing")) is None


def test_bad_param_is_a_usage_error() -> None:
    result = runner.invoke(app, [*_create_model(), "--param", "no-equals-sign"])
    assert result.exit_code == 2
    assert "is not key=value" in result.output


def test_families_create_rejects_a_bad_author() -> None:
    result = runner.invoke(
        app,
        [
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "families",
            "create",
            "--alias",
            "forward",
            "--name",
            "Forward",
            "--description",
            "d",
            "--authors",
            "ds@example.com,not-an-email",
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: spec.authors[1]: 'not-an-email' is not valid: expected an e-mail address"
    )


def test_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    result = runner.invoke(app, ["families", "list", "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: cannot reach the API server at https://127.0.0.1:1 (is `lykectl up` running?)\n"
    )


def test_kubeconfig_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert default_kubeconfig(tmp_path) == str(tmp_path / ".kube" / "config")
    (tmp_path / ".lykeion").mkdir()
    (tmp_path / ".lykeion" / "kubeconfig").write_text("{}")
    assert default_kubeconfig(tmp_path) == str(tmp_path / ".lykeion" / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", "/elsewhere/config")
    assert default_kubeconfig(tmp_path) == "/elsewhere/config"


# --- traffic --------------------------------------------------------------------------


def test_first_deployment_serves_the_version_fully() -> None:
    assert next_versions([], "1.0", None) == [{"version": "1.0", "traffic": 100}]


def test_switch_replaces_every_serving_version() -> None:
    current = [{"version": "1.0", "traffic": 90}, {"version": "1.1", "traffic": 10}]
    assert next_versions(current, "1.1", None) == [{"version": "1.1", "traffic": 100}]
    assert next_versions(current, "2.0", 100) == [{"version": "2.0", "traffic": 100}]


def test_canary_takes_its_share_from_the_one_serving_version() -> None:
    current = [{"version": "1.0", "traffic": 100}]
    assert next_versions(current, "1.1", 10) == [
        {"version": "1.0", "traffic": 90},
        {"version": "1.1", "traffic": 10},
    ]


def test_canary_share_can_be_changed() -> None:
    current = [{"version": "1.0", "traffic": 90}, {"version": "1.1", "traffic": 10}]
    assert next_versions(current, "1.1", 50) == [
        {"version": "1.0", "traffic": 50},
        {"version": "1.1", "traffic": 50},
    ]


def test_canary_without_a_serving_version_is_refused() -> None:
    with pytest.raises(TrafficError, match="deploy a version without --traffic first"):
        next_versions([], "1.0", 10)


def test_canary_beside_two_serving_versions_is_refused() -> None:
    current = [{"version": "1.0", "traffic": 50}, {"version": "1.1", "traffic": 50}]
    with pytest.raises(TrafficError, match=r"versions 1\.0, 1\.1 all serve traffic"):
        next_versions(current, "1.2", 10)


def test_deployment_spec_drops_a_shadow_that_goes_live_and_keeps_the_rest() -> None:
    current: dict[str, Any] = {
        "family": "forward",
        "segment": "default",
        "versions": [{"version": "1.0", "traffic": 100}],
        "shadow": "1.1",
        "backend": "seldon",
        "replicas": 3,
    }
    versions = next_versions(current["versions"], "1.1", 10)
    spec = deployment_spec(current, "forward", "default", versions)
    assert "shadow" not in spec
    assert (spec["backend"], spec["replicas"]) == ("seldon", 3)
    DEPLOYMENT.parse_spec(spec)  # the API model accepts the result
    assert deployment_spec(current, "forward", "default", versions, "kserve", 1)["backend"] == (
        "kserve"
    )


# --- JSONPath -------------------------------------------------------------------------

MODEL_OBJECT = {
    "metadata": {"name": "forward-default-1.0", "creationTimestamp": "2026-01-01T00:00:00Z"},
    "spec": {"family": "forward", "segment": "default", "version": "1.0"},
    "status": {
        "modelUri": "models:/forward/1",
        "conditions": [
            {"type": "FamilyResolved", "status": "True", "reason": "FamilyFound"},
            {"type": "Ready", "status": "False", "reason": "FeaturesNotDefined"},
        ],
    },
}


def test_jsonpath_dotted_fields() -> None:
    assert evaluate(MODEL_OBJECT, ".spec.family") == ["forward"]
    assert cell(MODEL_OBJECT, ".status.modelUri") == "models:/forward/1"
    assert evaluate(MODEL_OBJECT, ".spec.missing") == []
    assert cell(MODEL_OBJECT, ".status.missing.deeper") == ""


def test_jsonpath_condition_filter() -> None:
    ready = '.status.conditions[?(@.type=="Ready")]'
    assert cell(MODEL_OBJECT, f"{ready}.status") == "False"
    assert cell(MODEL_OBJECT, f"{ready}.reason") == "FeaturesNotDefined"
    assert cell(MODEL_OBJECT, '.status.conditions[?(@.type=="Trained")].status') == ""
    assert cell(MODEL_OBJECT, ".status.conditions[?(@.type=='FamilyResolved')].reason") == (
        "FamilyFound"
    )
    assert cell({"metadata": {}}, f"{ready}.status") == ""


def test_jsonpath_index_and_rendering() -> None:
    assert cell(MODEL_OBJECT, ".status.conditions[1].type") == "Ready"
    assert cell({"a": {"b": True}}, ".a.b") == "true"
    assert cell({"a": {"b": 3}}, ".a.b") == "3"


@pytest.mark.parametrize("path", ["spec.family", ".spec[*].x", "", '.a[?(@.b>"1")]'])
def test_jsonpath_refuses_other_shapes(path: str) -> None:
    with pytest.raises(ValueError, match="JSONPath"):
        evaluate(MODEL_OBJECT, path)


# --- table rows -----------------------------------------------------------------------


def test_rows_use_the_printer_columns_between_name_and_age() -> None:
    now = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    headers, cells = rows(MODEL, [MODEL_OBJECT], now=now)
    assert headers == ["NAME", "FAMILY", "SEGMENT", "VERSION", "READY", "REASON", "AGE"]
    assert cells == [
        ["forward-default-1.0", "forward", "default", "1.0", "False", "FeaturesNotDefined", "5m"]
    ]
    wide, _ = rows(MODEL, [MODEL_OBJECT], wide=True, all_namespaces=True, now=now)
    assert wide[0] == "NAMESPACE" and "MODEL URI" in wide


def test_human_duration() -> None:
    assert [human_duration(s) for s in (5, 119, 200, 3600, 5 * 3600 + 60, 3 * 86400)] == [
        "5s",
        "119s",
        "3m20s",
        "60m",
        "5h1m",
        "3d",
    ]


def test_get_output_formats_are_enumerated() -> None:
    assert [o.value for o in Output] == ["table", "wide", "yaml", "json"]


# --- --wait verdicts ------------------------------------------------------------------


def _obj(generation: int, observed: int | None, ready: dict[str, Any] | None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [{"type": "Ready", **ready}]
    return {"metadata": {"generation": generation}, "status": status}


def test_waits_while_the_operator_has_not_seen_the_generation() -> None:
    stale_failure = {"status": "False", "reason": "FamilyNotFound", "observedGeneration": 1}
    assert assess(_obj(2, 1, stale_failure)).state is State.waiting
    assert assess(_obj(1, None, None)).state is State.waiting
    assert assess(_obj(2, 2, stale_failure)).state is State.waiting  # condition still stale


def test_a_lasting_reason_of_the_current_generation_fails() -> None:
    verdict = assess(
        _obj(
            2,
            2,
            {
                "status": "False",
                "reason": "FamilyNotFound",
                "message": "no family",
                "observedGeneration": 2,
            },
        )
    )
    assert verdict.state is State.failed
    assert verdict.summary == "FamilyNotFound: no family"


def test_transient_reasons_and_unknown_keep_waiting() -> None:
    for ready in (
        {"status": "False", "reason": "Training", "observedGeneration": 3},
        {"status": "False", "reason": "WaitingForReplicas", "observedGeneration": 3},
        {"status": "Unknown", "reason": "Reconciling", "observedGeneration": 3},
    ):
        assert assess(_obj(3, 3, ready)).state is State.waiting


def test_ready_true_of_the_current_generation_is_done() -> None:
    ready = {"status": "True", "reason": "Resolved", "observedGeneration": 3}
    assert assess(_obj(3, 3, ready)).state is State.ready


def test_a_pending_training_request_keeps_waiting() -> None:
    obj = _obj(2, 2, {"status": "True", "reason": "Trained", "observedGeneration": 2})
    obj["spec"] = {"training": {"requests": 2}}
    obj["status"]["observedTrainingRequests"] = 1
    assert assess(obj).state is State.waiting
    obj["status"]["observedTrainingRequests"] = 2
    assert assess(obj).state is State.ready


# --- features apply -------------------------------------------------------------------


def test_load_manifests_checks_every_document() -> None:
    first, second = objects.manifest("rider-a"), objects.manifest("rider-b", entity="driver")
    first["metadata"]["labels"] = {"team": "ds"}
    text = yaml.safe_dump_all([first, second])
    loaded = load_manifests(text, "features.yaml", "ns1")
    assert [m["metadata"]["name"] for m in loaded] == ["rider-a", "rider-b"]
    assert loaded[0]["metadata"] == {
        "name": "rider-a",
        "namespace": "ns1",
        "labels": {"team": "ds"},
    }
    assert loaded[1]["spec"]["entity"]["name"] == "driver"


def test_load_manifests_names_the_bad_document_and_field() -> None:
    bad = objects.manifest("rider-b")
    bad["spec"]["features"][0]["type"] = "decimal"
    text = yaml.safe_dump_all([objects.manifest("rider-a"), bad])
    with pytest.raises(CliError) as caught:
        load_manifests(text, "features.yaml", "default")
    message = str(caught.value)
    assert message.startswith("features.yaml document 2 (rider-b): spec.features[0].type: ")
    assert "\n" not in message


def test_load_manifests_refuses_other_kinds() -> None:
    with pytest.raises(CliError, match="is a ModelFamily"):
        load_manifests(yaml.safe_dump(objects.family()), "f.yaml", "default")


def test_features_apply_of_a_bad_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text("apiVersion: lykeion.io/v1alpha1\nkind: FeatureManifest\nspec: {}\n")
    result = runner.invoke(
        app, ["--kubeconfig", "/nonexistent", "features", "apply", "-f", str(path)]
    )
    assert result.exit_code == 1
    assert result.stderr == f"error: {path} document 1: metadata.name is required\n"


# --- embedded platform: stopping what was recorded ------------------------------------


def test_terminate_stops_a_recorded_process_group() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        recorded = embedded.Process("sleeper", child.pid, sys.executable)
        assert embedded.is_alive(recorded)
        assert not embedded.is_alive(embedded.Process("sleeper", child.pid, "/bin/etcd"))
        embedded.terminate(recorded, grace=10.0)
        assert not embedded.is_alive(recorded)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGTERM  # it went on SIGTERM, no SIGKILL needed


def test_down_without_a_recorded_platform(tmp_path: Path) -> None:
    (tmp_path / "control-plane").mkdir()
    assert embedded.down(tmp_path, purge=False) is False
    assert (tmp_path / "control-plane").exists()
    assert embedded.down(tmp_path, purge=True) is False
    assert not (tmp_path / "control-plane").exists()


def test_platform_state_round_trips(tmp_path: Path) -> None:
    platform = embedded.Platform(
        api_server="https://127.0.0.1:6443",
        kubeconfig=str(tmp_path / "kubeconfig"),
        kubectl="/bin/kubectl",
        operator_health_port=8080,
        started_at="2026-01-01T00:00:00Z",
        processes=(embedded.Process("etcd", 1234, "/bin/etcd"),),
    )
    (tmp_path / embedded.STATE_FILE).write_text(json.dumps(platform.to_json()))
    assert embedded.read_state(tmp_path) == platform
    (tmp_path / embedded.STATE_FILE).write_text("{not json")
    with pytest.raises(CliError, match="unreadable"):
        embedded.read_state(tmp_path)
