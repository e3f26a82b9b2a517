"""`lykectl up` / `lykectl down`: the embedded platform (etcd, kube-apiserver, MLflow, the
operator and the Feature API).

The processes run in their own sessions and outlive `lykectl up`; what `down` needs to
find them again (pids, the command each runs, ports) is recorded in `platform.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from lykectl.errors import CliError
from lykeion.config import PlatformConfig
from lykeion.executors.local_endpoints import Process as ServingProcess
from lykeion.local.controlplane import ControlPlane, ControlPlaneError, binaries_dir
from lykeion.local.ports import free_port
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process
from lykeion.local.processes import stop_group
from lykeion.local.readiness import NotReady, wait_until_answers
from lykeion.local.tracking_server import TrackingServer

DEFAULT_WORKDIR = Path("~/.lykeion")
STATE_FILE = "platform.json"
CONTROL_PLANE_DIR = "control-plane"
RUNS_DIR = "runs"
KUBECONFIG_FILE = "kubeconfig"
OPERATOR_LOG = "operator.log"
FEATURE_API_LOG = "feature-api.log"
DATA_DIR = "data"
POLL_INTERVAL = 0.25


@dataclass(frozen=True)
class Process:
    name: str
    pid: int
    command: str
    """argv[0], to tell our process from another that reused its pid."""


@dataclass(frozen=True)
class Platform:
    api_server: str
    kubeconfig: str
    kubectl: str
    operator_health_port: int
    started_at: str
    processes: tuple[Process, ...]
    mlflow_url: str | None = None
    feature_api_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Platform:
        processes = tuple(Process(**p) for p in data["processes"])
        return cls(**{**data, "processes": processes})


def read_state(workdir: Path) -> Platform | None:
    path = workdir / STATE_FILE
    if not path.exists():
        return None
    try:
        return Platform.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:
        raise CliError(
            f"{path} is unreadable ({error}); stop the processes and remove it"
        ) from None


def is_alive(process: Process) -> bool:
    """True while the recorded process runs (not a zombie, not a stranger with its pid)."""
    try:
        os.kill(process.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{process.pid}")
    if not proc.exists():
        return True  # no procfs (macOS): the signal check is all there is
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state != "Z" and Path(argv0).name == Path(process.command).name


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    """Print `title` with how long it took, and mark it failed if it raises."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        typer.echo(f"  failed  {title} ({time.monotonic() - started:.1f}s)", err=True)
        raise
    typer.echo(f"  done    {title} ({time.monotonic() - started:.1f}s)", err=True)


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0]} ... {lines[-1]}"
    return lines[0] if lines else type(error).__name__


