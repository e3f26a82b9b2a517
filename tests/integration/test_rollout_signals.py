"""Rollouts judged by the model servers' own signals, through the real operator, API server
and local executor: a canary whose served features disagree with the offline definition is
rolled back by the skew check (`FeaturesConsistent` names feature, key, values and times);
a canary serving a shifted distribution is rolled back on drift, a healthy one passes it;
a slower model is rolled back on its p99 against the stable version's.

The models are the example's, trained once for the module (1.0 and 2.0: same spec, both with
serving defaults; 3.0 a random forest of 1500 trees, slower to predict). The tests write the
online store themselves, as a corrupting job would: rows the offline store (the definition)
does not have.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lykeion.features.view import FeatureView
from lykeion.local.tracking_server import TrackingServer
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.support import (
    Cluster,
    Operator,
    deployment_status,
    load,
    rollout_status,
    traffic_in_effect,
    wait_for,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "forward"
NAME = "forward-default"
INTERVAL = 4.0
pytestmark = pytest.mark.timeout(900)
ROLLOUT = {
    "steps": [50, 100],
    "interval": f"{INTERVAL:.0f}s",
    # Latency on a shared machine is noise, not these tests' subject.
    # Drift is judged from 100 served values: a sample of the training distribution that
    # small reads up to ~0.15 (10 bins); 0.25 is the common "shifted" line.
    "checks": {"minRequests": 5, "maxLatencyRatio": 100, "maxDriftPsi": 0.25},
}
SLOW_TREES = 1500
"""Model 3.0 is a random forest this large: its prediction of one row walks every tree."""
CORRUPTED = [f"r{i}" for i in range(1, 21)]
"""Riders whose online `age` the skew test corrupts (no other test sends them)."""
STEADY = [f"r{i}" for i in range(21, 301)]
"""Riders as materialized: the training set's distribution."""
SHIFTED = [f"x{i}" for i in range(1, 51)]
"""Riders written to the online store only, far outside the training distribution."""


@pytest.fixture(scope="module")
def serving(cluster: Cluster, operator: Operator) -> Iterator[str]:
    """A namespace with the example's features, Models 1.0 and 2.0, and the Deployment
    serving 1.0 with its rollout and every request checked for skew."""
    namespace = cluster.new_namespace("rollout-signals")
    for path in ("family.yaml", "features.yaml"):
        for doc in load(EXAMPLE / path):
            cluster.create(doc, namespace)
    (model,) = load(EXAMPLE / "model.yaml")
    # One after the other: trainings started together race for the family's experiment.
    for version in ("1.0", "2.0", "3.0"):
        body = copy.deepcopy(model)
        body["metadata"]["name"] = f"{NAME}-{version}"
        body["spec"]["version"] = version
        if version == "3.0":
            body["spec"]["source"]["parameters"]["trees"] = str(SLOW_TREES)
        cluster.create(body, namespace)
        cluster.wait_condition("Model", namespace, f"{NAME}-{version}", "True", timeout=400)
    (deployment,) = load(EXAMPLE / "deployment.yaml")
    deployment["spec"]["rollout"] = ROLLOUT
    deployment["spec"]["skewSampleRate"] = 1.0
    cluster.create(deployment, namespace)
    cluster.wait_condition("Deployment", namespace, NAME, "True", timeout=120)
    yield namespace


