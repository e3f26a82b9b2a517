"""The cost of access by Kubernetes identity per request: uncached and cached.

    python benchmarks/access.py [--uncached 200] [--cached 20000] [--out FILE]

A real etcd + kube-apiserver (lykeion.local.controlplane, built by CI into ~/.cache/lykeion), a
ServiceAccount with a RoleBinding to `get featuremanifests/data`, and its token from the
TokenRequest API. Timed with `time.perf_counter_ns` around `AccessReviewer.check` (what the
Feature API and the model server await per request), on one event loop:

  uncached  a TokenReview and a SubjectAccessReview to the API server (the cache is
            emptied before each check: what the first request of a token costs, and every
            request's cost once the TTL ran out);
  cached    both answers from the TTL maps (every other request).

Reported: p50/p99 in milliseconds. The API server runs on the same machine: in a cluster
the uncached figure adds the network round trips to the API server.

With --http (what a client sees, access off against on): the model server of
benchmarks/serving.py (the same model, features in a SQLite online store) twice, access
off and access on (`ServerConfig.access: kubernetes`, each request carrying the token,
which holds `create deployments/predict`), beside MLServer given the full feature vector
(its peer in serving.py; skipped when scripts/install-mlserver.sh has not run); and the
Feature API twice, off and `--access kubernetes`, on the same keys (its peer, `feast
serve`, needs scripts/install-feast-benchmark.sh and benchmarks/features.py). Driven by
benchmarks/load.py (servers taking turns), V2 infer and a typed GraphQL lookup at batch 1,
sequential and with --concurrency threads. Reported: p50/p99/requests/s per server and the
ratios access on / off and, for the model server, each / MLServer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kubernetes import client

from lykeion.access import READ_FEATURES, AccessReviewer, ApiServer, Right
from lykeion.kube import api_client
from lykeion.local.controlplane import ControlPlane
from lykeion.local.ports import free_port

NAMESPACE = "bench"


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) / 1e6, 4),
        "p99_ms": round(p99 / 1e6, 4),
        "n": len(ordered),
    }


def _token(plane: ControlPlane) -> str:
    api = api_client(plane.kubeconfig)
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "reader"}})
    rules = [{"apiGroups": ["lykeion.io"], "resources": ["featuremanifests/data"],
              "verbs": ["get"]},
             {"apiGroups": ["lykeion.io"], "resources": ["deployments/predict"],
              "verbs": ["create"]}]  # fmt: skip
    rbac.create_namespaced_role(NAMESPACE, {"metadata": {"name": "reader"}, "rules": rules})
    rbac.create_namespaced_role_binding(NAMESPACE, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NAMESPACE}],
    })  # fmt: skip
    answer = core.create_namespaced_service_account_token(
        "reader", NAMESPACE, {"spec": {"expirationSeconds": 3600}}
    )
    return str(answer.status.token)


async def _measure(reviewer: AccessReviewer, token: str, uncached: int, cached: int) -> Any:
    header = f"Bearer {token}"
    right = Right.of(READ_FEATURES, NAMESPACE, "riders")
    await reviewer.check(header, right)  # connection pool warm
    cold: list[int] = []
    for _ in range(uncached):
        reviewer.identities = type(reviewer.identities)(reviewer.identities.ttl, 10_000)
        reviewer.decisions = type(reviewer.decisions)(reviewer.decisions.ttl, 10_000)
        started = time.perf_counter_ns()
        await reviewer.check(header, right)
        cold.append(time.perf_counter_ns() - started)
    warm: list[int] = []
    for _ in range(cached):
        started = time.perf_counter_ns()
        await reviewer.check(header, right)
        warm.append(time.perf_counter_ns() - started)
    await reviewer.close()
    return {"uncached": _percentiles(cold), "cached": _percentiles(warm)}


def _ratio(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {
        "p50": round(a["p50_ms"] / b["p50_ms"], 3),
        "p99": round(a["p99_ms"] / b["p99_ms"], 3),
        "rps": round(a["rps"] / b["rps"], 3),
    }


def _http(plane: ControlPlane, token: str, folder: Path, requests: int, workers: int) -> Any:
    """Model server and Feature API, access off and on, over HTTP (see the docstring)."""
    import sys
    from contextlib import ExitStack

    import orjson

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import load
    import serving

    from lykeion.features.view import FeatureView

    trained = serving.train(folder)
    body = serving.manifest()
    body["metadata"]["namespace"] = NAMESPACE
    online = folder / "online.db"
    table = serving.riders(2000, seed=3)
    serving.populate(online, FeatureView.from_body(body), table)
    (folder / "features.yaml").write_text(json.dumps(body))
    bearer = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    rng = np.random.default_rng(5)
    keys = rng.integers(0, len(table), requests).tolist()

    def v2(i: int) -> bytes:
        tensor = {"name": serving.KEY, "datatype": "BYTES", "shape": [1], "data": [f"r{i}"]}
        return orjson.dumps({"inputs": [tensor]})

    def graphql(i: int) -> bytes:
        query = "query Q($k: ID!) { rider(id: $k) { age avg_fare } }"
        return orjson.dumps({"query": query, "variables": {"k": f"r{i}"}})

    def model_server(name: str, access: str) -> Any:
        server_folder = folder / name
        server_folder.mkdir()
        config = {"name": serving.NAME, "version": "1", "namespace": NAMESPACE,
                  "model_uri": f"runs:/{trained.run_id}/model",
                  "tracking_uri": trained.tracking_uri, "manifests": [body],
                  "online_store": f"sqlite://{online}", "access": access}  # fmt: skip
        (server_folder / "config.json").write_text(json.dumps(config))
        endpoint = server_folder / "endpoint.json"
        command = [sys.executable, "-m", "lykeion.serving", "--config", "config.json",
                   "--access-kubeconfig", str(plane.kubeconfig), "--port", "0",
                   "--endpoint-file", str(endpoint)]  # fmt: skip
        return load.running(
            name, command, server_folder / "log",
            lambda: json.loads(endpoint.read_text())["url"] if endpoint.exists() else None,
            "/ready", cwd=server_folder,
        )  # fmt: skip

    def feature_api(name: str, access: str) -> Any:
        port = free_port()
        command = [sys.executable, "-m", "lykeion.feature_api", "--online", f"sqlite://{online}",
                   "--manifest", str(folder / "features.yaml"), "--access", access,
                   "--access-kubeconfig", str(plane.kubeconfig), "--port", str(port)]  # fmt: skip
        return load.running(
            name, command, folder / f"{name}.log", lambda: f"http://127.0.0.1:{port}", "/readyz"
        )

    results: dict[str, Any] = {"requests": requests, "concurrency": workers}
    with ExitStack() as stack:
        targets: list[load.Endpoint] = []
        bodies: dict[str, list[bytes]] = {}
        path = f"/v2/models/{serving.NAME}/infer"
        plain = serving.JSON_HEADERS
        for name, access, headers in (
            ("model server, access off", "off", plain),
            ("model server, access on", "kubernetes", bearer),
        ):
            base = stack.enter_context(
                model_server(name.replace(", ", "-").replace(" ", "-"), access)
            )
            targets.append(load.Endpoint(name, base + path, headers=headers))
            bodies[name] = [v2(i) for i in keys]
        try:
            base = stack.enter_context(
                serving.mlserver_server(trained, folder, serving.mlserver_bin())
            )
            peer = serving.mlserver_target(table)
            targets.append(load.Endpoint("mlserver V2", base + peer.path))
            bodies["mlserver V2"] = [peer.body([i]) for i in keys]
        except (RuntimeError, OSError) as error:
            results["mlserver"] = f"not run: {error}"
        for name, access, headers in (
            ("feature api, access off", "off", plain),
            ("feature api, access on", "kubernetes", bearer),
        ):
            base = stack.enter_context(
                feature_api(name.replace(", ", "-").replace(" ", "-"), access)
            )
            targets.append(load.Endpoint(name, base + "/graphql", headers=headers))
            bodies[name] = [graphql(i) for i in keys]
        for target in targets:  # every server answers before the clock starts
            answer = httpx.post(target.url, content=bodies[target.name][0],
                                headers=target.headers, timeout=60)  # fmt: skip
            if answer.status_code != 200 or b"error" in answer.content:
                raise RuntimeError(f"{target.name} answered {answer.status_code}: {answer.text}")
        measured = load.measure(targets, {"1": bodies}, workers, lambda line: print(line))
    results["servers"] = measured
    ratios: dict[str, Any] = {}
    for mode in ("sequential", "concurrent"):
        got = {name: block[mode]["1"] for name, block in measured.items()}
        for what in ("model server", "feature api"):
            on, off = got[f"{what}, access on"], got[f"{what}, access off"]
            ratios[f"{what} on / off, {mode}"] = _ratio(on, off)
        if "mlserver V2" in got:
            for state in ("off", "on"):
                ratios[f"model server {state} / mlserver, {mode}"] = _ratio(
                    got[f"model server, access {state}"], got["mlserver V2"]
                )
    results["ratios"] = ratios
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uncached", type=int, default=200)
    parser.add_argument("--cached", type=int, default=20_000)
    parser.add_argument("--http", action="store_true", help="also over HTTP against the peers")
    parser.add_argument("--http-requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lykeion-access-") as folder:
        plane = ControlPlane(Path(folder)).start()
        try:
            token = _token(plane)
            reviewer = AccessReviewer(ApiServer.from_kubeconfig(plane.kubeconfig), ttl=60.0)
            results = asyncio.run(_measure(reviewer, token, args.uncached, args.cached))
            if args.http:
                http_folder = Path(folder) / "http"
                http_folder.mkdir()
                results["http"] = _http(
                    plane, token, http_folder, args.http_requests, args.concurrency
                )
        finally:
            plane.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
