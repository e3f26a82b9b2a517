"""Fixtures: a real etcd + kube-apiserver for the session, and the real operator process."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from lykeion.executors.local_endpoints import Process as ServingProcess
from lykeion.kube import api_client
from lykeion.local.controlplane import ControlPlane, running
from lykeion.local.tracking_server import TrackingServer
from tests.git_ssh import GitSshServer
from tests.support import Cluster, Operator, kubernetes_operator, local_operator

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running(tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> client.ApiClient:
    return api_client(control_plane.kubeconfig)


@pytest.fixture(scope="session")
def cluster(api: client.ApiClient) -> Cluster:
    return Cluster(api)


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """A real MLflow tracking server (SQLite backend, local artifacts)."""
    server = TrackingServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def git_ssh_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SSH client configuration of this session's user (`ssh -F` it): where
    `git_ssh_server` writes its host aliases; the operator's trainings use it."""
    return tmp_path_factory.getbasetemp() / "git-ssh-client" / "config"


@pytest.fixture(scope="session")
def git_ssh_server(
    tmp_path_factory: pytest.TempPathFactory, git_ssh_config: Path
) -> Iterator[GitSshServer]:
    """A real sshd serving git repositories on 127.0.0.1 (see tests/git_ssh.py)."""
    server = GitSshServer(tmp_path_factory.mktemp("git-ssh-server"), git_ssh_config).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane,
    tracking_server: TrackingServer,
    tmp_path_factory: pytest.TempPathFactory,
    git_ssh_config: Path,
) -> Iterator[Operator]:
    state = tmp_path_factory.mktemp("operator-state")
    proc = local_operator(
        control_plane.kubeconfig,
        state,
        LYKEION_MLFLOW_TRACKING_URI=tracking_server.url,
        # The user's SSH setup, as GIT_SSH_COMMAND; its hosts exist once git_ssh_server runs.
        GIT_SSH_COMMAND=f"ssh -F {git_ssh_config}",
    ).start()
    yield proc
    proc.stop()
    # Model servers are detached from the operator (a restart must find them): stop them.
    for pid_file in (state / "runs").glob("*/_endpoints/*/*/pid"):
        ServingProcess(pid_file.parent).stop()


@pytest.fixture(scope="module")
def k8s_plane(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ControlPlane]:
    """A control plane of the test module's own (the session operator, with the local
    executor, must not see its objects), with Lykeion's CRDs and Seldon's and KServe's,
    which validate what the operator renders."""
    module = request.module.__name__.rsplit(".", 1)[-1]
    plane = ControlPlane(tmp_path_factory.mktemp(f"{module}-plane")).start()
    plane.install_crds()
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def k8s_operator_env() -> dict[str, str]:
    """Variables a test module adds to its `k8s_operator`: none, unless the module
    defines this fixture itself."""
    return {}


@pytest.fixture(scope="module")
def k8s_operator(
    k8s_plane: ControlPlane,
    k8s_operator_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    """The operator with the `kubernetes` executor (`support.kubernetes_operator`) on
    `k8s_plane`, started; stopped after the module."""
    state = tmp_path_factory.mktemp("k8s-operator")
    proc = kubernetes_operator(k8s_plane.kubeconfig, state, **k8s_operator_env).start()
    yield proc
    proc.stop()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    base = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")
    name = (
        f"{''.join(c for c in base if c.isalnum() or c == '-')[:40].strip('-')}-{next(_namespaces)}"
    )
    return cluster.new_namespace(name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder == "integration":
            item.add_marker(pytest.mark.integration)
        elif folder == "cluster":
            item.add_marker(pytest.mark.cluster)
