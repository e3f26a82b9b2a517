"""Traffic splits held to their definitions on random inputs (Hypothesis), against
brute-force references written from the definitions, not from our code:

- the renormalised split (largest remainder): whole percents summing to 100 over the
  versions it is taken over, each within one of its exact quota, a version declared at 0
  never above 0, and no other rounding closer to the quotas;
- KServe's canary is the version that is not the stable one, in any list order;
- the SeldonDeployment rendered for any declared split, admissions and availability is one
  Seldon Core v1.16.0's validating webhook admits (its rule restated below from
  `seldondeployment_webhook.go`), giving nothing to a version declared at 0%.
"""

from __future__ import annotations

import dataclasses
import itertools
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lykeion.executors import kubernetes_render as render
from lykeion.executors.base import Endpoint, VersionServer
from lykeion.handlers import rollout
from tests.objects import server_config

VERSIONS = ["1.0", "1.1", "1.2", "2.0", "2.1"]


@st.composite
def declared_splits(draw: st.DrawFn) -> dict[str, int]:
    """spec.versions as the API server admits them: 1-5 distinct versions summing to 100."""
    n = draw(st.integers(1, len(VERSIONS)))
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=n - 1, max_size=n - 1)))
    shares = [b - a for a, b in itertools.pairwise([0, *cuts, 100])]
    return dict(zip(VERSIONS[:n], shares, strict=True))


def reference(declared: dict[str, int], over: set[str]) -> list[dict[str, int]]:
    """Every split of 100 whole percents over `over` that rounds each exact quota
    `100 * w / total` down or up and is closest to the quotas (least sum of squared
    errors): the apportionments a correct largest-remainder method may return."""
    total = sum(w for v, w in declared.items() if v in over)
    if total == 0:
        return [{v: 0 for v in declared}]
    quota = {v: Fraction(100 * w, total) if v in over else Fraction(0) for v, w in declared.items()}
    options = [sorted({int(q), -(-q.numerator // q.denominator)}) for q in quota.values()]
    candidates = [
        dict(zip(declared, combo, strict=True))
        for combo in itertools.product(*options)
        if sum(combo) == 100
    ]
    error = {i: sum((c[v] - quota[v]) ** 2 for v in c) for i, c in enumerate(candidates)}
    best = min(error.values())
    return [c for i, c in enumerate(candidates) if error[i] == best]


@settings(max_examples=400, deadline=None)
@given(declared_splits(), st.data())
def test_renormalised_split_is_a_closest_whole_percent_apportionment(
    declared: dict[str, int], data: st.DataObject
) -> None:
    over = set(data.draw(st.lists(st.sampled_from(list(declared)), unique=True)))
    split = rollout.renormalise(declared, over)
    assert split in reference(declared, over)
    assert set(split) == set(declared)
    if any(declared[v] for v in over):
        assert sum(split.values()) == 100
    else:
        assert not any(split.values())
    for version, share in split.items():
        if version not in over or declared[version] == 0:
            assert share == 0  # a version declared at 0%, or not serving, gets nothing
    # Everything serving: the declared split comes back exactly.
    assert rollout.renormalise(declared, declared) == declared


def webhook_admits(sdep: dict[str, Any]) -> bool:
    """Seldon Core v1.16.0's `checkTraffic` and `validateShadow`, restated: the traffic of
    the non-shadow predictors sums to 100 when there are several of them; a single
    predictor carries 0 or at least 100; at most one shadow, never alone."""
    predictors = sdep["spec"]["predictors"]
    shadows = sum(1 for p in predictors if p.get("shadow"))
    total = sum(p["traffic"] for p in predictors if not p.get("shadow"))
    return (
        len(predictors) >= 1
        and shadows <= 1
        and not (len(predictors) == 1 and shadows == 1)
        and not (total != 100 and len(predictors) - shadows > 1)
        and not (0 < total < 100 and len(predictors) == 1)
    )


def _endpoint(backend: str, weights: dict[str, int], shadow: str | None) -> Endpoint:
    versions = [*weights, *([shadow] if shadow else [])]
    return Endpoint(
        name="forward-default",
        namespace="ns",
        backend=backend,
        servers=tuple(
            VersionServer(v, f"forward-default-{v}", server_config(v, storage_uri=f"s3://m/{v}"))
            for v in versions
        ),
        weights=weights,
        shadow=shadow,
    )


@settings(max_examples=400, deadline=None)
@given(declared_splits(), st.data())
def test_seldon_admits_every_rendered_split_and_zero_stays_zero(
    declared: dict[str, int], data: st.DataObject
) -> None:
    admitted = data.draw(st.lists(st.sampled_from(list(declared)), unique=True))
    available = {v: data.draw(st.booleans()) for v in admitted}
    shadow = data.draw(st.sampled_from([None, "9.0"]))
    in_effect = rollout.effective_weights(declared, available)
    given_ = rollout.rendered_weights("seldon", declared, admitted, in_effect)
    weights = {v: w for v, w in given_.items() if v in admitted}
    objects = render.render(_endpoint("seldon", weights, shadow))
    # Traffic in effect only ever goes to versions declared with a share and available.
    assert all(w == 0 or (declared[v] > 0 and available.get(v)) for v, w in in_effect.items())
    if not any(declared[v] for v in admitted):
        assert objects == []  # no object can route "nothing": none is rendered
        return
    (sdep,) = objects
    assert webhook_admits(sdep) and render.seldon_accepts(sdep) is None
    by_name = {p["labels"]["lykeion.io/version"]: p for p in sdep["spec"]["predictors"]}
    for version in admitted:
        if declared[version] == 0:
            assert by_name[version]["traffic"] == 0
    if any(in_effect.values()):
        # Once anything serves, what Seldon is told is exactly the traffic in effect.
        assert {v: by_name[v]["traffic"] for v in admitted} == {v: in_effect[v] for v in admitted}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(VERSIONS), min_size=2, max_size=2, unique=True),
    st.integers(1, 99),
)
def test_kserve_canary_is_the_version_that_is_not_stable_in_any_list_order(
    pair: list[str], share: int
) -> None:
    """KServe sends `canaryTrafficPercent` to the revision it creates and the rest to the
    one it rolled out last: the InferenceService must name the non-stable version with the
    canary's share, however spec.versions is ordered."""
    stable, canary = pair
    weights = {stable: 100 - share, canary: share}
    for order in (list(weights), list(reversed(weights))):
        endpoint = _endpoint("kserve", {v: weights[v] for v in order}, None)
        endpoint = dataclasses.replace(endpoint, stable=stable, kserve_mode="Serverless")
        (isvc,) = render.render(endpoint)
        assert isvc["metadata"]["labels"]["lykeion.io/version"] == canary
        assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == share
        assert isvc["spec"]["transformer"]["canaryTrafficPercent"] == share
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"s3://m/{canary}"
