"""The readiness gate and the traffic in effect (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from lykeion import conditions
from lykeion.api.featuremanifest import FeatureManifestStatus
from lykeion.api.model import ModelStatus
from lykeion.config import PlatformConfig
from lykeion.executors.base import EndpointStatus
from lykeion.features.view import FeatureView
from lykeion.handlers import rollout
from lykeion.runtime import Stored
from lykeion.serving.config import ServerConfig
from tests import objects

NOW = datetime(2026, 6, 1, tzinfo=UTC)
FEATURES = [
    {"ref": "rider.age", "column": "rider__age", "type": "int64"},
    {"ref": "rider.drop_offs_count", "column": "rider__drop_offs_count", "type": "int64"},
]


def _model(evaluated: bool = True, **status: Any) -> Stored[ModelStatus]:
    """A Model as the gate reads it (its status parsed; strictly: a test's status is whole)."""
    body = objects.model()
    body["status"] = {
        "conditions": [
            {"type": "Evaluated", "status": "True" if evaluated else "False",
             "reason": "GatePassed" if evaluated else "GateFailed",
             "message": "" if evaluated else "eval_roc_auc 0.41 is below 0.6",
             "lastTransitionTime": "2026-05-01T00:00:00Z", "observedGeneration": 1}
        ],
        "modelUri": "runs:/abc/model",
        "registeredModel": "forward-default",
        "registeredVersion": "3",
        "features": FEATURES,
        **status,
    }  # fmt: skip
    return Stored(body, ModelStatus.model_validate(body["status"]))


def _manifest(
    watermark: str | None = "2026-05-30T00:00:00Z",
    generation: int | None = 2,
    newest: str | None = "2026-05-29T00:00:00Z",
) -> dict[str, Any]:
    """A manifest whose generation `generation` is in effect (None: none is yet)."""
    body = objects.manifest()
    body["metadata"] |= {"namespace": "ns", "generation": 2, "uid": "u-7"}
    body["spec"]["ttl"] = "7d"
    body["status"] = {
        "watermark": watermark,
        "materializedGeneration": generation,
        "newestEventTime": newest,
    }
    return body


def _read(manifest: dict[str, Any]) -> Stored[FeatureManifestStatus]:
    """A FeatureManifest as the gate reads it (its status parsed, strictly)."""
    return Stored(manifest, FeatureManifestStatus.model_validate(manifest.get("status") or {}))


def test_gate_admits_an_evaluated_model_with_fresh_features() -> None:
    assert rollout.admit_model("1.0", _model()).admitted
    assert rollout.admit_features("1.0", _model(), [_read(_manifest())], NOW).admitted
    # While generation 3 is backfilled, generation 2 stays in effect and is served.
    backfilling = _manifest()
    backfilling["metadata"]["generation"] = 3
    assert rollout.admit_features("1.0", _model(), [_read(backfilling)], NOW).admitted


@pytest.mark.parametrize(
    ("model", "manifests", "reason", "words"),
    [
        (None, [_manifest()], "ModelVersionNotFound", "no Model"),
        (_model(evaluated=False), [_manifest()], "ModelNotEvaluated", "below 0.6"),
        (_model(modelUri=None), [_manifest()], "ModelNotTrained", "records no trained model"),
        (_model(), [], "FeatureMissing", "rider.age is defined by no FeatureManifest"),
        (_model(), [_manifest(watermark=None)], "FeaturesNotMaterialized", "not materialized"),
        (_model(), [_manifest(generation=None)], "FeaturesNotMaterialized", "not materialized"),
        (
            _model(),
            [_manifest("2026-05-01T00:00:00Z", newest="2026-05-01T00:00:00Z")],
            "FeaturesStale",
            "older than its TTL 7d",
        ),
        # A run a minute ago does not make a source whose newest event is old fresh.
        (
            _model(),
            [_manifest(newest="2026-05-01T00:00:00Z")],
            "FeaturesStale",
            "newest event of FeatureManifest rider-activity is from 2026-05-01",
        ),
        (_model(), [_manifest(newest=None)], "FeaturesStale", "has materialized no event"),
    ],
)
def test_gate_names_what_holds_a_version(
    model: Stored[ModelStatus] | None, manifests: list[dict[str, Any]], reason: str, words: str
) -> None:
    verdict = rollout.admit_model("1.0", model)
    if verdict.admitted and model is not None:
        verdict = rollout.admit_features("1.0", model, [_read(m) for m in manifests], NOW)
    assert verdict.reason == reason
    assert words in verdict.message


def test_gate_refuses_a_feature_whose_type_changed_since_training() -> None:
    changed = _manifest()
    changed["spec"]["features"][0]["type"] = "float64"
    verdict = rollout.admit_features("1.0", _model(), [_read(changed)], NOW)
    assert verdict.reason == "FeatureTypeChanged"
    assert "rider.age was trained as int64" in verdict.message


@pytest.mark.parametrize(
    ("desired", "serving", "expected"),
    [
        ({"1.0": 90, "1.1": 10}, {"1.0": True, "1.1": True}, {"1.0": 90, "1.1": 10}),
        # The canary never came up: the stable version keeps everything.
        ({"1.0": 90, "1.1": 10}, {"1.0": True, "1.1": False}, {"1.0": 100, "1.1": 0}),
        (
            {"1.0": 50, "1.1": 30, "2.0": 20},
            {"1.0": True, "1.1": True},
            {"1.0": 63, "1.1": 37, "2.0": 0},
        ),
        ({"1.0": 100}, {"1.0": False}, {"1.0": 0}),
        # 1.0 goes down and 1.1 is declared at 0%: 1.1 still gets nothing.
        ({"1.0": 100, "1.1": 0}, {"1.0": False, "1.1": True}, {"1.0": 0, "1.1": 0}),
        # Largest remainder: 100 * (33, 33, 34) / 100 is exact; over two, 49.25/50.75.
        (
            {"1.0": 33, "1.1": 33, "2.0": 34},
            {"1.1": True, "2.0": True},
            {"1.0": 0, "1.1": 49, "2.0": 51},
        ),
    ],
)
def test_traffic_moves_only_onto_serving_versions(
    desired: dict[str, int], serving: dict[str, bool], expected: dict[str, int]
) -> None:
    weights = rollout.effective_weights(desired, serving)
    assert weights == expected
    assert sum(weights.values()) in (0, 100)


def test_server_config_pins_the_registry_version_and_trained_inputs() -> None:
    deployment = objects.deployment()
    deployment["metadata"]["namespace"] = "ns"
    model = _model()
    model.body["spec"]["serving"] = {"defaults": [{"feature": "rider.age", "value": "30"}]}
    config = PlatformConfig(
        data_dir=__import__("pathlib").Path("/data"), online_store="sqlite:///data/online.db",
        offline_store="duckdb:///data/o.duckdb", data_root="/", tracking_uri="http://mlflow",
    )  # fmt: skip
    other = objects.manifest("other", "driver", {"rating": "float64"})
    manifests = [_read(_manifest()), _read(other)]
    server = rollout.server_config(deployment, "1.0", model, manifests, config)
    assert isinstance(server, ServerConfig)
    assert server.model_uri == "models:/forward-default/3"
    assert server.wire()["features"] == FEATURES
    assert [m["metadata"]["name"] for m in server.manifests] == ["rider-activity"]
    # The server reads the tables of the object's generation in effect, as the status says.
    served = FeatureView.from_body(server.manifests[0])
    assert served.table == FeatureView.from_body(_manifest()).table
    assert served.generation == 2
    assert server.defaults == {"rider.age": "30"}
    assert server.online_store == "sqlite:///data/online.db"
    # Without spec.skewSampleRate the server keeps its own default (not written); with it,
    # the rate.
    assert "skew_sample_rate" not in server.wire()
    deployment["spec"]["skewSampleRate"] = 0
    server = rollout.server_config(deployment, "1.0", model, [_read(_manifest())], config)
    assert server.wire()["skew_sample_rate"] == 0.0
    assert ServerConfig.model_validate(server.wire()).skew_sample_rate == 0.0


def test_a_server_config_the_server_would_refuse_is_refused_where_it_is_built() -> None:
    # A rate the CRD bounds, here bypassed: the server's own model is the last word.
    deployment = objects.deployment()
    deployment["spec"]["skewSampleRate"] = 1.5
    config = PlatformConfig(
        data_dir=__import__("pathlib").Path("/data"), online_store="sqlite:///data/online.db",
        offline_store="duckdb:///data/o.duckdb", data_root="/",
    )  # fmt: skip
    with pytest.raises(ValidationError) as refused:
        rollout.server_config(deployment, "1.0", _model(), [_read(_manifest())], config)
    message = rollout.config_problem("1.0", refused.value)
    assert "skew_sample_rate" in message and message.startswith("the model server of 1.0")
    spec = objects.deployment(versions={"1.0": 100})["spec"]
    _, checks = rollout.outcome(
        spec, [rollout.Admission("1.0", "ServerConfigInvalid", message)], None, {"1.0": 0}
    )
    evaluated = next(c for c in checks if c.type == rollout.MODELS_EVALUATED)
    assert (evaluated.status, evaluated.reason) == ("False", "ServerConfigInvalid")
    assert "skew_sample_rate" in evaluated.message


def test_the_gate_returns_each_verdict_with_the_configs_of_the_admitted_versions() -> None:
    # 1.0 passes and gets its config; 1.1 has no Model; with a rate the server refuses,
    # a version the gate admitted is refused by its config, its verdict in the same place.
    deployment = objects.deployment(versions={"1.0": 90, "1.1": 10})
    config = PlatformConfig(
        data_dir=__import__("pathlib").Path("/data"), online_store="sqlite:///data/online.db",
        offline_store="duckdb:///data/o.duckdb", data_root="/",
    )  # fmt: skip
    models = {"1.0": _model(), "1.1": None}
    gated = rollout.gate(deployment, models, [_read(_manifest())], config, NOW)
    assert [(a.version, a.reason) for a in gated.admissions] == [
        ("1.0", None),
        ("1.1", "ModelVersionNotFound"),
    ]
    assert list(gated.configs) == ["1.0"]
    assert gated.configs["1.0"] == rollout.server_config(
        deployment, "1.0", _model(), [_read(_manifest())], config
    )
    deployment["spec"]["skewSampleRate"] = 1.5
    refused = rollout.gate(deployment, models, [_read(_manifest())], config, NOW)
    assert refused.configs == {}
    first = refused.admissions[0]
    assert (first.version, first.reason) == ("1.0", "ServerConfigInvalid")
    assert "skew_sample_rate" in first.message


def test_outcome_holds_the_rollout_and_says_why() -> None:
    spec = objects.deployment(versions={"1.0": 90, "1.1": 10})["spec"]
    admissions = [rollout.Admission("1.0"), rollout.Admission("1.1")]
    served = EndpointStatus(
        "http://127.0.0.1:9", {"1.0": True, "1.1": False}, {"1.1": "server exited: boom"},
        ready_replicas=1, crashed=frozenset({"1.1"}),
    )  # fmt: skip
    fields, checks = rollout.outcome(spec, admissions, served, {"1.0": 100, "1.1": 0})
    by_type = {c.type: c for c in checks}
    assert by_type["Available"].reason == "VersionsCrashed"
    assert "1.1: server exited: boom" in by_type["Available"].message
    assert by_type["TrafficInEffect"].reason == "RolloutHeld"
    assert fields["traffic"] == [
        {"version": "1.0", "traffic": 100, "available": True},
        {"version": "1.1", "traffic": 0, "available": False},
    ]
    fields, checks = rollout.outcome(
        spec, admissions, EndpointStatus("u", {"1.0": True, "1.1": True}), {"1.0": 90, "1.1": 10}
    )
    assert all(c.ok for c in checks)


@pytest.mark.parametrize(
    ("versions", "idle"),
    [
        ({"1.0": 100, "1.1": 0}, True),  # declared at 0%: idle by the backend's design
        ({"1.0": 90, "1.1": 10}, False),  # declared with a share: down until it serves
    ],
)
def test_a_version_the_backend_does_not_run_at_0_percent_is_idle_not_down(
    versions: dict[str, int], idle: bool
) -> None:
    spec = objects.deployment(versions=versions)["spec"]
    admissions = [rollout.Admission("1.0"), rollout.Admission("1.1")]
    served = EndpointStatus(
        "u", {"1.0": True, "1.1": False}, {"1.1": "InferenceService x: does not serve 1.1"},
        unserved=frozenset({"1.1"}),
    )  # fmt: skip
    fields, checks = rollout.outcome(spec, admissions, served, {"1.0": 100, "1.1": 0})
    available = {c.type: c for c in checks}["Available"]
    assert available.ok is idle
    if idle:
        assert "1.1 declared at 0%" in available.message
    else:
        assert available.reason == "VersionsStarting" and "1.1: " in available.message
    assert {t["version"]: t["available"] for t in fields["traffic"]} == {
        "1.0": True,
        "1.1": False,
    }


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_a_skew_sample_rate_outside_0_to_1_is_refused_naming_the_field(rate: float) -> None:
    from pydantic import ValidationError

    from lykeion.api.deployment import DeploymentSpec

    spec = {**objects.deployment()["spec"], "skewSampleRate": rate}
    with pytest.raises(ValidationError, match="skewSampleRate"):
        DeploymentSpec.model_validate(spec)
    assert DeploymentSpec.model_validate({**spec, "skewSampleRate": 1}).skew_sample_rate == 1.0


def test_a_version_declared_at_0_percent_is_never_served_and_the_deployment_says_why() -> None:
    """The issue's case: 1.0 (100%) goes down, 1.1 (0%) is up. 1.1 gets no traffic; the
    Deployment is not Ready, TrafficInEffect names what the declared share waits on."""
    spec = objects.deployment(versions={"1.0": 100, "1.1": 0})["spec"]
    desired = {"1.0": 100, "1.1": 0}
    up = {"1.0": False, "1.1": True}
    weights = rollout.effective_weights(desired, up)
    assert weights == {"1.0": 0, "1.1": 0}
    # What the backend is told keeps 1.1 at 0 and stays a split Seldon admits (1.0 at 100).
    assert rollout.rendered_weights("seldon", desired, ["1.0", "1.1"], weights) == desired
    admissions = [rollout.Admission("1.0"), rollout.Admission("1.1")]
    served = EndpointStatus("u", up, {"1.0": "Deployment forward-default-1-0 has no replica"})
    fields, checks = rollout.outcome(spec, admissions, served, weights)
    traffic = {c.type: c for c in checks}["TrafficInEffect"]
    assert (traffic.ok, traffic.reason) == (False, "NoVersionServing")
    assert "1.0 (100%): Deployment forward-default-1-0 has no replica" in traffic.message
    assert "declared at 0%, 1.1 receive(s) no traffic" in traffic.message
    assert not conditions.ready(checks, "Serving", "ok").ok
    assert [t["traffic"] for t in fields["traffic"]] == [0, 0]


@pytest.mark.parametrize(
    ("backend", "desired", "admitted", "in_effect", "expected"),
    [
        # A canary not admitted yet: Seldon gets 1.0 at 100 (one predictor: 100 or none).
        ("seldon", {"1.0": 90, "1.1": 10}, ["1.0"], {"1.0": 100, "1.1": 0}, {"1.0": 100}),
        # Three versions, one not admitted: the others renormalised to 100, not 75.
        ("seldon", {"1.0": 50, "1.1": 25, "2.0": 25}, ["1.0", "2.0"], {}, {"1.0": 67, "2.0": 33}),
        # The canary admitted, not yet available: 100/0 until it is, then as declared.
        ("seldon", {"1.0": 90, "1.1": 10}, ["1.0", "1.1"], {"1.0": 100, "1.1": 0},
         {"1.0": 100, "1.1": 0}),
        ("seldon", {"1.0": 90, "1.1": 10}, ["1.0", "1.1"], {"1.0": 90, "1.1": 10},
         {"1.0": 90, "1.1": 10}),
        # KServe is given the declared split: it keeps the share on the rolled-out revision
        # until the canary's is ready, and a canary it is not given never starts.
        ("kserve", {"1.0": 90, "1.1": 10}, ["1.0", "1.1"], {"1.0": 100, "1.1": 0},
         {"1.0": 90, "1.1": 10}),
        # No admitted version has a share: nothing may take traffic.
        ("seldon", {"1.0": 100, "1.1": 0}, ["1.1"], {}, {"1.1": 0}),
    ],
)  # fmt: skip
def test_the_backend_is_given_a_split_over_the_admitted_versions(
    backend: str,
    desired: dict[str, int],
    admitted: list[str],
    in_effect: dict[str, int],
    expected: dict[str, int],
) -> None:
    given = rollout.rendered_weights(backend, desired, admitted, in_effect)
    assert {v: given[v] for v in admitted} == expected
    assert all(given[v] == 0 for v in desired if v not in admitted)


@pytest.mark.parametrize(
    ("desired", "in_effect", "rollout_stable", "expected"),
    [
        # By meaning, not list order: the version serving now keeps the remainder.
        ({"1.1": 10, "1.0": 90}, {"1.0": 100}, None, "1.0"),
        # A second canary while the first one still runs: 1.0 is still the stable one.
        ({"1.0": 90, "1.2": 10}, {"1.0": 90, "1.1": 10}, None, "1.0"),
        # A rollout names it.
        ({"1.0": 50, "1.1": 50}, {"1.0": 50, "1.1": 50}, "1.1", "1.1"),
        # Nothing declared with a share has served: no stable version.
        ({"1.1": 90, "1.2": 10}, {"1.0": 100}, None, None),
        ({"1.0": 90, "1.1": 10}, {}, None, None),
    ],
)
def test_the_stable_version_is_the_one_serving_before_the_canary(
    desired: dict[str, int],
    in_effect: dict[str, int],
    rollout_stable: str | None,
    expected: str | None,
) -> None:
    assert rollout.stable_version(desired, in_effect, rollout_stable) == expected


def test_the_stable_version_is_recorded_and_survives_a_moment_with_nothing_serving() -> None:
    spec = objects.deployment(versions={"1.1": 10, "1.0": 90})["spec"]
    admissions = [rollout.Admission("1.1"), rollout.Admission("1.0")]
    served = EndpointStatus("u", {"1.0": True, "1.1": True})
    fields, _ = rollout.outcome(spec, admissions, served, {"1.0": 90, "1.1": 10}, "1.0")
    assert [t.get("stable") for t in fields["traffic"]] == [None, True]
    # Both down for a moment (traffic in effect 0/0): the recorded one is still the stable.
    desired = {"1.1": 10, "1.0": 90}
    assert rollout.stable_version(desired, {"1.0": 0, "1.1": 0}, None, "1.0") == "1.0"
    # Promoted (one version): nothing to record.
    fields, _ = rollout.outcome(
        objects.deployment(versions={"1.1": 100})["spec"], admissions[:1], served, {"1.1": 100},
        "1.1",
    )  # fmt: skip
    assert "stable" not in fields["traffic"][0]
