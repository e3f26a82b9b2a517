"""A client that goes away before its body arrives is not a server error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from lykeion.serving.router import Router, create_app


def _call(app: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drive an ASGI app with one POST whose receive() yields `messages`; what it sent."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"application/json")],
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
