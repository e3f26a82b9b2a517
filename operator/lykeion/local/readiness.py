"""Waiting for a server this code started to answer over HTTP: bounded, and failing at once
when the process that should answer has exited."""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class NotReady(RuntimeError):
    """The process exited, or did not answer 200 in time; the message says which."""


def probe(
    url: str,
    timeout: float = 2.0,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> str | None:
    """None when GET `url` answers 200, else why not."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
            return None if answer.status == 200 else f"answered {answer.status}"
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")[:300]
        return f"answered {error.code}: {body}"
    except (urllib.error.URLError, OSError) as error:
        return f"does not answer: {error}"


def wait_until_answers(
    url: str | Callable[[], str | None],
    what: str,
    processes: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    log: Path | None = None,
    interval: float = 0.25,
    headers: Mapping[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> str:
    """Poll until GET `url` answers 200 and return it. `url` may be a function giving None
    until the server has published where it listens. Raises NotReady when one of
    `processes` exits or `timeout` seconds pass."""
    see = f"; see {log}" if log is not None else ""
    deadline = time.monotonic() + timeout
    last = "no address yet"
    while True:
        for process in processes:
            if process.poll() is not None:
                raise NotReady(f"{what} exited with code {process.returncode}{see}")
        target = url() if callable(url) else url
        if target is not None:
            why = probe(target, headers=headers, context=context)
            if why is None:
                return target
            last = why
        if time.monotonic() > deadline:
            raise NotReady(f"{what} not ready after {timeout:g}s ({last}){see}")
        time.sleep(interval)
