"""`helm install` of the chart into the one-node cluster with the images built from the
Dockerfile: the operator runs in its pod under the chart's ServiceAccount and ClusterRole,
becomes Ready (its watches connected through cluster DNS), and the real RBAC authorizer
grants it what it needs and nothing more."""

from __future__ import annotations

import json

from lykeion.cluster import NodeCluster
from tests.cluster.conftest import NAMESPACE, RELEASE


def service_account(cluster: NodeCluster) -> str:
    deployment = json.loads(
        cluster.run_kubectl("get", "deployment", "-n", NAMESPACE, RELEASE, "-o", "json").stdout
    )
    name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return f"system:serviceaccount:{NAMESPACE}:{name}"


def test_the_operator_runs_in_its_pod_and_is_ready(installed: NodeCluster) -> None:
    pods = json.loads(
        installed.run_kubectl(
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/component=operator",
            "-o",
            "json",
        ).stdout
    )["items"]
    assert len(pods) == 1
    pod = pods[0]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    logs = installed.run_kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"]).stdout
    assert "object index primed" in logs
    # /readyz from inside the cluster network (the pod's IP), as the kubelet probes it
    probe = installed.run_kubectl(
        "get",
        "--raw",
        f"/api/v1/namespaces/{NAMESPACE}/pods/{pod['metadata']['name']}:8080/proxy/readyz",
    )
    assert probe.stdout == "watching deployments, featuremanifests, modelfamilies, models"


NEEDS = [
    ("list", "models.lykeion.io", None),
    ("watch", "featuremanifests.lykeion.io", None),
    ("patch", "deployments.lykeion.io/status", "team-a"),
    ("create", "jobs.batch", "team-a"),
    ("delete", "jobs.batch", "team-a"),
    ("get", "pods/log", "team-a"),
    ("create", "deployments.apps", "team-a"),
    ("create", "services", "team-a"),
    ("create", "configmaps", "team-a"),
    ("create", "events", "team-a"),
    ("list", "events", "team-a"),  # why a Job is stuck
    ("list", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("create", "seldondeployments.machinelearning.seldon.io", "team-a"),
    ("create", "inferenceservices.serving.kserve.io", "team-a"),
]
MUST_NOT = [
    ("create", "models.lykeion.io", "team-a"),  # users own their objects
    ("delete", "models.lykeion.io", "team-a"),
    ("get", "secrets", "team-a"),
    ("list", "secrets", None),
    ("create", "pods", "team-a"),
    ("create", "pods/exec", "team-a"),
    ("list", "nodes", None),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", "team-a"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("create", "serviceaccounts/token", "team-a"),
    ("impersonate", "serviceaccounts", "team-a"),
    ("*", "*", None),
]


def can_i(cluster: NodeCluster, who: str, verb: str, resource: str, ns: str | None) -> bool:
    scope = ["-n", ns] if ns else ["--all-namespaces"]
    done = cluster.run_kubectl("auth", "can-i", verb, resource, f"--as={who}", *scope, check=False)
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def test_least_privilege_by_the_rbac_authorizer(installed: NodeCluster) -> None:
    who = service_account(installed)
    missing = [n for n in NEEDS if not can_i(installed, who, *n)]
    granted = [n for n in MUST_NOT if can_i(installed, who, *n)]
    assert missing == [], f"the operator lacks {missing}"
    assert granted == [], f"the operator may {granted}"


def test_workloads_have_no_rights(installed: NodeCluster) -> None:
    who = f"system:serviceaccount:{NAMESPACE}:lykeion-workload"
    for verb, resource in (("get", "pods"), ("list", "models.lykeion.io"), ("get", "secrets")):
        assert not can_i(installed, who, verb, resource, NAMESPACE)
