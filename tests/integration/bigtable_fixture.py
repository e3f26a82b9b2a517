"""Google's Cloud Bigtable emulator, started by the suite (session-wide, or one per test).

Tests use the session one with
`from tests.integration.bigtable_fixture import bigtable_emulator  # noqa: F401`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lykeion.controlplane import free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-bigtable-emulator.sh"
EMULATOR_HOST = "BIGTABLE_EMULATOR_HOST"


def emulator_binary() -> Path:
    """The emulator's path; builds it on first use (cached outside the repository)."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, check=True, timeout=900
    )
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class Emulator:
    """One emulator process; stop() and start() again keep the port (its data is lost:
    the emulator holds everything in memory)."""

    binary: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # A file, not a pipe: nobody drains a pipe, and a full one would stall the emulator.
    log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Emulator:
        # Closed in stop(): the file outlives this method.
        self.log = tempfile.NamedTemporaryFile(prefix="cbtemulator-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(self.binary), "-host", "127.0.0.1", "-port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = Path(self.log.name).read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"bigtable emulator exited: {output}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"bigtable emulator not listening on {self.host} after {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None


@pytest.fixture(scope="session")
def bigtable_emulator() -> Iterator[str]:
    """host:port of a running emulator; BIGTABLE_EMULATOR_HOST points at it meanwhile."""
    emulator = Emulator(emulator_binary()).start()
    previous = os.environ.get(EMULATOR_HOST)
    os.environ[EMULATOR_HOST] = emulator.host
    try:
        yield emulator.host
    finally:
        emulator.stop()
        if previous is None:
            os.environ.pop(EMULATOR_HOST, None)
        else:
            os.environ[EMULATOR_HOST] = previous
