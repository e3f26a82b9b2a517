"""Endpoints as processes on this machine: one model server per version and a router.

Layout: `<root>/<namespace>/_endpoints/<deployment>/<server>/` holds a server's config,
pid, log, exit code and `endpoint.json` (its URL, written once its socket is bound);
`.../router/` holds `routes.json`, which the router re-reads when it changes. Processes
are detached, so an operator restart finds them by folder and starts nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from lykeion.executors.base import Endpoint, EndpointStatus
from lykeion.local.processes import signal_group
from lykeion.local.readiness import probe

# Runs the command, then records its exit code atomically (as the batch runs do).
WRAPPER = '"$@" >>log 2>&1; code=$?; echo $code >exit_code.tmp && mv exit_code.tmp exit_code'
RESTART_AFTER = 30.0
"""Seconds before a server that exited is started again (a crash-loop back-off)."""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


class Process:
    """One long-running process in its folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pid(self) -> int | None:
        try:
            return int((self.folder / "pid").read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and not (self.folder / "exit_code").exists() and alive(pid)

    def url(self) -> str | None:
        try:
            return str(json.loads((self.folder / "endpoint.json").read_text())["url"])
        except (OSError, ValueError, KeyError):
            return None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = (self.folder / "log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line for line in text.splitlines()[-lines:] if line.strip())

    def start(self, command: list[str], env: Mapping[str, str] | None = None) -> None:
        """Start `command` detached in the folder, with the operator's environment and
        `env` over it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in ("pid", "exit_code", "endpoint.json"):
            (self.folder / stale).unlink(missing_ok=True)
        process = subprocess.Popen(
            ["bash", "-c", WRAPPER, "lykeion-serve", *command],
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        (self.folder / "pid").write_text(str(process.pid))

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            signal_group(pid, signal.SIGTERM)
        (self.folder / "pid").unlink(missing_ok=True)

    def crashed_long_ago(self) -> bool:
        exit_file = self.folder / "exit_code"
        return exit_file.exists() and time.time() - exit_file.stat().st_mtime > RESTART_AFTER


def _write_if_changed(path: Path, text: str) -> bool:
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


class LocalEndpoints:
    def __init__(self, root: Path, kubeconfig: str | None = None) -> None:
        """Endpoints under `root`. `kubeconfig` (the operator's `--kubeconfig`, a path or
        a list joined by `os.pathsep`) goes to every model server as `KUBECONFIG`, made
        absolute: the credentials of its access reviews (`access: kubernetes`)."""
        self.root = root
        absolute = [str(Path(p).absolute()) for p in (kubeconfig or "").split(os.pathsep) if p]
        self.server_env = {"KUBECONFIG": os.pathsep.join(absolute)} if absolute else {}

    def folder(self, namespace: str, name: str) -> Path:
        return self.root / namespace / "_endpoints" / name

    async def serve(self, endpoint: Endpoint) -> EndpointStatus:
        return await asyncio.to_thread(self._serve, endpoint)

    def _serve(self, endpoint: Endpoint) -> EndpointStatus:
        base = self.folder(endpoint.namespace, endpoint.name)
        wanted = {server.name for server in endpoint.servers}
        if base.exists():
            for old in base.iterdir():
                if old.is_dir() and old.name != "router" and old.name not in wanted:
                    Process(old).stop()
                    shutil.rmtree(old, ignore_errors=True)
        available: dict[str, bool] = {}
        messages: dict[str, str] = {}
        crashed: set[str] = set()
        urls: dict[str, str] = {}
        for server in endpoint.servers:
            process = Process(base / server.name)
            config = json.dumps(server.config.wire(), indent=2, sort_keys=True)
            changed = _write_if_changed(process.folder / "config.json", config)
            if changed or not (process.running() or process.folder.joinpath("exit_code").exists()):
                process.stop()
                process.start(_server_command(endpoint.python), self.server_env)
            elif process.crashed_long_ago():
                process.start(_server_command(endpoint.python), self.server_env)
            url = process.url() if process.running() else None
            reason = probe(f"{url}/ready") if url else None
            if url is None and (process.folder / "exit_code").exists():
                reason = f"server exited: {process.log_tail()}"
                crashed.add(server.version)
            elif url is None:
                reason = "server is starting"
            available[server.version] = reason is None
            if reason is None and url is not None:
                urls[server.version] = url
            else:
                messages[server.version] = reason or ""
        routes = {
            "versions": [
                {"version": v, "url": urls[v], "weight": w}
                for v, w in sorted(endpoint.weights.items())
                if w > 0 and v in urls
            ],
            "shadow": (
                {"version": endpoint.shadow, "url": urls[endpoint.shadow]}
                if endpoint.shadow in urls
                else None
            ),
        }
        router = Process(base / "router")
        _write_if_changed(router.folder / "routes.json", json.dumps(routes, indent=2))
        if not router.running():
            router.start(
                [endpoint.python, "-m", "lykeion.serving.router", "--routes", "routes.json",
                 "--port", "0", "--endpoint-file", "endpoint.json"]
            )  # fmt: skip
        return EndpointStatus(
            url=router.url() if router.running() else None,
            available=available,
            messages=messages,
            ready_replicas=sum(available.values()),
            crashed=frozenset(crashed),
            servers=urls,
        )

    async def unserve(self, namespace: str, name: str) -> None:
        base = self.folder(namespace, name)
        if base.exists():
            for child in base.iterdir():
                if child.is_dir():
                    Process(child).stop()
            await asyncio.to_thread(shutil.rmtree, base, True)


def _server_command(python: str) -> list[str]:
    return [python, "-m", "lykeion.serving", "--config", "config.json",
            "--port", "0", "--endpoint-file", "endpoint.json"]  # fmt: skip
