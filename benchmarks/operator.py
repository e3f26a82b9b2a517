"""Operator throughput and memory at N Models, against the bare API server as the peer.

    python benchmarks/operator.py [--models 500] [--out benchmarks/results/operator.json]
    python benchmarks/operator.py --cluster [--models 500] [--operator-cpu 1]   # Linux, root

Scenarios, each on a fresh real etcd + kube-apiserver:
  resume    N Models (plus their family and features) exist, the operator starts: time
            from start until every Model's status.observedGeneration is current.
  live      the operator runs while N Models are created by 8 client threads: time from
            the first create until all are reconciled.
  peer      the same N status patches sent by a plain kubernetes client (8 threads), no
            operator: the floor set by the API server and etcd on this machine.
Reported: reconciles/s, the operator's peak RSS (VmHWM), and the ratio to the peer.

`--cluster`: the operator in its pod instead, in one run of the one-node cluster that
`lykectl up --cluster` starts (`lykeion.cluster.NodeCluster`, the images from the
Dockerfile, the chart installed by helm; torn down at the end). The same objects as above
(family, FeatureManifest `rider-activity` reading `rides.csv`, which the data root does not
hold in either mode, so neither materializes it and no Model trains; its pipeline run may
overlap the measurement in both; N Models), in this order:
  live      the operator pod the chart started runs while N Models are created in
            `default` (family and features first, once the operator has seen them).
  peer      the operator scaled to 0; N Models created in `bench-peer` and the same
            status patches sent by the admin's plain client (8 threads); then deleted.
  resume    the live run's Models deleted (the running operator removes its finalizers),
            the operator scaled to 0, N Models created in `default`, the operator scaled
            to 1: time from the scale-up (pod scheduled, container started, kopf's listing
            included) until every Model is current.
Memory is read on the node, which is this host: the operator container's cgroup
(`memory.max_usage_in_bytes` of cgroup v1, `memory.peak` of v2: page cache included) and
VmHWM of the container's processes (the figure the local scenarios report). The operator
talks to the API server as its ServiceAccount (API Priority and Fairness applies); the
peer as the cluster's admin (exempt), as the local scenarios' clients do.
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

from lykectl import cluster_mode
from lykeion import GROUP, VERSION
from lykeion.conditions import get as get_condition
from lykeion.kube import api_client
from lykeion.local.controlplane import LYKEION_CRDS, ControlPlane
from tests import objects
from tests.support import Operator

THREADS = 8


def _models(api: client.ApiClient, namespace: str = "default") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "models"
    )["items"]
    return items


def _wait_all_current(
    api: client.ApiClient, n: int, timeout: float = 600, namespace: str = "default"
) -> None:
    """Follow a watch (not a polling LIST, which would steal the API server's CPU)."""
    current: dict[str, bool] = {}
    deadline = time.monotonic() + timeout
    custom = client.CustomObjectsApi(api)
    while time.monotonic() < deadline:
        listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "models")
        for m in listing["items"]:
            current[m["metadata"]["name"]] = _is_current(m)
        if len(current) == n and all(current.values()):
            return
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
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


def _create_models(api: client.ApiClient, n: int, namespace: str = "default") -> None:
    custom = client.CustomObjectsApi(api)

    def create(i: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "models", objects.model(version=f"{i // 1000}.{i % 1000}")
        )

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(n)))


def _seed(api: client.ApiClient, namespace: str = "default") -> None:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelfamilies", objects.family()
    )
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "featuremanifests", objects.manifest()
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


def scenario_resume(root: Path, n: int) -> dict[str, Any]:
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
        features = _materialized(api, "default")
        operator.stop()
        return {
            "seconds": elapsed, "reconciles_per_s": n / elapsed, "peak_rss_mb": rss,
            "features": features,
        }  # fmt: skip
    finally:
        plane.stop()


def scenario_live(root: Path, n: int) -> dict[str, Any]:
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
        features = _materialized(api, "default")
        operator.stop()
        return {
            "seconds": elapsed,
            "create_seconds": created,
            "reconciles_per_s": n / elapsed,
            "peak_rss_mb": rss,
            "features": features,
        }
    finally:
        plane.stop()


def scenario_peer(root: Path, n: int) -> dict[str, float]:
    plane = _plane(root, "peer")
    try:
        return _peer(api_client(plane.kubeconfig), n)
    finally:
        plane.stop()


def _peer(api: client.ApiClient, n: int, namespace: str = "default") -> dict[str, float]:
    """N Models created in `namespace`, then the status patch a reconcile writes sent for
    each by 8 threads of a plain client: its seconds and patches/s."""
    _create_models(api, n, namespace)
    custom = client.CustomObjectsApi(api)
    names = [m["metadata"]["name"] for m in _models(api, namespace)]
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
            GROUP, VERSION, namespace, "models", name, {"status": status}
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(patch, names))
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "reconciles_per_s": n / elapsed, "peak_rss_mb": float("nan")}


