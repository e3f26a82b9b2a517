"""Two trainings of one family/segment starting together share one MLflow experiment."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from lykeion.local.tracking_server import TrackingServer
from lykeion.training.run import experiment_for


def test_concurrent_trainings_get_the_same_experiment(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_server.url)
    name = f"race.{tmp_path.name}.default"
    barrier = threading.Barrier(4)
    ids: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            ids.append(experiment_for(MlflowClient(tracking_server.url), name, None))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    experiment: Any = client.get_experiment_by_name(name)
    assert experiment is not None
    assert ids == [experiment.experiment_id] * 4
