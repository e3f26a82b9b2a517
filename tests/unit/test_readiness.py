"""Waiting for started servers: against a real HTTP server and real child processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lykeion.local.ports import free_port
from lykeion.local.readiness import NotReady, probe, wait_until_answers


class Handler(BaseHTTPRequestHandler):
    ready_after = 0
    """GET /ready answers 503 this many times, then 200."""

    def do_GET(self) -> None:
        if self.path == "/ready" and Handler.ready_after > 0:
            Handler.ready_after -= 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"warming up")
            return
        self.send_response(200 if self.path == "/ready" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    yield process
    process.kill()
    process.wait()


def test_probe_says_why_not(server: str) -> None:
    Handler.ready_after = 1
    assert probe(f"{server}/ready") == "answered 503: warming up"
    assert probe(f"{server}/ready") is None
    assert probe(f"{server}/other") == "answered 404: "
    refused = probe(f"http://127.0.0.1:{free_port()}/ready")
    assert refused is not None and refused.startswith("does not answer")


def test_waits_through_unready_answers_and_a_late_address(
    server: str, sleeper: subprocess.Popen[bytes]
) -> None:
    Handler.ready_after = 3
    asked = []

    def address() -> str | None:
        asked.append(1)
        return f"{server}/ready" if len(asked) > 2 else None

    assert wait_until_answers(address, "server", [sleeper], 10, interval=0.01) == f"{server}/ready"
    assert Handler.ready_after == 0


def test_a_process_that_exits_fails_the_wait_at_once() -> None:
    done = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    done.wait()
    with pytest.raises(NotReady, match=r"server exited with code 3; see x\.log"):
        wait_until_answers(
            f"http://127.0.0.1:{free_port()}", "server", [done], 30, log=Path("x.log")
        )


def test_the_wait_is_bounded_and_names_the_last_reason(
    server: str, sleeper: subprocess.Popen[bytes]
) -> None:
    Handler.ready_after = 10_000
    with pytest.raises(NotReady, match=r"server not ready after 0.3s \(answered 503: warming up\)"):
        wait_until_answers(f"{server}/ready", "server", [sleeper], 0.3, interval=0.05)
    Handler.ready_after = 0
