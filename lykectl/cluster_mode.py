"""`lykectl up --cluster` / `lykectl down`: the one-node cluster (Linux, root) with the
images built from the Dockerfile and the chart installed by helm.

`lykeion.cluster.NodeCluster` starts etcd, the API server, the controllers, containerd,
kubelet, kube-proxy and CoreDNS as children of one process and tears them down (host
restored) when that process stops them; it holds the host's one-cluster lock while it
runs. So a *holder* process (`python -m lykectl.cluster_mode --workdir W`), started in its
own session, owns the cluster: it builds or finds the images, starts the cluster, installs
the chart, writes `cluster.json` (state, its pid, the kubeconfig) and waits for SIGTERM,
on which it tears everything down. `up --cluster` starts it and follows its log until the
cluster is ready or failed; `down` sends it SIGTERM and waits until it is gone.

The data volume is a directory of the workdir on the node (hostPath, owned by uid 1000),
with the repository's `examples/` under the data root, so that the example applies as is:
`kubectl apply -f examples/forward/` (its relative paths resolve in the pods).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

from lykectl.embedded import Process, is_alive, stage, terminate
from lykectl.errors import CliError
from lykeion.local.controlplane import REPO_ROOT

STATE_FILE = "cluster.json"
LOG_FILE = "cluster.log"
CLUSTER_DIR = "cluster"
DATA_DIR = "cluster-data"
RELEASE = "lykeion"
NAMESPACE = "lykeion-system"
WORKLOAD_NAMESPACE = "default"
"""Where users' objects go (`kubectl apply` without -n): the chart creates the workload
ServiceAccount there."""
RUN_AS = 1000
START_TIMEOUT = 3600.0
"""Bound on `up --cluster` as a whole: the first build of the images takes 15-30 minutes
on two cores (the README's figures); later starts take one to two minutes."""
STOP_TIMEOUT = 300.0


@dataclass(frozen=True)
class ClusterState:
    """What `cluster.json` records: `state` is starting, ready or failed."""

    state: str
    holder: Process
    kubeconfig: str = ""
    api_server: str = ""
    kubectl: str = ""
    namespace: str = WORKLOAD_NAMESPACE
    data_dir: str = ""
    error: str = ""
    timings: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        return cls(**{**data, "holder": Process(**data["holder"])})


def read_state(workdir: Path) -> ClusterState | None:
    path = workdir / STATE_FILE
    if not path.exists():
        return None
    try:
        return ClusterState.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise CliError(f"{path} is unreadable ({error}); stop its process and remove it") from None


def _write_state(workdir: Path, state: ClusterState) -> None:
    tmp = workdir / f"{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.replace(workdir / STATE_FILE)


# -- the holder process ------------------------------------------------------------------


class _Stopped(Exception):
    """SIGTERM or SIGINT reached the holder."""


def _stop_signal(signum: int, frame: types.FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


def helm_binary() -> str:
    """helm from `scripts/install-helm.sh` (downloaded once into the cache)."""
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "install-helm.sh")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise CliError(f"installing helm failed: {done.stderr.strip()[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def prepare_data(workdir: Path) -> Path:
    """The node's data volume: the repository's examples under the data root (`data/`),
    everything owned by the pods' user."""
    data = workdir / DATA_DIR
    examples = data / "data" / "examples"
    shutil.rmtree(examples, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "examples", examples, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [data, *data.rglob("*")]:
        os.chown(path, RUN_AS, RUN_AS, follow_symlinks=False)
    return data


def helm_install_args(images: dict[str, str], data: Path) -> list[str]:
    """`helm install` arguments for the chart in this cluster (pure): the built images
    (never pulled), the data volume on the node, the chart's MLflow server, the workload
    namespace. `images` maps a build target (operator, workloads, serving) to its image."""
    repository, tag = images["operator"].rsplit(":", 1)
    volume = {"hostPath": {"path": str(data), "type": "Directory"}}
    return [
        "install", RELEASE, str(REPO_ROOT / "charts" / "lykeion"),
        "--namespace", NAMESPACE, "--create-namespace",
        "--set", f"image.repository={repository}",
        "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", f"workload.image={images['workloads']}",
        "--set", f"serving.image={images['serving']}",
        "--set", f"workload.extraNamespaces={{{WORKLOAD_NAMESPACE}}}",
        "--set-json", f"stores.volume={json.dumps(volume)}",
        "--set", "mlflow.server.enabled=true",
        "--wait", "--timeout=300s",
    ]  # fmt: skip


def hold(workdir: Path, timeout: float) -> int:
    """Start the cluster with the chart installed, record it, and keep it until SIGTERM or
    SIGINT; then tear it down and remove the record. Returns the exit code."""
    from lykeion.cluster import ClusterError, NodeCluster, build_images

    me = Process("cluster", os.getpid(), sys.executable)
    signal.signal(signal.SIGTERM, _stop_signal)
    signal.signal(signal.SIGINT, _stop_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _write_state(workdir, ClusterState("starting", me))
    cluster: NodeCluster | None = None
    code = 0
    try:
        with stage("built or found the images (scripts/build-images.sh)"):
            built = build_images()
        with stage("prepared the data volume with the examples"):
            data = prepare_data(workdir)
        with stage("started the one-node cluster (waits for another holding the lock)"):
            cluster = NodeCluster(
                workdir / CLUSTER_DIR, images=[b.archive for b in built.values()]
            ).start(timeout=timeout)
        with stage("installed the chart with helm"):
            done = subprocess.run(
                [helm_binary(), f"--kubeconfig={cluster.kubeconfig}",
                 *helm_install_args({t: b.image for t, b in built.items()}, data)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise ClusterError(f"helm install failed: {done.stderr.strip()[-2000:]}")
        ready = ClusterState(
            "ready", me, kubeconfig=str(cluster.kubeconfig), api_server=cluster.url,
            kubectl=str(cluster.kubectl), data_dir=str(data),
            timings={k: round(v, 1) for k, v in cluster.timings.items()},
        )  # fmt: skip
        _write_state(workdir, ready)
        typer.echo("ready: waiting for SIGTERM (lykectl down)", err=True)
        while True:
            time.sleep(2.0)
            cluster._check_alive()  # a part that died ends the cluster, said in the log
    except _Stopped as why:
        typer.echo(f"stopping ({why})", err=True)
    except (ClusterError, CliError, OSError, subprocess.SubprocessError) as error:
        typer.echo(f"error: {error}", err=True)
        _write_state(workdir, ClusterState("failed", me, error=str(error)[-3000:]))
        code = 1
    finally:
        # Teardown is not interrupted by a second signal.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if cluster is not None:
            with stage("tore the cluster down and restored the host"):
                problems = cluster.stop()
            for problem in problems:
                typer.echo(f"host not fully restored: {problem}", err=True)
        if code == 0:
            (workdir / STATE_FILE).unlink(missing_ok=True)
    return code


# -- up and down -------------------------------------------------------------------------


def _follow(log: Path, offset: int) -> int:
    """Echo what the holder logged since `offset` to stderr; returns the new offset."""
    with open(log, "rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    if chunk:
        sys.stderr.write(chunk.decode(errors="replace"))
        sys.stderr.flush()
    return offset + len(chunk)


def up(workdir: Path, timeout: float) -> tuple[ClusterState, bool]:
    """Start the cluster's holder (or find it running) and wait until the cluster is ready;
    the bool says whether it was already up. Raises CliError when it cannot start."""
    from lykeion.cluster import unsupported_reason

    workdir = workdir.expanduser().resolve()
    state = read_state(workdir)
    if state is not None and is_alive(state.holder):
        if state.state == "ready":
            return state, True
        raise CliError(
            f"a cluster is {state.state} (pid {state.holder.pid}); wait, or `lykectl down`"
        )
    why = unsupported_reason()
    if why:
        raise CliError(f"{why}; without --cluster, `lykectl up` starts the embedded platform")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    log = workdir / LOG_FILE
    with open(log, "wb") as out:
        holder = subprocess.Popen(
            [sys.executable, "-m", "lykectl.cluster_mode", "--workdir", str(workdir),
             "--timeout", str(timeout)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline, offset = time.monotonic() + START_TIMEOUT, 0
    try:
        while True:
            offset = _follow(log, offset)
            state = read_state(workdir)
            if state is not None and state.state == "ready":
                return state, False
            if state is not None and state.state == "failed":
                raise CliError(f"the cluster did not start: {state.error} (log: {log})")
            if holder.poll() is not None:
                raise CliError(f"the cluster's process exited ({holder.returncode}); log: {log}")
            if time.monotonic() > deadline:
                raise CliError(f"the cluster was not ready in {START_TIMEOUT:.0f}s; log: {log}")
            time.sleep(0.5)
    except BaseException:
        # Interrupted or failed: nothing keeps running unrecorded.
        if holder.poll() is None:
            holder.terminate()
            holder.wait(timeout=STOP_TIMEOUT)
        _follow(log, offset)
        raise


def down(workdir: Path) -> bool:
    """Stop the cluster `up --cluster` started (its holder tears it down); False when none
    was recorded. Raises CliError when it does not stop in time."""
    workdir = workdir.expanduser().resolve()
    state = read_state(workdir)
    if state is None:
        return False
    if is_alive(state.holder):
        with stage(f"stopped the one-node cluster (pid {state.holder.pid})"):
            terminate(state.holder, grace=STOP_TIMEOUT)
    (workdir / STATE_FILE).unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lykectl.cluster_mode", description="Hold the one-node cluster."
    )
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per stage")
    args = parser.parse_args(argv)
    return hold(args.workdir, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
