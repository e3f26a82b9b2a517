"""`lykectl up --cluster` / `lykectl down` without a cluster: the chart's install arguments,
the recorded cluster found running, and `down` stopping its holder process (a real
process standing in for it: what `down` does to the holder is all `down` does)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from lykectl import cluster_mode, embedded
from lykectl.cli import app

runner = CliRunner()
# Stands in for the holder: on SIGTERM it says so (where the holder tears the cluster down).
HOLDER = """
import signal, sys, time
def stop(signum, frame):
    open(sys.argv[1], "w").write("torn down")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(sys.argv[2], "w").write("up")
time.sleep(60)
"""


def test_up_help_offers_the_cluster_and_the_embedded_platform_stays_the_default() -> None:
    result = runner.invoke(app, ["up", "--help"], terminal_width=100)
    assert result.exit_code == 0
    assert "--cluster" in result.output and "one-node Kubernetes cluster" in result.output
    assert "Start the embedded platform" in result.output


def test_the_chart_is_installed_with_the_built_images_never_pulled_and_the_node_volume() -> None:
    images = {
        "operator": "localhost/lykeion-operator:abc123",
        "workloads": "localhost/lykeion-workloads:abc123",
        "serving": "localhost/lykeion-serving:abc123",
    }
    args = cluster_mode.helm_install_args(images, Path("/srv/lykeion"))
    pairs = dict(itertools.pairwise(args))
    assert args[:2] == ["install", "lykeion"] and pairs["--namespace"] == "lykeion-system"
    sets = [args[i + 1] for i, a in enumerate(args) if a in ("--set", "--set-json")]
    assert "image.repository=localhost/lykeion-operator" in sets
    assert "image.tag=abc123" in sets and "image.pullPolicy=Never" in sets
    assert "workload.image=localhost/lykeion-workloads:abc123" in sets
    assert "serving.image=localhost/lykeion-serving:abc123" in sets
    assert "workload.extraNamespaces={default}" in sets
    volume = next(s for s in sets if s.startswith("stores.volume="))
    assert json.loads(volume.split("=", 1)[1]) == {
        "hostPath": {"path": "/srv/lykeion", "type": "Directory"}
    }
    assert "mlflow.server.enabled=true" in sets and "--wait" in args


def _holder(tmp_path: Path) -> subprocess.Popen[bytes]:
    started = tmp_path / "holder-up"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "holder-stopped"), str(started)],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return child


def _record(tmp_path: Path, pid: int, state: str = "ready") -> cluster_mode.ClusterState:
    recorded = cluster_mode.ClusterState(
        state,
        embedded.Process("cluster", pid, sys.executable),
        kubeconfig=str(tmp_path / "cluster" / "kubeconfigs" / "admin.conf"),
        api_server="https://10.0.0.1:40001",
        kubectl="/bin/kubectl",
        data_dir=str(tmp_path / cluster_mode.DATA_DIR),
        timings={"node_ready": 15.2},
    )
    (tmp_path / cluster_mode.STATE_FILE).write_text(json.dumps(recorded.to_json()))
    return recorded


def test_a_running_cluster_is_found_and_down_stops_its_holder(tmp_path: Path) -> None:
    child = _holder(tmp_path)
    try:
        recorded = _record(tmp_path, child.pid)
        assert cluster_mode.read_state(tmp_path) == recorded
        result = runner.invoke(app, ["up", "--cluster", "--workdir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        assert result.stdout == f"export KUBECONFIG={recorded.kubeconfig}\n"
        assert "already running" in result.stderr and "kubectl apply -f examples" in result.stderr

        result = runner.invoke(app, ["down", "--workdir", str(tmp_path), "-o", "json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["clusterStopped"] is True
        child.wait(timeout=10)
    finally:
        child.kill()
        child.wait()
    assert (tmp_path / "holder-stopped").read_text() == "torn down"  # SIGTERM, not SIGKILL
    assert not (tmp_path / cluster_mode.STATE_FILE).exists()


def test_a_cluster_still_starting_is_not_started_twice(tmp_path: Path) -> None:
    child = _holder(tmp_path)
    try:
        _record(tmp_path, child.pid, state="starting")
        result = runner.invoke(app, ["up", "--cluster", "--workdir", str(tmp_path)])
        assert result.exit_code == 1
        assert f"a cluster is starting (pid {child.pid}); wait, or `lykectl down`" in result.stderr
    finally:
        child.kill()
        child.wait()


def test_down_with_nothing_running_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["down", "--workdir", str(tmp_path)])
    assert result.exit_code == 0
    assert "no cluster either" in result.stderr
