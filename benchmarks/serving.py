"""Model serving speed: Lykeion's model server against MLflow's and MLServer, one model, one run.

    python benchmarks/serving.py [--requests 2000] [--concurrency 8] [--riders 10000]
        [--no-mlflow] [--no-mlserver] [--out benchmarks/results/serving.json]

The model (trained here, seeded): a scikit-learn pipeline (median imputer, scaler, logistic
regression) on three float64 columns, logged like examples/forward/mlproject/train.py into
a throwaway sqlite-backed MLflow store, with the `lykeion.features` run tag. Its pyfunc
answers predict_proba, two probabilities per row.

What is timed (the three servers run at once, each idle but for its turns):
  in-process   the loaded pyfunc's predict on a pandas frame (MLflow's schema check
               included), and the raw pipeline's predict_proba (the floor).
  mlflow       `mlflow models serve --env-manager local`, POST /invocations with the full
               feature vector (dataframe_split).
  mlserver     MLServer + mlserver-mlflow (parallel_workers 0), V2 infer with the full
               feature vector, one FP64 input per signature column.
               Its venv comes from scripts/install-mlserver.sh.
  lykeion      `python -m lykeion.serving`, given only the entity keys: it reads the three
               features from a SQLite online store of --riders riders, then predicts.
               Timed on POST /predict and on V2 /v2/models/<name>/infer.

Before any timing every server answers the same keys, and its probabilities must equal the
in-process ones within 1e-9. Then, per batch size (1 and 50 rows), the same requests to
every server:
  sequential   one keep-alive connection per server, --requests requests at batch 1 and
               a quarter as many at batch 50;
  concurrent   --concurrency client threads per server, each on its own connection, as
               many requests.
The load generator is benchmarks/load.py (the standard library's http.client; the
servers take turns of 100, concurrent 200, requests, so that load from elsewhere on the
machine falls on all of them alike). Reported: p50/p99 latency (ms) and requests/s
(requests over the time of the server's own turns), and the ratios of Lykeion to MLServer
and to `mlflow models serve`. Request bodies are built before the clock starts; the load
generator shares the machine's cores with the server it measures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import load
import mlflow
import numpy as np
import orjson
import pandas as pd
import yaml

from lykeion.features.view import FeatureView
from lykeion.local.ports import free_port
from lykeion.local.tools import script_output
from lykeion.serving.config import ServerConfig
from lykeion.stores.online.base import OnlineRow
from lykeion.stores.online.sqlite import SqliteOnlineStore

ROOT = Path(__file__).resolve().parents[1]
NAME = "rider-retention"
KEY = "rider_id"
INPUTS = [
    {"ref": "rider.age", "column": "rider__age", "type": "int64"},
    {"ref": "rider.drop_offs_count", "column": "rider__drop_offs_count", "type": "int64"},
    {"ref": "rider.avg_fare", "column": "rider__avg_fare", "type": "float64"},
]
COLUMNS = [i["column"] for i in INPUTS]
BATCHES = (1, 50)
WARMUP = 50
TOLERANCE = 1e-9
JSON_HEADERS = {"content-type": "application/json"}


# -- model and data ----------------------------------------------------------------------


def riders(count: int, seed: int) -> pd.DataFrame:
    """Rider features, integers where the manifest says int64 (as the store holds them)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "rider__age": rng.integers(18, 75, count),
            "rider__drop_offs_count": rng.poisson(5, count),
            "rider__avg_fare": np.round(rng.gamma(4.0, 5.0, count), 2),
        }
    )


@dataclass(frozen=True)
class Trained:
    tracking_uri: str
    run_id: str
    model_dir: Path
    """A local copy of the logged model, for the servers that take a directory."""


