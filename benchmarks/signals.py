"""What the request log and the skew sampler cost the model server, as p99 ratios in one run.

    python benchmarks/signals.py [--requests 2000] [--concurrency 8] [--riders 5000]
        [--sample-rate 0.01] [--out benchmarks/results/signals.json]

The model and its riders are benchmarks/serving.py's (a scikit-learn pipeline on three
features). The riders are materialized from a CSV source into both stores by the real
embedded path (`materialize_duckdb`), so the skew check has the real offline store to
recompute from, and the training set's statistics are logged to the model's run, so the
server also follows drift. Three `python -m lykeion.serving` run at once and take turns
(benchmarks/load.py), asked the same requests by rider key:

  bare      no request log, no skew check (drift is always on: it is part of serving)
  twin      bare again: the ratio twin/bare is how far two equal servers differ on this
            machine in this run (the noise floor of the other ratios)
  log       the request log (JSON Lines) on
  signals   the request log and the skew sampler at --sample-rate (default: the
            ServerConfig default), its worker recomputing samples from DuckDB

Reported per batch size (1 and 50) and mode (sequential, concurrent): p50/p99 and req/s of
each, and the ratios twin/bare, log/bare and signals/bare of p99 (target for signals/bare at the
default rate: <= 1.05). After the load, the server's /analysis must show checked values
and no mismatch (the stores agree by construction).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import load
import numpy as np
import pyarrow as pa
import serving
from mlflow.tracking import MlflowClient

from lykeion.api.featuremanifest import FeatureManifestSpec
from lykeion.features.compile import Range
from lykeion.features.materialize import materialize_duckdb
from lykeion.features.view import FeatureView
from lykeion.serving.config import ServerConfig
from lykeion.stores.offline.base import LabelSpec, ResolvedFeature
from lykeion.stores.offline.duckdb import DuckDBOfflineStore
from lykeion.stores.online.sqlite import SqliteOnlineStore
from lykeion.training.statistics import log_statistics, training_statistics

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.05
"""signals / bare p99, at the default sample rate."""


def manifest() -> dict[str, Any]:
    """The rider features as row-level columns of one CSV source."""
    return {
        "apiVersion": "lykeion.io/v1alpha1",
        "kind": "FeatureManifest",
        "metadata": {"name": "rider-signals", "namespace": "default", "uid": "bench"},
        "spec": {
            "description": "benchmark riders",
            "owner": "bench@example.com",
            "entity": {"name": "rider", "joinKey": serving.KEY, "keyType": "string"},
            "source": {
                "file": {"path": "riders.csv", "format": "csv"},
                "timestampColumn": "event_time",
            },
            "ttl": "365d",
            "features": [
                {"name": "age", "type": "int64", "column": "age"},
                {"name": "drop_offs_count", "type": "int64", "column": "drop_offs_count"},
                {"name": "avg_fare", "type": "float64", "column": "avg_fare"},
            ],
        },
    }


def materialize(folder: Path, body: dict[str, Any], count: int) -> tuple[Path, Path, pa.Table]:
    """Both stores from one CSV of `count` riders; (offline, online, training set)."""
    table = serving.riders(count, seed=3)
    written = datetime.now(UTC) - timedelta(hours=1)
    with (folder / "riders.csv").open("w", newline="") as sink:
        out = csv.writer(sink)
        out.writerow([serving.KEY, "event_time", "age", "drop_offs_count", "avg_fare"])
        for i, row in enumerate(table.itertuples(index=False)):
            out.writerow(
                [f"r{i}", written.isoformat(), row.rider__age, row.rider__drop_offs_count,
                 row.rider__avg_fare]
            )  # fmt: skip
    view = FeatureView.from_body(body)
    offline = DuckDBOfflineStore(folder / "offline.duckdb")
    online = SqliteOnlineStore(folder / "online.db")
    try:
        spec = FeatureManifestSpec.model_validate(body["spec"])
        result = materialize_duckdb(spec, view, Range(None, datetime.now(UTC)), offline, online,
                                    str(folder))  # fmt: skip
        if not result.succeeded or result.rows_written != count:
            raise RuntimeError(f"materialization: {result}")
        labels = pa.table(
            {
                serving.KEY: pa.array([f"r{i}" for i in range(count)]),
                "t": pa.array([datetime.now(UTC)] * count, pa.timestamp("us", tz="UTC")),
                "y": pa.array([0] * count, pa.int64()),
            }
        )
        refs = [ResolvedFeature(view, i["ref"].split(".", 1)[1]) for i in serving.INPUTS]
        training = offline.training_set(labels, LabelSpec(serving.KEY, "t", "y"), refs).table
    finally:
        online.close()
    return folder / "offline.duckdb", folder / "online.db", training


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="at batch 1; batch 50: / 4")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--riders", type=int, default=5000)
    default_rate = ServerConfig.model_fields["skew_sample_rate"].default
    parser.add_argument("--sample-rate", type=float, default=default_rate)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/signals.json")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    work = serving.plan(args.requests, args.riders)
    results: dict[str, Any] = {
        "riders": args.riders,
        "requests": args.requests,
        "requests_50": len(work.requests[50]),
        "concurrency": args.concurrency,
        "sample_rate": args.sample_rate,
        "default_sample_rate": default_rate,
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lykeion-signals-bench-") as tmp:
        folder = Path(tmp)
        trained = serving.train(folder)
        body = manifest()
        offline, online, training = materialize(folder, body, args.riders)
        statistics = training_statistics(
            training, {i["ref"]: (i["column"], i["type"]) for i in serving.INPUTS}
        )
        log_statistics(MlflowClient(trained.tracking_uri), trained.run_id, statistics)
        stores = {"online_store": f"sqlite://{online}"}
        variants = {
            "bare": dict(stores),
            "twin": dict(stores),  # bare again: how far two equal servers differ here
            "log": {**stores, "request_log": str(folder / "log.jsonl")},
            "signals": {
                **stores,
                "request_log": str(folder / "signals.jsonl"),
                "offline_store": f"duckdb://{offline}",
                "skew_sample_rate": args.sample_rate,
            },
        }
        target = serving.lykeion_targets()[0]  # POST /predict with keys
        with load_servers(trained, folder, body, variants) as bases:
            bodies = {
                str(size): {name: [target.body(ix) for ix in requests] for name in bases}
                for size, requests in work.requests.items()
            }
            endpoints = [load.Endpoint(name, base + target.path) for name, base in bases.items()]
            try:
                measured = load.measure(
                    endpoints, bodies, args.concurrency, lambda line: print(line, flush=True)
                )
            except OSError:
                for name in bases:  # what the servers said, before the folder goes
                    log = (folder / f"{name}.log").read_text(errors="replace")
                    print(f"--- {name}.log (tail)\n" + "\n".join(log.splitlines()[-15:]))
                raise
            time.sleep(2.0)  # the worker finishes what is queued
            analysis = httpx.get(bases["signals"] + "/analysis", timeout=30).json()
    results["servers"] = measured
    results["ratios"] = {
        f"{name} / bare": {
            f"{mode}_{size}": measured[name][mode][size]["p99_ms"]
            / measured["bare"][mode][size]["p99_ms"]
            for mode in ("sequential", "concurrent")
            for size in ("1", "50")
        }
        for name in ("twin", "log", "signals")
    }
    skew = analysis["skew"]["features"]
    results["skew"] = {
        ref: {"checked": f["checked"], "mismatches": f["mismatches"]} for ref, f in skew.items()
    }
    results["drift"] = analysis["drift"]["features"]
    headline = results["ratios"]["signals / bare"]["sequential_1"]
    results["signals_p99_over_bare_p99_batch1"] = headline
    results["target"] = TARGET
    results["seconds"] = time.perf_counter() - started
    results["finished"] = datetime.now(UTC).isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(report(results)))
    print(f"\nwritten to {args.out} ({results['seconds']:.0f} s)")
    mismatches = sum(f["mismatches"] for f in skew.values())
    return 1 if mismatches else 0


@contextmanager
def load_servers(
    trained: serving.Trained,
    folder: Path,
    body: dict[str, Any],
    variants: dict[str, dict[str, Any]],
) -> Iterator[dict[str, str]]:
    """Every variant running (name -> base URL); all stopped on the way out."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(
                serving.lykeion_server(trained, folder, body, name=name, **extra)
            )
            for name, extra in variants.items()
        }


