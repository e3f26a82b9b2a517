"""The chart's Feature API (`featureApi.enabled`) in its pod behind its Service: it reads
the example's features from the online store on the shared volume and reviews each
caller's token and `get featuremanifests/data` right (access on, the chart's default)."""

from __future__ import annotations

import csv
import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

from lykeion.cluster import NodeCluster
from lykeion.kube import api_client
from tests.cluster.conftest import NAMESPACE, RELEASE, ROOT, WORKLOAD_NAMESPACE, helm_binary
from tests.support import Cluster

QUERY = '{ rider(id: "r42") { age drop_offs_count } }'


def _query(url: str, token: str | None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"{url}/graphql", json.dumps({"query": QUERY}).encode(), headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _reader_token(cluster: NodeCluster) -> str:
    ns = WORKLOAD_NAMESPACE
    cluster.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "reader", "namespace": ns}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "read-features", "namespace": ns},
             "rules": [{"apiGroups": ["lykeion.io"], "resources": ["featuremanifests/data"],
                        "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "reader-features", "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "read-features"},
             "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]},
        ]
    )  # fmt: skip
    return cluster.run_kubectl("create", "token", "reader", "-n", ns).stdout.strip()


def test_the_feature_api_serves_the_example_to_a_bound_caller_only(
    installed: NodeCluster,
) -> None:
    lykeion = Cluster(api_client(str(installed.kubeconfig)))
    lykeion.wait_condition(
        "FeatureManifest", WORKLOAD_NAMESPACE, "rider-activity", "True",
        type_="Materialized", timeout=420,
    )  # fmt: skip
    # Turned on by an upgrade of the release, as a platform team would.
    helm = helm_binary()
    subprocess.run(
        [helm, f"--kubeconfig={installed.kubeconfig}", "upgrade", RELEASE,
         str(ROOT / "charts" / "lykeion"), "--namespace", NAMESPACE, "--reuse-values",
         "--set", "featureApi.enabled=true"],
        check=True, capture_output=True,
    )  # fmt: skip
    name = f"{RELEASE}-feature-api"
    installed.run_kubectl(
        "rollout", "status", "-n", NAMESPACE, f"deployment/{name}", "--timeout=120s"
    )
    service = json.loads(
        installed.run_kubectl("get", "service", "-n", NAMESPACE, name, "-o", "json").stdout
    )
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    status, body = _query(url, None)
    assert status == 401, body
    token = _reader_token(installed)
    status, body = _query(url, token)
    assert status == 200, body
    with (ROOT / "examples" / "forward" / "data" / "rides.csv").open() as f:
        rides = [r for r in csv.DictReader(f) if r["rider_id"] == "r42"]
    newest = max(rides, key=lambda r: r["event_time"])
    rider = body["data"]["rider"]
    # The newest ride's age (within the 365-day TTL); no ride in the last 30 days.
    assert str(rider["age"]) == newest["age"]
    assert str(rider["drop_offs_count"]) == "0"
