"""Time from a bad canary's first bad answer to its rollback, through the real operator.

    python benchmarks/rollout.py [--interval 30] [--min-requests 20] [--rate 20] [--out FILE]

A real etcd + kube-apiserver, MLflow tracking server and the operator with the local
executor (as the integration suite starts them). The example's features and two Models are
trained: 1.0 with serving defaults, 1.1 without, so every request 1.1 answers is a 422
(refused: `rider.avg_fare` is null for every rider now). A Deployment with
`spec.rollout` (steps 10/50/100, `--interval`, `--min-requests`) serves 1.0; then 1.1 is
declared while a client sends `--rate` single-key requests/s to the endpoint.

Reported: seconds from the first 422 the client received to the moment the `RolledBack`
condition was observed (polled every 0.2 s), the requests 1.1 answered meanwhile, and the
settings. Expected bound: the time the canary needs to answer `minRequests` at 10% of the
rate, plus one operator poll (`LYKEION_POLL_SECONDS`, 1 here) — independent of `interval`,
since a failing check rolls back as soon as there are enough requests.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lykeion.executors.local_endpoints import Process
from lykeion.kube import api_client
from lykeion.local.controlplane import ControlPlane
from lykeion.local.tracking_server import TrackingServer
from tests.integration.test_rollouts import EXAMPLE, NAME, Traffic
from tests.support import Cluster, Operator, load, wait_for

ROOT = Path(__file__).resolve().parents[1]


def run(interval: int, min_requests: int, rate: float, work: Path) -> dict[str, Any]:
    plane = ControlPlane(work / "plane").start()
    tracking = TrackingServer(work / "mlflow").start()
    operator: Operator | None = None
    try:
        plane.install_crds()
        state = work / "operator"
        state.mkdir(parents=True)
        operator = Operator(
            plane.kubeconfig, state / "operator.log",
            extra_env={
                "LYKEION_STATE_DIR": str(state / "runs"), "LYKEION_DATA_DIR": str(state / "data"),
                "LYKEION_DATA_ROOT": str(ROOT), "LYKEION_FEATURE_ENGINE": "duckdb",
                "LYKEION_POLL_SECONDS": "1", "LYKEION_MLFLOW_TRACKING_URI": tracking.url,
            },
        ).start()  # fmt: skip
        cluster = Cluster(api_client(plane.kubeconfig))
        ns = cluster.new_namespace("bench")
        for path in ("family.yaml", "features.yaml"):
            for doc in load(EXAMPLE / path):
                cluster.create(doc, ns)
        (model,) = load(EXAMPLE / "model.yaml")
        for version in ("1.0", "1.1"):
            body = copy.deepcopy(model)
            body["metadata"]["name"] = f"{NAME}-{version}"
            body["spec"]["version"] = version
            if version == "1.1":
                del body["spec"]["serving"]
            cluster.create(body, ns)
            # One after the other: concurrent first trainings race for the MLflow experiment.
            cluster.wait_condition("Model", ns, f"{NAME}-{version}", "True", timeout=900)
        (deployment,) = load(EXAMPLE / "deployment.yaml")
        deployment["spec"]["rollout"] = {
            "steps": [10, 50, 100], "interval": f"{interval}s",
            "checks": {"minRequests": min_requests, "maxLatencyRatio": 100},
        }  # fmt: skip
        cluster.create(deployment, ns)
        cluster.wait_condition("Deployment", ns, NAME, "True", timeout=300)
        endpoint = (cluster.get("Deployment", ns, NAME) or {})["status"]["endpoint"]
        with Traffic(endpoint, pause=1 / rate) as traffic:
            cluster.patch("Deployment", ns, NAME,
                          {"spec": {"versions": [{"version": "1.1", "traffic": 100}]}})  # fmt: skip
            wait_for(lambda: any(s == 422 for _, _, s in traffic.answers), 300, "a bad answer")
            cluster.wait_condition(
                "Deployment", ns, NAME, "True", type_="RolledBack", timeout=10 * interval + 120
            )
            rolled = time.monotonic()
        first_bad = next(t for t, _, s in traffic.answers if s == 422)
        bad = sum(1 for t, _, s in traffic.answers if s == 422 and t <= rolled)
        return {
            "seconds_first_bad_answer_to_rollback": round(rolled - first_bad, 2),
            "bad_answers_before_rollback": bad,
            "interval_s": interval, "min_requests": min_requests, "rate_per_s": rate,
            "canary_percent": 10, "poll_s": 1,
        }  # fmt: skip
    finally:
        if operator is not None:
            operator.stop()
        for pid_file in (work / "operator" / "runs").glob("*/_endpoints/*/*/pid"):
            Process(pid_file.parent).stop()
        tracking.stop()
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=int, default=30)
    parser.add_argument("--min-requests", type=int, default=20)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lykeion-rollout-") as work:
        result = run(args.interval, args.min_requests, args.rate, Path(work))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
