"""The BigQuery emulator (PyPI `bqemulator`) for the session, and a client pointed at it.

Installed once into its own venv by `scripts/install-bigquery-emulator.sh` (or taken
from `LYKEION_BQEMULATOR`, the path that script prints).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from lykeion.local.controlplane import REPO_ROOT
from lykeion.local.ports import free_port
from lykeion.local.processes import running
from lykeion.local.tools import script_output

PROJECT = "lykeion-test"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-bigquery-emulator.sh"
READY_TIMEOUT = 60.0


def emulator_executable() -> Path:
    override = os.environ.get("LYKEION_BQEMULATOR")
    if override:
        return Path(override)
    return script_output(INSTALL_SCRIPT, "installing the BigQuery emulator", timeout=900)


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[bigquery.Client]:
    """A `bigquery.Client` for project `lykeion-test` on an emulator started for the
    session (ephemeral, in memory), stopped at teardown."""
    executable = emulator_executable()
    rest_port, grpc_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("bqemulator") / "emulator.log"
    command = [
        str(executable),
        "start",
        "--rest-host=127.0.0.1",
        f"--rest-port={rest_port}",
        "--grpc-host=127.0.0.1",
        f"--grpc-port={grpc_port}",
        f"--project={PROJECT}",
        "--ephemeral",
        "--log-level=warning",
    ]
    endpoint = f"http://127.0.0.1:{rest_port}"
    with running(command, log, f"{endpoint}/readyz", "BigQuery emulator", READY_TIMEOUT):
        client = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=endpoint),
        )
        yield client
        client.close()  # type: ignore[no-untyped-call]
