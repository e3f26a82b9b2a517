"""Deleting a FeatureManifest drops the tables of every generation it wrote from both
stores, then lets the object go; an operator that was down when the deletion came does it
when it starts. A control plane and operator of their own: the test stops its operator."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from lykeion.features.view import FeatureView
from lykeion.kube import api_client
from lykeion.local.controlplane import LYKEION_CRDS, ControlPlane, running
from tests.integration.test_lifecycle import at, manifest, materialized, write_source
from tests.support import Cluster, Operator, local_operator, wait_for

NAMESPACE = "default"


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    crds = sorted(LYKEION_CRDS.glob("*.yaml"))
    with running(tmp_path_factory.mktemp("deletion-plane"), crds=crds) as plane:
        yield plane


def _operator(plane: ControlPlane, state: Path) -> Operator:
    return local_operator(plane.kubeconfig, state)


def stored_tables(data: Path) -> set[str]:
    """Names of the tables in the offline (DuckDB) and online (SQLite) files."""
    names: set[str] = set()
    if (data / "offline.duckdb").exists():
        con = duckdb.connect(str(data / "offline.duckdb"), read_only=True)
        try:
            names |= {f"offline:{row[0]}" for row in con.execute("SHOW TABLES").fetchall()}
        finally:
            con.close()
    if (data / "online.db").exists():
        lite = sqlite3.connect(data / "online.db")
        try:
            rows = lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            names |= {f"online:{row[0]}" for row in rows}
        finally:
            lite.close()
    return names


def of(tables: set[str], views: list[FeatureView]) -> set[str]:
    """The stored names that belong to `views`' tables (a store may add a suffix)."""
    return {name for name in tables if any(v.table in name for v in views)}


def test_deletion_drops_every_generations_tables_also_after_a_restart(
    own_plane: ControlPlane, tmp_path: Path
) -> None:
    cluster = Cluster(api_client(own_plane.kubeconfig))
    state = tmp_path / "state"
    data = state / "data"
    operator = _operator(own_plane, state).start()
    try:
        source = write_source(tmp_path / "rides.csv", [("r1", at(1), 1), ("r2", at(2), 2)])
        cluster.create(manifest("rides", source), NAMESPACE)
        first = FeatureView.from_body(materialized(cluster, NAMESPACE, "rides", 1))
        # A second generation: both generations' tables exist side by side.
        cluster.patch("FeatureManifest", NAMESPACE, "rides", {"spec": {"ttl": "3000d"}})
        second = FeatureView.from_body(materialized(cluster, NAMESPACE, "rides", 2))
        other = write_source(tmp_path / "trips.csv", [("r7", at(3), 7)])
        trips = manifest("trips", other)
        trips["spec"]["entity"]["name"] = "driver"  # its own features: no conflict
        cluster.create(trips, NAMESPACE)
        kept = FeatureView.from_body(materialized(cluster, NAMESPACE, "trips", 1))

        tables = stored_tables(data)
        assert len(of(tables, [first])) == len(of(tables, [second])) == 2  # offline + online
        assert len(of(tables, [kept])) == 2

        cluster.delete("FeatureManifest", NAMESPACE, "rides")
        wait_for(lambda: cluster.get("FeatureManifest", NAMESPACE, "rides") is None, 60, "rides")
        tables = stored_tables(data)
        assert of(tables, [first, second]) == set()
        assert len(of(tables, [kept])) == 2  # another object's tables stay

        # Deleted while no operator runs: the finalizer holds the object until one does.
        operator.stop()
        cluster.delete("FeatureManifest", NAMESPACE, "trips")
        held = cluster.get("FeatureManifest", NAMESPACE, "trips")
        assert held is not None and held["metadata"].get("deletionTimestamp")
        assert len(of(stored_tables(data), [kept])) == 2
        operator = _operator(own_plane, state).start()
        wait_for(lambda: cluster.get("FeatureManifest", NAMESPACE, "trips") is None, 60, "trips")
        assert of(stored_tables(data), [kept]) == set()
    finally:
        operator.stop()
