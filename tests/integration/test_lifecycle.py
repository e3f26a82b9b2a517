"""Runs and tables belong to their object, generation and tenant: through the real operator
and API server, with the embedded stores.

Each reported case is a test: a backfill after a source change replaces both stores at
once; late rows are re-read within `allowedLateness` and counted beyond it; a recreated
object never adopts its predecessor's runs; names sharing 40 characters get their own
runs; two namespaces (`a--b`/`c` and `a`/`b--c`) get their own tables.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lykeion import API_VERSION
from lykeion.conditions import parse_time
from lykeion.features.view import FeatureView
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests.support import Cluster, Operator, wait_for

TIMEOUT = 240.0
Row = tuple[str, datetime, int]


def manifest(name: str, source: Path, **spec: Any) -> dict[str, Any]:
    """A FeatureManifest of rider `trips` (a column) read from the CSV file `source`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "FeatureManifest",
        "metadata": {"name": name},
        "spec": {
            "description": "lifecycle test features",
            "owner": "team@example.com",
            "entity": {"name": "rider", "joinKey": "rider_id"},
            "source": {
                "file": {"path": str(source), "format": "csv"},
                "timestampColumn": "event_time",
            },
            "features": [{"name": "trips", "type": "int64", "column": "trips"}],
            "ttl": "3650d",
            **spec,
        },
    }


