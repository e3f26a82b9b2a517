"""The pydantic models accept what the design allows and name the field of what they refuse."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lykeion.api import DEPLOYMENT, FEATURE_MANIFEST, MODEL, MODEL_FAMILY, validate_object
from lykeion.api.model import ModelSpec
from lykeion.runtime import spec_problems
from tests import objects


def _error_locs(error: ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in error.errors()]


def test_examples_shape_round_trips() -> None:
    for body in (objects.family(), objects.manifest(), objects.model(), objects.deployment()):
        spec = validate_object(body)
        again = type(spec).model_validate(spec.wire())
        assert again == spec


def test_wire_uses_camel_case_and_drops_unset_optionals() -> None:
    spec = MODEL.parse_spec(objects.model()["spec"])
    wire = spec.wire()
    assert "inputFeatures" in wire and "input_features" not in wire
    assert wire["training"]["labels"]["timestampColumn"] == "label_time"
    assert "shadow" not in DEPLOYMENT.parse_spec(objects.deployment()["spec"]).wire()


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:org/projects.git#mlprojects/forward@" + "a" * 40,
        "https://example.com/org/repo.git#@" + "0123456789" * 4,
        "file:///home/ds/forward",
    ],
)
def test_source_url_accepts_pinned_git_and_file(url: str) -> None:
    spec = objects.model()["spec"] | {"source": {"url": url}}
    assert MODEL.parse_spec(spec).source.url == url


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:org/projects.git#mlprojects/forward",  # no SHA
        "git@github.com:org/projects.git#mlprojects/forward@main",  # branch, not a SHA
        "git@github.com:org/projects.git@" + "a" * 40,  # no subdir separator
        "git@github.com:org/projects.git#sub@" + "a" * 39,  # short SHA
    ],
)
def test_source_url_rejects_unpinned(url: str) -> None:
    spec = objects.model()["spec"] | {"source": {"url": url}}
    with pytest.raises(ValidationError) as raised:
        MODEL.parse_spec(spec)
    assert _error_locs(raised.value) == ["source.url"]


def test_repeated_input_feature_is_refused_even_with_type_pin() -> None:
    spec = objects.model(features=["rider.age", "rider.age:int64"])["spec"]
    with pytest.raises(ValidationError, match="inputFeatures must not repeat a feature"):
        ModelSpec.model_validate(spec)


def test_name_rules_mirror_the_server() -> None:
    body = objects.model()
    body["metadata"]["name"] = "something-else"
    with pytest.raises(ValueError, match=r"metadata\.name must be <family>-<segment>-<version>"):
        validate_object(body)
    spec = MODEL_FAMILY.parse_spec(objects.family()["spec"])
    with pytest.raises(ValueError, match="expected 'forward'"):
        MODEL_FAMILY.build("fwd", spec)
    assert MODEL_FAMILY.build("forward", spec, "ns")["metadata"] == {
        "name": "forward",
        "namespace": "ns",
    }


def test_feature_manifest_defines_typed_references() -> None:
    spec = FEATURE_MANIFEST.parse_spec(
        objects.manifest(features={"age": "int64", "tags": "list<string>"})["spec"]
    )
    assert spec.defines() == {"rider.age": "int64", "rider.tags": "list<string>"}


def test_deployment_traffic_must_sum_to_100() -> None:
    with pytest.raises(ValidationError, match=r"traffic of spec\.versions must sum to 100"):
        DEPLOYMENT.parse_spec(objects.deployment(versions={"1.0": 50, "2.0": 40})["spec"])
    assert DEPLOYMENT.parse_spec(objects.deployment(versions={"1.0": 90, "2.0": 10})["spec"])


def test_a_refused_spec_names_each_field_and_a_whole_spec_problem_reads_spec() -> None:
    body = objects.deployment(versions={"1.0": 50, "2.0": 40})
    with pytest.raises(ValidationError) as whole:
        DEPLOYMENT.parse_spec(body["spec"])
    problems = spec_problems(whole.value)
    assert problems.startswith("spec: traffic of spec.versions must sum to 100")
    assert "Value error" not in problems and "(spec)" not in problems
    manifest = objects.manifest()
    with pytest.raises(ValidationError) as field:
        FEATURE_MANIFEST.parse_spec(manifest["spec"] | {"owner": ""})
    assert spec_problems(field.value) == "spec.owner: String should have at least 1 character"