def report(results: dict[str, Any]) -> list[str]:
    lines = [
        f"{results['riders']} riders; {results['requests']} requests at batch 1,"
        f" {results['requests_50']} at batch 50; skew sample rate {results['sample_rate']}",
        "",
        f"{'':<10}{'mode':<12}{'b1 p50':>8}{'b1 p99':>8}{'b50 p50':>9}{'b50 p99':>9}  (ms)",
    ]
    for name, block in results["servers"].items():
        for mode in ("sequential", "concurrent"):
            b1, b50 = block[mode]["1"], block[mode]["50"]
            lines.append(
                f"  {name:<8}{mode:<12}{b1['p50_ms']:>8.3f}{b1['p99_ms']:>8.3f}"
                f"{b50['p50_ms']:>9.3f}{b50['p99_ms']:>9.3f}"
            )
    lines.append("")
    for pair, block in results["ratios"].items():
        cells = "  ".join(f"{k} {v:.3f}" for k, v in block.items())
        lines.append(f"p99 {pair}: {cells}")
    verdict = "met" if results["signals_p99_over_bare_p99_batch1"] <= TARGET else "NOT met"
    headline = results["signals_p99_over_bare_p99_batch1"]
    lines.append(
        f"signals / bare p99 at batch 1 (sequential): {headline:.3f}"
        f" (target <= {TARGET}: {verdict})"
    )
    lines.append(f"skew: {json.dumps(results['skew'])}")
    lines.append(f"drift: {json.dumps(results['drift'])}")
    return lines


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
