"""The one-node cluster itself: scheduling, the Job controller, cluster DNS, kube-proxy,
the kubelet's logs, the API server through a service-account token."""

from __future__ import annotations

import json
import textwrap

from lykeion.cluster import BuiltImage, NodeCluster
from tests.cluster.pods import restricted_pod, run_pod


def test_a_job_completes_through_the_job_controller(
    node_cluster: NodeCluster, cluster_images: dict[str, BuiltImage]
) -> None:
    pod = restricted_pod(
        "x", cluster_images["operator"].image, ["python", "-c", "print(sum(range(101)))"], "default"
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "sum", "namespace": "default"},
        "spec": {"backoffLimit": 0, "template": {"spec": pod["spec"]}},
    }
    node_cluster.apply([job])
    node_cluster.run_kubectl("wait", "--for=condition=Complete", "job/sum", "--timeout=120s")
    assert node_cluster.run_kubectl("logs", "job/sum").stdout.strip() == "5050"
    node_cluster.run_kubectl("delete", "job", "sum", "--cascade=foreground", "--wait=false")


def test_pods_resolve_services_and_reach_the_api_server(
    node_cluster: NodeCluster, cluster_images: dict[str, BuiltImage]
) -> None:
    # kube-dns by name (CoreDNS), the API server's ClusterIP (kube-proxy), the
    # service-account token (the controller manager's token controller, the signing key).
    script = textwrap.dedent(
        """
        import json, socket, ssl, urllib.request
        sa = "/var/run/secrets/kubernetes.io/serviceaccount"
        token = open(sa + "/token").read()
        context = ssl.create_default_context(cafile=sa + "/ca.crt")
        request = urllib.request.Request(
            "https://kubernetes.default.svc/api/v1/namespaces/default/serviceaccounts/default",
            headers={"Authorization": "Bearer " + token},
        )
        try:
            urllib.request.urlopen(request, context=context, timeout=10)
            status = 200
        except urllib.error.HTTPError as error:
            status = error.code
        print(json.dumps({
            "api": socket.gethostbyname("kubernetes.default.svc.cluster.local"),
            "dns": socket.gethostbyname("kube-dns.kube-system.svc"),
            "status": status,
        }))
        """
    )
    pod = restricted_pod(
        "dns", cluster_images["operator"].image, ["python", "-c", script], "default"
    )
    pod["spec"]["automountServiceAccountToken"] = True
    done = run_pod(node_cluster, pod, timeout=120)
    assert done.phase == "Succeeded", done.logs
    seen = json.loads(done.logs.strip().splitlines()[-1])
    assert seen["api"] == node_cluster.api_service_ip
    assert seen["dns"] == node_cluster.dns_ip
    # authenticated as system:serviceaccount:default:default, which RBAC gives nothing
    assert seen["status"] == 403
