"""Bad input is rejected at `kubectl apply` time, by the API server, naming the field.

Each case is also run through the pydantic models (what lykectl uses), which must reject
it too: the client never sends what the server would refuse.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from lykeion.api.kinds import validate_object
from lykeion.local.controlplane import ControlPlane
from tests import objects
from tests.support import Cluster

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = body
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[leaf]
        elif leaf.isdigit():
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return mutate


_DELETE = object()

# (id, valid object, mutation, text the server's message must contain)
CASES: list[tuple[str, Callable[[], dict[str, Any]], Mutation, str]] = [
    (
        "bad-sha",
        objects.model,
        _set("spec.source.url", "git@h:o/p.git#ml@abc123"),
        "spec.source.url",
    ),
    (
        "uppercase-sha",
        objects.model,
        _set("spec.source.url", "git@h:o/p.git#ml@" + "A" * 40),
        "spec.source.url",
    ),
    (
        "bad-feature-ref",
        objects.model,
        _set("spec.inputFeatures", ["rider-age"]),
        "spec.inputFeatures[0]",
    ),
    (
        "bad-feature-type-pin",
        objects.model,
        _set("spec.inputFeatures", ["rider.age:int32"]),
        "spec.inputFeatures[0]",
    ),
    ("bad-version", objects.model, _set("spec.version", "v1"), "spec.version"),
    (
        "model-name-mismatch",
        objects.model,
        _set("metadata.name", "forward-latest"),
        "metadata.name must be <family>-<segment>-<version>",
    ),
    ("missing-family-field", objects.model, _set("spec.family", _DELETE), "spec.family"),
    ("no-input-features", objects.model, _set("spec.inputFeatures", []), "spec.inputFeatures"),
    ("unknown-backend", objects.deployment, _set("spec.backend", "triton"), "spec.backend"),
    (
        "traffic-sums-to-90",
        lambda: objects.deployment(versions={"1.0": 80, "1.1": 10}),
        lambda b: None,
        "traffic of spec.versions must sum to 100",
    ),
    (
        "traffic-over-100",
        lambda: objects.deployment(versions={"1.0": 101}),
        lambda b: None,
        "spec.versions[0].traffic",
    ),
    (
        "duplicate-version",
        objects.deployment,
        _set("spec.versions", [{"version": "1.0", "traffic": 50}] * 2),
        '.spec.versions: duplicate entries for key [version="1.0"]',
    ),
    (
        "shadow-also-live",
        objects.deployment,
        _set("spec.shadow", "1.0"),
        "shadow must not also be one of spec.versions",
    ),
    (
        # <family>-<segment>-v1-222222-333333-svc-orch, a Service Seldon derives, would be
        # 67 characters (Seldon renames such names seldon-<md5>).
        "seldon-names-over-63",
        lambda: objects.deployment("f" * 20, "s" * 20, versions={"1.222222.333333": 100}),
        _set("spec.backend", "seldon"),
        "every version must fit Seldon's derived names in a 63-character DNS label",
    ),
    (
        "rollout-steps-descending",
        objects.deployment,
        _set("spec.rollout", {"steps": [50, 10, 100]}),
        "spec.rollout.steps must be strictly ascending percents in 1..100",
    ),
    (
        "rollout-steps-repeat",
        objects.deployment,
        _set("spec.rollout", {"steps": [10, 10, 100]}),
        "spec.rollout.steps must be strictly ascending percents in 1..100",
    ),
    (
        "rollout-steps-not-ending-at-100",
        objects.deployment,
        _set("spec.rollout", {"steps": [10, 50]}),
        "spec.rollout.steps must end at 100",
    ),
    (
        "rollout-beside-a-split",
        lambda: objects.deployment(versions={"1.0": 90, "1.1": 10}),
        _set("spec.rollout", {}),
        "with spec.rollout, spec.versions declares the end state",
    ),
    (
        # Seldon and KServe report no per-version server to analyse: it would never move.
        "rollout-on-seldon",
        objects.deployment,
        lambda b: b["spec"].update(backend="seldon", rollout={}),
        "spec.rollout needs backend lykeion",
    ),
    (
        "rollout-on-kserve",
        objects.deployment,
        lambda b: b["spec"].update(backend="kserve", rollout={"steps": [10, 100]}),
        "use backend lykeion for analysed rollouts",
    ),
    (
        "rollout-bad-interval",
        objects.deployment,
        _set("spec.rollout", {"interval": "10 seconds"}),
        "spec.rollout.interval",
    ),
    (
        "rollout-error-rate-over-1",
        objects.deployment,
        _set("spec.rollout", {"checks": {"maxErrorRate": 2}}),
        "spec.rollout.checks.maxErrorRate",
    ),
    (
        "unknown-feature-type",
        objects.manifest,
        _set("spec.features.0.type", "decimal"),
        "spec.features[0].type",
    ),
    (
        "feature-two-ways",
        objects.manifest,
        _set("spec.features.0.expression", "age + 1"),
        "set exactly one of column, expression or aggregation",
    ),
    (
        "two-sources",
        objects.manifest,
        _set("spec.source.bigquery", {"table": "p.d.t"}),
        "set exactly one of bigquery or file",
    ),
    (
        "bad-aggregation",
        objects.manifest,
        _set(
            "spec.features.0",
            {
                "name": "rides",
                "type": "int64",
                "aggregation": {"function": "median", "column": "x", "window": "7d"},
            },
        ),
        "spec.features[0].aggregation.function",
    ),
    (
        "bad-window",
        objects.manifest,
        _set(
            "spec.features.0",
            {
                "name": "rides",
                "type": "int64",
                "aggregation": {"function": "sum", "column": "x", "window": "7 days"},
            },
        ),
        "spec.features[0].aggregation.window",
    ),
    ("bad-cron", objects.manifest, _set("spec.schedule", "every hour"), "spec.schedule"),
    ("bad-ttl", objects.manifest, _set("spec.ttl", "forever"), "spec.ttl"),
    ("bad-email", objects.family, _set("spec.authors", ["not-an-email"]), "spec.authors[0]"),
    ("alias-not-dns", objects.family, _set("spec.alias", "Forward_1"), "spec.alias"),
    (
        "family-name-mismatch",
        objects.family,
        _set("metadata.name", "other"),
        "metadata.name must be <alias>",
    ),
    ("unknown-field", objects.family, _set("spec.owner", "me"), "spec.owner"),
]


@pytest.mark.parametrize(
    ("case", "factory", "mutate", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_server_rejects_with_field_in_message(
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
    case: str,
    factory: Callable[[], dict[str, Any]],
    mutate: Mutation,
    expected: str,
) -> None:
    body = copy.deepcopy(factory())
    mutate(body)
    body["metadata"]["namespace"] = namespace
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(body))
    done = control_plane.run_kubectl("apply", "--server-side", "-f", str(path), check=False)
    assert done.returncode != 0, f"{case} was accepted"
    assert expected in done.stderr, done.stderr
    # The same object never gets past the client-side models either.
    with pytest.raises((ValidationError, ValueError)):
        validate_object(body)


def test_seldon_names_at_the_limit_pass_both(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    # 20 + 1 + 20 + "-v" + 11 + "-svc-orch" = 63 characters: exactly a DNS label.
    body = objects.deployment("f" * 20, "s" * 20, versions={"1.222.33333": 100})
    body["spec"]["backend"] = "seldon"
    validate_object(body)
    body["metadata"]["namespace"] = namespace
    path = tmp_path / "seldon.yaml"
    path.write_text(yaml.safe_dump(body))
    control_plane.run_kubectl("apply", "--server-side", "-f", str(path))


def test_valid_objects_pass_both(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    for body in (objects.family(), objects.manifest(), objects.model(), objects.deployment()):
        validate_object(body)
        body["metadata"]["namespace"] = namespace
        path = tmp_path / f"{body['kind']}.yaml"
        path.write_text(yaml.safe_dump(body))
        control_plane.run_kubectl("apply", "--server-side", "-f", str(path))


@pytest.mark.parametrize(
    ("field", "patch", "message"),
    [
        ("version", {"spec": {"version": "2.0"}}, "version is immutable"),
        ("source", {"spec": {"source": {"entryPoint": "other"}}}, "source is immutable"),
        ("inputFeatures", {"spec": {"inputFeatures": ["rider.age"]}}, "inputFeatures is immutable"),
    ],
)
def test_model_identity_is_immutable(
    cluster: Cluster, namespace: str, field: str, patch: dict[str, Any], message: str
) -> None:
    cluster.create(objects.model(), namespace)
    with pytest.raises(ApiException) as raised:
        cluster.patch("Model", namespace, "forward-default-1.0", patch)
    assert raised.value.status == 422
    assert message in raised.value.body
    # Mutable fields still change.
    cluster.patch("Model", namespace, "forward-default-1.0", {"spec": {"description": "new words"}})


def test_kubectl_get_lykeion_lists_all_kinds(
    control_plane: ControlPlane, cluster: Cluster, namespace: str
) -> None:
    for body in (objects.family(), objects.manifest(), objects.model(), objects.deployment()):
        cluster.create(body, namespace)
    out = control_plane.run_kubectl("get", "lykeion", "-n", namespace).stdout
    for name in (
        "modelfamily.lykeion.io/forward",
        "featuremanifest.lykeion.io/rider-activity",
        "model.lykeion.io/forward-default-1.0",
        "deployment.lykeion.io/forward-default",
    ):
        assert name in out
    header = control_plane.run_kubectl("get", "mdl", "-n", namespace).stdout.splitlines()[0].split()
    assert header[:5] == ["NAME", "FAMILY", "SEGMENT", "VERSION", "READY"]


def test_kubectl_explain_shows_field_docs(control_plane: ControlPlane) -> None:
    out = control_plane.run_kubectl("explain", "models.spec.inputFeatures").stdout
    assert "in model input order" in " ".join(out.split())
