"""The example from apply to prediction in cluster mode against the embedded platform, per
stage, and prediction latency through the Services against the model server directly.

    python benchmarks/cluster.py [--requests 500] [--no-embedded]
        [--out benchmarks/results/cluster.json]

Cluster mode (Linux, root): `lykectl up --cluster` in a throwaway directory — the one-node
cluster (`lykeion.cluster.NodeCluster`; the host's one-cluster lock: waits while another
holds it), the images from the Dockerfile (`scripts/build-images.sh`, built when stale),
the chart installed by helm with the data volume on the node and its MLflow server — and
`lykectl down` at the end. Embedded: `lykectl
up`'s processes (etcd, kube-apiserver, MLflow, the operator with the `local` executor) in a
throwaway directory. In both, the same files of `examples/forward/` are applied one after
the other, each once the previous stage is done, and each stage is timed from its apply:

  pipeline Job     family + features applied -> FeatureManifest `Materialized`
  training Job     model applied -> Model `Evaluated` (trained, registered, gate passed)
  server pods      deployment applied -> Deployment `Ready` (server and router Ready)
  first prediction one POST /predict through the router (cluster: its Service's ClusterIP
                   from the node; embedded: the Deployment's status.endpoint)

Then, cluster mode only, `--requests` sequential predictions of one key each, in turns of
100, on keep-alive connections (benchmarks/load.py): through the router's Service
(kube-proxy, router, kube-proxy, server), through the version's Service (kube-proxy,
server), and to the server pod's IP directly. Reported: p50/p99 (ms) and requests/s. Each
request carries a ServiceAccount token the servers review (access on, the chart's default;
reviews are cached by the servers). Everything shares the machine's cores: the load
generator, the cluster and the servers.

    python benchmarks/cluster.py --controllers [--requests 400]
        [--out benchmarks/results/controllers.json]

What Seldon Core's and KServe's data planes add, against the Lykeion server directly,
through their own controllers and admission webhooks (`lykeion.serving_controllers`):
p50/p99 and requests/s through Seldon's Service (v1 protocol) and through KServe's
RawDeployment transformer Service (V2), and to a pod running the Lykeion server as
Lykeion rendered it, with each protocol and with /predict, in the same run
(tests/cluster/overhead.py says how). It runs as a pytest session of the cluster tests'
own fixtures (tests/cluster/conftest.py, serving.py): the controllers with their webhooks,
CRDs and configuration, the chart installed with KServe's storage scheme for MLflow's
artifacts, and the example trained in the cluster are set up there, and `lykectl up
--cluster` sets up none of the controllers, so they are not set up a second way here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import load
import numpy as np

from lykectl import cluster_mode, embedded
from lykectl.http import kubeconfig_token

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "forward"
NAMESPACE = "default"
GOING = {"Backfilling", "Pending", "NotRegistered", "Training", "WaitingForReferences",
         "NotTrained", "VersionsStarting", "NoVersionServing", "ModelNotEvaluated",
         "FeaturesNotMaterialized", "ModelVersionNotFound", "RolloutHeld"}  # fmt: skip
"""Reasons of a False condition that is still on its way."""
STAGES = {
    "pipeline Job": ([EXAMPLE / "family.yaml", EXAMPLE / "features.yaml"],
                     ("FeatureManifest", "rider-activity", "Materialized")),
    "training Job": ([EXAMPLE / "model.yaml"], ("Model", "forward-default-1.0", "Evaluated")),
    "server pods": ([EXAMPLE / "deployment.yaml"], ("Deployment", "forward-default", "Ready")),
}  # fmt: skip
KEYS = ["r42", "r7", "r150"]


class Kubectl:
    def __init__(self, kubectl: str, kubeconfig: str) -> None:
        self.base = [kubectl, f"--kubeconfig={kubeconfig}"]

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


def wait_true(kubectl: Kubectl, kind: str, name: str, type_: str, timeout: float) -> None:
    """Poll until condition `type_` is True; raise when it turns False for a reason that
    is not on its way, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    condition: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = kubectl.json("get", f"{kind.lower()}s.lykeion.io", "-n", NAMESPACE, name)
        except RuntimeError:
            body = {}
        conditions = (body.get("status") or {}).get("conditions") or []
        condition = next((c for c in conditions if c["type"] == type_), {})
        if condition.get("status") == "True":
            return
        if condition and condition.get("reason") not in GOING:
            break
        time.sleep(0.5)
    raise RuntimeError(f"{kind} {name}: {type_} is {condition or 'not reported'}")


