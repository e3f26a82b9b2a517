"""Run one model server.

    python -m lykeion.serving --config server.json --host 127.0.0.1 --port 0 \\
        --endpoint-file endpoint.json

With `--port 0` the system picks a free port; the URL goes to `--endpoint-file` once the
socket is bound, which is how the local executor finds its servers.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from lykeion.access import reviewer
from lykeion.features.view import FeatureView
from lykeion.serving import drift
from lykeion.serving.app import Metrics, ModelServer, create_app
from lykeion.serving.config import CONFIG_ENV, ServerConfig, TrainedFeature
from lykeion.serving.enrich import Enricher, FeatureMismatch
from lykeion.serving.listen import serve
from lykeion.serving.model import LoadedModel, ModelLoadError
from lykeion.serving.recompute import Recomputer
from lykeion.serving.remote import RemotePredictor
from lykeion.serving.skew import SkewChecker
from lykeion.stores import open_online

log = logging.getLogger("lykeion.serving")


def build(config: ServerConfig, predictor: str | None = None, model_name: str = "") -> ModelServer:
    """Load the model and check that serving would feed it what it was trained on; with
    `predictor` (transformer mode), send the features to that V2 server instead."""
    if predictor is not None:
        if config.features is None:
            raise FeatureMismatch("transformer mode needs the trained inputs in the config")
        url = predictor if "://" in predictor else f"http://{predictor}"
        remote = RemotePredictor(url, model_name or config.name, config.features)
        views = [FeatureView.from_body(body) for body in config.manifests]
        enricher = Enricher(remote.features, views, config.defaults)
        return signals(config, remote, enricher, None)
    model = LoadedModel(config.model_uri, config.tracking_uri)
    if config.features is not None and config.features != model.features:
        raise FeatureMismatch(
            f"the Model's status and model {config.model_uri} disagree on its inputs: "
            + "; ".join(feature_differences(config.features, model.features))
        )
    views = [FeatureView.from_body(body) for body in config.manifests]
    enricher = Enricher(model.features, views, config.defaults)
    return signals(config, model, enricher, drift.load(config.tracking_uri, model.run_id))


def signals(
    config: ServerConfig,
    model: LoadedModel | RemotePredictor,
    enricher: Enricher,
    statistics: drift.TrainingStatistics | None,
) -> ModelServer:
    """The server with its skew check (when the config names an offline store) and drift
    (against `statistics`, PSI null without them)."""
    metrics = Metrics()
    skew = None
    if config.offline_store is not None and config.skew_sample_rate > 0:
        uri = config.offline_store
        if urlparse(uri).scheme not in ("duckdb", "bigquery"):
            # A bad URI stops the server now, not the worker later; the store itself is
            # opened by the worker (its client may be slow or absent: never at start).
            raise ValueError(
                f"offline_store {uri!r}: use duckdb:///path or bigquery://project/dataset"
            )
        recompute = Recomputer(uri, config.manifests, [i.ref for i in enricher.inputs])
        # Started before the server is ready: the child's imports (a second of CPU) are
        # paid at start, not by the requests around the first sample (measured: p99 x2).
        recompute.start()
        skew = SkewChecker(
            enricher.inputs,
            recompute,
            metrics.registry,
            config.skew_sample_rate,
            config.skew_queue,
            config.skew_batch_seconds,
        )
        skew.start()
    if statistics is None and not isinstance(model, RemotePredictor):
        log.info("no training-set statistics for %s: drift is not computed", config.model_uri)
    monitor = drift.DriftMonitor(
        {i.column: i.ref for i in enricher.inputs},
        statistics,
        config.drift_window,
        config.drift_min_served,
    )
    return ModelServer(
        config, model, enricher, open_online(config.online_store), skew, monitor, metrics
    )


def feature_differences(
    listed: Sequence[TrainedFeature], trained: Sequence[TrainedFeature]
) -> list[str]:
    """What differs between the inputs the status lists and those the model records."""
    by_ref = {f.ref: f for f in trained}
    listed_refs = {f.ref for f in listed}
    found = [f"{f.ref} is listed but the model was not trained on it"
             for f in listed if f.ref not in by_ref]  # fmt: skip
    found += [f"{f.ref} is not listed but the model was trained on it"
              for f in trained if f.ref not in listed_refs]  # fmt: skip
    for mine in listed:
        theirs = by_ref.get(mine.ref)
        if theirs is not None and mine.type != theirs.type:
            found.append(f"{mine.ref} is listed as {mine.type}, trained as {theirs.type}")
        if theirs is not None and mine.column != theirs.column:
            found.append(
                f"{mine.ref} is listed as column {mine.column!r}, trained as {theirs.column!r}"
            )
    if not found:
        found.append(f"order: listed {[f.ref for f in listed]}, trained {[f.ref for f in trained]}")
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lykeion.serving", description="Serve one MLflow model version."
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="ServerConfig as a JSON file")
    source.add_argument("--config-json", help=f"ServerConfig as JSON text (default: ${CONFIG_ENV})")
    parser.add_argument(
        "--access-kubeconfig",
        type=Path,
        help="with access: kubernetes in the config, credentials for the reviews "
        "(default: the pod's ServiceAccount)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument("--endpoint-file", type=Path, help="write {url, pid} here once bound")
    # What KServe appends to a transformer container's arguments.
    parser.add_argument("--predictor_host", help="transformer mode: the V2 predictor's host")
    parser.add_argument("--model_name", default="", help="the predictor's model name")
    parser.add_argument("--http_port", type=int, dest="port", help="same as --port")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    text = args.config.read_text() if args.config else args.config_json
    text = text or os.environ.get(CONFIG_ENV)
    if not text:
        raise SystemExit(f"lykeion.serving: give --config, --config-json or {CONFIG_ENV}")
    config = ServerConfig.model_validate_json(text)
    try:
        server = build(config, args.predictor_host, args.model_name)
    except (ModelLoadError, FeatureMismatch, ValueError) as error:
        print(f"lykeion.serving: cannot serve {config.name} {config.version}: {error}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2) from error
    try:
        access = reviewer(config.access, args.access_kubeconfig, os.environ)
    except (ValueError, OSError) as error:
        log.error("access control: %s", error)
        sys.exit(2)
    try:
        serve(create_app(server, access), args.host, args.port, args.endpoint_file)
    finally:
        server.close()  # the request log's queued lines go to the file


if __name__ == "__main__":
    main()
