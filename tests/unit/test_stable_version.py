"""Which version is a canary's stable one: decided once, then kept (pure).

The review's case: stable 1.0 at 30%, canary 1.1 declared at 70%. The first pass infers
1.0 (it served everything before); the status records it; every later pass must keep it,
although 1.1 now serves the larger share. Otherwise KServe's canary flips to 1.0 at 30%
while the status keeps saying 30/70.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from lykeion.api.deployment import DeploymentSpec, DeploymentStatus
from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, EndpointStatus, VersionServer
from lykeion.handlers import rollout
from lykeion.handlers.deployments import _stable
from lykeion.runtime import Resource
from tests import objects

VERSIONS = ["1.0", "1.1", "1.2", "2.0", "10.0"]


def _pass(body: dict[str, Any], available: dict[str, bool]) -> tuple[str | None, dict[str, int]]:
    """One reconcile pass as `deployments.reconcile` does it (stable, traffic in effect),
    its status written back into `body`."""
    spec = body["spec"]
    desired = {v["version"]: int(v["traffic"]) for v in spec["versions"]}
    weights = rollout.effective_weights(desired, available)
    stable = _stable(Resource.parse(body, DeploymentSpec, DeploymentStatus), desired, None)
    admissions = [rollout.Admission(v) for v in desired]
    served = EndpointStatus("u", dict(available))
    fields, _ = rollout.outcome(spec, admissions, served, weights, stable)
    body["status"] = {"traffic": fields["traffic"]}
    return stable, weights


def _kserve(weights: dict[str, int], stable: str | None) -> tuple[str, int | None]:
    """The version KServe is told is the canary, and its percent."""
    endpoint = Endpoint(
        name="forward-default", namespace="ns", backend="kserve",
        servers=tuple(
            VersionServer(v, v, objects.server_config(v, storage_uri=f"gs://m/{v}"))
            for v in weights
        ),
        weights=weights, stable=stable, kserve_mode="Serverless",
    )  # fmt: skip
    canary, percent = render.kserve_canary(endpoint)
    return canary.version, percent


def test_a_canary_declared_above_half_stays_the_canary() -> None:
    body = objects.deployment(versions={"1.0": 30, "1.1": 70})
    body["status"] = {"traffic": [{"version": "1.0", "traffic": 100, "available": True}]}
    up = {"1.0": True, "1.1": True}
    first = _pass(body, up)
    assert first == ("1.0", {"1.0": 30, "1.1": 70})
    assert _kserve(first[1], first[0]) == ("1.1", 70)
    second = _pass(body, up)
    assert second == first
    assert _kserve(second[1], second[0]) == ("1.1", 70)


@given(
    versions=st.lists(st.sampled_from(VERSIONS), min_size=2, max_size=4, unique=True),
    cuts=st.lists(st.integers(0, 100), min_size=3, max_size=3),
    before=st.dictionaries(st.sampled_from(VERSIONS), st.integers(0, 100), max_size=3),
    recorded=st.none() | st.sampled_from(VERSIONS),
    available=st.lists(st.booleans(), min_size=4, max_size=4),
    passes=st.integers(2, 4),
)
def test_consecutive_passes_keep_the_stable_version_and_the_split(
    versions: list[str],
    cuts: list[int],
    before: dict[str, int],
    recorded: str | None,
    available: list[bool],
    passes: int,
) -> None:
    # Any declared split summing to 100 (cut points), any status before it.
    points = sorted(cuts[: len(versions) - 1])
    shares = [b - a for a, b in zip([0, *points], [*points, 100], strict=True)]
    body = objects.deployment(versions=dict(zip(versions, shares, strict=True)))
    body["status"] = {
        "traffic": [
            {"version": v, "traffic": t, **({"stable": True} if v == recorded else {})}
            for v, t in before.items()
        ]
    }
    up = dict(zip(versions, available, strict=False))
    first = _pass(body, up)
    if first[0] is None:
        # Nothing to measure against yet (no record, nothing served): the next pass may
        # find one in the status this pass wrote; from then on it is fixed.
        first = _pass(body, up)
    for _ in range(passes - 1):
        assert _pass(body, up) == first
    stable, _ = first
    declared = {v: s for v, s in zip(versions, shares, strict=True) if s > 0}
    # Brute force: the recorded one wins whenever it still has a share; else any
    # inferred one has a share.
    if recorded in declared and recorded in before:
        assert stable == recorded
    assert stable is None or stable in declared
    # With two versions at a share, the status names exactly one stable version.
    if len(declared) > 1:
        named = [t["version"] for t in body["status"]["traffic"] if t.get("stable")]
        assert named == ([stable] if stable is not None else [])
