"""The embedded model repository: an MLflow tracking server with a SQLite backend and a
local artifact directory, on a free 127.0.0.1 port (used by `lykectl up` and the tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lykeion.controlplane import free_port
from lykeion.readiness import NotReady, probe, wait_until_answers


@dataclass
class TrackingServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> TrackingServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "mlflow-server.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.workdir / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.workdir / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_answers(
                f"{self.url}/health",
                "mlflow server",
                [self.process],
                timeout,
                log=self.workdir / "mlflow-server.log",
                interval=0.5,
            )
        except NotReady:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        return probe(f"{self.url}/health") is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