def train(folder: Path) -> Trained:
    from mlflow.models import infer_signature
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = riders(2000, seed=0).astype("float64")
    rng = np.random.default_rng(1)
    logit = (
        0.05 * (x["rider__age"] - 40)
        + 0.3 * (x["rider__drop_offs_count"] - 5)
        - 0.03 * (x["rider__avg_fare"] - 20)
    )
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype("int64")
    model = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=200)
    )
    model.fit(x, y)
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.create_experiment(
        "serving-benchmark", artifact_location=(folder / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.set_tag("lykeion.features", json.dumps(INPUTS))
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict_proba(x)[:, 1]),
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=["numpy.dtype"],
        )
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            f"runs:/{run.info.run_id}/model", dst_path=str(folder / "model-copy")
        )
    )
    return Trained(tracking_uri, run.info.run_id, model_dir)


def manifest() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples/forward/features.yaml").read_text())
    body["metadata"]["namespace"] = "default"
    return body


def populate(path: Path, view: FeatureView, table: pd.DataFrame) -> None:
    """One row per rider, an hour old (well inside the manifest's TTL)."""
    written = datetime.now(UTC) - timedelta(hours=1)
    store = SqliteOnlineStore(path)
    try:
        store.write(
            view,
            (
                OnlineRow(
                    f"r{i}",
                    written,
                    {
                        "age": int(row.rider__age),
                        "drop_offs_count": int(row.rider__drop_offs_count),
                        "avg_fare": float(row.rider__avg_fare),
                        "is_premium": bool(i % 3 == 0),
                    },
                )
                for i, row in enumerate(table.itertuples(index=False))
            ),
        )
    finally:
        store.close()


# -- targets: how each server is asked ----------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    body: Callable[[list[int]], bytes]
    """Rider indexes -> request body."""
    probabilities: Callable[[Any], np.ndarray]
    """Response JSON -> probabilities, flattened row by row."""


def _vector_rows(table: pd.DataFrame, indexes: list[int]) -> list[list[float]]:
    rows: list[list[float]] = table.iloc[indexes][COLUMNS].astype("float64").to_numpy().tolist()
    return rows


def mlflow_target(table: pd.DataFrame) -> Target:
    def body(indexes: list[int]) -> bytes:
        rows = _vector_rows(table, indexes)
        return orjson.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows}})

    return Target(
        "mlflow serve",
        "/invocations",
        body,
        lambda answer: np.asarray(answer["predictions"], dtype="float64").ravel(),
    )


def _v2_output(answer: Any) -> np.ndarray:
    return np.asarray(answer["outputs"][0]["data"], dtype="float64").ravel()


def mlserver_target(table: pd.DataFrame) -> Target:
    def body(indexes: list[int]) -> bytes:
        columns = table.iloc[indexes][COLUMNS].astype("float64")
        inputs = [
            {"name": c, "datatype": "FP64", "shape": [len(indexes)], "data": columns[c].tolist()}
            for c in COLUMNS
        ]
        return orjson.dumps({"inputs": inputs})

    return Target("mlserver V2", f"/v2/models/{NAME}/infer", body, _v2_output)


def lykeion_targets() -> list[Target]:
    def plain(indexes: list[int]) -> bytes:
        return orjson.dumps({"keys": [{KEY: f"r{i}"} for i in indexes]})

    def v2(indexes: list[int]) -> bytes:
        data = [f"r{i}" for i in indexes]
        tensor = {"name": KEY, "datatype": "BYTES", "shape": [len(indexes)], "data": data}
        return orjson.dumps({"inputs": [tensor]})

    return [
        Target(
            "lykeion /predict",
            "/predict",
            plain,
            lambda answer: np.asarray(answer["predictions"], dtype="float64").ravel(),
        ),
        Target("lykeion V2", f"/v2/models/{NAME}/infer", v2, _v2_output),
    ]


# -- processes ---------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # `mlflow models serve` runs `uvicorn` from PATH: the one of this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def mlflow_server(trained: Trained, folder: Path) -> Any:
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", str(trained.model_dir),
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return load.running(
        "mlflow models serve",
        command,
        folder / "mlflow-serve.log",
        lambda: f"http://127.0.0.1:{port}",
        "/ping",
        # No access log line per request, as the other two servers.
        env=_env(MLFLOW_TRACKING_URI=trained.tracking_uri, UVICORN_ACCESS_LOG="false"),
    )


