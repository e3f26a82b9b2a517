"""The local backend's router: splits requests across version servers by weight, copies
them to a shadow version, and picks up new weights without a restart.

    python -m lykeion.serving.router --routes routes.json --port 0 --endpoint-file e.json

`routes.json`: {"versions": [{"version": "1.0", "url": "http://...", "weight": 90}, ...],
"shadow": {"version": "1.1", "url": "http://..."} | null}. The operator rewrites it when
the traffic in effect changes; the router re-reads it when its modification time moves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lykeion.request_body import MODEL_SERVER_MAX_BYTES, BodyTooLarge, read_body
from lykeion.serving.listen import serve

log = logging.getLogger("lykeion.serving.router")

# Hop-by-hop headers and those httpx recomputes.
_DROP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}


@dataclass(frozen=True)
class Routes:
    versions: tuple[tuple[str, str, int], ...]
    """(version, url, weight) with weight > 0."""
    shadow: tuple[str, str] | None

    @classmethod
    def load(cls, path: Path) -> Routes:
        data = json.loads(path.read_text())
        versions = tuple(
            (v["version"], v["url"].rstrip("/"), int(v["weight"]))
            for v in data.get("versions", [])
            if int(v["weight"]) > 0
        )
        shadow = data.get("shadow")
        return cls(versions, (shadow["version"], shadow["url"].rstrip("/")) if shadow else None)

    def pick(self, draw: float) -> tuple[str, str] | None:
        """The version whose cumulative weight band holds `draw` in [0, 1)."""
        total = sum(w for _, _, w in self.versions)
        point = draw * total
        for version, url, weight in self.versions:
            if point < weight:
                return version, url
            point -= weight
        return None


def protocol_of(path: str) -> str:
    """Which protocol's error object a path's client reads (Seldon's, else `{"error"}`)."""
    return "seldon" if path.endswith("/api/v1.0/predictions") else "v2"


class Router:
    def __init__(self, path: Path, max_body_bytes: int = MODEL_SERVER_MAX_BYTES) -> None:
        self.path = path
        self.max_body_bytes = max_body_bytes
        self._mtime = -1.0
        self.routes = Routes((), None)
        self.client = httpx.AsyncClient(
            timeout=30.0, limits=httpx.Limits(max_keepalive_connections=64)
        )
        self._shadows: set[asyncio.Task[None]] = set()

    def current(self) -> Routes:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return self.routes
        if mtime != self._mtime:
            self.routes, self._mtime = Routes.load(self.path), mtime
        return self.routes

    async def forward(self, request: Request) -> Response:
        routes = self.current()
        chosen = routes.pick(random.random())
        if chosen is None:
            return JSONResponse({"error": "no version is available to serve"}, 503)
        version, url = chosen
        try:
            body = await read_body(request, self.max_body_bytes)
        except ClientDisconnect:
            # Nobody is left to answer (nginx's 499): not a server error to log.
            return Response(status_code=499)
        except BodyTooLarge as error:
            # Refused here, before a byte more is held or copied to a version or shadow.
            # Imported here: the protocols module brings pandas, which the router never needs.
            from lykeion.serving.protocols import error_body

            return JSONResponse(error_body(protocol_of(request.url.path), 413, str(error)), 413)
        # Surrounding whitespace is not part of a field value (RFC 9110, section 5.5), and
        # httpx refuses to send it: `Bearer ` must reach the version, which answers it.
        headers = {k: v.strip() for k, v in request.headers.items() if k.lower() not in _DROP}
        target = f"{url}{request.url.path}"
        if request.url.query:
            target += f"?{request.url.query}"
        if routes.shadow is not None and request.method == "POST":
            task = asyncio.create_task(self._shadow(routes.shadow, request, body, headers))
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)
        try:
            answer = await self.client.request(
                request.method, target, content=body, headers=headers
            )
        except httpx.LocalProtocolError as error:
            # What the client sent cannot be forwarded as HTTP/1.1: the client's fault.
            return JSONResponse({"error": f"request cannot be forwarded: {error}"}, 400)
        except httpx.HTTPError as error:
            return JSONResponse({"error": f"version {version} did not answer: {error}"}, 503)
        return Response(
            answer.content,
            answer.status_code,
            headers={"x-lykeion-version": version},
            media_type=answer.headers.get("content-type"),
        )

    async def _shadow(
        self, shadow: tuple[str, str], request: Request, body: bytes, headers: dict[str, str]
    ) -> None:
        version, url = shadow
        try:
            answer = await self.client.post(
                f"{url}{request.url.path}", content=body, headers=headers
            )
            log.info("shadow %s answered %s", version, answer.status_code)
        except httpx.HTTPError as error:
            log.warning("shadow %s did not answer: %s", version, error)


def create_app(router: Router) -> Starlette:
    async def health(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        routes = router.current()
        if not routes.versions:
            return JSONResponse({"ready": False, "reason": "no version has traffic"}, 503)
        return JSONResponse({"ready": True, "versions": [v for v, _, _ in routes.versions]})

    async def forward(request: Request) -> Response:
        return await router.forward(request)

    return Starlette(
        routes=[
            Route("/healthz", health),
            Route("/ready", ready),
            Route("/{path:path}", forward, methods=["GET", "POST"]),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lykeion.serving.router", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--routes", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--endpoint-file", type=Path)
    parser.add_argument(
        "--max-body-bytes", type=int, default=MODEL_SERVER_MAX_BYTES,
        help="larger request bodies are refused with 413 (default: the model servers' cap)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s %(message)s")
    router = Router(args.routes, args.max_body_bytes)
    serve(create_app(router), args.host, args.port, args.endpoint_file)


if __name__ == "__main__":
    main()
