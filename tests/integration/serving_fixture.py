"""A real MLflow model, a real SQLite online store and real model server processes.

`served_model` logs a scikit-learn pipeline into a SQLite-backed MLflow tracking store
with the `lykeion.features` tag a Lykeion training writes, and fills an online store with
a few riders. `ServerProcess` runs `python -m lykeion.serving` (or the router) with
`--port 0 --endpoint-file`, waits, bounded, for its URL and readiness, and kills its
process group when done.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from lykeion.features.view import FeatureView
from lykeion.local.processes import start as start_process
from lykeion.local.processes import stop as stop_process
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore
from tests import objects

NAMESPACE = "serving"
NAME = "forward-default"
KEY = "rider_id"
COLUMNS = ["rider__age", "rider__avg_fare"]
TRAINED = [
    {"ref": "rider.age", "column": "rider__age", "type": "int64"},
    {"ref": "rider.avg_fare", "column": "rider__avg_fare", "type": "float64"},
]
RIDERS: dict[str, tuple[int, float]] = {
    "r1": (23, 8.5),
    "r2": (41, 31.0),
    "r3": (67, 17.25),
}
"""rider_id -> (age, avg_fare) as the online store holds them."""
START_TIMEOUT = 90.0
"""Seconds a server may take to import MLflow, load the model and bind (2 shared cores)."""


def manifest_body() -> dict[str, Any]:
    body = objects.manifest(features={"age": "int64", "avg_fare": "float64"})
    body["metadata"]["namespace"] = NAMESPACE
    body["spec"]["ttl"] = "3650d"
    return body


def fill_store(path: Path) -> None:
    """Write RIDERS into a SQLite online store at `path`."""
    view = FeatureView.from_body(manifest_body())
    written = datetime.now(UTC) - timedelta(days=1)
    store = SqliteOnlineStore(path)
    try:
        rows = [
            OnlineRow(key, written, {"age": age, "avg_fare": fare})
            for key, (age, fare) in RIDERS.items()
        ]
        assert store.write(view, rows) == len(rows)
    finally:
        store.close()


@dataclass(frozen=True)
class ServedModel:
    tracking_uri: str
    model_uri: str
    store_path: Path

    def config(self, **changes: Any) -> dict[str, Any]:
        """A ServerConfig as JSON data; `changes` override its fields."""
        config: dict[str, Any] = {
            "name": NAME,
            "version": "1.0",
            "model_uri": self.model_uri,
            "tracking_uri": self.tracking_uri,
            "features": copy.deepcopy(TRAINED),
            "manifests": [manifest_body()],
            "online_store": f"sqlite://{self.store_path}",
            "output": "score",
        }
        config.update(changes)
        return config

    def expected(self, rows: list[tuple[float | None, float | None]]) -> list[list[float]]:
        """What the model predicts in process, through MLflow's own pyfunc predict, for
        (age, avg_fare) rows in trained column order."""
        frame = pd.DataFrame(
            [[np.nan if v is None else float(v) for v in row] for row in rows],
            columns=COLUMNS,
            dtype="float64",
        )
        result: list[list[float]] = np.asarray(
            _pyfunc(self.tracking_uri, self.model_uri).predict(frame)
        ).tolist()
        return result


@functools.cache
def _pyfunc(tracking_uri: str, model_uri: str) -> Any:
    import mlflow

    with _tracking(tracking_uri):
        return mlflow.pyfunc.load_model(model_uri)


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """MLflow's tracking URI is process-global: set it for a block only."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def log_model(folder: Path) -> tuple[str, str]:
    """Train and log the rider model; (tracking URI, model URI)."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(7)
    ages = rng.integers(18, 80, 200).astype("float64")
    fares = rng.uniform(5.0, 40.0, 200)
    fares[::10] = np.nan  # the imputer has something to learn
    x = pd.DataFrame({COLUMNS[0]: ages, COLUMNS[1]: fares})
    y = ages / 80 + np.nan_to_num(fares, nan=20.0) / 40 + rng.normal(0, 0.3, 200) > 1.0
    model = make_pipeline(SimpleImputer(strategy="median"), LogisticRegression())
    model.fit(x, y.astype(int))

    tracking_uri = f"sqlite:///{folder}/mlflow.db"
    with _tracking(tracking_uri):
        experiment = mlflow.create_experiment(
            "forward-default", artifact_location=(folder / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.set_tag("lykeion.features", json.dumps(TRAINED))
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(x, model.predict_proba(x)),
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=["numpy.dtype"],
            )
    return tracking_uri, f"runs:/{run.info.run_id}/model"


@pytest.fixture(scope="module", name="served_model")
def served_model_fixture(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    folder = tmp_path_factory.mktemp("served-model")
    tracking_uri, model_uri = log_model(folder)
    store_path = folder / "online.db"
    fill_store(store_path)
    return ServedModel(tracking_uri, model_uri, store_path)


@dataclass
class ServerProcess:
    """One `python -m lykeion.serving` (or `lykeion.serving.router`) in its own folder and
    process group."""

    folder: Path
    args: list[str]
    module: str = "lykeion.serving"
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))

    @property
    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "log").read_text(errors="replace")
        return ""

    def launch(self) -> ServerProcess:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "endpoint.json").unlink(missing_ok=True)
        self.process = start_process(
            [sys.executable, "-m", self.module, *self.args,
             "--port", "0", "--endpoint-file", "endpoint.json"],
            self.folder / "log",
            cwd=self.folder,
        )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """Bounded wait for the endpoint file, then for /ready to answer 200."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        endpoint = self.folder / "endpoint.json"
        last = "no endpoint file yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.module} exited with {self.process.returncode}; log:\n{self.log}"
                )
            if not self.url and endpoint.exists():
                self.url = json.loads(endpoint.read_text())["url"]
            if self.url:
                try:
                    answer = self.client.get(f"{self.url}/ready", timeout=5.0)
                    if answer.status_code == 200:
                        return self
                    last = f"/ready answered {answer.status_code}: {answer.text}"
                except httpx.HTTPError as error:
                    last = f"/ready: {error!r}"
            time.sleep(0.2)
        raise AssertionError(f"{self.module} not ready after {timeout}s ({last}); log:\n{self.log}")

    def exit_code(self, timeout: float = START_TIMEOUT) -> int:
        """Wait, bounded, for a process that should exit by itself."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise AssertionError(f"{self.module} still running; log:\n{self.log}") from error

    def stop(self) -> None:
        self.client.close()
        if self.process is not None:
            stop_process(self.process)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return self.client.post(f"{self.url}{path}", **kwargs)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(f"{self.url}{path}")


class Servers:
    """Starts servers for a test module and stops every one of them at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[ServerProcess] = []

    def launch_server(self, folder: str, config: dict[str, Any]) -> ServerProcess:
        """Start a model server without waiting (several can load at once)."""
        path = self.root / folder
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(config, indent=2))
        server = ServerProcess(path, ["--config", "config.json"])
        self.started.append(server)
        return server.launch()

    def server(self, folder: str, config: dict[str, Any]) -> ServerProcess:
        return self.launch_server(folder, config).wait_ready()

    def router(self, folder: str, routes: dict[str, Any]) -> ServerProcess:
        path = self.root / folder
        write_routes(path / "routes.json", routes)
        server = ServerProcess(path, ["--routes", "routes.json"], module="lykeion.serving.router")
        self.started.append(server)
        return server.launch().wait_ready(timeout=30.0)

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


def write_routes(path: Path, routes: dict[str, Any]) -> None:
    """Replace routes.json atomically, as the local executor does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(routes))
    tmp.replace(path)


@pytest.fixture(scope="module", name="servers")
def servers_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    made = Servers(tmp_path_factory.mktemp("servers"))
    try:
        yield made
    finally:
        made.stop_all()
