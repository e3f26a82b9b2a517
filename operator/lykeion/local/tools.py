"""What both local Kubernetes set-ups (`controlplane.ControlPlane`, the API server alone,
and `lykeion.cluster.NodeCluster`, a one-node cluster) do the same way: run kubectl and
openssl, write a kubeconfig, server-side apply."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

import yaml


class RunOptions(TypedDict, total=False):
    """How `run` runs a tool: `stdin` text to feed it, `check` (default True) to raise
    on a non-zero exit, `timeout` in seconds (default none)."""

    stdin: str | None
    check: bool
    timeout: float | None


def run(
    command: Sequence[str],
    *,
    error: type[Exception],
    what: str | None = None,
    **options: Unpack[RunOptions],
) -> subprocess.CompletedProcess[str]:
    """Run a command-line tool, text in and out, its output captured.

    Raises:
        error: `<what> failed: <stderr>` (`what` defaults to the command line), when it
            exits non-zero and `check` is set.
        subprocess.TimeoutExpired: `timeout` seconds passed.
    """
    done = subprocess.run(
        list(command),
        input=options.get("stdin"),
        capture_output=True,
        text=True,
        check=False,
        timeout=options.get("timeout"),
    )
    if options.get("check", True) and done.returncode != 0:
        raise error(f"{what or ' '.join(command)} failed: {done.stderr.strip()}")
    return done


def kubectl(
    binary: Path,
    kubeconfig: Path,
    *args: str,
    error: type[Exception],
    **options: Unpack[RunOptions],
) -> subprocess.CompletedProcess[str]:
    """Run `binary --kubeconfig=<kubeconfig> *args` (see `run`).

    Raises:
        error: `kubectl <args> failed: <stderr>`, when it exits non-zero and `check` is set.
        subprocess.TimeoutExpired: `timeout` seconds passed.
    """
    command = [str(binary), f"--kubeconfig={kubeconfig}", *args]
    return run(command, error=error, what=f"kubectl {' '.join(args)}", **options)


def etcd_command(
    binary: Path,
    data_dir: Path,
    client_port: int,
    peer_port: int,
    name: str = "default",
    extra: Sequence[str] = (),
) -> list[str]:
    """The argv of a one-member etcd named `name` on 127.0.0.1, `extra` flags appended."""
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name",
        name,
        "--data-dir",
        str(data_dir),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"{name}={peer}",
        *extra,
    ]


def server_side_apply(field_manager: str, source: str) -> list[str]:
    """kubectl arguments that server-side apply `source` (a path, or `-` for stdin) and
    take over conflicting fields: serving CRDs are too large for client-side apply."""
    return [
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={field_manager}",
        "-f",
        source,
    ]


def kubeconfig(server: Mapping[str, Any], user: str, credentials: Mapping[str, Any]) -> str:
    """A kubeconfig (YAML) with one cluster `lykeion` (`server`: its `server` URL and TLS
    settings), one user named `user` with `credentials`, and their context (namespace
    `default`) as the current one."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lykeion", "cluster": dict(server)}],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [
            {
                "name": "lykeion",
                "context": {"cluster": "lykeion", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "lykeion",
    }
    return yaml.safe_dump(config)


def openssl(*args: str, cwd: Path) -> None:
    """Run `openssl *args` in `cwd` (keys and certificates are written there).

    Raises:
        subprocess.CalledProcessError: openssl failed.
    """
    subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=cwd)


def script_output(
    script: Path, what: str, error: type[Exception] = RuntimeError, timeout: float | None = None
) -> Path:
    """Run `bash script`, which builds or installs a tool once (cached outside the
    checkout) and prints where it is on its last line; return that path.

    Raises:
        error: `{what} failed` with the end of the script's stderr.
        subprocess.TimeoutExpired: `timeout` seconds passed.
    """
    done = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, check=False, timeout=timeout
    )
    if done.returncode != 0:
        raise error(f"{what} failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])
