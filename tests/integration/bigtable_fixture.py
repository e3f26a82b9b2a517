"""Google's Cloud Bigtable emulator, started by the suite (session-wide, or one per test).

Tests use the session one with
`from tests.integration.bigtable_fixture import bigtable_emulator  # noqa: F401`.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lykeion.local.ports import free_port
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process
from lykeion.local.processes import wait_for_port
from lykeion.local.readiness import NotReady
from lykeion.local.tools import script_output

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-bigtable-emulator.sh"
EMULATOR_HOST = "BIGTABLE_EMULATOR_HOST"


def emulator_binary() -> Path:
    """The emulator's path; builds it on first use (cached outside the repository)."""
    return script_output(BUILD_SCRIPT, "building the bigtable emulator", timeout=900)


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
        self.process = start_process(
            [str(self.binary), "-host", "127.0.0.1", "-port", str(self.port)], Path(self.log.name)
        )
        try:
            wait_for_port(self.port, "bigtable emulator", [self.process], timeout)
        except NotReady as error:
            output = Path(self.log.name).read_text(errors="replace")
            self.stop()
            raise RuntimeError(f"{error}: {output}") from None
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, grace=10)
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
