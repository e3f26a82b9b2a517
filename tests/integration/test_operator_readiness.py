"""The operator's /readyz against a real API server that goes away and comes back."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lykeion.local.controlplane import LYKEION_CRDS, ControlPlane
from lykeion.local.ports import free_port
from tests.support import Operator, wait_for


def readyz(operator: Operator) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.port}/readyz", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own: the test stops its API server."""
    plane = ControlPlane(tmp_path / "plane").start()
    try:
        plane.install_crds(sorted(LYKEION_CRDS.glob("*.yaml")))
        yield plane
    finally:
        plane.stop()


def test_ready_only_while_the_watches_are_connected(
    own_plane: ControlPlane, tmp_path: Path
) -> None:
    operator = Operator(
        own_plane.kubeconfig,
        tmp_path / "operator.log",
        extra_env={
            "LYKEION_STATE_DIR": str(tmp_path / "runs"),
            "LYKEION_DATA_DIR": str(tmp_path / "data"),
        },
    ).start()
    try:
        status, text = readyz(operator)
        assert status == 200
        assert text == "watching deployments, featuremanifests, modelfamilies, models"

        own_plane.stop_apiserver()
        status, text = wait_for(
            lambda: (r := readyz(operator))[0] == 503 and r, 30, "/readyz 503 once the API is gone"
        )
        assert text.startswith("watch disconnected: /apis/lykeion.io/v1alpha1/")
        assert operator.get("/healthz")[0] == 200  # alive, only not ready

        own_plane.start_apiserver()
        wait_for(lambda: readyz(operator)[0] == 200, 60, "/readyz 200 once the watches reconnect")
    finally:
        operator.stop()


def test_never_ready_against_an_unreachable_api_server(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "gone",
                        "cluster": {"server": f"https://127.0.0.1:{free_port()}"},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "gone",
            }
        )
    )
    operator = Operator(kubeconfig, tmp_path / "operator.log")
    with pytest.raises(AssertionError, match="operator readiness"):
        operator.start(timeout=8)
    try:
        assert operator.process is not None and operator.process.poll() is None
        assert readyz(operator)[0] != 200
    finally:
        operator.stop()
