"""Trainings of one family/segment logging the same training set at the same moment share
MLflow's dataset record: none fails on the tracking server's unique constraint."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.tracking import MlflowClient

from lykeion.local.tracking_server import TrackingServer
from lykeion.training.run import experiment_for, log_dataset_input

TRAININGS = 6
ROUNDS = 8


def log_together(url: str, run_ids: list[str], dataset: Dataset) -> list[BaseException]:
    """Log `dataset` to every run from its own thread, all released at once; the errors."""
    barrier = threading.Barrier(len(run_ids))
    errors: list[BaseException] = []

    def log(run_id: str) -> None:
        try:
            barrier.wait()
            context = [InputTag("mlflow.data.context", "training")]
            log_dataset_input(MlflowClient(url), run_id, DatasetInput(dataset, context))
        except BaseException as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=log, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_concurrent_trainings_log_one_training_set(
    tracking_server: TrackingServer, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_server.url)
    experiment = experiment_for(client, f"datasets.{tmp_path.name}.default", None)
    # The example's size (900 label rows): the larger request widens the server's window
    # between looking the record up and inserting it, as in a cluster's trainings.
    frame = pd.DataFrame({"rider_id": [f"r{i}" for i in range(900)], "label": [0.5] * 900})
    for round_ in range(ROUNDS):
        # A new digest each round: the record is missing when every training looks it up.
        digest = f"d{round_}"
        dataset = from_pandas(frame, name="training_set", targets="label", digest=digest)
        run_ids = [client.create_run(experiment).info.run_id for _ in range(TRAININGS)]
        assert log_together(tracking_server.url, run_ids, dataset._to_mlflow_entity()) == []
        for run_id in run_ids:
            inputs = client.get_run(run_id).inputs
            assert inputs is not None
            assert [(i.dataset.name, i.dataset.digest) for i in inputs.dataset_inputs] == [
                ("training_set", digest)
            ]
