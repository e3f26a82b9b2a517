"""HTTP load for the benchmarks: the servers under test, and the same request bodies to
every one of them, in turns.

The client is the standard library's `http.client` on keep-alive connections, which
spends about 0.1 ms of a request here where httpx spends about 0.4 ms, so the figures
are more the servers' than the client's. The servers take turns of `turn` requests, so
that load from elsewhere on the machine falls on all of them alike; the load generator
itself shares the machine's cores with the server it measures.

  sequential  one connection per server, one request at a time;
  concurrent  `workers` threads per server, each on its own connection.

Reported per server: p50/p99 latency (ms) and requests/s over the time of its own turns.
The client's garbage collector is off while a turn is timed and runs between turns; each
turn starts with an untimed request per connection, since the first request after another
server's turn is slow for reasons of the turn-taking itself.
"""

from __future__ import annotations

import gc
import http.client
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lykeion.local import processes
from lykeion.local.readiness import NotReady

TURN = 100
CONCURRENT_TURN = 200
WARMUP = 20


def _accept(_: bytes) -> None:
    return None


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    """Where the bodies are POSTed, e.g. http://127.0.0.1:8080/graphql."""
    check: Callable[[bytes], None] = field(default=_accept)
    """Raises when an answer's body is wrong; called on every answer, outside the clock."""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


class Connection:
    """One keep-alive connection to an endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        parts = urlsplit(endpoint.url)
        self.path = parts.path or "/"
        self._http = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, 60)

    def post(self, body: bytes) -> bytes:
        try:
            self._http.request("POST", self.path, body, self.endpoint.headers)
            answer = self._http.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # uvicorn closes a connection idle for 5 s: on a loaded machine the other
            # servers' turns can take longer. Reconnect once; the first request of a turn,
            # where this happens, is never timed.
            self._http.close()
            self._http.request("POST", self.path, body, self.endpoint.headers)
            answer = self._http.getresponse()
        content = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{self.endpoint.name} answered {answer.status}: {content[:500]!r}")
        return content

    def close(self) -> None:
        self._http.close()


def quantiles_ms(latencies: Sequence[float]) -> dict[str, float]:
    cut = statistics.quantiles(latencies, n=100)
    return {"p50_ms": cut[49] * 1e3, "p99_ms": cut[98] * 1e3}


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    return {**quantiles_ms(latencies), "rps": len(latencies) / wall, "requests": len(latencies)}


def _timed_posts(connection: Connection, bodies: Sequence[bytes], sink: list[float]) -> None:
    answers = []
    for body in bodies:
        begun = time.perf_counter()
        answers.append(connection.post(body))
        sink.append(time.perf_counter() - begun)
    for answer in answers:
        connection.endpoint.check(answer)


@contextmanager
def client_gc_paused() -> Iterator[None]:
    """The client's own garbage collections would land on whichever request is in flight
    (as `timeit` does, the clock runs with the collector off; it runs once between turns)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def sequential(
    endpoints: Sequence[Endpoint], bodies: dict[str, list[bytes]], turn: int = TURN
) -> dict[str, dict[str, float]]:
    latencies: dict[str, list[float]] = {e.name: [] for e in endpoints}
    walls = dict.fromkeys(latencies, 0.0)
    connections = {e.name: Connection(e) for e in endpoints}
    try:
        for e in endpoints:
            _timed_posts(connections[e.name], bodies[e.name][:WARMUP], [])
        total = len(bodies[endpoints[0].name])
        for start in range(0, total, turn):
            gc.collect()
            for e in endpoints:
                chunk = bodies[e.name][start : start + turn]
                # The first request after another server's turn is slow for reasons of
                # the turn-taking itself (~0.3 ms here, 1% of requests: the p99 itself).
                _timed_posts(connections[e.name], chunk[:1], [])
                with client_gc_paused():
                    begun = time.perf_counter()
                    _timed_posts(connections[e.name], chunk, latencies[e.name])
                    walls[e.name] += time.perf_counter() - begun
    finally:
        for connection in connections.values():
            connection.close()
    return {name: summary(latencies[name], walls[name]) for name in latencies}


