"""Pod logs for tests against the real API server, which runs no kubelet.

The API server serves `pods/<name>/log` by asking the kubelet of the pod's node: it looks up
the Node's address and kubelet port (`status.addresses`, `status.daemonEndpoints`) and
fetches `https://<address>:<port>/containerLogs/<namespace>/<pod>/<container>` with the
query `previous`, `tailLines`... Without `--kubelet-certificate-authority` it accepts any
serving certificate. `KubeletLogs` is that endpoint and nothing else: a Node object pointing
at a loopback HTTPS server that answers with the logs a test stored, and records what was
asked, so a test sees which pod's log the code under test read through the API server.
"""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

from lykeion.local import tools

LogKey = tuple[str, str, str, bool]
"""(namespace, pod, container, previous)."""


class KubeletLogs:
    """A Node named `node` whose kubelet serves the logs in `logs` (keyed by `LogKey`; a
    key that is not there answers 404, as the kubelet does for an unknown container).
    Pods must name the Node in `spec.nodeName`. Use as a context manager: the Node is
    deleted and the server stopped on exit."""

    def __init__(self, api: client.ApiClient, workdir: Path, node: str) -> None:
        self.api = api
        self.workdir = workdir
        self.node = node
        self.logs: dict[LogKey, str] = {}
        self.asked: list[LogKey] = []
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> KubeletLogs:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tools.openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", "kubelet.key", "-out", "kubelet.crt",
            cwd=self.workdir,
        )  # fmt: skip
        logs, asked = self.logs, self.asked

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                query = parse_qs(url.query)
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404, "not a containerLogs request")
                    return
                key = (parts[1], parts[2], parts[3], query.get("previous") == ["true"])
                asked.append(key)
                if key not in logs:
                    self.send_error(404, f"no log of container {parts[3]} in pod {parts[2]}")
                    return
                lines = logs[key].splitlines(keepends=True)
                if "tailLines" in query:
                    lines = lines[-int(query["tailLines"][0]) :]
                body = "".join(lines).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.workdir / "kubelet.crt", self.workdir / "kubelet.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        core = client.CoreV1Api(self.api)
        core.create_node({"metadata": {"name": self.node}})
        core.patch_node_status(
            self.node,
            {
                "status": {
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": server.server_address[1]}},
                }
            },
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        client.CoreV1Api(self.api).delete_node(self.node)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