def terminate(process: Process, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds.

    Raises:
        CliError: the process still runs after SIGKILL.
    """
    if not stop_group(process.pid, lambda: is_alive(process), grace):
        raise CliError(f"{process.name} (pid {process.pid}) is still running after SIGKILL")


def operator_env(workdir: Path, tracking_uri: str) -> dict[str, str]:
    """The operator's environment: stores and runs live in the workdir, and its local runs
    reach the embedded API server with the workdir's kubeconfig."""
    return {
        # Relative sources resolve from the directory `lykectl up` ran in.
        "LYKEION_DATA_DIR": str(workdir / DATA_DIR),
        "LYKEION_DATA_ROOT": os.getcwd(),
        # Model servers ask the embedded API server who calls them, as in a cluster;
        # lykectl sends the kubeconfig's token (LYKEION_ACCESS=off in the caller's
        # environment turns it off).
        "LYKEION_ACCESS": "kubernetes",
        **os.environ,
        "LYKEION_STATE_DIR": str(workdir / RUNS_DIR),
        "LYKEION_MLFLOW_TRACKING_URI": tracking_uri,
        # The operator takes its own from --kubeconfig; its local runs inherit this one
        # (model servers send their access reviews to the embedded API server with it).
        "KUBECONFIG": str(workdir / KUBECONFIG_FILE),
    }


def _start_operator(
    workdir: Path, kubeconfig: Path, port: int, tracking_uri: str
) -> subprocess.Popen[bytes]:
    return start_process(
        [
            sys.executable,
            "-m",
            "lykeion.operator_main",
            "--kubeconfig",
            str(kubeconfig),
            "--executor",
            "local",
            "--health-port",
            str(port),
        ],
        workdir / OPERATOR_LOG,
        env=operator_env(workdir, tracking_uri),
        cwd=workdir,
        append=False,
    )


def _start_feature_api(
    workdir: Path, kubeconfig: Path, port: int, tracking_uri: str
) -> subprocess.Popen[bytes]:
    # The store the operator writes, read the way the operator reads its configuration.
    config = PlatformConfig.from_env(operator_env(workdir, tracking_uri))
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return start_process(
        [
            sys.executable,
            "-m",
            "lykeion.feature_api",
            "--online",
            config.online_store,
            "--kubeconfig",
            str(kubeconfig),
            # Callers send the kubeconfig's token (lykectl does): reviewed like in a
            # cluster, by the embedded API server.
            "--access",
            "kubernetes",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        workdir / FEATURE_API_LOG,
        cwd=workdir,
        append=False,
    )


def _wait_answers(
    what: str, process: subprocess.Popen[bytes], url: str, log: Path, timeout: float
) -> None:
    """Poll `url` until it answers 200, the process exits, or `timeout` seconds pass."""
    try:
        wait_until_answers(url, what, [process], timeout, log=log, interval=POLL_INTERVAL)
    except NotReady as error:
        raise CliError(str(error)) from None


def _running(workdir: Path) -> Platform | None:
    """The recorded platform if all of it runs; leftovers of a half-dead one are stopped."""
    platform = read_state(workdir)
    if platform is None:
        return None
    if all(is_alive(p) for p in platform.processes):
        return platform
    with stage("stopped the leftovers of an earlier run"):
        for process in reversed(platform.processes):
            terminate(process, grace=10.0)
        (workdir / STATE_FILE).unlink(missing_ok=True)
    return None


def up(workdir: Path, timeout: float) -> tuple[Platform, bool]:
    """Start the platform (or find it running); the bool says whether it was already up."""
    workdir = workdir.expanduser().resolve()
    already = _running(workdir)
    if already is not None:
        return already, True
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with stage("located the control-plane binaries (built on first use)"):
            bin_dir = binaries_dir()
        plane = ControlPlane(workdir / CONTROL_PLANE_DIR, bin_dir=bin_dir)
    except ControlPlaneError as error:
        raise CliError(_one_line(error)) from None
    operator: subprocess.Popen[bytes] | None = None
    feature_api: subprocess.Popen[bytes] | None = None
    tracking = TrackingServer(workdir / "mlflow")
    try:
        with stage("started etcd and kube-apiserver"):
            plane.start(timeout=timeout)
        with stage("installed the CRDs"):
            plane.install_crds(timeout=timeout)
        kubeconfig = workdir / KUBECONFIG_FILE
        shutil.copyfile(plane.kubeconfig, kubeconfig)
        kubeconfig.chmod(0o600)  # it holds the admin token
        with stage("started the MLflow tracking server (model repository)"):
            tracking.start(timeout=timeout)
        port = free_port()
        with stage("started the operator"):
            operator = _start_operator(workdir, kubeconfig, port, tracking.url)
            ready = f"http://127.0.0.1:{port}/readyz"
            _wait_answers("the operator", operator, ready, workdir / OPERATOR_LOG, timeout)
        api_port = free_port()
        feature_api_url = f"http://127.0.0.1:{api_port}"
        with stage("started the Feature API"):
            feature_api = _start_feature_api(workdir, kubeconfig, api_port, tracking.url)
            health = f"{feature_api_url}/healthz"
            _wait_answers(
                "the Feature API", feature_api, health, workdir / FEATURE_API_LOG, timeout
            )
    except (ControlPlaneError, subprocess.CalledProcessError, OSError, RuntimeError) as error:
        _abandon(plane, operator, tracking, feature_api)
        raise CliError(_one_line(error)) from None
    except BaseException:
        _abandon(plane, operator, tracking, feature_api)
        raise
    names = ("etcd", "kube-apiserver")  # ControlPlane starts them in this order
    processes = [
        Process(name, p.pid, str(plane.bin_dir / name))
        for name, p in zip(names, plane.processes, strict=True)
    ]
    assert tracking.process is not None
    processes.append(Process("mlflow", tracking.process.pid, sys.executable))
    processes.append(Process("operator", operator.pid, sys.executable))
    processes.append(Process("feature-api", feature_api.pid, sys.executable))
    platform = Platform(
        api_server=plane.url,
        kubeconfig=str(kubeconfig),
        kubectl=str(plane.kubectl),
        operator_health_port=port,
        mlflow_url=tracking.url,
        feature_api_url=feature_api_url,
        started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        processes=tuple(processes),
    )
    (workdir / STATE_FILE).write_text(json.dumps(platform.to_json(), indent=2) + "\n")
    return platform, False


def _abandon(
    plane: ControlPlane,
    operator: subprocess.Popen[bytes] | None,
    tracking: TrackingServer,
    feature_api: subprocess.Popen[bytes] | None = None,
) -> None:
    """Undo a half-done `up` so that nothing keeps running unrecorded."""
    for child in (feature_api, operator):
        if child is not None:
            stop_process(child, grace=10.0)
    tracking.stop()
    plane.stop()


def down(workdir: Path, purge: bool, grace: float = 15.0) -> bool:
    """Stop what `up` recorded; False when nothing was recorded."""
    workdir = workdir.expanduser().resolve()
    platform = read_state(workdir)
    if platform is not None:
        # The operator first, while the API server it talks to is still there.
        for process in reversed(platform.processes):
            with stage(f"stopped {process.name} (pid {process.pid})"):
                terminate(process, grace)
        (workdir / STATE_FILE).unlink(missing_ok=True)
    # Model servers and routers outlive the operator that started them (by design, so a
    # restarted operator finds them): stop them with the platform.
    for pid_file in sorted((workdir / RUNS_DIR).glob("*/_endpoints/*/*/pid")):
        with stage(f"stopped {pid_file.parent.parent.name}/{pid_file.parent.name}"):
            ServingProcess(pid_file.parent).stop()
    if purge:
        with stage(f"removed the data in {workdir}"):
            for name in (CONTROL_PLANE_DIR, RUNS_DIR):
                shutil.rmtree(workdir / name, ignore_errors=True)
            for name in (KUBECONFIG_FILE, OPERATOR_LOG, FEATURE_API_LOG):
                (workdir / name).unlink(missing_ok=True)
    return platform is not None
