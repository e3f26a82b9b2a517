"""The signals a rollout judges by, from a real model server process: the continuous skew
check against a real DuckDB offline store and drift against training-set statistics
logged to the model's real MLflow run.

Both stores are filled by one real materialization (`materialize_duckdb`) of a CSV
source, as a FeatureManifest run fills them; the training set the statistics come from is
built by the offline store's own point-in-time path.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import Range
from lykeion.features.materialize import materialize_duckdb
from lykeion.features.view import FeatureView
from lykeion.stores.offline.base import LabelSpec, ResolvedFeature
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore
from lykeion.training.statistics import log_statistics, training_statistics
from tests.integration.serving_fixture import (
    KEY,
    NAME,
    TRAINED,
    ServedModel,
    ServerProcess,
    Servers,
    manifest_body,
    served_model_fixture,  # noqa: F401
    servers_fixture,  # noqa: F401
)

INFER = f"/v2/models/{NAME}/infer"
START = datetime(2026, 10, 1, tzinfo=UTC)
LABEL_TIME = datetime(2026, 11, 20, tzinfo=UTC)
STEADY = [f"s{i:03d}" for i in range(200)]
"""Riders served as in training."""
SHIFTED = [f"d{i:03d}" for i in range(200)]
"""Riders whose values lie outside the training distribution (never in the labels)."""
CORRUPTED = "c1"
"""The rider whose online value the skew test overwrites (no other test serves it)."""


@dataclass(frozen=True)
class Stores:
    folder: Path
    offline: Path
    online: Path
    events: dict[str, tuple[datetime, int, float | None]]
    """rider -> its newest event (time, age, avg_fare)."""


def _write_source(path: Path) -> dict[str, tuple[datetime, int, float | None]]:
    """Two events per rider (the second newer); a few null fares. Returns the newest."""
    rng = np.random.default_rng(13)
    newest: dict[str, tuple[datetime, int, float | None]] = {}
    with path.open("w", newline="") as sink:
        out = csv.writer(sink)
        out.writerow([KEY, "event_time", "age", "avg_fare"])
        for index, rider in enumerate([*STEADY, *SHIFTED, CORRUPTED]):
            shifted = rider in SHIFTED
            for step in range(2):
                moment = START + timedelta(days=step * 20, minutes=index)
                age = int(rng.integers(18, 80)) + (45 if shifted else 0)
                fare: float | None = round(float(rng.uniform(5, 40)) * (4 if shifted else 1), 2)
                if index % 17 == 0 and step == 1:
                    fare = None
                out.writerow([rider, moment.isoformat(), age, "" if fare is None else fare])
                newest[rider] = (moment, age, fare)
    return newest


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, served_model: ServedModel) -> Stores:
    folder = tmp_path_factory.mktemp("signals")
    events = _write_source(folder / "rides.csv")
    body = manifest_body()
    spec = FeatureManifestSpec.model_validate(body["spec"])
    view = FeatureView.from_body(body)
    offline = DuckDBOfflineStore(folder / "offline.duckdb")
    online = SqliteOnlineStore(folder / "online.db")
    try:
        result = materialize_duckdb(
            spec, view, Range(None, datetime.now(UTC)), offline, online, str(folder)
        )
        assert result.succeeded and result.rows_written == 2 * len(events), result
        # The training set of the steady riders, by the offline store's point-in-time path.
        labels = pa.table(
            {
                KEY: pa.array(STEADY, pa.string()),
                "label_time": pa.array([LABEL_TIME] * len(STEADY), pa.timestamp("us", tz="UTC")),
                "target": pa.array([0] * len(STEADY), pa.int64()),
            }
        )
        refs = [ResolvedFeature(view, "age"), ResolvedFeature(view, "avg_fare")]
        table = offline.training_set(labels, LabelSpec(KEY, "label_time", "target"), refs).table
    finally:
        online.close()
    statistics = training_statistics(table, {f["ref"]: (f["column"], f["type"]) for f in TRAINED})
    from mlflow.tracking import MlflowClient

    run_id = served_model.model_uri.split("/")[1]
    log_statistics(MlflowClient(served_model.tracking_uri), run_id, statistics)
    return Stores(folder, folder / "offline.duckdb", folder / "online.db", events)


@pytest.fixture(scope="module")
def server(served_model: ServedModel, servers: Servers, stores: Stores) -> ServerProcess:
    config = served_model.config(
        online_store=f"sqlite://{stores.online}",
        offline_store=f"duckdb://{stores.offline}",
        skew_sample_rate=1.0,
        skew_batch_seconds=0.2,
        drift_window=200,
        drift_min_served=100,
        defaults={"rider.avg_fare": None},  # a null fare goes to the model as NaN
    )
    return servers.server("signals", config)


def _predict(server: ServerProcess, riders: list[str]) -> None:
    for start in range(0, len(riders), 50):
        part = riders[start : start + 50]
        body = {"inputs": [{"name": KEY, "shape": [len(part)], "datatype": "BYTES", "data": part}]}
        answer = server.post(INFER, body)
        assert answer.status_code == 200, answer.text


def _analysis(server: ServerProcess) -> dict[str, Any]:
    answer = server.get("/analysis")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _until(check: Callable[[], dict[str, Any] | None], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _skew(server: ServerProcess) -> dict[str, Any]:
    features: dict[str, Any] = _analysis(server)["skew"]["features"]
    return features


def _metric(server: ServerProcess, sample: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(server.get("/metrics").text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return None


def _checked_at_least(server: ServerProcess, count: int) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        skew = _skew(server)
        return skew if all(f["checked"] >= count for f in skew.values()) else None

    return check


def test_an_untouched_store_shows_no_skew(server: ServerProcess) -> None:
    before = _skew(server)
    _predict(server, STEADY[:40])
    wanted = before["rider.age"]["checked"] + 40
    skew = _until(_checked_at_least(server, wanted), "40 checked rows")
    assert set(skew) == {"rider.age", "rider.avg_fare"}
    for ref, feature in skew.items():
        assert feature["mismatches"] == 0, (ref, feature["lastMismatch"])
        assert _metric(server, "lykeion_skew_checked_total", feature=ref) == feature["checked"]
        assert _metric(server, "lykeion_skew_mismatches_total", feature=ref) == 0


def test_a_corrupted_online_value_is_caught_naming_feature_key_and_values(
    server: ServerProcess, stores: Stores
) -> None:
    moment, age, fare = stores.events[CORRUPTED]
    store = SqliteOnlineStore(stores.online)
    try:
        # Same event time: the row is replaced in place, as a corrupting write would.
        store.write(
            FeatureView.from_body(manifest_body()),
            [OnlineRow(CORRUPTED, moment, {"age": age + 1000, "avg_fare": fare})],
        )
    finally:
        store.close()
    before = _skew(server)
    sent = datetime.now(UTC)
    _predict(server, [CORRUPTED])
    skew = _until(_checked_at_least(server, before["rider.age"]["checked"] + 1), "the check")
    age_check, fare_check = skew["rider.age"], skew["rider.avg_fare"]
    assert age_check["mismatches"] == before["rider.age"]["mismatches"] + 1
    assert fare_check["mismatches"] == before["rider.avg_fare"]["mismatches"]
    last = age_check["lastMismatch"]
    assert last["key"] == {KEY: CORRUPTED}
    assert (last["served"], last["offline"]) == (age + 1000, age)
    request_time = datetime.fromisoformat(last["requestTime"])
    assert sent <= request_time <= datetime.now(UTC)
    assert request_time <= datetime.fromisoformat(last["offlineTime"])
    assert _metric(server, "lykeion_skew_mismatches_total", feature="rider.age") == float(
        age_check["mismatches"]
    )


def _psi(server: ServerProcess) -> dict[str, Any]:
    features: dict[str, Any] = _analysis(server)["drift"]["features"]
    return features


def test_drift_stays_low_on_the_training_distribution_and_rises_when_shifted(
    server: ServerProcess,
) -> None:
    _predict(server, STEADY)  # the window (200) now holds exactly the training set's values
    steady = _psi(server)
    for ref in ("rider.age", "rider.avg_fare"):
        assert steady[ref]["psi"] is not None and steady[ref]["psi"] < 0.01, steady
        assert _metric(server, "lykeion_feature_drift_psi", feature=ref) == pytest.approx(
            steady[ref]["psi"]
        )
    _predict(server, SHIFTED[:100])
    half = _psi(server)
    _predict(server, SHIFTED[100:])
    shifted = _psi(server)
    for ref in ("rider.age", "rider.avg_fare"):
        assert steady[ref]["psi"] < half[ref]["psi"] < shifted[ref]["psi"], (half, shifted)
        assert shifted[ref]["psi"] > 1.0
        assert shifted[ref]["served"] == steady[ref]["served"] + len(SHIFTED)


def test_drift_since_a_step_start_counts_only_that_steps_values(server: ServerProcess) -> None:
    """A rollout step asks `?since=<its start>`: values served before it do not count, even
    while they still fill most of the window."""
    _predict(server, SHIFTED)  # the window (200) holds shifted values only
    start = datetime.now(UTC)
    time.sleep(0.05)
    since = {"since": start.isoformat().replace("+00:00", "Z")}
    empty = server.get("/analysis?" + urlencode(since)).json()["drift"]["features"]
    assert empty["rider.age"]["psi"] is None
    assert (empty["rider.age"]["window"]["filled"], empty["rider.age"]["window"]["counted"]) == (
        200, 0,
    )  # fmt: skip
    _predict(server, STEADY[:100])  # the step's own values, as in training
    body = server.get("/analysis?" + urlencode(since)).json()["drift"]
    assert body["window"] == {"size": 200, "minServed": 100}
    for ref in ("rider.age", "rider.avg_fare"):
        step, whole = body["features"][ref], _psi(server)[ref]
        assert step["window"]["counted"] == 100 and step["window"]["filled"] == 200
        assert step["window"]["start"] < since["since"]  # the window reaches before the step
        # Half the training rows read low; the whole window, half shifted, does not.
        assert step["psi"] is not None and step["psi"] < 0.3, step
        assert whole["psi"] > 0.5, (whole, step)


def test_analysis_refuses_a_bad_since_or_metric_naming_it(server: ServerProcess) -> None:
    for query, field in (
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-30T12:00:00"}, "since"),  # no time zone
        ({"since": "1e400"}, "since"),  # epoch seconds past a float
        ({"since": "-inf"}, "since"),
        ({"since": "abc"}, "since"),
        ({"since": "9999-12-31T23:59:59-14:00"}, "since"),  # past year 9999 in UTC
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),  # before year 1 in UTC
        ({"since": "x" * 10_000}, "since"),
        ({"metric": "loss"}, "metric"),
        ({"metric": "nope"}, "metric"),
        ({"since": "2026-11-30T12:00:00Z", "metric": "nope"}, "metric"),
    ):
        answer = server.get("/analysis?" + urlencode(query))
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith(f"{field}: "), answer.text
    # The extremes of the range are times, not errors.
    for edge in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"):
        answer = server.get("/analysis?" + urlencode({"since": edge}))
        assert answer.status_code == 200, answer.text
    # A metric without `labels` configured is no data, not an error.
    assert "labels" not in server.get("/analysis?" + urlencode({"metric": "roc_auc"})).json()
