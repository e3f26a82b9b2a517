"""Operator throughput and memory at N Models, against the bare API server as the peer.

    python benchmarks/operator.py [--models 500] [--out benchmarks/results/operator.json]

Scenarios, each on a fresh real etcd + kube-apiserver:
  resume    N Models (plus their family and features) exist, the operator starts: time
            from start until every Model's status.observedGeneration is current.
  live      the operator runs while N Models are created by 8 client threads: time from
            the first create until all are reconciled.
  peer      the same N status patches sent by a plain kubernetes client (8 threads), no
            operator: the floor set by the API server and etcd on this machine.
Reported: reconciles/s, the operator's peak RSS (VmHWM), and the ratio to the peer.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, watch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lykeion import GROUP, VERSION
from lykeion.kube import api_client
from lykeion.local.controlplane import LYKEION_CRDS, ControlPlane
from tests import objects
from tests.support import Operator

THREADS = 8


def _models(api: client.ApiClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, "default", "models"
    )["items"]
    return items


def _wait_all_current(api: client.ApiClient, n: int, timeout: float = 600) -> None:
    """Follow a watch (not a polling LIST, which would steal the API server's CPU)."""
    current: dict[str, bool] = {}
    deadline = time.monotonic() + timeout
    custom = client.CustomObjectsApi(api)
    while time.monotonic() < deadline:
        listing = custom.list_namespaced_custom_object(GROUP, VERSION, "default", "models")
        for m in listing["items"]:
            current[m["metadata"]["name"]] = _is_current(m)
        if len(current) == n and all(current.values()):
            return
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            "models",
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=30,
        )
        for event in stream:
            m = event["object"]
            current[m["metadata"]["name"]] = _is_current(m)
            if len(current) == n and all(current.values()):
                return
    raise TimeoutError(f"not all {n} Models reconciled within {timeout}s")


def _is_current(model: dict[str, Any]) -> bool:
    return bool(
        (model.get("status") or {}).get("observedGeneration") == model["metadata"]["generation"]
    )


def _create_models(api: client.ApiClient, n: int) -> None:
    custom = client.CustomObjectsApi(api)

    def create(i: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", "models", objects.model(version=f"{i // 1000}.{i % 1000}")
        )

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(n)))


def _seed(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "modelfamilies", objects.family()
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", "featuremanifests", objects.manifest()
    )


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _plane(root: Path, name: str) -> ControlPlane:
    plane = ControlPlane(root / name).start()
    plane.install_crds(sorted(LYKEION_CRDS.glob("*.yaml")))
    return plane


def scenario_resume(root: Path, n: int) -> dict[str, float]:
    plane = _plane(root, "resume")
    try:
        api = api_client(plane.kubeconfig)
        _seed(api)
        _create_models(api, n)
        operator = Operator(
            plane.kubeconfig,
            root / "resume-operator.log",
            {"LYKEION_STATE_DIR": str(root / "runs")},
        )
        started = time.perf_counter()
        operator.start()
        _wait_all_current(api, n)
        elapsed = time.perf_counter() - started
        assert operator.process is not None
        rss = _peak_rss_mb(operator.process.pid)
        operator.stop()
        return {"seconds": elapsed, "reconciles_per_s": n / elapsed, "peak_rss_mb": rss}
    finally:
        plane.stop()


def scenario_live(root: Path, n: int) -> dict[str, float]:
    plane = _plane(root, "live")
    try:
        api = api_client(plane.kubeconfig)
        _seed(api)
        operator = Operator(
            plane.kubeconfig, root / "live-operator.log", {"LYKEION_STATE_DIR": str(root / "runs")}
        )
        operator.start()
        started = time.perf_counter()
        _create_models(api, n)
        created = time.perf_counter() - started
        _wait_all_current(api, n)
        elapsed = time.perf_counter() - started
        assert operator.process is not None
        rss = _peak_rss_mb(operator.process.pid)
        operator.stop()
        return {
            "seconds": elapsed,
            "create_seconds": created,
            "reconciles_per_s": n / elapsed,
            "peak_rss_mb": rss,
        }
    finally:
        plane.stop()


def scenario_peer(root: Path, n: int) -> dict[str, float]:
    plane = _plane(root, "peer")
    try:
        api = api_client(plane.kubeconfig)
        _create_models(api, n)
        custom = client.CustomObjectsApi(api)
        names = [m["metadata"]["name"] for m in _models(api)]
        status = {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Resolved",
                    "message": "family and features resolved",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ],
        }

        def patch(name: str) -> None:
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, "default", "models", name, {"status": status}
            )

        started = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(patch, names))
        elapsed = time.perf_counter() - started
        return {"seconds": elapsed, "reconciles_per_s": n / elapsed, "peak_rss_mb": float("nan")}
    finally:
        plane.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "operator.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lykeion-bench-") as tmp:
        root = Path(tmp)
        results = {
            "peer": scenario_peer(root, args.models),
            "resume": scenario_resume(root, args.models),
            "live": scenario_live(root, args.models),
        }
    peer_rate = results["peer"]["reconciles_per_s"]
    for row in results.values():
        row["ratio_to_peer"] = row["reconciles_per_s"] / peer_rate
    print(f"\nOperator benchmark, N={args.models} Models (target: >= 50 reconciles/s, < 300 MB)\n")
    print(f"{'scenario':<10}{'seconds':>10}{'rec/s':>10}{'vs peer':>10}{'peak MB':>10}")
    for name, row in results.items():
        print(
            f"{name:<10}{row['seconds']:>10.2f}{row['reconciles_per_s']:>10.1f}"
            f"{row['ratio_to_peer']:>10.2f}{row['peak_rss_mb']:>10.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"models": args.models, "results": results}, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
