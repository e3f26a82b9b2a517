"""A private CA bundle from a ConfigMap, as the kubernetes executor mounts it into a Job
(`executors.ca_bundle`): a workload in a pod verifies a server whose certificate that CA
signed, with Python's `ssl` (SSL_CERT_FILE) and requests (REQUESTS_CA_BUNDLE); the same
Job without the bundle is refused by both."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from lykeion.cluster import BuiltImage, NodeCluster
from lykeion.executors.base import Work
from lykeion.executors.ca_bundle import CaBundle
from lykeion.executors.kubernetes import build_job
from tests.cluster.conftest import WORKLOAD_NAMESPACE
from tests.cluster.pods import restricted_pod

NS = WORKLOAD_NAMESPACE
HOST = f"tls-test.{NS}.svc"

SERVER = """
import http.server, ssl
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"trusted")
server = http.server.HTTPServer(("0.0.0.0", 8443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""

# The Service answers once kube-proxy has its endpoint, which may come after the pod is
# Ready (until then its address refuses connections): wait for a TCP connection first.
CLIENT = f"""
import socket, sys, time, urllib.request, requests
deadline = time.monotonic() + 90
while True:
    try:
        socket.create_connection(("{HOST}", 8443), timeout=5).close()
        break
    except OSError as error:
        if time.monotonic() > deadline:
            sys.exit(f"{HOST}:8443 unreachable for 90 s: {{error}}")
        time.sleep(1)
url = "https://{HOST}:8443/"
failures = []
try:
    print("urllib", urllib.request.urlopen(url, timeout=20).read().decode())
except Exception as error:
    failures.append(f"urllib: {{error}}")
try:
    print("requests", requests.get(url, timeout=20).text)
except Exception as error:
    failures.append(f"requests: {{error}}")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def _certificates(folder: Path) -> dict[str, bytes]:
    """A throwaway CA and a server certificate it signed for `HOST`."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "1", "-subj", "/CN=lykeion-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "tls.key", "-out", "tls.csr",
            "-subj", f"/CN={HOST}")  # fmt: skip
    (folder / "san.ext").write_text(f"subjectAltName=DNS:{HOST},DNS:{HOST}.cluster.local\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "tls.crt", "-days", "1", "-extfile", "san.ext")  # fmt: skip
    return {name: (folder / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")}


def _run_job(cluster: NodeCluster, job: dict[str, Any], timeout: float = 240) -> tuple[bool, str]:
    """Apply `job`, wait until it succeeds or fails; (succeeded, its pod's logs)."""
    name = job["metadata"]["name"]
    cluster.apply([job])
    deadline = time.monotonic() + timeout
    status: dict[str, object] = {}
    while time.monotonic() < deadline:
        got = cluster.run_kubectl("get", "job", "-n", NS, name, "-o", "json")
        status = json.loads(got.stdout).get("status") or {}
        if status.get("succeeded") or status.get("failed"):
            break
        time.sleep(1)
    else:
        raise AssertionError(f"job {name} did not finish in {timeout}s: {status}")
    logs = cluster.run_kubectl("logs", "-n", NS, f"job/{name}", check=False).stdout
    return bool(status.get("succeeded")), logs


def test_a_job_trusts_a_private_ca_from_a_configmap(
    installed: NodeCluster, cluster_images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    pem = _certificates(tmp_path)
    image = cluster_images["workloads"].image
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls-test-server", "namespace": NS},
        "data": {k: base64.b64encode(pem[k]).decode() for k in ("tls.crt", "tls.key")},
    }
    bundle = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "private-ca", "namespace": NS},
        "data": {"internal.pem": pem["ca.crt"].decode()},
    }
    server = restricted_pod("tls-test-server", image, ["python", "-c", SERVER], NS)
    server["metadata"]["labels"] = {"app": "tls-test"}
    server["spec"]["restartPolicy"] = "Always"
    server["spec"]["volumes"].append(
        {"name": "tls", "secret": {"secretName": "tls-test-server", "defaultMode": 0o444}}
    )
    server["spec"]["containers"][0]["volumeMounts"].append({"name": "tls", "mountPath": "/tls"})
    server["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8443},
        "periodSeconds": 1,
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "tls-test", "namespace": NS},
        "spec": {"selector": {"app": "tls-test"}, "ports": [{"port": 8443}]},
    }
    installed.apply([secret, bundle, server, service])
    try:
        installed.run_kubectl(
            "wait", "-n", NS, "pod/tls-test-server", "--for=condition=Ready", "--timeout=120s"
        )
        command = ("python", "-c", CLIENT)
        with_ca = build_job(
            Work("ca-bundle-trusted", NS, image, command, owned=False),
            ca=CaBundle("configMap", "private-ca", "internal.pem"),
        )
        succeeded, logs = _run_job(installed, with_ca)
        assert succeeded, logs
        assert "urllib trusted" in logs and "requests trusted" in logs, logs
        # The control: the same Job without the bundle is refused by both clients.
        without = build_job(Work("ca-bundle-untrusted", NS, image, command, owned=False))
        succeeded, logs = _run_job(installed, without)
        assert not succeeded, logs
        assert logs.count("CERTIFICATE_VERIFY_FAILED") >= 2, logs
    finally:
        for kind, name in [
            ("job", "ca-bundle-trusted"),
            ("job", "ca-bundle-untrusted"),
            ("service", "tls-test"),
            ("pod", "tls-test-server"),
            ("configmap", "private-ca"),
            ("secret", "tls-test-server"),
        ]:
            installed.run_kubectl(
                "delete", kind, "-n", NS, name, "--wait=false", "--ignore-not-found", check=False
            )