def write_source(path: Path, rows: list[Row]) -> Path:
    lines = ["rider_id,event_time,trips"]
    lines += [f"{key},{moment.isoformat()},{trips}" for key, moment, trips in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return (cluster.get("FeatureManifest", namespace, name) or {}).get("status") or {}


def materialized(cluster: Cluster, namespace: str, name: str, generation: int) -> dict[str, Any]:
    """The object once `generation` is the generation in effect and no run is in flight."""

    def done() -> dict[str, Any] | None:
        body = cluster.get("FeatureManifest", namespace, name) or {}
        current = body.get("status") or {}
        if current.get("materializedGeneration") == generation and not current.get("currentRun"):
            return body
        # The embedded DuckDB file takes one writing process at a time: a run that found it
        # locked (by another run, or by this test reading) fails and is retried.
        failed = [
            r
            for r in current.get("runs") or []
            if r.get("result") == "Failed" and "Could not set lock" not in r.get("message", "")
        ]
        assert not failed, failed
        return None

    body: dict[str, Any] = wait_for(done, TIMEOUT, f"{namespace}/{name} generation {generation}")
    return body


class Stores:
    """What readers see: the stores the operator's runs write, read through a view."""

    def __init__(self, operator: Operator) -> None:
        data = Path(operator.extra_env["LYKEION_DATA_DIR"])
        self.online_path = data / "online.db"
        self.offline = DuckDBOfflineStore(data / "offline.duckdb")

    def online(self, view: FeatureView, keys: list[str]) -> list[int | None]:
        store = SqliteOnlineStore(self.online_path)
        try:
            found = store.read(view, keys, ["trips"], now=datetime.now(UTC))
        finally:
            store.close()
        return [entry["trips"] if entry else None for entry in found]

    def history(self, view: FeatureView) -> list[tuple[str, datetime, int]]:
        table = self.offline.history(view)
        return [(r["entity_key"], r["event_time"], r["trips"]) for r in table.to_pylist()]


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


def test_backfill_replaces_both_stores_at_once(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    source = write_source(
        tmp_path / "rides.csv",
        [("r1", at(1), 1), ("r1", at(2), 2), ("r2", at(1), 5), ("r3", at(1), 7)],
    )
    cluster.create(manifest("rides", source), namespace)
    first = FeatureView.from_body(materialized(cluster, namespace, "rides", 1))
    stores = Stores(operator)
    assert stores.online(first, ["r1", "r2", "r3"]) == [2, 5, 7]

    # The source is corrected: r1's first row deleted, its second changed, r3 removed.
    write_source(source, [("r1", at(2), 20), ("r2", at(1), 5)])
    cluster.patch("FeatureManifest", namespace, "rides", {"spec": {"backfillRequests": 1}})
    # Until the new generation is complete, readers build their view from the status and
    # read generation 1, whole.
    while (body := cluster.get("FeatureManifest", namespace, "rides") or {})["status"][
        "materializedGeneration"
    ] == 1:
        assert stores.online(FeatureView.from_body(body), ["r1", "r2", "r3"]) == [2, 5, 7]
        if not body["status"].get("currentRun") and body["status"]["runCount"] > 1:
            break
        time.sleep(0.2)
    second = FeatureView.from_body(materialized(cluster, namespace, "rides", 2))
    assert second.table != first.table
    assert stores.online(second, ["r1", "r2", "r3"]) == [20, 5, None]
    assert stores.history(second) == [("r1", at(2), 20), ("r2", at(1), 5)]
    # The replaced generation stays readable (servers may still hold its view) ...
    assert stores.online(first, ["r3"]) == [7]
    done = status(cluster, namespace, "rides")
    assert done["storedGenerations"] == [1, 2] and done["runs"][-1]["name"] == "rides-g2-r2"

    # ... until the next backfill starts: then its tables are dropped from both stores.
    cluster.patch("FeatureManifest", namespace, "rides", {"spec": {"backfillRequests": 2}})
    third = FeatureView.from_body(materialized(cluster, namespace, "rides", 3))
    assert status(cluster, namespace, "rides")["storedGenerations"] == [2, 3]
    assert stores.online(first, ["r1", "r3"]) == [None, None]
    assert stores.history(first) == []
    assert stores.online(third, ["r1", "r2"]) == [20, 5]


def test_late_rows_are_reread_within_the_allowed_lateness_and_counted_beyond(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [("r1", now - timedelta(hours=3), 1), ("r1", now - timedelta(hours=2), 2)]
    source = write_source(tmp_path / "rides.csv", rows)
    cluster.create(manifest("rides", source, schedule="* * * * *"), namespace)
    body = materialized(cluster, namespace, "rides", 1)
    watermark = parse_time(body["status"]["watermark"])
    assert watermark is not None

    # Two rows arrive after the backfill, both behind its watermark: one 30 minutes (within
    # the default allowedLateness of 1h), one 2 hours (beyond it).
    within = ("r2", watermark - timedelta(minutes=30), 30)
    beyond = ("r3", watermark - timedelta(hours=2), 99)
    write_source(source, [*rows, within, beyond])

    def incremental() -> dict[str, Any] | None:
        current = status(cluster, namespace, "rides")
        runs = [r for r in current.get("runs") or [] if r.get("start")]
        return current if runs and runs[-1]["result"] == "Succeeded" else None

    after = wait_for(incremental, TIMEOUT, "an incremental run")
    run = [r for r in after["runs"] if r.get("start")][-1]
    assert parse_time(run["start"]) == watermark - timedelta(hours=1)
    view = FeatureView.from_body(cluster.get("FeatureManifest", namespace, "rides") or {})
    stores = Stores(operator)
    assert stores.online(view, ["r1", "r2", "r3"]) == [2, 30, None]
    assert (after["lateRows"], run["lateRows"]) == (1, 1)
    late = cluster.wait_condition(
        "FeatureManifest", namespace, "rides", "True", type_="LateData", timeout=30
    )
    assert late["reason"] == "RowsBehindAllowedLateness"
    assert "lykectl features backfill rides" in late["message"]
    # Late data is advice: the stores stay valid up to the watermark.
    assert cluster.condition("FeatureManifest", namespace, "rides")["status"] == "True"  # type: ignore[index]

    # A backfill brings the late row in and clears the condition.
    cluster.patch("FeatureManifest", namespace, "rides", {"spec": {"backfillRequests": 1}})
    view = FeatureView.from_body(materialized(cluster, namespace, "rides", 2))
    assert stores.online(view, ["r3"]) == [99]
    cluster.wait_condition(
        "FeatureManifest", namespace, "rides", "False", "NoLateRows", type_="LateData"
    )


def test_a_recreated_object_never_adopts_its_predecessors_runs(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    old_source = write_source(tmp_path / "old.csv", [("r1", at(1), 1), ("r2", at(1), 2)])
    cluster.create(manifest("rides", old_source), namespace)
    old = materialized(cluster, namespace, "rides", 1)
    cluster.delete("FeatureManifest", namespace, "rides")
    wait_for(lambda: cluster.get("FeatureManifest", namespace, "rides") is None, 30, "deletion")

    new_source = write_source(tmp_path / "new.csv", [("r9", at(5), 9)])
    cluster.create(manifest("rides", new_source), namespace)
    new = materialized(cluster, namespace, "rides", 1)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    # Same run name, but the predecessor's finished run is not adopted: a new one ran.
    run = new["status"]["runs"][-1]
    assert run["name"] == old["status"]["runs"][-1]["name"] == "rides-g1-r1"
    assert (run["rowsRead"], new["status"]["runCount"]) == (1, 1)
    runs = Path(operator.extra_env["LYKEION_STATE_DIR"]) / namespace
    work = json.loads((runs / "rides-g1-r1" / "work.json").read_text())
    assert work["ownerUid"] == new["metadata"]["uid"]
    assert (runs / ".replaced" / f"rides-g1-r1.{old['metadata']['uid']}").is_dir()

    stores = Stores(operator)
    view = FeatureView.from_body(new)
    assert view.table != FeatureView.from_body(old).table
    assert stores.online(view, ["r1", "r9"]) == [None, 9]
    assert stores.history(view) == [("r9", at(5), 9)]


def test_names_sharing_40_characters_get_their_own_runs(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    names = {
        "rider-activity-features-for-the-pricing-model-eu": 1,
        "rider-activity-features-for-the-pricing-model-us": 2,
    }
    for name, trips in names.items():
        body = manifest(name, write_source(tmp_path / f"{name}.csv", [("r1", at(1), trips)]))
        # Different features, so the two manifests do not define the same ones.
        body["spec"]["features"] = [
            {"name": f"trips_{name[-2:]}", "type": "int64", "column": "trips"}
        ]
        cluster.create(body, namespace)
    stores = Stores(operator)
    run_names = set()
    for name, trips in names.items():
        body = materialized(cluster, namespace, name, 1)
        run_names.add(body["status"]["runs"][-1]["name"])
        view = FeatureView.from_body(body)
        rows = stores.offline.history(view).to_pylist()
        assert [r[f"trips_{name[-2:]}"] for r in rows] == [trips]
    assert len(run_names) == 2 and all(len(n) <= 63 for n in run_names)


def test_two_namespaces_with_look_alike_names_keep_their_own_tables(
    cluster: Cluster, operator: Operator, namespace: str, tmp_path: Path
) -> None:
    # Namespace `a--b` with manifest `c`, namespace `a` with manifest `b--c`, and the same
    # manifest name in both: nothing is shared.
    first = cluster.new_namespace(f"{namespace}--b")
    second = namespace
    cases = [(first, "c", 1), (second, "b--c", 2), (first, "same", 3), (second, "same", 4)]
    for ns, name, trips in cases:
        source = write_source(tmp_path / f"{ns}-{name}.csv", [("r1", at(1), trips)])
        body = copy.deepcopy(manifest(name, source))
        body["spec"]["features"] = [{"name": f"trips_{trips}", "type": "int64", "column": "trips"}]
        cluster.create(body, ns)
        materialized(cluster, ns, name, 1)
    stores = Stores(operator)
    tables = set()
    for ns, name, trips in cases:
        view = FeatureView.from_body(materialized(cluster, ns, name, 1))
        tables.add(view.table)
        assert [r[f"trips_{trips}"] for r in stores.offline.history(view).to_pylist()] == [trips]
        store = SqliteOnlineStore(stores.online_path)
        try:
            entry = store.read(view, ["r1"], [f"trips_{trips}"], now=datetime.now(UTC))[0]
        finally:
            store.close()
        assert entry == {f"trips_{trips}": trips}
    assert len(tables) == 4
