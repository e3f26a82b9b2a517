"""The skew check's offline recomputation in a child process of the model server.

The point-in-time query itself runs in the store (DuckDB, BigQuery), but planning it,
opening the store and hashing the result are Python: in the server's process that work
holds the interpreter lock in slices of up to 5 ms, which is what a prediction waiting
for it adds to the tail latency. In a child process (at a lower CPU priority) it costs
the server only the frames below.

    python -m lykeion.serving.recompute     (started by `Recomputer`, never by hand)

Protocol on stdin/stdout, frames of one kind byte, an 8-byte big-endian length, payload:
- parent -> child, first: `C` + JSON `{"offline": uri, "manifests": [...], "features":
  ["entity.feature", ...]}` (manifests as in `ServerConfig`, their generation included);
- parent -> child, then: `L` + an Arrow IPC stream of labels (the join keys, the request
  time `TIME` as `timestamp[us, UTC]`);
- child -> parent, per labels: `T` + an Arrow IPC stream of one column per feature, in
  the order given, one row per label; or `E` + UTF-8 text when the store failed.
The child exits when its stdin closes (the server is gone).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any

# At the server's start, not with its first sample: an import under traffic holds the
# interpreter lock for a fraction of a second.
import pyarrow as pa

if TYPE_CHECKING:
    from lykeion.features.reference import ResolvedFeature

TIME = "__lykeion_request_time"
TARGET = "__lykeion_target"
_HEADER = struct.Struct(">cQ")
NICE = 10
"""How much lower the child's CPU priority is than the server's."""


class RecomputeFailed(RuntimeError):
    """The offline store (or the child process) could not answer."""


def write_frame(sink: IO[bytes], kind: bytes, payload: bytes) -> None:
    sink.write(_HEADER.pack(kind, len(payload)))
    sink.write(payload)
    sink.flush()


def read_frame(source: IO[bytes]) -> tuple[bytes, bytes]:
    """(kind, payload); raises EOFError when the stream ends."""
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("stream closed")
    kind, size = _HEADER.unpack(header)
    payload = source.read(size)
    if len(payload) < size:
        raise EOFError("stream closed mid-frame")
    return kind, payload


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc(payload: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()


def resolve(
    manifests: Sequence[Mapping[str, Any]], features: Sequence[str]
) -> list[ResolvedFeature]:
    """`entity.feature` references resolved to the views of the given manifests (their
    generation in effect); raises ValueError (`UnresolvedFeature`, `InvalidFeatureReference`)
    when one is not defined exactly once."""
    from lykeion.features.reference import resolve as resolve_references
    from lykeion.features.view import FeatureView

    views = [FeatureView.from_body(dict(body)) for body in manifests]
    return resolve_references(features, views)


def recompute_table(store: Any, refs: Sequence[ResolvedFeature], labels: pa.Table) -> pa.Table:
    """The features at each label's time, by the store's training-set path: one column per
    ref (named `entity.feature`), one row per label."""
    from lykeion.stores.offline.base import LabelSpec

    with_target = labels.append_column(TARGET, pa.array([0] * labels.num_rows, pa.int64()))
    spec = LabelSpec(refs[0].view.join_key, TIME, TARGET)
    table = store.training_set(with_target, spec, refs).table
    return pa.table({f"{r.view.entity}.{r.feature}": table.column(r.column) for r in refs})


def child_main() -> int:
    """The child's loop (see the module docstring)."""
    from lykeion.stores import open_offline

    with contextlib.suppress(OSError):
        os.nice(NICE)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    try:
        kind, payload = read_frame(source)
    except EOFError:
        return 0
    if kind != b"C":
        print("recompute: first frame must be the configuration", file=sys.stderr)
        return 2
    config = json.loads(payload)
    refs = resolve(config["manifests"], config["features"])
    store = None
    while True:
        try:
            kind, payload = read_frame(source)
        except EOFError:
            return 0
        try:
            if store is None:
                store = open_offline(config["offline"])
            result = recompute_table(store, refs, from_ipc(payload))
        except Exception as error:  # noqa: BLE001 - reported to the parent as unavailable
            # Which errors a store raises is its client's business (DuckDB, BigQuery,
            # network): each is an answer "the store did not answer", never the child's end.
            write_frame(sink, b"E", f"{type(error).__name__}: {error}".encode())
            continue
        write_frame(sink, b"T", to_ipc(result))


class InProcess:
    """The recomputation in the server's own process (tests, tools): same answers as
    `Recomputer`, without the isolation."""

    def __init__(self, store: Callable[[], Any], refs: Sequence[ResolvedFeature]) -> None:
        self._open = store
        self._store: Any = None
        self.refs = list(refs)

    def __call__(self, labels: pa.Table) -> dict[str, list[Any]]:
        try:
            if self._store is None:
                self._store = self._open()
            table = recompute_table(self._store, self.refs, labels)
        except Exception as error:
            raise RecomputeFailed(f"{type(error).__name__}: {error}") from error
        return {name: table.column(name).to_pylist() for name in table.column_names}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class Recomputer:
    """The parent's side: one child process, started on first use and again after it
    died; one request at a time (the skew worker is the only caller)."""

    def __init__(
        self, offline: str, manifests: Sequence[Mapping[str, Any]], features: Sequence[str]
    ) -> None:
        self.config = json.dumps(
            {"offline": offline, "manifests": list(manifests), "features": list(features)}
        ).encode()
        self.features = list(features)
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _child(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._process = subprocess.Popen(
            [sys.executable, "-m", "lykeion.serving.recompute"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the server's log
        )
        assert self._process.stdin is not None
        write_frame(self._process.stdin, b"C", self.config)
        return self._process

    def start(self) -> None:
        """Start the child now (else on first use); raises OSError when it cannot run."""
        with self._lock:
            self._child()

    def __call__(self, labels: pa.Table) -> dict[str, list[Any]]:
        """`entity.feature` -> the offline value of each label row; raises
        RecomputeFailed when the store or the child failed."""
        with self._lock:
            try:
                child = self._child()
                assert child.stdin is not None and child.stdout is not None
                write_frame(child.stdin, b"L", to_ipc(labels))
                kind, payload = read_frame(child.stdout)
            except (OSError, EOFError) as error:
                self.close()
                raise RecomputeFailed(f"recompute process: {error}") from error
        if kind == b"E":
            raise RecomputeFailed(payload.decode(errors="replace"))
        table = from_ipc(payload)
        return {ref: table.column(ref).to_pylist() for ref in self.features}

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


if __name__ == "__main__":
    sys.exit(child_main())
