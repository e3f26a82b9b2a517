"""Where a Model's training log is, and reading or following it.

The embedded platform's local executor writes each run's output to
`<workdir>/runs/<namespace>/<run name>/log`; the run name of a training is recorded in
the Model's `status.currentTraining` (while it runs) or `status.lastTraining`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lykectl.embedded import RUNS_DIR
from lykectl.errors import CliError

LOG_FILE = "log"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class TrainingLog:
    training: str
    """The run name, `<model>-t<requests>` (`lykeion.handlers.training.training_name`)."""
    running: bool
    path: Path


def training_log(workdir: Path, namespace: str, model: Mapping[str, Any]) -> TrainingLog:
    """The log of the Model's current training, else of its last one (pure: no I/O)."""
    status = model.get("status") or {}
    name = model.get("metadata", {}).get("name", "?")
    for field, running in (("currentTraining", True), ("lastTraining", False)):
        record = status.get(field) or {}
        if record.get("name"):
            training = str(record["name"])
            path = workdir / RUNS_DIR / namespace / training / LOG_FILE
            return TrainingLog(training, running and record.get("result") == "Running", path)
    raise CliError(f"Model {name} has no training yet (request one with `lykectl models train`)")


def still_running(model: Mapping[str, Any], training: str) -> bool:
    """True while `training` is the Model's current, unfinished training."""
    record = (model.get("status") or {}).get("currentTraining") or {}
    return record.get("name") == training and record.get("result", "Running") == "Running"


def last_lines(text: str, count: int | None) -> str:
    """The last `count` lines of `text` (all of it for None)."""
    if count is None:
        return text
    if count <= 0:
        return ""
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:])


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read()
    except FileNotFoundError:
        return b""


def show(log: TrainingLog, tail: int | None, emit: Callable[[str], None]) -> None:
    try:
        text = log.path.read_text(errors="replace")
    except FileNotFoundError:
        raise CliError(f"training {log.training} has no log at {log.path}") from None
    except OSError as error:
        raise CliError(f"cannot read {log.path}: {error.strerror or error}") from None
    emit(last_lines(text, tail))


def follow(
    log: TrainingLog,
    tail: int | None,
    running: Callable[[], bool],
    emit: Callable[[str], None],
    timeout: float,
    poll: float = POLL_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print the log, then the lines written to it until the training ends or `timeout`."""
    data = _read_from(log.path, 0)
    complete = data.rfind(b"\n") + 1  # a partly written line waits for its end
    emit(last_lines(data[:complete].decode(errors="replace"), tail))
    offset = complete
    deadline = clock() + timeout
    active = log.running
    while True:
        if active:
            active = running()  # asked before reading, so that no last line is missed
        data = _read_from(log.path, offset)
        complete = len(data) if not active else data.rfind(b"\n") + 1
        if complete:
            emit(data[:complete].decode(errors="replace"))
            offset += complete
        if not active:
            return
        if clock() >= deadline:
            raise CliError(
                f"stopped following after {timeout:g}s: training {log.training} is still running"
            )
        sleep(poll)
