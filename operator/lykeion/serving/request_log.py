"""The model server's request log (`ServerConfig.request_log`): JSON Lines appended by the
server, rotated by size, and read back incrementally for the live metric
(`outcomes.LiveLabels`).

A line (`line`) is one answered request: `time` (epoch seconds when the answer was made),
`version`, `keys` (per row, the row's entity keys typed as declared), `features` (model
column -> one value per row, as the model got them) and `prediction` (one entry per row,
as the model returned it), rows in request order:

    {"time": 1764676800.5, "version": "1.0", "keys": [{"rider_id": "r1"}, {"rider_id": "r2"}],
     "features": {"rider__age": [41, 67]}, "prediction": [0.31, 0.12]}

Columns rather than one object per row: a line is then one `orjson.dumps` of what the
request already holds, with no Python work per row (at 50 rows: 6 us instead of 47 us, and
a third of the bytes). Servers before this wrote one line per row, `keys` an object and
`prediction` that row's; readers take both shapes, so a log that holds lines of both
(replicas of older and newer server code writing one log during an upgrade) is read whole.

The server appends through `QueuedLog`: a writer thread, so that no request waits for the
file, and a bounded queue whose overflow is dropped and counted, never waited for.

Rotation (as `logging.handlers.RotatingFileHandler` names files): before an append would
take the current file `P` past `request_log_max_bytes`, `P.1` becomes `P.2` and so on, the
oldest (`P.<files - 1>`) is deleted and `P` becomes `P.1`; the append starts a new `P`. At
most `request_log_files` files are kept, `P` included (1: the log restarts empty). An
append is never split across files, so a file may exceed the size by one batch when a
single batch is larger. Writers of one log (the replicas of a version on a shared data
volume) serialise appends and rotations with an advisory lock (`flock`) on `P.lock`, which
also counts the rotations so far (ASCII digits; absent: none).

Reading (`LogReader`): rows of one version, from the oldest file kept to `P`. Under a shared
lock on `P.lock` a poll reads the rotation count `g` and opens the files; `P.i` is then the
file that became current at rotation `g - i`, which names it across renames (an inode would
not: a deleted file's inode is reused by the next one). Each poll reads only the bytes
appended to a file since the last poll (its offset is remembered; a torn last line waits
for its end) and forgets the files rotation deleted. A file shorter than its offset, or
whose first bytes changed, was truncated or rewritten by someone else: it is read again
from its start. A poll reads and parses at most `CHUNK_BYTES` of a file at a time.

Memory: a reader holds the rows it keeps parsed. A `bounded` reader keeps only the rows
that the next ask can want: those at or after the `since` it was last asked for (a rollout
asks from its step's start, the same `since` until the next step); asked for older rows
(an earlier `since`, or None), it reads every file again from its start, so that each
answer is the one an unbounded reader gives.
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import json
import logging
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from prometheus_client import CollectorRegistry, Counter

log = logging.getLogger(__name__)

Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Logged:
    """One logged request row."""

    time: int
    """Microseconds since the epoch."""
    key: Key
    """Entity key values, in the order of the join keys."""
    prediction: Any


def micros(seconds: float) -> int:
    """Epoch seconds (float) as whole microseconds."""
    return round(seconds * 1_000_000)


def line(
    moment: float,
    version: str,
    keys: Sequence[Mapping[str, Any]],
    features: Mapping[str, Sequence[Any]],
    predictions: Sequence[Any],
) -> bytes:
    """One answered request as a log line, newline included (module docstring): `moment`
    in epoch seconds, per row its `keys` and its entry of `predictions`, `features` by
    model column. Values as orjson writes them (a datetime in RFC 3339, a NaN as null).
    Raises orjson.JSONEncodeError for a value JSON cannot hold."""
    # Here, not at the top: the operator reads logs (`LogReader`) and its image has no
    # orjson (the serving extra's).
    import orjson

    return orjson.dumps(
        {
            "time": moment,
            "version": version,
            "keys": keys,
            "features": features,
            "prediction": predictions,
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


HEAD_BYTES = 64
"""First bytes of a file remembered to tell a rewrite in place from an append."""

CHUNK_BYTES = 1 << 20
"""Bytes of a file a poll reads (and parses) at a time: the raw text held at once."""


def files_of(path: Path, files: int) -> list[Path]:
    """The log's files, oldest first: `P.<files - 1>`, ..., `P.1`, `P` (some may not exist)."""
    return [path.with_name(f"{path.name}.{i}") for i in range(files - 1, 0, -1)] + [path]


