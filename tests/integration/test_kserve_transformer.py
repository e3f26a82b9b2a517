"""Transformer mode, as KServe runs it: the Lykeion server turns keys into the model's V2
inputs and a real MLServer (KServe's MLflow runtime) predicts on the model's files."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lykeion.local.ports import free_port
from lykeion.local.processes import running
from lykeion.local.tools import script_output
from tests.integration.serving_fixture import (
    KEY,
    NAME,
    RIDERS,
    ServedModel,
    ServerProcess,
    Servers,
    _tracking,
    served_model_fixture,  # noqa: F401
    servers_fixture,  # noqa: F401
)

ROOT = Path(__file__).resolve().parents[2]


def _mlserver_bin() -> Path:
    given = os.environ.get("LYKEION_MLSERVER_BIN")
    if given:
        return Path(given)
    return script_output(
        ROOT / "scripts" / "install-mlserver.sh", "installing MLServer", timeout=900
    )


def _transformer(
    servers: Servers, served_model: ServedModel, folder: str, predictor: str
) -> ServerProcess:
    """The Lykeion server with the arguments KServe appends to a transformer container."""
    path = servers.root / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(served_model.config()))
    args = ["--config", "config.json", "--model_name", NAME, "--predictor_host", predictor]
    server = ServerProcess(path, args)
    servers.started.append(server)
    return server.launch()


@pytest.fixture(scope="module")
def mlserver(served_model: ServedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MLServer with mlserver-mlflow serving the model's files, on 127.0.0.1."""
    import mlflow

    with _tracking(served_model.tracking_uri):
        files = mlflow.artifacts.download_artifacts(served_model.model_uri)
    root = tmp_path_factory.mktemp("mlserver")
    port = free_port()
    (root / "settings.json").write_text(json.dumps({
        "parallel_workers": 0, "host": "127.0.0.1", "http_port": port,
        "grpc_port": free_port(), "metrics_endpoint": None,
    }))  # fmt: skip
    (root / NAME).mkdir()
    (root / NAME / "model-settings.json").write_text(json.dumps({
        "name": NAME, "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": files},
    }))  # fmt: skip
    log = root / "log"
    ready = f"http://127.0.0.1:{port}/v2/models/{NAME}/ready"
    command = [str(_mlserver_bin() / "mlserver"), "start", str(root)]
    with running(command, log, ready, "MLServer", 120, grace=30):
        yield f"127.0.0.1:{port}"


def test_transformer_enriches_keys_for_the_mlflow_runtime(
    served_model: ServedModel, servers: Servers, mlserver: str
) -> None:
    transformer = _transformer(servers, served_model, "transformer", mlserver).wait_ready()
    # Before any prediction, V2 metadata describes the output as the predictor declares it.
    [declared] = transformer.get(f"/v2/models/{NAME}").json()["outputs"]

    keys = ["r1", "r2", "r3"]
    answer = transformer.post("/predict", {"keys": [{KEY: k} for k in keys]})
    assert answer.status_code == 200, answer.text
    expected = served_model.expected([RIDERS[k] for k in keys])
    for got, want in zip(answer.json()["predictions"], expected, strict=True):
        assert got == pytest.approx(want, rel=1e-9)
    v2 = transformer.post(
        f"/v2/models/{NAME}/infer",
        {"inputs": [{"name": KEY, "shape": [1], "datatype": "BYTES", "data": ["r2"]}]},
    )
    assert v2.json()["outputs"][0]["data"] == pytest.approx(expected[1], rel=1e-9)
    [returned] = v2.json()["outputs"]
    assert declared["datatype"] == returned["datatype"] == "FP64"
    assert declared["shape"] == [-1, 2] and returned["shape"] == [1, 2]


def test_a_predictor_that_does_not_answer_is_a_503(
    served_model: ServedModel, servers: Servers
) -> None:
    server = _transformer(servers, served_model, "no-predictor", f"127.0.0.1:{free_port()}")
    # Not ready without its predictor; a prediction says why instead of failing with 500.
    deadline = time.monotonic() + 90
    while not (server.folder / "endpoint.json").exists():
        assert time.monotonic() < deadline, server.log
        time.sleep(0.2)
    server.url = json.loads((server.folder / "endpoint.json").read_text())["url"]
    ready = server.get("/ready")
    assert ready.status_code == 503 and "does not answer" in ready.text
    answer = server.post("/predict", {KEY: "r1"})
    assert answer.status_code == 503 and "did not answer" in answer.json()["error"]
