"""Train one Model version (what the executors launch).

    python -m lykeion.training.run --model-json '{...}' --manifests-json '[...]' \\
        --offline duckdb:///data/offline.duckdb --tracking-uri http://127.0.0.1:5000 \\
        --cache-dir DIR --data-root DIR [--result result.json]

Steps: resolve the source at its exact revision; resolve the training contract (labels,
gate, parameters: the Model's spec, else the project's `lykeion.yaml` at that revision);
build the point-in-time training set and log it (artifact + MLflow dataset input with its
content hash); run the MLflow project's entry point on the time-ordered train split;
evaluate the logged model on the last 20% of label times; register it as
`<namespace>.<family>.<segment>` (`names.registry_name`; the experiment has the same
name; alias `candidate` when the gate passes) with the input features,
their types and order as version tags. The outcome goes to result.json; the exit code is
0 when training succeeded, whatever the gate said. Namespaces are tenants: the same family
and segment in two namespaces are two experiments and two registered models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lykeion.api.model import ModelSpec

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

TEST_FRACTION = 0.2
CANDIDATE = "candidate"


def experiment_for(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of the MLflow experiment `name`, created when missing.

    Trainings of several versions of one family/segment share the experiment and may start
    at the same moment: when another creates it first (MLflow's `RESOURCE_ALREADY_EXISTS`),
    this one uses it. Raises `MlflowException` for any other tracking-server error.
    """
    import mlflow.exceptions

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except mlflow.exceptions.MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


@dataclass
class TrainingResult:
    succeeded: bool = False
    reason: str = ""
    message: str = ""
    run_id: str | None = None
    experiment_id: str | None = None
    model_uri: str | None = None
    registered_model: str | None = None
    registered_version: str | None = None
    artifact_uri: str | None = None
    """Where the model's files are (what serving systems fetch, e.g. KServe's storageUri)."""
    metric: str | None = None
    metric_value: float | None = None
    gate_passed: bool | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    training_set_hash: str | None = None
    training_set_rows: int | None = None
    source_revision: str | None = None
    contract: dict[str, Any] | None = None
    """The resolved training contract and where each part came from (wire form)."""
    features: list[dict[str, str]] = field(default_factory=list)
    duration_seconds: float | None = None
    project_seconds: float | None = None


