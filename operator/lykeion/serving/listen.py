"""Bind a server's socket before it starts, and tell whoever launched it where it is."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import uvicorn
from starlette.applications import Starlette


def serve(app: Starlette, host: str, port: int, endpoint_file: Path | None) -> None:
    """Run `app` on host:port (0: any free port); once bound, write {url, pid} atomically
    to `endpoint_file`, which is how the local executor finds the process again."""
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on
    # sockets whose proto says TCP, and with Nagle on, every keep-alive request waits for
    # the client's delayed ACK (~40 ms).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening before the URL is published: a client that reads endpoint.json at once
    # waits in the backlog until the app accepts, instead of being refused.
    sock.listen(2048)
    bound_host, bound_port = sock.getsockname()[:2]
    if endpoint_file is not None:
        tmp = endpoint_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": f"http://{bound_host}:{bound_port}", "pid": os.getpid()}))
        tmp.replace(endpoint_file)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
