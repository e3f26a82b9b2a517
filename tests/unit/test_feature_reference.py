"""The feature reference: parse/format round trip, the resolver and the one type check."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lykeion.api.common import FEATURE_REF, FEATURE_TYPES
from lykeion.features.reference import (
    FeatureReference,
    InvalidFeatureReference,
    TypeMismatch,
    UnresolvedFeature,
    resolve,
    type_mismatch,
)
from lykeion.features.view import FeatureView
from tests import objects

NAMES = st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z")
REFERENCES = st.builds(
    FeatureReference, NAMES, NAMES, st.one_of(st.none(), st.sampled_from(FEATURE_TYPES))
)


@given(REFERENCES)
def test_format_then_parse_is_the_identity(ref: FeatureReference) -> None:
    text = str(ref)
    assert FeatureReference.parse(text) == ref
    assert ref.name == f"{ref.entity}.{ref.feature}"
    assert text == ref.name if ref.type is None else text == f"{ref.name}:{ref.type}"


@given(st.text(max_size=30))
def test_parse_accepts_exactly_the_crd_pattern(text: str) -> None:
    # Brute-force reference: the pattern the CRD validates `spec.inputFeatures` with (its
    # `$` is the end of the text, as in the API server's RE2: hence fullmatch).
    if re.fullmatch(FEATURE_REF, text):
        assert str(FeatureReference.parse(text)) == text
    else:
        with pytest.raises(InvalidFeatureReference, match=r"expected entity\.feature"):
            FeatureReference.parse(text)


@pytest.mark.parametrize("text", ["rider", "rider.", "Rider.age", "rider.age:int", "a.b.c"])
def test_parse_error_names_the_reference(text: str) -> None:
    with pytest.raises(InvalidFeatureReference) as error:
        FeatureReference.parse(text)
    assert repr(text) in str(error.value)
    assert "int64" in str(error.value)


def _view(manifest: str, entity: str, **features: str) -> FeatureView:
    body = objects.manifest(manifest, entity, features)
    body["metadata"]["namespace"] = "ns"
    return FeatureView.from_body(body)


VIEWS = [
    _view("rider-activity", "rider", age="int64", fare="float64"),
    _view("rider-profile", "rider", name="string", fare="float64"),
    _view("zone-stats", "zone", age="int64"),
]


@given(
    st.sampled_from(["rider", "zone", "driver"]),
    st.lists(st.sampled_from(["age", "fare", "name", "absent"]), min_size=1, max_size=4),
)
def test_resolve_matches_a_brute_force_search(entity: str, features: list[str]) -> None:
    refs = [FeatureReference(entity, f) for f in features]
    expected = []
    for ref in refs:
        defining = [
            v.name
            for v in VIEWS
            for f in v.features
            if v.entity == ref.entity and f.name == ref.feature
        ]
        expected.append(defining)
    if all(len(d) == 1 for d in expected):
        got = resolve(refs, VIEWS)
        assert [r.view.name for r in got] == [d[0] for d in expected]
        assert [r.name for r in got] == [r.name for r in refs]
        assert [r.column for r in got] == [f"{r.entity}__{r.feature}" for r in refs]
    else:
        first = next(i for i, d in enumerate(expected) if len(d) != 1)
        with pytest.raises(UnresolvedFeature) as error:
            resolve(refs, VIEWS)
        assert error.value.reference == refs[first]
        assert list(error.value.manifests) == expected[first]
        assert f"{refs[first].name} is defined by {len(expected[first])}" in str(error.value)


def test_resolve_parses_text_and_reports_the_served_type() -> None:
    (resolved,) = resolve(["zone.age:string"], VIEWS)
    assert (resolved.view.name, resolved.feature, resolved.type) == ("zone-stats", "age", "int64")
    with pytest.raises(InvalidFeatureReference):
        resolve(["zone"], VIEWS)


@given(st.sampled_from(FEATURE_TYPES), st.one_of(st.none(), st.sampled_from(FEATURE_TYPES)))
def test_type_check_is_exact_equality_or_unpinned(served: str, expected: str | None) -> None:
    found = type_mismatch("rider.age", expected, served, "m", trained=True)
    assert (found is None) == (expected is None or expected == served)
    if found is not None:
        assert isinstance(found, TypeMismatch)
        assert (found.expected, found.served, found.manifest) == (expected, served, "m")


def test_type_mismatch_messages_name_feature_manifest_and_both_types() -> None:
    declared = type_mismatch("rider.age", "int64", "float64", "rider-activity", trained=False)
    trained = type_mismatch("rider.age", "int64", "float64", "rider-activity", trained=True)
    assert str(declared) == (
        "rider.age is float64 in FeatureManifest rider-activity, the model expects int64"
    )
    assert str(trained) == (
        "rider.age was trained as int64 but FeatureManifest rider-activity now defines it as "
        "float64"
    )