# -- the operator in its pod (--cluster) -----------------------------------------------

OPERATOR_CONTAINER = "operator"
CGROUP_ROOTS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))
"""cgroup v1's memory hierarchy, then the unified (v2) one: where the kubelet (cgroupfs
driver) puts `kubepods/<qos>/pod<uid>/<container id>`."""


def _operator_pods(api: client.ApiClient) -> list[client.V1Pod]:
    """The chart's operator pods (its Deployment's selector), terminating ones included."""
    ns = cluster_mode.NAMESPACE
    deployment = client.AppsV1Api(api).read_namespaced_deployment(cluster_mode.RELEASE, ns)
    labels = deployment.spec.selector.match_labels
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    pods: list[client.V1Pod] = (
        client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items
    )
    return pods


def _scale_operator(api: client.ApiClient, replicas: int) -> None:
    """Set the operator Deployment's replicas (0 or 1); returns at once."""
    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        cluster_mode.RELEASE, cluster_mode.NAMESPACE, {"spec": {"replicas": replicas}}
    )


def _wait_operator(api: client.ApiClient, running: bool, timeout: float = 180) -> None:
    """Wait until one operator pod is Ready (`running`) or none is left; TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = _operator_pods(api)
        if not running and not pods:
            return
        ready = [
            p
            for p in pods
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        if running and len(ready) == 1 and len(pods) == 1:
            return
        time.sleep(0.5)
    raise TimeoutError(f"operator pod {'Ready' if running else 'gone'}: not within {timeout}s")


def _cgroup_dir(container_id: str) -> Path:
    """The container's memory cgroup directory on this host (the node); FileNotFoundError
    when no kubepods cgroup holds it (the node is another machine)."""
    for root in CGROUP_ROOTS:
        for found in root.glob(f"kubepods/**/{container_id}"):
            if found.is_dir():
                return found
    raise FileNotFoundError(f"no kubepods cgroup of container {container_id} on this host")


def _vm_hwm_mb(pid: int) -> float:
    """VmHWM of process `pid` (MB); NaN when it is gone or has none (a kernel thread)."""
    try:
        return _peak_rss_mb(pid)
    except OSError:
        return float("nan")


def _operator_memory(api: client.ApiClient) -> dict[str, float]:
    """The running operator container's memory, read on the node (this host), in MB:
    `cgroup_peak_mb`, its cgroup's peak usage since the container started (page cache
    included: v1 `memory.max_usage_in_bytes`, v2 `memory.peak`), and `peak_rss_mb`, the
    highest VmHWM among the processes in that cgroup (the operator's Python process)."""
    (pod,) = [p for p in _operator_pods(api) if p.metadata.deletion_timestamp is None]
    status = next(c for c in pod.status.container_statuses if c.name == OPERATOR_CONTAINER)
    cgroup = _cgroup_dir(status.container_id.split("://", 1)[1])
    peak_file = next(
        f for f in (cgroup / "memory.max_usage_in_bytes", cgroup / "memory.peak") if f.exists()
    )
    pids = [int(line) for line in (cgroup / "cgroup.procs").read_text().split()]
    return {
        "cgroup_peak_mb": int(peak_file.read_text()) / 2**20,
        "peak_rss_mb": max((_vm_hwm_mb(pid) for pid in pids), default=float("nan")),
        "operator_restarts": float(status.restart_count),
    }


def _delete_models(api: client.ApiClient, namespace: str, timeout: float = 600) -> None:
    """Delete every Model of `namespace` and wait until they are gone (a running operator
    removes its finalizers)."""
    custom = client.CustomObjectsApi(api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "models")
    deadline = time.monotonic() + timeout
    while _models(api, namespace):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Models of {namespace} not gone within {timeout}s")
        time.sleep(1)


def _materialized(api: client.ApiClient, namespace: str) -> str:
    """`status/reason` of the FeatureManifest's Materialized condition (to show that
    neither mode materialized it), or `not reported`."""
    body = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "featuremanifests", objects.manifest()["metadata"]["name"]
    )
    found = get_condition((body.get("status") or {}).get("conditions") or [], "Materialized")
    return f"{found['status']}/{found.get('reason')}" if found else "not reported"


def _wait_seen(api: client.ApiClient, namespace: str, timeout: float = 120) -> None:
    """Wait until the operator has written the FeatureManifest's status: it has seen the
    family and features, as the local live scenario's operator has by its readiness. Its
    pipeline run (a Job here, a process there) may still be going, in both modes."""
    deadline = time.monotonic() + timeout
    while _materialized(api, namespace) == "not reported":
        if time.monotonic() > deadline:
            raise TimeoutError(f"the operator did not report the features within {timeout}s")
        time.sleep(0.5)