def predict(url: str, token: str | None) -> tuple[float, dict[str, Any]]:
    body = json.dumps({"keys": [{"rider_id": k} for k in KEYS]}).encode()
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    started = time.perf_counter()
    request = urllib.request.Request(url.rstrip("/") + "/predict", body, headers)
    with urllib.request.urlopen(request, timeout=60) as answer:
        result: dict[str, Any] = json.loads(answer.read())
    return time.perf_counter() - started, result


def run_stages(
    kubectl: Kubectl, router_url: Callable[[], str], token: str | None, timeout: float
) -> tuple[dict[str, float], dict[str, Any]]:
    """Seconds per stage (from its apply), and the first prediction's answer."""
    seconds: dict[str, float] = {}
    for stage, (files, (kind, name, type_)) in STAGES.items():
        started = time.monotonic()
        for path in files:
            kubectl("apply", "--server-side", "-n", NAMESPACE, "-f", str(path))
        wait_true(kubectl, kind, name, type_, timeout)
        seconds[stage] = round(time.monotonic() - started, 2)
        print(f"  {stage}: {seconds[stage]} s", file=sys.stderr)
    took, answer = predict(router_url(), token)
    seconds["first prediction"] = round(took, 3)
    seconds["total"] = round(sum(seconds.values()), 2)
    return seconds, answer


def caller_token(kubectl: Kubectl) -> str:
    """A ServiceAccount allowed to predict with the namespace's Deployments, and its token."""
    manifests = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "bench-caller", "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "bench-predict", "namespace": NAMESPACE},
         "rules": [{"apiGroups": ["lykeion.io"], "resources": ["deployments/predict"],
                    "verbs": ["create"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "bench-caller-predict", "namespace": NAMESPACE},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "bench-predict"},
         "subjects": [{"kind": "ServiceAccount", "name": "bench-caller",
                       "namespace": NAMESPACE}]},
    ]  # fmt: skip
    kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": manifests}))  # fmt: skip
    return kubectl("create", "token", "bench-caller", "-n", NAMESPACE, "--duration=1h").strip()


def service_url(kubectl: Kubectl, name: str) -> str:
    service = kubectl.json("get", "service", "-n", NAMESPACE, name)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def latency(kubectl: Kubectl, token: str, requests: int) -> dict[str, Any]:
    """p50/p99 of one-key predictions through the router's Service, the version's Service,
    and to the server pod directly (in turns, on keep-alive connections)."""
    (pod,) = kubectl.json(
        "get", "pods", "-n", NAMESPACE, "-l", "lykeion.io/version=forward-default-1-0"
    )["items"]
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    targets = {
        "router Service": service_url(kubectl, "forward-default"),
        "version Service": service_url(kubectl, "forward-default-1-0"),
        "server pod directly": f"http://{pod['status']['podIP']}:{port}",
    }
    endpoints = [load.Endpoint(n, f"{u}/predict", headers=headers) for n, u in targets.items()]
    bodies = [json.dumps({"keys": [{"rider_id": f"r{i % 200}"}]}).encode() for i in range(requests)]
    return load.sequential(endpoints, {e.name: bodies for e in endpoints})


