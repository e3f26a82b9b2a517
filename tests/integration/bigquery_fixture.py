"""The BigQuery emulator (PyPI `bqemulator`) for the session, and a client pointed at it.

Installed once into its own venv by `scripts/install-bigquery-emulator.sh` (or taken
from `LYKEION_BQEMULATOR`, the path that script prints).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from lykeion.controlplane import REPO_ROOT, free_port
from lykeion.readiness import wait_until_answers

PROJECT = "lykeion-test"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-bigquery-emulator.sh"
READY_TIMEOUT = 60.0


def emulator_executable() -> Path:
    override = os.environ.get("LYKEION_BQEMULATOR")
    if override:
        return Path(override)
    done = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"installing the BigQuery emulator failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bigquery.Client]:
    """A `bigquery.Client` for project `lykeion-test` on an emulator started for the
    session (ephemeral, in memory), stopped at teardown."""
    executable = emulator_executable()
    rest_port, grpc_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("bqemulator") / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(executable),
                "start",
                "--rest-host=127.0.0.1",
                f"--rest-port={rest_port}",
                "--grpc-host=127.0.0.1",
                f"--grpc-port={grpc_port}",
                f"--project={PROJECT}",
                "--ephemeral",
                "--log-level=warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        endpoint = f"http://127.0.0.1:{rest_port}"
        wait_until_answers(f"{endpoint}/readyz", "BigQuery emulator", [proc], READY_TIMEOUT, log)
        client = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=endpoint),
        )
        yield client
        client.close()  # type: ignore[no-untyped-call]
    finally:
        _stop(proc)