def mlserver_bin() -> Path:
    return script_output(ROOT / "scripts/install-mlserver.sh", "installing MLServer", timeout=1800)


def mlserver_server(trained: Trained, folder: Path, bin_dir: Path) -> Any:
    repo = folder / "mlserver"
    (repo / NAME).mkdir(parents=True)
    port, grpc = free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc,  # cannot be turned off: its own free port
        "metrics_endpoint": None,
        "parallel_workers": 0,
        "debug": False,  # no access log, as the other two servers
    }
    (repo / "settings.json").write_text(json.dumps(settings))
    model_settings = {
        "name": NAME,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(trained.model_dir)},
    }
    (repo / NAME / "model-settings.json").write_text(json.dumps(model_settings))
    return load.running(
        "mlserver",
        [str(bin_dir / "mlserver"), "start", str(repo)],
        folder / "mlserver.log",
        lambda: f"http://127.0.0.1:{port}",
        f"/v2/models/{NAME}/ready",
        env=_env(),
        cwd=repo,
    )


def lykeion_server(
    trained: Trained,
    folder: Path,
    body: dict[str, Any],
    online: Path | None = None,
    name: str = "lykeion-server",
    **extra: Any,
) -> Any:
    """`python -m lykeion.serving` for the trained model and the manifest `body`, reading
    the SQLite online store `online` (none: features come with the request), with
    further `ServerConfig` fields `extra`; its config, endpoint file and log are named
    after `name` in `folder`. A context manager yielding the server's base URL."""
    stores = {"online_store": f"sqlite://{online}", "defaults": {}} if online else {}
    config = ServerConfig.model_validate(
        {
            "name": NAME,
            "version": "1",
            "model_uri": f"runs:/{trained.run_id}/model",
            "tracking_uri": trained.tracking_uri,
            "manifests": [body],
            **stores,
            **extra,
        }
    )
    config_path, endpoint = folder / f"{name}.json", folder / f"{name}-endpoint.json"
    config_path.write_text(config.model_dump_json())

    def url() -> str | None:
        if not endpoint.exists():
            return None
        found: str = json.loads(endpoint.read_text())["url"]
        return found

    command = [
        sys.executable, "-m", "lykeion.serving", "--config", str(config_path),
        "--host", "127.0.0.1", "--port", "0", "--endpoint-file", str(endpoint),
    ]  # fmt: skip
    return load.running(name, command, folder / f"{name}.log", url, "/ready")


# -- load --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Rider indexes per request, per batch size; the same for every server."""

    requests: dict[int, list[list[int]]]
    check: list[int]


