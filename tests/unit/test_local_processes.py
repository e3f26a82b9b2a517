"""Processes in their own group: started, stopped with SIGTERM then SIGKILL, waited for."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from lykeion.local import processes
from lykeion.local.ports import free_port
from lykeion.local.readiness import NotReady

# A parent that starts a grandchild and prints its pid: both belong to the parent's group.
PARENT = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(child.pid, flush=True); time.sleep(60)"
)
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + (
    "print('ready', flush=True); time.sleep(60)"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return state == "Z"  # a zombie grandchild waits for init to reap it


def _first_line(log: Path) -> str:
    deadline = time.monotonic() + 10
    while not log.read_text().strip():
        assert time.monotonic() < deadline, "the child printed nothing"
        time.sleep(0.05)
    return log.read_text().split()[0]


def test_stop_ends_the_whole_group_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "log"
    process = processes.start([sys.executable, "-c", PARENT], log)
    assert os.getpgid(process.pid) == process.pid
    grandchild = int(_first_line(log))
    processes.stop(process, grace=10)
    assert process.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived its group"
        time.sleep(0.05)


def test_stop_kills_a_process_that_ignores_sigterm_after_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "log"
    process = processes.start([sys.executable, "-c", STUBBORN], log)
    assert _first_line(log) == "ready"
    started = time.monotonic()
    processes.stop(process, grace=0.5)
    assert process.returncode == -signal.SIGKILL
    assert 0.5 <= time.monotonic() - started < 5


def test_stop_group_by_pid_reports_a_stopped_group(tmp_path: Path) -> None:
    process = processes.start([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "l")
    assert processes.stop_group(process.pid, lambda: process.poll() is None, grace=10)
    assert process.returncode == -signal.SIGTERM
    # a group that is gone already: nothing to do, nothing raised
    assert processes.stop_group(process.pid, lambda: False)
    processes.signal_group(process.pid, signal.SIGTERM)


def test_start_truncates_or_appends_the_log(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text("before\n")
    processes.start([sys.executable, "-c", "print('one')"], log).wait(10)
    assert log.read_text() == "before\none\n"
    processes.start([sys.executable, "-c", "print('two')"], log, append=False).wait(10)
    assert log.read_text() == "two\n"


def test_wait_for_port_returns_once_a_listener_accepts() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        processes.wait_for_port(server.getsockname()[1], "a listener", [], timeout=5)


def test_wait_for_port_fails_when_the_process_exits_or_time_runs_out(tmp_path: Path) -> None:
    done = processes.start([sys.executable, "-c", "pass"], tmp_path / "log")
    done.wait(10)
    with pytest.raises(NotReady, match="exited with code 0"):
        processes.wait_for_port(free_port(), "the server", [done], timeout=5)
    with pytest.raises(NotReady, match="not listening"):
        processes.wait_for_port(free_port(), "the server", [], timeout=0.2)


def test_running_stops_the_server_on_exit(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}/"
    with processes.running(command, tmp_path / "log", url, "http.server", 30, cwd=tmp_path) as got:
        assert got == url
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
