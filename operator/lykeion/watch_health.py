"""Whether kopf's watch streams are connected: what the operator's `/readyz` reports.

An operator whose watches are down handles nothing, whatever its own API client can
reach: in a pod without cluster DNS our client (the service IP from the environment)
listed every object while kopf (`kubernetes.default.svc`) never connected, and `/readyz`
said ready. Readiness therefore follows kopf's own watch requests.

kopf 1.x has no public signal for this. Its watch streams go through
`kopf._cogs.clients.api.stream`, which opens them with `api.request`; `install()` wraps
both (looked up by attribute at call time, so wrapping the module attributes is seen by
kopf's watcher). A watch counts as connected from the moment the API server answers its
request with a 2xx until the stream ends. kopf lists before it watches, so a connected
watch also means the resource has been listed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class WatchHealth:
    """The connection state of kopf's watch streams for the `plurals` of `group/version`.

    Ready when every plural has at least one watch path (cluster-wide, or one per watched
    namespace) and no watch path has been down for longer than `grace` seconds: kopf
    re-opens a stream at once when the API server ends it (`timeoutSeconds`), and that
    moment of reconnection is not an outage.
    """

    group: str
    version: str
    plurals: frozenset[str]
    grace: float = 2.0
    clock: Callable[[], float] = time.monotonic
    # path -> (connected, monotonic time of the last change)
    _paths: dict[str, tuple[bool, float]] = field(default_factory=dict)

    def plural_of(self, url: str) -> str | None:
        """The plural a watch URL is for, or None when it is not a watch of ours."""
        parts = urlsplit(url)
        if parse_qs(parts.query).get("watch") != ["true"]:
            return None
        segments = [s for s in parts.path.split("/") if s]
        if segments[:3] != ["apis", self.group, self.version] or not segments[3:]:
            return None
        plural = segments[-1]
        return plural if plural in self.plurals else None

    def connected(self, url: str) -> None:
        self._set(url, True)

    def disconnected(self, url: str) -> None:
        self._set(url, False)

    def _set(self, url: str, up: bool) -> None:
        if self.plural_of(url) is None:
            return
        path = urlsplit(url).path
        previous = self._paths.get(path)
        if previous is None or previous[0] != up:
            self._paths[path] = (up, self.clock())

    def state(self) -> tuple[bool, str]:
        """(ready, a one-line reason) at this moment."""
        now = self.clock()
        seen = {p.rsplit("/", 1)[-1] for p in self._paths}
        missing = sorted(self.plurals - seen)
        if missing:
            return False, f"not yet watching {', '.join(missing)}"
        down = sorted(
            path for path, (up, since) in self._paths.items() if not up and now - since > self.grace
        )
        if down:
            return False, f"watch disconnected: {', '.join(down)}"
        return True, "watching " + ", ".join(sorted(self.plurals))


_installed: list[WatchHealth] = []


def install(health: WatchHealth) -> None:
    """Route kopf's watch requests through `health` (once per process; later calls replace
    the tracker, so tests may install a fresh one)."""
    from kopf._cogs.clients import api as kopf_api

    _installed[:] = [health]
    if getattr(kopf_api, "_lykeion_watch_health", False):
        return
    original_request = kopf_api.request
    original_stream = kopf_api.stream

    async def request(method: str, url: str, **kwargs: Any) -> Any:
        response = await original_request(method, url, **kwargs)
        # check_response inside kopf has already raised on 4xx/5xx: this is a 2xx.
        for tracker in _installed:
            tracker.connected(url)
        return response

    async def stream(url: str, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async for item in original_stream(url, **kwargs):
                yield item
        finally:
            for tracker in _installed:
                tracker.disconnected(url)

    kopf_api.request = request
    kopf_api.stream = stream
    setattr(kopf_api, "_lykeion_watch_health", True)  # noqa: B010 - a marker on kopf's module


def watched_plurals(kinds: Iterable[Any]) -> frozenset[str]:
    """The plurals of `kinds` (objects with a `plural` attribute)."""
    return frozenset(str(k.plural) for k in kinds)
