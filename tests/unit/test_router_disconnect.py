"""A client that goes away before its body arrives is not a server error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from lykeion.serving.router import Router, create_app


def _call(
    app: Any,
    messages: list[dict[str, Any]],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[dict[str, Any]]:
    """Drive an ASGI app with one POST (raw `headers`, default a JSON content type) whose
    receive() yields `messages`; what it sent."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
        "root_path": "", "headers": headers or [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
    }  # fmt: skip
    incoming = iter(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_router_answers_a_disconnect_mid_body_with_499_not_an_exception(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    # The upstream is never reached: the body never completes.
    routes.write_text(
        json.dumps({"versions": [{"version": "1.0", "url": "http://127.0.0.1:9", "weight": 100}]})
    )
    app = create_app(Router(routes))
    sent = _call(
        app,
        [
            {"type": "http.request", "body": b'{"keys": [', "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 499


def test_router_forwards_header_values_without_surrounding_whitespace(tmp_path: Path) -> None:
    """`Authorization: Bearer ` (an empty token) reaches the version, which answers it
    (401 with access on), instead of failing to forward (a 503 from the router)."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Upstream(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.headers.get("authorization"))
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "no token"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        routes = tmp_path / "routes.json"
        url = f"http://127.0.0.1:{server.server_address[1]}"
        routes.write_text(json.dumps({"versions": [{"version": "1.0", "url": url, "weight": 100}]}))
        sent = _call(
            create_app(Router(routes)),
            [{"type": "http.request", "body": b'{"keys": []}', "more_body": False}],
            [(b"content-type", b"application/json"), (b"authorization", b"Bearer ")],
        )
    finally:
        server.shutdown()
        server.server_close()
    assert sent[0]["status"] == 401
    assert seen == ["Bearer"]
