"""Killing the operator mid-reconcile loses nothing; restarting a converged one changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from lykeion import GROUP, VERSION
from lykeion.kube import api_client
from lykeion.local.controlplane import LYKEION_CRDS, ControlPlane
from tests import objects
from tests.support import Cluster, Operator, wait_for

N = 120


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # A control plane of its own: the session operator must not touch these objects.
    plane = ControlPlane(tmp_path_factory.mktemp("restart-plane")).start()
    plane.install_crds(sorted(LYKEION_CRDS.glob("*.yaml")))
    yield plane
    plane.stop()


def _models(api: client.ApiClient) -> list[dict]:  # type: ignore[type-arg]
    items: list[dict] = client.CustomObjectsApi(api).list_namespaced_custom_object(  # type: ignore[type-arg]
        GROUP, VERSION, "default", "models"
    )["items"]
    return items


def _converged(api: client.ApiClient) -> bool:
    items = _models(api)
    return len(items) == N and all(
        (m.get("status") or {}).get("observedGeneration") == m["metadata"]["generation"]
        for m in items
    )


def test_kill_during_burst_then_restart(own_plane: ControlPlane, tmp_path: Path) -> None:
    api = api_client(own_plane.kubeconfig)
    cluster = Cluster(api)
    cluster.create(objects.family(), "default")
    cluster.create(objects.manifest(features={"age": "int64"}), "default")
    for i in range(N):
        features = ["rider.age"] if i % 2 == 0 else ["rider.age", "rider.missing_one"]
        cluster.create(objects.model(version=f"1.{i}", features=features), "default")

    log = tmp_path / "operator.log"
    operator = Operator(
        own_plane.kubeconfig, log, extra_env={"LYKEION_STATE_DIR": str(tmp_path / "runs")}
    )
    operator.start()
    # Kill as soon as some (not all) Models carry a status: mid-reconcile.
    wait_for(
        lambda: any((m.get("status") or {}).get("conditions") for m in _models(api)),
        60,
        "first status",
    )
    operator.kill()
    assert not _converged(api), "operator finished before it could be killed; raise N"

    operator.start()
    wait_for(lambda: _converged(api), 120, "all Models reconciled after restart")
    by_name = {m["metadata"]["name"]: m for m in _models(api)}
    for i in range(N):
        ready = next(
            c
            for c in by_name[f"forward-default-1.{i}"]["status"]["conditions"]
            if c["type"] == "Ready"
        )
        assert ready["status"] == ("True" if i % 2 == 0 else "False")
        if i % 2:
            assert ready["reason"] == "FeaturesNotDefined"
            assert ready["message"] == "not defined by any FeatureManifest: rider.missing_one"
    family = cluster.get("ModelFamily", "default", "forward")
    assert family is not None
    wait_for(
        lambda: (
            (cluster.get("ModelFamily", "default", "forward") or {})["status"].get("modelCount")
            == N
        )
    )

    # Converged: a restart re-checks everything and writes no status.
    before = {m["metadata"]["name"]: m["status"] for m in _models(api)}
    operator.stop()
    operator.start()
    time.sleep(5)
    after = {m["metadata"]["name"]: m["status"] for m in _models(api)}
    assert after == before
    operator.stop()
    assert "Traceback" not in log.read_text()
