"""Derived names: distinct inputs give distinct names, always DNS labels within 63
characters; table and registry names keep tenants apart."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.handlers.materialization import run_name
from lykeion.handlers.training import training_name
from lykeion.names import derived_name, registry_name, table_name

LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes object names (DNS subdomains: dots allowed), short and long.
K8S_NAME = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,80}[a-z0-9])?", fullmatch=True)
NAMESPACE = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)
NUMBER = st.integers(min_value=0, max_value=10**9)


def _valid(name: str) -> bool:
    return len(name) <= 63 and bool(LABEL.match(name))


@settings(max_examples=300)
@given(st.lists(st.tuples(K8S_NAME, NUMBER, NUMBER), min_size=2, max_size=6, unique=True))
def test_run_names_are_distinct_bounded_labels(inputs: list[tuple[str, int, int]]) -> None:
    names = [run_name(*args) for args in inputs]
    assert all(_valid(name) for name in names), names
    assert len(set(names)) == len(inputs)


@settings(max_examples=300)
@given(st.lists(st.tuples(K8S_NAME, NUMBER), min_size=2, max_size=6, unique=True))
def test_training_names_are_distinct_bounded_labels(inputs: list[tuple[str, int]]) -> None:
    names = [training_name(*args) for args in inputs]
    assert all(_valid(name) for name in names), names
    assert len(set(names)) == len(inputs)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(NAMESPACE, K8S_NAME, st.sampled_from(["", "uid-a", "uid-b"]), NUMBER),
        min_size=2,
        max_size=6,
        unique=True,
    )
)
def test_table_names_are_distinct_per_tenant_object_and_generation(
    inputs: list[tuple[str, str, str, int]],
) -> None:
    names = [table_name(*args) for args in inputs]
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in names), names
    assert len(set(names)) == len(inputs)


def test_the_reported_collisions_are_gone() -> None:
    # Two manifests sharing their first 40 characters: distinct runs.
    eu = "rider-activity-features-for-the-pricing-model-eu"
    us = "rider-activity-features-for-the-pricing-model-us"
    assert eu[:40] == us[:40]
    assert run_name(eu, 1, 1) != run_name(us, 1, 1)
    # Namespace `a--b` + manifest `c` and namespace `a` + manifest `b--c`: distinct tables.
    assert table_name("a--b", "c", "", 1) != table_name("a", "b--c", "", 1)
    # And distinct MLflow names for family `b` segment `c` in `a` vs `a-b`/... splits.
    assert registry_name("a--b", "c", "d") != registry_name("a", "b--c", "d")
    # A recreated object (new UID) never shares its predecessor's tables.
    assert table_name("ns", "m", "uid-1", 1) != table_name("ns", "m", "uid-2", 1)
    # A dot in a Model name is not confused with a dash.
    assert training_name("forward-default-1.0", 1) != training_name("forward-default-1-0", 1)


def test_short_plain_names_stay_readable() -> None:
    assert run_name("rider-activity", 1, 2) == "rider-activity-g1-r2"
    assert training_name("forward-default-1-0", 3) == "forward-default-1-0-t3"
    assert derived_name("x" * 80, "t1").endswith("-t1")
    assert table_name("team-a", "riders", "u", 2).startswith("team_a__riders__g2_")
    assert registry_name("team-a", "forward", "default") == "team-a.forward.default"


@given(NAMESPACE, st.from_regex(r"[a-z]([-a-z0-9]{0,18}[a-z0-9])?", fullmatch=True))
def test_registry_names_split_back_into_their_parts(namespace: str, family: str) -> None:
    assert registry_name(namespace, family, "eu").split(".") == [namespace, family, "eu"]