class StepError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def train(args: argparse.Namespace, result: TrainingResult) -> None:
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import ExecutionException
    from mlflow.tracking import MlflowClient

    from lykeion.evaluation.labels import read as read_labels
    from lykeion.features.offline.base import LabelSpec
    from lykeion.features.stores import open_offline
    from lykeion.features.view import FeatureView
    from lykeion.names import registry_name
    from lykeion.serving.model import LoadedModel, ModelLoadError
    from lykeion.training import contract, dataset, evaluate
    from lykeion.training.source import SourceError, resolve
    from lykeion.training.statistics import log_statistics, training_statistics

    body = json.loads(args.model_json)
    spec = ModelSpec.model_validate(body["spec"])
    name = body["metadata"]["name"]
    namespace = body["metadata"].get("namespace", "default")
    data_root = Path(args.data_root)

    # 1. The code, at exactly the pinned revision.
    try:
        source = resolve(spec.source.url, Path(args.cache_dir), data_root)
    except SourceError as error:
        raise StepError(error.reason, str(error)) from error
    result.source_revision = source.revision

    # 1b. What to train on and the gate: the spec's parts, else the project's at that revision.
    where = contract.location(spec.source.url, source.revision)
    try:
        declared = contract.read_project_contract(source.directory, where)
        resolved = contract.resolve(spec, declared, where)
    except contract.ContractError as error:
        raise StepError(error.reason, str(error)) from error
    result.contract = resolved.wire()
    labels_spec, gate = resolved.labels, resolved.evaluation

    # 2. The point-in-time training set, from the same definitions serving will use.
    views = [FeatureView.from_body(m) for m in json.loads(args.manifests_json)]
    try:
        refs = dataset.feature_refs(spec.input_features, views)
        labels = read_labels(
            labels_spec,
            data_root,
            args.offline,
            {ref.view.join_key: ref.view.key_type for ref in refs},
        )
        label_spec = LabelSpec(
            refs[0].view.join_key, labels_spec.timestamp_column, labels_spec.target
        )
        offline = open_offline(args.offline)
        try:
            training_set = dataset.build(labels, label_spec, refs, offline)
        finally:
            offline.close()
    except (dataset.DatasetError, ValueError) as error:
        raise StepError("TrainingSetFailed", str(error)) from error
    result.training_set_hash = training_set.content_hash
    result.training_set_rows = training_set.rows
    columns = [ref.column for ref in refs]
    result.features = [{"ref": ref.name, "column": ref.column, "type": ref.type} for ref in refs]

    mlflow.set_tracking_uri(args.tracking_uri)
    client = MlflowClient(args.tracking_uri)
    family_segment = registry_name(namespace, spec.family, spec.segment)
    # Without a tracking server, artifacts go where the platform keeps its data.
    location = (
        None if args.tracking_uri.startswith("http") else f"{args.artifact_root}/{family_segment}"
    )
    experiment_id = experiment_for(client, family_segment, location)
    run = client.create_run(
        experiment_id,
        run_name=f"{name}-t{spec.training.requests}",
        tags={
            "lykeion.model": name,
            "lykeion.namespace": namespace,
            "lykeion.model.uid": body["metadata"].get("uid", ""),
            "lykeion.version": spec.version,
            "lykeion.source.url": spec.source.url,
            "lykeion.source.revision": source.revision,
            "lykeion.training.requests": str(spec.training.requests),
            "lykeion.features": json.dumps(result.features),
            "lykeion.contract": json.dumps(result.contract, separators=(",", ":")),
        },
    )
    run_id = run.info.run_id
    result.run_id, result.experiment_id = run_id, experiment_id

    with tempfile.TemporaryDirectory(prefix="lykeion-train-") as tmp:
        folder = Path(tmp)
        import pyarrow.parquet as pq

        pq.write_table(training_set.table, folder / "training_set.parquet")
        client.log_artifact(run_id, str(folder / "training_set.parquet"), "training_set")
        frame = training_set.table.to_pandas()
        # The digest is our content hash, so MLflow shows the same identity the status does.
        data = from_pandas(
            frame,
            name="training_set",
            targets=labels_spec.target,
            digest=training_set.content_hash[:36],
        )
        context = [InputTag("mlflow.data.context", "training")]
        client.log_inputs(run_id, [DatasetInput(data._to_mlflow_entity(), context)])
        client.log_param(run_id, "lykeion.training_set.sha256", training_set.content_hash)
        client.log_param(run_id, "lykeion.training_set.rows", str(training_set.rows))
        # What the model server measures drift against (`serving/drift.py`).
        log_statistics(
            client,
            run_id,
            training_statistics(
                training_set.table, {f["ref"]: (f["column"], f["type"]) for f in result.features}
            ),
        )

        train_part, test_part = dataset.split_by_time(
            training_set.table, labels_spec.timestamp_column, TEST_FRACTION
        )
        if train_part.num_rows == 0 or test_part.num_rows == 0:
            raise StepError(
                "TrainingSetFailed", f"{training_set.rows} label rows are too few to split"
            )
        pq.write_table(train_part, folder / "train.parquet")
        pq.write_table(test_part, folder / "test.parquet")

        # 3. The project's own entry point, logging into this run. Its `python` must be the
        # interpreter of this environment (env_manager=local), not whatever PATH finds first.
        os.environ["PATH"] = (
            f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        )
        started = time.perf_counter()
        parameters = {
            **resolved.parameters,
            "train": str(folder / "train.parquet"),
            "test": str(folder / "test.parquet"),
            "target": labels_spec.target,
            "features": ",".join(columns),
        }
        try:
            mlflow.projects.run(
                str(source.directory),
                entry_point=spec.source.entry_point,
                parameters=parameters,
                experiment_id=experiment_id,
                run_id=run_id,
                env_manager="local",
                synchronous=True,
            )
        except ExecutionException as error:
            raise StepError("ProjectFailed", f"the MLflow project failed: {error}") from error
        result.project_seconds = time.perf_counter() - started

        # 4. Evaluation by the platform, on the held-out (latest) labels: the model is
        # called as the model server calls it, with the columns in their declared types.
        model_uri = f"runs:/{run_id}/model"
        try:
            value = evaluate.evaluate_model(
                LoadedModel(model_uri),
                test_part,
                labels_spec.target,
                gate.metric,
                training_set.table.column(labels_spec.target),
            )
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            ModelLoadError,
            mlflow.exceptions.MlflowException,
        ) as error:
            raise StepError("EvaluationFailed", f"cannot evaluate {model_uri}: {error}") from error
        client.log_metric(run_id, f"eval_{gate.metric}", value)
        result.metric, result.metric_value = gate.metric, value
        result.gate_passed = evaluate.passes(value, gate.threshold, gate.higher_is_better)

    # 5. The registry: one registered model per family/segment, one version per training.
    registered = family_segment
    try:
        version = mlflow.register_model(
            model_uri, registered, tags={"lykeion.version": spec.version}
        )
        for key, text in (
            ("lykeion.model", name),
            ("lykeion.features", json.dumps(result.features)),
            ("lykeion.training_set.sha256", training_set.content_hash),
            ("lykeion.source.revision", source.revision),
            ("lykeion.gate", "passed" if result.gate_passed else "failed"),
        ):
            client.set_model_version_tag(registered, version.version, key, text)
        if result.gate_passed:
            client.set_registered_model_alias(registered, CANDIDATE, version.version)
    except mlflow.exceptions.MlflowException as error:
        raise StepError("RegistryFailed", str(error)) from error
    client.set_terminated(run_id, "FINISHED")
    result.registered_model, result.registered_version = registered, str(version.version)
    result.model_uri = f"models:/{registered}/{version.version}"
    try:
        result.artifact_uri = client.get_model_version_download_uri(registered, version.version)
    except mlflow.exceptions.MlflowException as error:
        raise StepError("RegistryFailed", str(error)) from error
    result.metrics = {k: float(v) for k, v in client.get_run(run_id).data.metrics.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lykeion.training.run",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--model-json", required=True, help="the Model object as JSON")
    parser.add_argument(
        "--manifests-json", required=True, help="FeatureManifests defining its inputs, JSON list"
    )
    parser.add_argument("--offline", required=True, help="offline store URI")
    parser.add_argument("--tracking-uri", required=True, help="MLflow tracking (and registry) URI")
    parser.add_argument("--cache-dir", required=True, help="where git sources are fetched")
    parser.add_argument("--data-root", default=".", help="relative paths resolve from here")
    parser.add_argument(
        "--artifact-root",
        default="mlartifacts",
        help="artifact location when tracking is not a server",
    )
    parser.add_argument(
        "--result",
        type=Path,
        # On Kubernetes the executor points this at the container's termination message.
        default=Path(os.environ.get("LYKEION_RESULT_PATH", "result.json")),
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = TrainingResult()
    try:
        train(args, result)
        result.succeeded = True
        gate = "passed" if result.gate_passed else "failed"
        result.message = (
            f"{result.metric}={result.metric_value:.4f}, gate {gate}; registered {result.model_uri}"
        )
    except StepError as error:
        result.reason, result.message = error.reason, str(error)
    except Exception as error:  # noqa: BLE001 - reported as the training's outcome
        traceback.print_exc()
        result.reason, result.message = "TrainingFailed", f"{type(error).__name__}: {error}"
    result.duration_seconds = time.perf_counter() - started
    # Compact: a Kubernetes termination message holds at most 4 KiB.
    args.result.write_text(json.dumps(asdict(result), separators=(",", ":")))
    print(result.message)
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
