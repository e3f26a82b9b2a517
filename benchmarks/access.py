"""The cost of access by Kubernetes identity per request: uncached and cached.

    python benchmarks/access.py [--uncached 200] [--cached 20000] [--out FILE]

A real etcd + kube-apiserver (lykeion.controlplane, built by CI into ~/.cache/lykeion), a
ServiceAccount with a RoleBinding to `get featuremanifests/data`, and its token from the
TokenRequest API. Timed with `time.perf_counter_ns` around `AccessReviewer.check` (what the
Feature API and the model server await per request), on one event loop:

  uncached  a TokenReview and a SubjectAccessReview to the API server (the cache is
            emptied before each check: what the first request of a token costs, and every
            request's cost once the TTL ran out);
  cached    both answers from the TTL maps (every other request).

Reported: p50/p99 in milliseconds. The API server runs on the same machine: in a cluster
the uncached figure adds the network round trips to the API server.
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

from kubernetes import client

from lykeion.access import READ_FEATURES, AccessReviewer, ApiServer, Right
from lykeion.controlplane import ControlPlane
from lykeion.kube import api_client

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
              "verbs": ["get"]}]  # fmt: skip
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uncached", type=int, default=200)
    parser.add_argument("--cached", type=int, default=20_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lykeion-access-") as folder:
        plane = ControlPlane(Path(folder)).start()
        try:
            token = _token(plane)
            reviewer = AccessReviewer(ApiServer.from_kubeconfig(plane.kubeconfig), ttl=60.0)
            results = asyncio.run(_measure(reviewer, token, args.uncached, args.cached))
        finally:
            plane.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