def lock_of(path: Path) -> Path:
    """The lock file of the log at `path` (it holds the rotation count)."""
    return path.with_name(f"{path.name}.lock")


@contextmanager
def _locked(path: Path, exclusive: bool) -> Iterator[int]:
    """The lock file's descriptor, held under `flock` (created when writing)."""
    flags = os.O_RDWR | os.O_CREAT if exclusive else os.O_RDONLY
    fd = os.open(lock_of(path), flags, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _rotations(fd: int) -> int:
    text = os.pread(fd, 32, 0).strip()
    return int(text) if text.isdigit() else 0


class RequestLog:
    """Appends batches of lines to `path`, rotating it by size (module docstring).
    Thread-safe; across processes, through the lock file.

    The lock file and the current file stay open between appends (an append is then a
    lock, four stats, a write and an unlock): under the lock, each open file is used only
    while its path names the same inode, else (another writer rotated the log, or a file
    was removed) the path is opened again; a forked process opens both again. `close`
    releases both descriptors."""

    def __init__(self, path: Path, max_bytes: int, files: int) -> None:
        if max_bytes <= 0 or files < 1:
            raise ValueError(f"request log: max_bytes {max_bytes} and files {files} must be > 0")
        self.path = path
        self.max_bytes = max_bytes
        self.files = files
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._pid = os.getpid()
        # As strings: a path built per append (`lock_of`) costs more than the stats.
        self._file = os.fspath(path)
        self._lock_path = os.fspath(lock_of(path))

    def append(self, lines: bytes) -> None:
        """Append `lines` (whole lines, each ending in a newline) to the current file,
        rotating first when they would take it past `max_bytes`. Raises OSError."""
        with self._lock:
            lock = self._lock_file()
            try:
                size = self._current_size()
                if size > 0 and size + len(lines) > self.max_bytes:
                    order = files_of(self.path, self.files)  # oldest first; the last is `P`
                    order[0].unlink(missing_ok=True)
                    for older, newer in itertools.pairwise(order):
                        if newer.exists():
                            newer.rename(older)
                    count = str(_rotations(lock) + 1).encode()
                    os.ftruncate(lock, 0)
                    os.pwrite(lock, count, 0)
                    self._current_size()
                assert self._fd is not None
                view = memoryview(lines)
                while view:
                    view = view[os.write(self._fd, view) :]
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _lock_file(self) -> int:
        """The lock file's descriptor, held under an exclusive `flock`: opened again when
        this process is a fork of the one that opened it (an inherited descriptor shares
        its lock with the parent, so it would exclude neither), or when `P.lock` names
        another file than the one locked (removed and created again by someone)."""
        if self._lock_fd is not None and self._pid != os.getpid():
            self._drop()  # closing the inherited copy releases nothing the parent holds
        while True:
            if self._lock_fd is None:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
                self._pid = os.getpid()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            if _still_named(self._lock_fd, self._lock_path) is not None:
                return self._lock_fd
            os.close(self._lock_fd)  # releases the lock on the file no one else sees
            self._lock_fd = None

    def _current_size(self) -> int:
        """The size of the file `path` names, opened (created) as `_fd` if the open one is
        another file or none. Under the lock."""
        if self._fd is not None:
            named = _still_named(self._fd, self._file)
            if named is not None:
                return named.st_size
            os.close(self._fd)
            self._fd = None
        self._fd = os.open(self._file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        """Close the open descriptors (an append after this opens them again)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        """Close both descriptors, if open, and forget them."""
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None

    def __del__(self) -> None:
        with suppress(Exception):
            self.close()


LINGER_SECONDS = 0.05
"""How long `QueuedLog`'s thread lets a batch gather after its first line."""


class QueuedLog:
    """The server's side of a `RequestLog`: `put` queues a line and returns at once; one
    background thread appends what is queued, all of it in one append when several lines
    wait. So a request never waits for the lock (another replica rotating the log on a
    shared volume), the file system or the append's system calls (4 stats, 2 locks and a
    write: 14 us here), and a busy server appends many requests per call.

    The queue holds at most `capacity` lines (requests). `put` on a full queue drops the
    line and counts it (`dropped`, metric `lykeion_request_log_dropped_total`): the log
    loses requests rather than slow or grow without bound. An append that fails
    (OSError: disk full, volume gone) loses its lines, counted as `failed` (metric
    `lykeion_request_log_failed_total`) and logged when failing starts and when it stops;
    the predictions were answered either way.

    The thread wakes once per batch, not per line: after the first line of a batch it
    waits `linger` seconds (default `LINGER_SECONDS`) for more, unless hurried by `flush`,
    `close` or a queue half full. So a server answering hundreds of requests a second
    wakes it about 1/`linger` times a second, and its requests do not share the
    interpreter lock and the cores with a wake-up each. A line is in the file at most
    about `linger` after its answer, not before it: `flush` waits for what was queued so
    far (a reader in this process calls it first). `close` writes what is queued and stops
    the thread. The thread is not inherited by a fork: a forked process makes its own
    `QueuedLog`."""

    def __init__(
        self,
        log: RequestLog,
        capacity: int,
        registry: CollectorRegistry,
        linger: float = LINGER_SECONDS,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"request log queue capacity {capacity} must be > 0")
        if not 0 <= linger < math.inf:
            raise ValueError(f"request log linger {linger} s must be finite and >= 0")
        self.log = log
        self.capacity = capacity
        self.linger = linger
        self._hurry = threading.Event()
        """Set by `flush`, `close` and a half-full queue: the batch goes without lingering."""
        self.dropped = 0
        self.failed = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._condition = threading.Condition()
        self._queued = 0
        """Lines accepted so far."""
        self._done = 0
        """Lines accepted so far that were appended, or failed to be."""
        self._closing = False
        self._failing = False
        self._dropped = Counter(
            "lykeion_request_log_dropped_total",
            "Answered requests not logged: the request log's queue was full",
            registry=registry,
        )
        self._failed = Counter(
            "lykeion_request_log_failed_total",
            "Answered requests not logged: appending them to the request log failed",
            registry=registry,
        )
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> bool:
        """Queue `line` (whole lines ending in a newline) without blocking; False when the
        queue was full (or closed) and the line was dropped."""
        with self._condition:
            if len(self._pending) < self.capacity and not self._closing:
                self._pending.append(line)
                self._queued += 1
                if len(self._pending) == 1:
                    self._condition.notify()  # a batch starts; the thread lingers for more
                if 2 * len(self._pending) >= self.capacity:
                    self._hurry.set()
                return True
            self.dropped += 1
        self._dropped.inc()
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line queued before this call is appended (or failed to be);
        False when `timeout` seconds passed first."""
        with self._condition:
            target = self._queued
        self._hurry.set()
        with self._condition:
            return self._condition.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Append what is queued (waiting at most `timeout` seconds), stop the thread and
        close the log's descriptors. Lines put after this are dropped."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._hurry.set()
        self._thread.join(timeout)
        self.log.close()

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return  # closing, and everything is written
            # The batch's first line is queued: let the rest of it come (not woken by each
            # line: `put` notifies only the first), unless hurried. Lines queued before a
            # `flush` are taken below or, when it hurried after the take, by the next
            # batch, which then does not wait.
            if self.linger:
                self._hurry.wait(self.linger)
            self._hurry.clear()
            with self._condition:
                lines = list(self._pending)
                self._pending.clear()
            self._append(lines)
            with self._condition:
                self._done += len(lines)
                self._condition.notify_all()

    def _append(self, lines: list[bytes]) -> None:
        try:
            self.log.append(b"".join(lines))
        except OSError as error:
            with self._condition:
                self.failed += len(lines)
            self._failed.inc(len(lines))
            if not self._failing:
                log.warning("request log %s: appends fail, lines lost: %s", self.log.path, error)
            self._failing = True
            return
        if self._failing:
            log.warning("request log %s: appends succeed again", self.log.path)
        self._failing = False


def _still_named(fd: int, path: str) -> os.stat_result | None:
    """`path`'s stat while it names the file open as `fd`; None once `path` was removed or
    names another file (renamed by a rotation, replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return None
    held = os.fstat(fd)
    return named if (held.st_ino, held.st_dev) == (named.st_ino, named.st_dev) else None


@dataclass
class _File:
    offset: int = 0
    """Bytes of the file consumed (complete lines and `pending`)."""
    head: bytes = b""
    pending: bytes = b""
    """A last line without its newline yet."""
    rows: list[Logged] = field(default_factory=list)
    keys: dict[Key, Key] = field(default_factory=dict)
    """One copy of each key of `rows` (a key asked for again and again is held once)."""


class LogReader:
    """The logged rows of `version` across the rotated files of `path`, read incrementally
    (module docstring). `bytes_read` counts the log bytes read so far (the up to
    `HEAD_BYTES` bytes a poll compares per known file are not counted). `bounded`: keep
    only the rows at or after the last `since` asked for (module docstring); the answers
    are the same either way. Thread-safe."""

    def __init__(
        self,
        path: Path,
        files: int,
        version: str,
        key_names: Sequence[str],
        bounded: bool = False,
    ) -> None:
        self.path = path
        self.files = files
        self.version = version
        self.key_names = list(key_names)
        self.bounded = bounded
        self.bytes_read = 0
        self._known: dict[int, _File] = {}
        self._floor: int | None = None
        """Rows older than this (microseconds) are not kept; None: every row is."""
        self._lock = threading.Lock()

    def rows(self, since: int | None, until: int | None) -> list[Logged]:
        """Rows with `since <= time <= until` (microseconds; None: unbounded), oldest file
        first and in log order within a file. A missing file is no rows; a line that is not
        a logged row (a torn line of a crashed writer) is skipped. Raises OSError other
        than a missing file."""
        with self._lock:
            if self.bounded:
                self._keep_from(since)
            found = self._poll()
        return [
            row
            for state in found
            for row in state.rows
            if (since is None or row.time >= since) and (until is None or row.time <= until)
        ]

    @property
    def kept(self) -> int:
        """Rows held in memory now (of the files the last poll found)."""
        with self._lock:
            return sum(len(state.rows) for state in self._known.values())

    def _keep_from(self, since: int | None) -> None:
        """Keep the rows at or after `since` (None: all) from now on: forget the older ones
        kept, or, when older rows are asked for than are kept, read every file again."""
        if since == self._floor:
            return
        if self._floor is not None and (since is None or since < self._floor):
            self._known = {}  # what is asked for was not kept: from each file's start
        elif since is not None:
            for state in self._known.values():
                state.rows = [row for row in state.rows if row.time >= since]
                state.keys = {}
                for row in state.rows:
                    with suppress(TypeError):  # an unhashable key is not shared
                        state.keys.setdefault(row.key, row.key)
        self._floor = since

    def _open(self) -> list[tuple[int, BinaryIO]]:
        """(rotation at which it became current, open file) per file kept, oldest first."""
        try:
            with _locked(self.path, exclusive=False) as lock:
                return self._open_all(_rotations(lock))
        except FileNotFoundError:  # no writer has locked this log: never rotated
            return self._open_all(0)

    def _open_all(self, rotations: int) -> list[tuple[int, BinaryIO]]:
        opened: list[tuple[int, BinaryIO]] = []
        order = files_of(self.path, self.files)
        for age, path in zip(range(len(order) - 1, -1, -1), order, strict=True):
            try:
                opened.append((rotations - age, path.open("rb")))
            except FileNotFoundError:
                continue
        return opened

    def _poll(self) -> list[_File]:
        seen: dict[int, _File] = {}
        for born, source in self._open():
            with source:
                size = os.fstat(source.fileno()).st_size
                state = self._known.get(born)
                if state is not None and (
                    size < state.offset
                    or os.pread(source.fileno(), len(state.head), 0) != state.head
                ):
                    state = None  # truncated or rewritten in place
                if state is None:
                    state = _File()
                source.seek(state.offset)
                while state.offset < size:
                    data = source.read(min(CHUNK_BYTES, size - state.offset))
                    if not data:
                        break  # cut short since its size was read: the next poll sees it
                    self.bytes_read += len(data)
                    if state.offset < HEAD_BYTES:
                        state.head = (state.head + data)[:HEAD_BYTES]
                    state.offset += len(data)
                    self._parse(state, data)
                seen[born] = state
        self._known = seen  # files rotation deleted are forgotten
        return list(seen.values())

    def _parse(self, state: _File, data: bytes) -> None:
        lines = (state.pending + data).split(b"\n")
        state.pending = lines.pop()
        names = self.key_names
        for line in lines:
            try:
                entry = json.loads(line)
                if entry["version"] != self.version:
                    continue
                moment = micros(float(entry["time"]))
                if self._floor is not None and moment < self._floor:
                    continue  # never asked for again (bounded)
                keys, predictions = entry["keys"], entry["prediction"]
                if isinstance(keys, list):  # one line per request
                    if not isinstance(predictions, list):
                        continue
                    found = [
                        (tuple(k[n] for n in names), p)
                        for k, p in zip(keys, predictions, strict=True)  # else ValueError
                    ]
                else:  # one line per row (servers before the line per request)
                    found = [(tuple(keys[n] for n in names), predictions)]
            except (KeyError, TypeError, ValueError):
                continue
            for key, prediction in found:
                with suppress(TypeError):  # an unhashable key is kept as it is
                    key = state.keys.setdefault(key, key)
                state.rows.append(Logged(moment, key, prediction))
