"""Runs work as processes on this machine (the embedded default).

Each run has a folder `<root>/<namespace>/<name>/` with its command, owner UID, pid, log
and exit code. The process is detached from the operator and writes its own exit code, so
an operator restarted mid-run finds the run by name and never starts it twice; a folder
of another owner UID (a deleted object of the same name) is moved to `.replaced/`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from lykeion.executors.base import Endpoint, EndpointStatus, State, Work, WorkStatus
from lykeion.executors.local_endpoints import WRAPPER, LocalEndpoints, alive
from lykeion.local.processes import signal_group


class LocalExecutor:
    runs_images = False
    """Work runs as processes here: no container runtime to start another image from."""

    def __init__(self, root: Path, kubeconfig: str | None = None) -> None:
        """Runs recorded under `root`; `kubeconfig` goes to the model servers
        (`LocalEndpoints`)."""
        self.root = root
        self.endpoints = LocalEndpoints(root, kubeconfig)

    async def serve(self, endpoint: Endpoint) -> EndpointStatus:
        return await self.endpoints.serve(endpoint)

    async def unserve(self, namespace: str, name: str) -> None:
        await self.endpoints.unserve(namespace, name)

    def folder(self, namespace: str, name: str) -> Path:
        return self.root / namespace / name

    async def submit(self, work: Work) -> WorkStatus:
        """Start `work` as a process (idempotent: see `Executor`). Raises ValueError for
        work with an `init` step in another image: handlers ask for one only where
        `runs_images` holds."""
        if work.init is not None:
            raise ValueError(f"{work.name}: the local executor cannot run image {work.init.image}")
        folder = self.folder(work.namespace, work.name)
        if folder.exists() and _owner_uid(folder) != work.owner_uid:
            # A predecessor's run of the same name: stop it and move it aside, never adopt.
            await self.cancel(work.namespace, work.name)
            aside = folder.parent / ".replaced" / f"{work.name}.{_owner_uid(folder) or 'none'}"
            if aside.exists():
                shutil.rmtree(aside)
            aside.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(aside)
        if (folder / "pid").exists() or (folder / "exit_code").exists():
            return await self.status(work.namespace, work.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "work.json").write_text(
            json.dumps(
                {
                    "command": list(work.command),
                    "env": work.env,
                    "image": work.image,
                    "ownerUid": work.owner_uid,
                },
                indent=2,
            )
        )
        # Forking a large process takes a while: keep it off the event loop.
        process = await asyncio.to_thread(_spawn, work, folder)
        (folder / "pid").write_text(str(process.pid))
        return WorkStatus(State.RUNNING, f"started as process {process.pid}")

    async def status(self, namespace: str, name: str, owner_uid: str | None = None) -> WorkStatus:
        folder = self.folder(namespace, name)
        if owner_uid is not None and folder.exists() and _owner_uid(folder) != owner_uid:
            return WorkStatus(State.MISSING, "a run of this name belongs to another object")
        exit_file = folder / "exit_code"
        if exit_file.exists():
            code = int(exit_file.read_text().strip() or "1")
            result = _result(folder)
            if code == 0:
                return WorkStatus(State.SUCCEEDED, "exited with 0", result)
            tail = (await self.logs(namespace, name, 5)).strip()
            return WorkStatus(State.FAILED, f"exited with {code}: {tail}", result)
        pid_file = folder / "pid"
        if not pid_file.exists():
            return WorkStatus(State.MISSING, "never submitted")
        pid = int(pid_file.read_text())
        if alive(pid):
            return WorkStatus(State.RUNNING, f"process {pid} running")
        # Gone without an exit code: killed along with its wrapper (e.g. machine restart).
        await asyncio.sleep(0.2)
        if exit_file.exists():
            return await self.status(namespace, name)
        return WorkStatus(State.FAILED, f"process {pid} vanished without an exit code")

    async def logs(self, namespace: str, name: str, tail: int = 50) -> str:
        log = self.folder(namespace, name) / "log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-tail:])

    async def cancel(self, namespace: str, name: str) -> None:
        pid_file = self.folder(namespace, name) / "pid"
        if pid_file.exists():
            signal_group(int(pid_file.read_text()), signal.SIGTERM)


def _owner_uid(folder: Path) -> str:
    """The owner UID recorded when the work was submitted ("" when none or unreadable)."""
    try:
        loaded = json.loads((folder / "work.json").read_text())
    except (OSError, ValueError):
        return ""
    return str(loaded.get("ownerUid") or "") if isinstance(loaded, dict) else ""


def _result(folder: Path) -> dict[str, Any] | None:
    """`result.json`, which work may write in its folder (its working directory)."""
    try:
        loaded = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _spawn(work: Work, folder: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["bash", "-c", WRAPPER, "lykeion-run", *work.command],
        cwd=folder,
        env={**os.environ, **work.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