def concurrent(
    endpoints: Sequence[Endpoint],
    bodies: dict[str, list[bytes]],
    workers: int,
    turn: int = CONCURRENT_TURN,
) -> dict[str, dict[str, float]]:
    """`workers` threads per server, each with its own connection, in turns as `sequential`."""
    latencies: dict[str, list[float]] = {e.name: [] for e in endpoints}
    walls = dict.fromkeys(latencies, 0.0)
    local = threading.local()
    opened: list[Connection] = []
    lock = threading.Lock()

    def connection(e: Endpoint) -> Connection:
        per_thread: dict[str, Connection] = local.__dict__.setdefault("connections", {})
        if e.name not in per_thread:
            per_thread[e.name] = Connection(e)
            with lock:
                opened.append(per_thread[e.name])
        return per_thread[e.name]

    def work(e: Endpoint, chunk: Sequence[bytes]) -> list[float]:
        sink: list[float] = []
        _timed_posts(connection(e), chunk, sink)
        return sink

    pools = {e.name: ThreadPoolExecutor(workers, thread_name_prefix=e.name) for e in endpoints}
    try:
        for e in endpoints:  # open every connection before the clock starts
            warm = bodies[e.name][:workers]
            list(pools[e.name].map(lambda b, e=e: work(e, [b]), warm))
        total = len(bodies[endpoints[0].name])
        for start in range(0, total, turn):
            gc.collect()
            for e in endpoints:
                chunk = bodies[e.name][start : start + turn]
                list(pools[e.name].map(lambda b, e=e: work(e, [b]), chunk[:workers]))
                with client_gc_paused():
                    begun = time.perf_counter()
                    parts = pools[e.name].map(
                        lambda i, e=e, c=chunk: work(e, c[i::workers]), range(workers)
                    )
                    for sink in list(parts):
                        latencies[e.name].extend(sink)
                    walls[e.name] += time.perf_counter() - begun
    finally:
        for pool in pools.values():
            pool.shutdown()
        for opened_connection in opened:
            opened_connection.close()
    return {name: summary(latencies[name], walls[name]) for name in latencies}


def measure(
    endpoints: Sequence[Endpoint],
    bodies_by_size: dict[str, dict[str, list[bytes]]],
    workers: int,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """{server: {"sequential"|"concurrent": {size: summary}}}, every size in both modes."""
    result: dict[str, Any] = {e.name: {"sequential": {}, "concurrent": {}} for e in endpoints}
    for size, bodies in bodies_by_size.items():
        runs = {
            "sequential": sequential(endpoints, bodies),
            "concurrent": concurrent(endpoints, bodies, workers),
        }
        for mode, summaries in runs.items():
            for name, summary in summaries.items():
                result[name][mode][size] = summary
            progress(
                f"  {size:>2} per request, {mode}: "
                + ", ".join(f"{n} p99 {s['p99_ms']:.2f} ms" for n, s in summaries.items())
            )
    return result


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running(
    label: str,
    command: list[str],
    log_path: Path,
    url: Callable[[], str | None],
    ready_path: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    startup_seconds: float = 90,
) -> Iterator[str]:
    """Start `command` in its own process group, wait (bounded) until GET `ready_path`
    answers 200, yield the base URL (`url()`, None until the server has published it);
    always stop the whole group."""
    try:
        with processes.running(
            command,
            log_path,
            lambda: None if (base := url()) is None else base + ready_path,
            label,
            startup_seconds,
            env=env,
            cwd=cwd,
            append=False,
        ):
            base = url()
            assert base is not None
            yield base
    except NotReady as error:
        raise RuntimeError(f"{error}; log tail:\n{_tail(log_path)}") from None