def plan(total: int, riders_count: int, seed: int = 2) -> Plan:
    rng = np.random.default_rng(seed)
    counts = {1: total, 50: max(total // 4, 100)}
    return Plan(
        {
            b: [rng.integers(0, riders_count, b).tolist() for _ in range(n)]
            for b, n in counts.items()
        },
        check=rng.integers(0, riders_count, 7).tolist(),
    )


@dataclass(frozen=True)
class Endpoint:
    target: Target
    base: str


def measure(endpoints: list[Endpoint], work: Plan, workers: int) -> dict[str, Any]:
    """Every server, every batch size, sequential and concurrent (benchmarks/load.py)."""
    bodies = {
        str(size): {e.target.name: [e.target.body(ix) for ix in requests] for e in endpoints}
        for size, requests in work.requests.items()
    }
    targets = [load.Endpoint(e.target.name, e.base + e.target.path) for e in endpoints]
    return load.measure(targets, bodies, workers, lambda line: print(line, flush=True))


def agree(
    base: str, target: Target, work: Plan, expected: Callable[[list[int]], np.ndarray]
) -> float:
    """Ask for the check keys one by one and all at once; the largest difference from the
    in-process probabilities, which must stay within TOLERANCE."""
    worst = 0.0
    with httpx.Client(base_url=base, timeout=60) as http:
        for indexes in [*([i] for i in work.check), work.check]:
            answer = http.post(target.path, content=target.body(indexes), headers=JSON_HEADERS)
            if answer.status_code != 200:
                raise RuntimeError(f"{target.name} answered {answer.status_code}: {answer.text}")
            got, want = target.probabilities(answer.json()), expected(indexes)
            if got.shape != want.shape:
                raise AssertionError(f"{target.name}: shape {got.shape}, expected {want.shape}")
            worst = max(worst, float(np.max(np.abs(got - want))))
    if worst > TOLERANCE:
        raise AssertionError(f"{target.name} differs from in-process predict by {worst:.3g}")
    return worst


def in_process(pyfunc: Any, table: pd.DataFrame, work: Plan) -> dict[str, Any]:
    raw = pyfunc.get_raw_model()
    result: dict[str, Any] = {"pyfunc.predict": {}, "predict_proba (raw)": {}}
    for size, requests in work.requests.items():
        frames = [table.iloc[indexes][COLUMNS].astype("float64") for indexes in requests]
        for name, predict in (
            ("pyfunc.predict", pyfunc.predict),
            ("predict_proba (raw)", raw.predict_proba),
        ):
            for frame in frames[:WARMUP]:
                predict(frame)
            latencies = []
            started = time.perf_counter()
            for frame in frames:
                begun = time.perf_counter()
                predict(frame)
                latencies.append(time.perf_counter() - begun)
            result[name][str(size)] = load.summary(latencies, time.perf_counter() - started)
    return result


# -- report ------------------------------------------------------------------------------


def ratios(servers: dict[str, Any]) -> dict[str, Any]:
    """Lykeion / peer: p99 (lower is better for Lykeion) and requests/s (higher is)."""
    out: dict[str, Any] = {}
    for mine in ("lykeion /predict", "lykeion V2"):
        for peer in ("mlserver V2", "mlflow serve"):
            if mine not in servers or peer not in servers:
                continue
            block: dict[str, Any] = {}
            for mode in ("sequential", "concurrent"):
                for size in ("1", "50"):
                    a, b = servers[mine][mode][size], servers[peer][mode][size]
                    block[f"{mode}_{size}"] = {
                        "p99": a["p99_ms"] / b["p99_ms"],
                        "rps": a["rps"] / b["rps"],
                    }
            out[f"{mine} / {peer}"] = block
    return out


def report(results: dict[str, Any]) -> list[str]:
    def cells(block: dict[str, Any]) -> str:
        return "  ".join(
            f"{block[s]['p50_ms']:>7.3f} {block[s]['p99_ms']:>7.3f} {block[s]['rps']:>7.0f}"
            for s in ("1", "50")
        )

    header = f"{'':<22}{'batch 1: p50':>12} {'p99 ms':>7} {'req/s':>7}  {'batch 50: p50':>13}"
    header += f" {'p99 ms':>7} {'req/s':>7}"
    lines = [
        f"model {NAME}: 3 float64 inputs, {results['riders']} riders in the online store;"
        f" {results['requests']} requests at batch 1, {results['requests_50']} at batch 50",
        "",
        "in-process (no HTTP)",
        header,
    ]
    for name, block in results["in_process"].items():
        lines.append(f"  {name:<20}{cells(block)}")
    for mode, title in (
        ("sequential", "sequential, one keep-alive connection"),
        ("concurrent", f"concurrent, {results['concurrency']} client threads"),
    ):
        lines += ["", title, header]
        for name, server in results["servers"].items():
            if "error" in server:
                lines.append(f"  {name:<20}{server['error'][:200]}")
                continue
            lines.append(f"  {name:<20}{cells(server[mode])}")
    lines += ["", f"{'ratios, Lykeion / peer':<45}p99 b1  p99 b50  req/s b1  req/s b50"]
    for mode in ("sequential", "concurrent"):
        for pair, block in results["ratios"].items():
            r1, r50 = block[f"{mode}_1"], block[f"{mode}_50"]
            lines.append(
                f"  {mode:<11}{pair:<32}{r1['p99']:>5.2f}x {r50['p99']:>7.2f}x"
                f" {r1['rps']:>8.2f}x {r50['rps']:>9.2f}x"
            )
    lines.append("")
    headline = results.get("lykeion_p99_over_mlserver_p99_batch1")
    if headline is not None:
        target = results["lykeion_p99_over_mlserver_p99_batch1_target"]
        verdict = "met" if headline <= target else "NOT met"
        lines.append(
            f"Lykeion /predict p99 / MLServer p99 at batch 1 (sequential): {headline:.2f}"
            f" (target <= {target}: {verdict})"
        )
    versus_mlflow = results.get("lykeion_p99_over_mlflow_p99_batch1")
    if versus_mlflow is not None:
        lines.append(
            f"Lykeion /predict p99 / `mlflow models serve` p99 at batch 1 (sequential):"
            f" {versus_mlflow:.2f}"
        )
    lines.append(f"largest difference from in-process predict: {json.dumps(results['agreement'])}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="at batch 1; batch 50: / 4")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--riders", type=int, default=10_000)
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/serving.json")
    args = parser.parse_args()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)

    work = plan(args.requests, args.riders)
    table = riders(args.riders, seed=3)
    results: dict[str, Any] = {
        "riders": args.riders,
        "requests": args.requests,
        "requests_50": len(work.requests[50]),
        "concurrency": args.concurrency,
        "servers": {},
        "agreement": {},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lykeion-serving-bench-") as tmp:
        folder = Path(tmp)
        trained = train(folder)
        body = manifest()
        online = folder / "online.db"
        populate(online, FeatureView.from_body(body), table)
        pyfunc = mlflow.pyfunc.load_model(f"runs:/{trained.run_id}/model")
        results["in_process"] = in_process(pyfunc, table, work)

        def expected(indexes: list[int]) -> np.ndarray:
            frame = table.iloc[indexes][COLUMNS].astype("float64")
            return np.asarray(pyfunc.predict(frame), dtype="float64").ravel()

        servers: list[tuple[str, Callable[[], Any], list[Target]]] = []
        if not args.no_mlflow:
            servers.append(
                ("mlflow serve", lambda: mlflow_server(trained, folder), [mlflow_target(table)])
            )
        if not args.no_mlserver:
            servers.append(
                (
                    "mlserver",
                    lambda: mlserver_server(trained, folder, mlserver_bin()),
                    [mlserver_target(table)],
                )
            )
        servers.append(
            ("lykeion", lambda: lykeion_server(trained, folder, body, online), lykeion_targets())
        )
        with ExitStack() as stack:
            endpoints: list[Endpoint] = []
            for label, start, targets in servers:
                print(f"{label}: starting", flush=True)
                try:
                    base = stack.enter_context(start())
                except (RuntimeError, OSError) as error:
                    # A peer that cannot run is reported, not fatal; Lykeion's failure is.
                    if label == "lykeion":
                        raise
                    print(f"{label} failed: {error}", file=sys.stderr)
                    for target in targets:
                        results["servers"][target.name] = {
                            "error": f"{type(error).__name__}: {error}"
                        }
                    continue
                for target in targets:
                    results["agreement"][target.name] = agree(base, target, work, expected)
                    endpoints.append(Endpoint(target, base))
            results["servers"].update(measure(endpoints, work, args.concurrency))
    ok = {k: v for k, v in results["servers"].items() if "error" not in v}
    results["ratios"] = ratios(ok)
    for peer, key in (("mlserver V2", "mlserver"), ("mlflow serve", "mlflow")):
        pair = results["ratios"].get(f"lykeion /predict / {peer}")
        if pair is not None:
            results[f"lykeion_p99_over_{key}_p99_batch1"] = pair["sequential_1"]["p99"]
    results["lykeion_p99_over_mlserver_p99_batch1_target"] = 0.5
    results["seconds"] = time.perf_counter() - started
    results["finished"] = datetime.now(UTC).isoformat()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(report(results)))
    print(f"\nwritten to {args.out} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
