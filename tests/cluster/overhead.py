"""What Seldon's and KServe's data planes add to a prediction, against the Lykeion server
directly, on the one-node cluster with their own controllers (the cluster tests' session
fixtures). Not a test CI runs (its name does not match `test_*.py`): `python
benchmarks/cluster.py --controllers` runs it through pytest, or name it on pytest's command
line. Writes `$LYKEION_OVERHEAD_OUT` (JSON; default benchmarks/results/controllers.json)
with `$LYKEION_OVERHEAD_REQUESTS` (default 400) one-key predictions per path.

The direct path: a pod running the Lykeion server exactly as Lykeion rendered it into the
SeldonDeployment's predictor (its image, configuration and data volume), reached at its
pod IP from the node. Then, in the same run, on sequential keep-alive connections in turns
(benchmarks/load.py), each serving system against that pod, with each protocol also sent
to the pod itself so that protocol and hop are told apart:

  Seldon   its Service (Seldon v1 protocol; single-model mode: Service -> the predictor
           pod running the Lykeion server, no executor), the pod with the v1 protocol,
           the pod with Lykeion's /predict;
  KServe   its transformer's Service (V2; RawDeployment: Service -> the Lykeion server as
           transformer -> the predictor's Service -> MLServer's MLflow runtime), the pod
           with V2, the pod with Lykeion's /predict.

Seldon and KServe serve the same Lykeion Deployment in turn (one per family and segment),
so each is measured while it serves, the direct pod throughout. Everything shares the
machine's two cores: the load generator, the cluster, the servers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lykeion.cluster import NodeCluster
from lykeion.serving_controllers import ServingController
from tests.cluster import serving
from tests.cluster.conftest import ROOT
from tests.support import Cluster

sys.path.insert(0, str(ROOT / "benchmarks"))
import load

NS = serving.NS
DIRECT = "overhead-direct"
DIRECT_PORT = 9000
"""The port Lykeion renders the server at in a Seldon predictor (`SELDON_PORT`)."""


def _direct_pod(cluster: NodeCluster, sdep: dict[str, Any]) -> str:
    """Start the Lykeion server of the SeldonDeployment's first predictor as a plain pod
    (no owner, no Lykeion or Seldon labels: nothing else selects or deletes it); its
    `http://<pod IP>:<port>` once Ready."""
    pod_spec = json.loads(json.dumps(sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]))
    cluster.run_kubectl("delete", "pod", "-n", NS, DIRECT, "--ignore-not-found", "--wait=true")
    cluster.apply([{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": DIRECT, "namespace": NS, "labels": {"app": DIRECT}},
        "spec": pod_spec,
    }])  # fmt: skip
    cluster.run_kubectl("wait", "--for=condition=Ready", f"pod/{DIRECT}", "-n", NS,
                        "--timeout=300s")  # fmt: skip
    pod = json.loads(cluster.run_kubectl("get", "pod", "-n", NS, DIRECT, "-o", "json").stdout)
    return f"http://{pod['status']['podIP']}:{DIRECT_PORT}"


def _bodies(make: Any, requests: int) -> list[bytes]:
    """`requests` one-key request bodies (`make([key])`), keys r0..r199 in turn."""
    return [json.dumps(make([f"r{i % 200}"])).encode() for i in range(requests)]


def _measure(
    paths: list[tuple[str, str, Any]], token: str, requests: int
) -> dict[str, dict[str, float]]:
    """`load.sequential` over `paths` ((name, url, body maker)), each answer checked to be
    a 200 (load's own check)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    endpoints = [load.Endpoint(name, url, headers=headers) for name, url, _ in paths]
    bodies = {name: _bodies(make, requests) for name, _, make in paths}
    return load.sequential(endpoints, bodies)


def _ratios(figures: dict[str, dict[str, float]], system: str, direct: str) -> dict[str, float]:
    """`system`'s p50, p99 and requests/s over `direct`'s (same protocol)."""
    a, b = figures[system], figures[direct]
    return {
        "p50 ratio": round(a["p50_ms"] / b["p50_ms"], 2),
        "p99 ratio": round(a["p99_ms"] / b["p99_ms"], 2),
        "rps ratio": round(a["rps"] / b["rps"], 2),
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a text table (ms, requests/s, ratios to the direct path with the
    same protocol)."""
    lines = [f"{'one-key predictions':<40}{'p50 ms':>8}{'p99 ms':>8}{'req/s':>8}"
             f"{'p50 x':>7}{'p99 x':>7}{'rps x':>7}"]  # fmt: skip
    for system in ("seldon", "kserve"):
        part = result.get(system) or {}
        ratios = part.get("ratios") or {}
        for name, s in (part.get("latency") or {}).items():
            r = ratios.get(name) or {}
            lines.append(
                f"{name:<40}{s['p50_ms']:>8.2f}{s['p99_ms']:>8.2f}{s['rps']:>8.1f}"
                + "".join(
                    f"{r[k]:>7.2f}" if k in r else f"{'':>7}"
                    for k in ("p50 ratio", "p99 ratio", "rps ratio")
                )
            )
    return "\n".join(lines)


def test_overhead_of_seldon_and_kserve_against_the_lykeion_server(
    installed: NodeCluster,
    seldon: ServingController,
    kserve: ServingController,
    lykeion_api: Cluster,
    reference_predictions: list[list[float]],
) -> None:
    requests = int(os.environ.get("LYKEION_OVERHEAD_REQUESTS", "400"))
    out = Path(
        os.environ.get("LYKEION_OVERHEAD_OUT", ROOT / "benchmarks" / "results" / "controllers.json")
    )
    token = serving.caller_token(installed)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(),
        "requests per path": requests,
    }
    reference = serving.flat(reference_predictions)
    try:
        serving.serve_ready(installed, lykeion_api, "seldon", seldon)
        sdep = serving.served_object(installed, "seldondeployment", serving.DEPLOYMENT)
        direct = _direct_pod(installed, sdep)
        seldon_url = serving.status_service_url(installed, sdep)
        # Both answer the reference before anything is timed.
        assert serving.seldon_predict(seldon_url, token)[1] == pytest.approx(reference, rel=1e-9)
        assert serving.seldon_predict(direct, token)[1] == pytest.approx(reference, rel=1e-9)
        paths = [
            ("seldon: Service, v1 protocol", seldon_url + serving.SELDON_PATH, serving.seldon_body),
            ("seldon: server pod, v1 protocol", direct + serving.SELDON_PATH, serving.seldon_body),
            ("seldon: server pod, /predict", direct + "/predict",
             lambda keys: {"keys": [{"rider_id": k} for k in keys]}),
        ]  # fmt: skip
        begin = time.monotonic()
        figures = _measure(paths, token, requests)
        result["seldon"] = {
            "latency": figures,
            "ratios": {paths[0][0]: _ratios(figures, paths[0][0], paths[1][0])},
            "seconds": round(time.monotonic() - begin, 1),
        }

        serving.serve_ready(installed, lykeion_api, "kserve", kserve)
        isvc = serving.wait_isvc_ready(installed, 300, kserve)
        kserve_url = serving.status_service_url(installed, isvc)
        assert serving.v2_predict(kserve_url, token) == pytest.approx(reference, rel=1e-9)
        assert serving.v2_predict(direct, token) == pytest.approx(reference, rel=1e-9)
        paths = [
            ("kserve: transformer Service, V2", kserve_url + serving.V2_PATH, serving.v2_body),
            ("kserve: server pod, V2", direct + serving.V2_PATH, serving.v2_body),
            ("kserve: server pod, /predict", direct + "/predict",
             lambda keys: {"keys": [{"rider_id": k} for k in keys]}),
        ]  # fmt: skip
        begin = time.monotonic()
        figures = _measure(paths, token, requests)
        result["kserve"] = {
            "latency": figures,
            "ratios": {paths[0][0]: _ratios(figures, paths[0][0], paths[1][0])},
            "seconds": round(time.monotonic() - begin, 1),
        }
    finally:
        installed.run_kubectl("delete", "pod", "-n", NS, DIRECT, "--ignore-not-found",
                              "--wait=false")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n" + table(result))