def cluster_mode_run(requests: int, timeout: float) -> dict[str, Any]:
    """`lykectl up --cluster` in a throwaway directory, the stages, the latencies, `lykectl
    down`."""
    with tempfile.TemporaryDirectory(prefix="lykeion-bench-cluster-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        state, _ = cluster_mode.up(workdir, timeout=180.0)
        up = round(time.monotonic() - started, 1)
        try:
            print(f"  lykectl up --cluster: {up} s", file=sys.stderr)
            kubectl = Kubectl(state.kubectl, state.kubeconfig)
            token = caller_token(kubectl)
            seconds, answer = run_stages(
                kubectl, lambda: service_url(kubectl, "forward-default"), token, timeout
            )
            measured = latency(kubectl, token, requests)
        finally:
            started = time.monotonic()
            cluster_mode.down(workdir)
            down = round(time.monotonic() - started, 1)
    return {
        "lykectl up --cluster (s)": up,
        "of which the node (s, from its start)": state.timings,
        "lykectl down (s)": down,
        "stages (s)": seconds,
        "prediction": answer["predictions"],
        "latency": measured,
    }


def embedded_run(timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lykeion-bench-embedded-") as tmp:
        workdir = Path(tmp)
        started = time.monotonic()
        platform, _ = embedded.up(workdir, timeout=120.0)
        up = round(time.monotonic() - started, 1)
        try:
            kubectl = Kubectl(platform.kubectl, platform.kubeconfig)

            def endpoint() -> str:
                body = kubectl.json("get", "deployments.lykeion.io", "-n", NAMESPACE,
                                    "forward-default")  # fmt: skip
                return str(body["status"]["endpoint"])

            seconds, answer = run_stages(
                kubectl, endpoint, kubeconfig_token(platform.kubeconfig), timeout
            )
        finally:
            embedded.down(workdir, purge=True)
    return {"platform up (s)": up, "stages (s)": seconds, "prediction": answer["predictions"]}


def table(result: dict[str, Any]) -> str:
    cluster, local = result.get("cluster") or {}, result.get("embedded") or {}
    stages = [*STAGES, "first prediction", "total"]
    lines = [f"{'stage (s, from its apply)':<28}{'cluster':>10}{'embedded':>10}"]
    for stage in stages:
        a = (cluster.get("stages (s)") or {}).get(stage, "-")
        b = (local.get("stages (s)") or {}).get(stage, "-")
        lines.append(f"{stage:<28}{a!s:>10}{b!s:>10}")
    if cluster.get("latency"):
        lines += ["", f"{'one-key predictions':<28}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}"]
        for name, s in cluster["latency"].items():
            lines.append(f"{name:<28}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['rps']:>10.1f}")
    return "\n".join(lines)


def controllers_run(requests: int, out: Path) -> int:
    """tests/cluster/overhead.py through pytest (its own one-node cluster session, with
    Seldon's and KServe's controllers), `requests` per path, its JSON written to `out`;
    pytest's exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "cluster", "-s",
         "-q", str(ROOT / "tests" / "cluster" / "overhead.py")],
        cwd=ROOT, check=False,
        env={**os.environ, "LYKEION_OVERHEAD_REQUESTS": str(requests),
             "LYKEION_OVERHEAD_OUT": str(out)},
    )  # fmt: skip
    return done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="per latency target")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per stage")
    parser.add_argument("--no-embedded", action="store_true", help="cluster mode only")
    parser.add_argument("--no-cluster", action="store_true", help="the embedded platform only")
    parser.add_argument(
        "--controllers", action="store_true", help="Seldon's and KServe's overhead only"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.controllers:
        out = args.out or ROOT / "benchmarks/results/controllers.json"
        sys.exit(controllers_run(args.requests, out))
    args.out = args.out or ROOT / "benchmarks/results/cluster.json"
    # Relative sources and labels resolve from here in the embedded platform, as for
    # `lykectl up` run in a checkout.
    os.chdir(ROOT)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(),
        "load average": os.getloadavg(),
        "requests": args.requests,
    }
    if not args.no_cluster:
        print("cluster mode", file=sys.stderr)
        result["cluster"] = cluster_mode_run(args.requests, args.timeout)
    if not args.no_embedded:
        print("embedded platform", file=sys.stderr)
        result["embedded"] = embedded_run(args.timeout)
    if "cluster" in result and "embedded" in result:
        # The same keys, the same definitions and commit: the same probabilities.
        apart = np.abs(
            np.array(result["cluster"]["prediction"], dtype=float)
            - np.array(result["embedded"]["prediction"], dtype=float)
        )
        result["prediction max abs difference"] = float(apart.max())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
