"""Processes on this machine, written once: start one in its own process group, stop a
group by PID (SIGTERM, then SIGKILL after a grace period), wait until a port answers.

Every process starts a new session (`start_new_session`), so its process group id is its
PID: stopping the group also stops what it started (a shell's child, a server's workers),
and nothing but that PID needs to be recorded to stop it from another process
(`lykectl down`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from lykeion.local.readiness import NotReady, wait_until_answers

POLL_SECONDS = 0.1
KILL_GRACE = 5.0
"""Seconds a group gets to vanish after SIGKILL before a stop reports it still there."""


def start(
    command: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = True,
) -> subprocess.Popen[bytes]:
    """Start `command` in a new session (its group id is its PID), stdin from /dev/null,
    stdout and stderr into the file `log` (appended to, or truncated when `append` is
    False). `env` replaces the environment when given.

    Raises:
        OSError: the log cannot be opened or the program cannot be run.
    """
    # The child holds its own copy of the descriptor; ours is closed on return.
    with open(log, "ab" if append else "wb") as out:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else dict(env),
            cwd=cwd,
        )


def signal_group(pid: int, signum: signal.Signals) -> None:
    """Send `signum` to the process group `pid`; a group that is gone (or not ours) is
    left alone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _gone_within(alive: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def stop_group(pid: int, alive: Callable[[], bool], grace: float = 15.0) -> bool:
    """SIGTERM the process group `pid`, SIGKILL it when `alive()` still holds after
    `grace` seconds; True once `alive()` is false, False if it still holds
    `KILL_GRACE` seconds after SIGKILL. `alive` tells whether the group's leader runs
    (for a child of ours, `process.poll() is None`, which also reaps it)."""
    if not alive():
        return True
    signal_group(pid, signal.SIGTERM)
    if _gone_within(alive, grace):
        return True
    signal_group(pid, signal.SIGKILL)
    return _gone_within(alive, KILL_GRACE)


def stop(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Stop a child started by `start` (or in a session of its own): SIGTERM to its group,
    SIGKILL after `grace` seconds; returns once the child is reaped."""
    if not stop_group(process.pid, lambda: process.poll() is None, grace):
        process.wait()


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's group at once (no cleanup, as when a node dies) and reap it."""
    if process.poll() is None:
        signal_group(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_port(
    port: int,
    what: str,
    processes: Sequence[subprocess.Popen[bytes]],
    timeout: float,
    host: str = "127.0.0.1",
) -> None:
    """Wait until `host:port` accepts a TCP connection (for servers without an HTTP
    health check, e.g. gRPC ones).

    Raises:
        NotReady: one of `processes` exited, or `timeout` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.poll() is not None:
                raise NotReady(f"{what} exited with code {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise NotReady(
                    f"{what} not listening on {host}:{port} after {timeout:g}s"
                ) from None
            time.sleep(0.05)


@contextlib.contextmanager
def running(
    command: Sequence[str],
    log: Path,
    url: str | Callable[[], str | None],
    what: str,
    timeout: float = 90.0,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = True,
    grace: float = 15.0,
) -> Iterator[str]:
    """Start `command` (see `start`), wait until GET `url` answers 200 (`url` may be a
    function giving None until the server publishes its address), yield that URL, and
    always stop the group on exit.

    Raises:
        NotReady: the process exited or did not answer within `timeout` seconds.
    """
    process = start(command, log, env=env, cwd=cwd, append=append)
    try:
        yield wait_until_answers(url, what, [process], timeout, log=log)
    finally:
        stop(process, grace)