def _request_operator_cpu(api: client.ApiClient, cpu: str) -> None:
    """Set the operator container's CPU request (a Kubernetes quantity, e.g. "1") and wait
    for its new pod to be Ready. The request is the pod's CPU weight (cgroup shares, 102
    for the chart's 100m) against the other pods when the cores are busy."""
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": OPERATOR_CONTAINER, "resources": {"requests": {"cpu": cpu}}}
    ]}}}}  # fmt: skip
    _scale_operator(api, 0)
    _wait_operator(api, running=False)
    client.AppsV1Api(api).patch_namespaced_deployment(
        cluster_mode.RELEASE, cluster_mode.NAMESPACE, patch
    )
    _scale_operator(api, 1)
    _wait_operator(api, running=True)


def cluster_scenarios(n: int, operator_cpu: str | None = None) -> dict[str, dict[str, Any]]:
    """live, peer and resume (module docstring) in one run of `lykectl up --cluster` in a
    throwaway directory, torn down (`lykectl down`) at the end; `operator_cpu`, when given,
    replaces the chart's CPU request of the operator container first. Raises CliError when
    the cluster cannot start, TimeoutError when a step does not finish in time."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="lykeion-bench-operator-cluster-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        state, _ = cluster_mode.up(workdir, timeout=180.0)
        print(f"  lykectl up --cluster: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        try:
            api = api_client(state.kubeconfig)
            ns = cluster_mode.WORKLOAD_NAMESPACE  # holds the chart's workload ServiceAccount
            _wait_operator(api, running=True)
            if operator_cpu:
                _request_operator_cpu(api, operator_cpu)

            _seed(api, ns)
            _wait_seen(api, ns)
            started = time.perf_counter()
            _create_models(api, n, ns)
            created = time.perf_counter() - started
            _wait_all_current(api, n, namespace=ns)
            elapsed = time.perf_counter() - started
            results["live"] = {
                "seconds": elapsed, "create_seconds": created, "reconciles_per_s": n / elapsed,
                **_operator_memory(api), "features": _materialized(api, ns),
            }  # fmt: skip
            print(f"  live: {elapsed:.1f} s", file=sys.stderr)

            started = time.perf_counter()
            _delete_models(api, ns)
            results["live"]["delete_seconds"] = time.perf_counter() - started
            _scale_operator(api, 0)
            _wait_operator(api, running=False)

            client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench-peer"}})
            results["peer"] = _peer(api, n, "bench-peer")
            _delete_models(api, "bench-peer")  # no operator: no finalizers to wait for
            print(f"  peer: {results['peer']['seconds']:.1f} s", file=sys.stderr)

            _create_models(api, n, ns)
            started = time.perf_counter()
            _scale_operator(api, 1)
            _wait_all_current(api, n, namespace=ns)
            elapsed = time.perf_counter() - started
            results["resume"] = {
                "seconds": elapsed, "reconciles_per_s": n / elapsed,
                **_operator_memory(api), "features": _materialized(api, ns),
            }  # fmt: skip
            print(f"  resume: {elapsed:.1f} s", file=sys.stderr)
        finally:
            started = time.perf_counter()
            cluster_mode.down(workdir)
            print(f"  lykectl down: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument(
        "--cluster", action="store_true", help="the operator in its pod (Linux, root)"
    )
    parser.add_argument(
        "--operator-cpu",
        help="with --cluster: the operator container's CPU request (default: the chart's 100m)",
    )
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/operator.json "
                        "(operator-cluster.json with --cluster)")  # fmt: skip
    args = parser.parse_args()
    results: dict[str, dict[str, Any]]
    if args.cluster:
        results = cluster_scenarios(args.models, args.operator_cpu)
    else:
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
    where = "operator in its pod on the one-node cluster" if args.cluster else "local operator"
    print(
        f"\nOperator benchmark, N={args.models} Models, {where} "
        "(target: >= 50 reconciles/s, < 300 MB)\n"
    )
    header = f"{'scenario':<10}{'seconds':>10}{'rec/s':>10}{'vs peer':>10}{'peak MB':>10}"
    print(header + (f"{'cgroup MB':>11}" if args.cluster else ""))
    for name, row in results.items():
        print(
            f"{name:<10}{row['seconds']:>10.2f}{row['reconciles_per_s']:>10.1f}"
            f"{row['ratio_to_peer']:>10.2f}{row.get('peak_rss_mb', float('nan')):>10.1f}"
            + (f"{row.get('cgroup_peak_mb', float('nan')):>11.1f}" if args.cluster else "")
        )
    if args.cluster:
        print("\npeak MB: VmHWM of the operator's process; cgroup MB: its container's cgroup "
              "peak (page cache included), both read on the node (this host)")  # fmt: skip
    out = args.out or Path(__file__).parent / "results" / (
        "operator-cluster.json" if args.cluster else "operator.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "models": args.models,
        "cluster": args.cluster,
        "operator_cpu": args.operator_cpu,
        "results": results,
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
