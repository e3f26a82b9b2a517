"""Feast's half of benchmarks/features.py; runs in the isolated Feast venv, never in ours.

    <feast-venv>/bin/python benchmarks/feast_side.py --config config.json

`config.json` (written by features.py) names the Parquet files to read (history with
`customer_id, event_time, f0..f9`; labels with `customer_id, event_timestamp, target,
label_row`), the keys to read online and where to write. Each phase is timed here and
the timings go to `config["result"]` as JSON; a phase that fails records its error
instead, so the other phases still report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.types import Float64, Int64

VIEW = "customer_stats"


def build_store(config: dict[str, Any]) -> tuple[FeatureStore, list[str]]:
    repo = Path(config["repo"])
    repo.mkdir(parents=True, exist_ok=True)
    repo_config = RepoConfig(
        project="lykeion_bench",
        registry=str(repo / "registry.db"),
        provider="local",
        offline_store=DuckDBOfflineStoreConfig(),
        online_store=SqliteOnlineStoreConfig(path=str(repo / "online.db")),
        entity_key_serialization_version=3,
    )
    store = FeatureStore(repo_path=str(repo), config=repo_config)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    names = [f"f{i}" for i in range(config["features"])]
    view = FeatureView(
        name=VIEW,
        entities=[customer],
        ttl=timedelta(days=config["ttl_days"]),
        schema=[Field(name="customer_id", dtype=Int64)]
        + [Field(name=n, dtype=Float64) for n in names],
        source=FileSource(path=config["history"], timestamp_field="event_time"),
        online=True,
    )
    store.apply([customer, view])
    return store, [f"{VIEW}:{n}" for n in names]


def historical(store: FeatureStore, refs: list[str], config: dict[str, Any]) -> dict[str, Any]:
    labels = pq.read_table(config["labels"]).to_pandas()
    started = time.perf_counter()
    table = store.get_historical_features(entity_df=labels, features=refs).to_arrow()
    seconds = time.perf_counter() - started
    pq.write_table(table, config["historical_out"])
    return {"seconds": seconds, "rows": table.num_rows}


def materialize(store: FeatureStore, config: dict[str, Any]) -> dict[str, Any]:
    start = datetime.fromisoformat(config["materialize_start"])
    end = datetime.fromisoformat(config["materialize_end"])
    started = time.perf_counter()
    store.materialize(start_date=start, end_date=end)
    return {"seconds": time.perf_counter() - started}


def online(store: FeatureStore, refs: list[str], config: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, batches in config["online_batches"].items():
        rows = [[{"customer_id": k} for k in keys] for keys in batches]
        store.get_online_features(features=refs, entity_rows=rows[0]).to_dict()  # warm up
        latencies = []
        missing = 0
        for entity_rows in rows:
            started = time.perf_counter()
            answer = store.get_online_features(features=refs, entity_rows=entity_rows).to_dict()
            latencies.append(time.perf_counter() - started)
            missing += sum(value is None for value in answer["f0"])
        quantiles = statistics.quantiles(latencies, n=100)
        result[name] = {"p50_ms": quantiles[49] * 1e3, "p99_ms": quantiles[98] * 1e3}
        # Every requested key was materialized: a None means Feast lost it.
        result[name]["missing_values"] = missing
    return result


def serve_config(refs: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """What features.py needs to run `feast serve` on this repo and time it next to the
    Feature API: the repo (with its feature_store.yaml), the CLI and the feature refs."""
    import sys

    repo = Path(config["repo"])
    (repo / "feature_store.yaml").write_text(
        "project: lykeion_bench\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        "offline_store:\n  type: duckdb\n"
        "entity_key_serialization_version: 3\n"
    )
    return {"repo": str(repo), "cli": str(Path(sys.executable).parent / "feast"), "refs": refs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    config = json.loads(args.config.read_text())
    import feast

    result: dict[str, Any] = {"feast_version": feast.__version__}
    try:
        store, refs = build_store(config)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which carries on
        result["setup_error"] = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
        Path(config["result"]).write_text(json.dumps(result, indent=2))
        return 1
    phases = {
        "historical": lambda: historical(store, refs, config),
        "materialize": lambda: materialize(store, config),
        "online": lambda: online(store, refs, config),
        "serve": lambda: serve_config(refs, config),
    }
    for name, phase in phases.items():
        try:
            result[name] = phase()
        except Exception as error:  # noqa: BLE001 - one failed phase must not hide the others
            result[name] = {"error": f"{type(error).__name__}: {error}"}
            traceback.print_exc()
    result["finished"] = datetime.now(UTC).isoformat()
    Path(config["result"]).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