class Traffic:
    """Requests of `batch` keys each, cycling over `riders`, from a thread."""

    def __init__(self, endpoint: str, riders: list[str], batch: int = 1) -> None:
        self.endpoint, self.riders, self.batch = endpoint, riders, batch
        self.answers: list[tuple[float, str, int]] = []
        """(time, version, status) per request."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            keys = [
                {"rider_id": self.riders[(n + i) % len(self.riders)]} for i in range(self.batch)
            ]
            n += self.batch
            request = urllib.request.Request(
                f"{self.endpoint}/predict",
                json.dumps({"keys": keys}).encode(),
                {"content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    status, version = answer.status, answer.headers.get("x-lykeion-version", "")
            except urllib.error.HTTPError as error:
                status, version = error.code, error.headers.get("x-lykeion-version", "")
            except OSError:
                status, version = 0, ""
            self.answers.append((time.monotonic(), version, status))
            self._stop.wait(0.04)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def _declare(cluster: Cluster, namespace: str, version: str, **spec: Any) -> None:
    cluster.patch(
        "Deployment", namespace, NAME,
        {"spec": {"versions": [{"version": version, "traffic": 100}], "rollout": ROLLOUT, **spec}},
    )  # fmt: skip


def _online(operator: Operator) -> SqliteOnlineStore:
    return SqliteOnlineStore(Path(operator.extra_env["LYKEION_DATA_DIR"]) / "online.db")


def _view(cluster: Cluster, namespace: str) -> FeatureView:
    return FeatureView.from_body(cluster.get("FeatureManifest", namespace, "rider-activity") or {})


def _rolled_back(
    cluster: Cluster, namespace: str, canary: str, reason: str, traffic: Traffic, since: float
) -> tuple[dict[str, Any], float]:
    """The `RolledBack` condition once it names `reason`, and the seconds from the canary's
    first answer after `since` to the moment it was seen."""
    try:
        back = cluster.wait_condition(
            "Deployment", namespace, NAME, "True", reason, type_="RolledBack", timeout=60
        )
    except AssertionError as error:
        raise AssertionError(f"{error}; {json.dumps(rollout_status(cluster, namespace))}") from None
    seen = time.monotonic()
    first = next(t for t, v, _ in traffic.answers if t >= since and v == canary)
    return back, seen - first


def test_a_canary_serving_skewed_features_is_rolled_back_naming_them(
    cluster: Cluster, serving: str, operator: Operator
) -> None:
    namespace = serving
    endpoint = deployment_status(cluster, namespace)["endpoint"]
    view = _view(cluster, namespace)
    store = _online(operator)
    try:
        names = list(view.feature_names)
        found = store.read(view, CORRUPTED, names)
        written = datetime.now(UTC)
        ages = {}
        rows = []
        for rider, values in zip(CORRUPTED, found, strict=True):
            assert values is not None and values["age"] is not None, rider
            ages[rider] = values["age"]
            rows.append(OnlineRow(rider, written, {**values, "age": values["age"] + 1000}))
        assert store.write(view, rows) == len(rows)
    finally:
        store.close()

    _declare(cluster, namespace, "2.0")
    wait_for(
        lambda: traffic_in_effect(cluster, namespace) == {"1.0": 50, "2.0": 50}, 120, "2.0 at 50%"
    )
    since = time.monotonic()
    with Traffic(endpoint, CORRUPTED) as traffic:
        back, took = _rolled_back(cluster, namespace, "2.0", "FeatureSkew", traffic, since)
    print(f"skew: rollback {took:.2f}s after the canary's first skewed answer")
    assert took <= 2 * INTERVAL + 3, f"rolled back after {took:.1f}s"
    assert back["message"].startswith("2.0: skewRate 1 > 0.01 (rider.age: "), back["message"]
    state = rollout_status(cluster, namespace)
    assert (state["phase"], state["stable"], state["canary"], state["weight"]) == (
        "RolledBack", "1.0", "2.0", 0,
    )  # fmt: skip
    skew = {c["name"]: c for c in state["checks"]}["skewRate"]
    assert (skew["result"], skew["value"]) == ("Fail", 1.0)
    assert traffic_in_effect(cluster, namespace) == {"1.0": 100, "2.0": 0}

    consistent = cluster.condition("Deployment", namespace, NAME, "FeaturesConsistent")
    assert consistent is not None and consistent["status"] == "False", consistent
    assert consistent["reason"] == "FeatureSkew"
    message = consistent["message"]
    assert ": rider.age served " in message, message
    # One of the corrupted riders, its served and offline age, and both times.
    rider = next(r for r in CORRUPTED if f"'rider_id': '{r}'}}" in message)
    assert f"served {ages[rider] + 1000} at 20" in message, message
    assert f"offline {ages[rider]} at 20" in message, message
    assert message.count("Z") >= 2  # requestTime and offlineTime, RFC 3339


def test_drift_passes_a_healthy_canary_and_rolls_back_a_shifted_one(
    cluster: Cluster, serving: str, operator: Operator, tracking_server: TrackingServer
) -> None:
    namespace = serving
    endpoint = deployment_status(cluster, namespace)["endpoint"]
    view = _view(cluster, namespace)
    # The healthy canary serves the training set's own rows: riders `t<i>` written online
    # with row i's values (the example's riders are served after their 30-day windows
    # closed: null averages, a real drift of `rider.avg_fare` against the training set).
    # Both kinds of riders exist online only: the skew check would (rightly) fail them
    # first, so it is off (the servers restart on it: fresh drift windows).
    trained = _training_rows(cluster, namespace, tracking_server)
    now = datetime.now(UTC)
    shifted = [
        OnlineRow(
            rider,
            now,
            {
                "age": 150 + i % 30,
                "drop_offs_count": 40 + i % 7,
                "avg_fare": 300.0 + i,
                "is_premium": True,
            },
        )
        for i, rider in enumerate(SHIFTED)
    ]
    store = _online(operator)
    try:
        store.write(view, [OnlineRow(f"t{i}", now, row) for i, row in enumerate(trained)])
        store.write(view, shifted)
    finally:
        store.close()
    _declare(cluster, namespace, "2.0", skewSampleRate=0)
    # 10 keys a request: the canary's drift window (100 values at least) fills in 10.
    with Traffic(endpoint, [f"t{i}" for i in range(len(trained))], batch=10):
        try:
            wait_for(
                lambda: rollout_status(cluster, namespace).get("stable") == "2.0",
                120,
                "2.0 promoted",
            )
        except AssertionError as error:
            raise AssertionError(
                f"{error}; {json.dumps(deployment_status(cluster, namespace))}"
            ) from None
    promoted = [
        d for d in rollout_status(cluster, namespace)["decisions"] if d["action"] == "Promote"
    ]
    # Judged on drift, not for want of data: the PSI of the training distribution passed.
    assert "driftPsi " in promoted[-1]["message"], promoted
    assert " <= 0.25 (rider." in promoted[-1]["message"], promoted

    _declare(cluster, namespace, "1.0", skewSampleRate=0)
    wait_for(
        lambda: traffic_in_effect(cluster, namespace) == {"2.0": 50, "1.0": 50}, 120, "1.0 at 50%"
    )
    since = time.monotonic()
    with Traffic(endpoint, SHIFTED, batch=10) as traffic:
        back, took = _rolled_back(cluster, namespace, "1.0", "FeatureDrift", traffic, since)
    print(f"drift: rollback {took:.2f}s after the canary's first shifted answer")
    assert back["message"].startswith("1.0: driftPsi "), back["message"]
    drift = {c["name"]: c for c in rollout_status(cluster, namespace)["checks"]}["driftPsi"]
    assert drift["result"] == "Fail" and drift["value"] > 1.0, drift
    assert drift["message"].startswith("rider."), drift
    assert traffic_in_effect(cluster, namespace) == {"2.0": 100, "1.0": 0}


def test_a_slower_canary_is_rolled_back_on_its_p99(cluster: Cluster, serving: str) -> None:
    namespace = serving
    endpoint = deployment_status(cluster, namespace)["endpoint"]
    stable = rollout_status(cluster, namespace)["stable"]
    # Twice the stable p99 at most: a forest's p99 lies two buckets above (0.25s vs 0.05s).
    rollout = {**ROLLOUT, "checks": {**ROLLOUT["checks"], "maxLatencyRatio": 2}}
    _declare(cluster, namespace, "3.0", rollout=rollout)
    wait_for(
        lambda: traffic_in_effect(cluster, namespace) == {stable: 50, "3.0": 50}, 120, "3.0 at 50%"
    )
    since = time.monotonic()
    with Traffic(endpoint, STEADY) as traffic:
        back, took = _rolled_back(cluster, namespace, "3.0", "LatencyTooHigh", traffic, since)
    print(f"latency: rollback {took:.2f}s after the canary's first slow answer: {back['message']}")
    assert back["message"].startswith("3.0: latencyRatio "), back["message"]
    latency = {c["name"]: c for c in rollout_status(cluster, namespace)["checks"]}["latencyRatio"]
    assert latency["result"] == "Fail" and latency["value"] > 2, latency
    assert traffic_in_effect(cluster, namespace) == {stable: 100, "3.0": 0}


def _training_rows(
    cluster: Cluster, namespace: str, tracking_server: TrackingServer
) -> list[dict[str, Any]]:
    """Model 2.0's training set (its run's artifact), one feature-name -> value per row."""
    import pyarrow.parquet as pq
    from mlflow.tracking import MlflowClient

    status = (cluster.get("Model", namespace, f"{NAME}-2.0") or {})["status"]
    folder = MlflowClient(tracking_server.url).download_artifacts(
        status["mlflowRunId"], "training_set/training_set.parquet"
    )
    table = pq.read_table(folder).to_pylist()
    # Served in file order the first hundred rows would be no sample of the whole.
    random.Random(13).shuffle(table)
    columns = {f["column"]: f["ref"].split(".", 1)[1] for f in status["features"]}
    return [
        {"is_premium": None, **{name: row[column] for column, name in columns.items()}}
        for row in table
    ]
