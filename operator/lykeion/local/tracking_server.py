"""The embedded model repository: an MLflow tracking server with a SQLite backend and a
local artifact directory, on a free 127.0.0.1 port (used by `lykectl up` and the tests)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lykeion.local.ports import free_port
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process
from lykeion.local.readiness import NotReady, probe, wait_until_answers


@dataclass
class TrackingServer:
    """`mlflow server` with its database, artifacts and log (`mlflow-server.log`) in
    `workdir`, listening on 127.0.0.1:`port`."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> TrackingServer:
        """Start the server and wait until `/health` answers.

        Raises:
            NotReady: it exited or did not answer within `timeout` seconds (it is stopped).
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "mlflow-server.log"
        self.process = start_process(
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
            log,
        )
        try:
            wait_until_answers(
                f"{self.url}/health",
                "mlflow server",
                [self.process],
                timeout,
                log=log,
                interval=0.5,
            )
        except NotReady:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        return probe(f"{self.url}/health") is None

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
