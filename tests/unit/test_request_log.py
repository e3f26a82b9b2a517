"""The model server's request log (`serving/request_log.py`): rotated by size, read back
incrementally. Held to a brute-force reading of every file still on disk, and to the
exact count of bytes a poll reads; a bounded reader to the same answers while it keeps
only the rows at or after the last `since` it was asked for."""

from __future__ import annotations

import csv
import fcntl
import itertools
import json
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from lykeion.api.model import LabelsSource
from lykeion.serving import request_log
from lykeion.serving.outcomes import LiveLabels, join, labels_of, metric_of
from lykeion.serving.request_log import (
    Logged,
    LogReader,
    QueuedLog,
    RequestLog,
    files_of,
    lock_of,
)

BASE = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEYS = ["k1", "k2", "k3"]


def _lines(rows: list[tuple[int, str, str, float]], per_request: bool = False) -> bytes:
    """Rows (seconds after BASE, version, key, score) as model servers log them: one line
    per row (servers before the line per request), or with `per_request` one line per
    request as `app.ModelServer` writes it (`request_log.line`), consecutive rows of one
    time and version making one request."""
    if per_request:
        groups = itertools.groupby(rows, key=lambda row: (row[0], row[1]))
        return b"".join(
            request_log.line(
                (BASE + timedelta(seconds=t)).timestamp(),
                v,
                [{"rider_id": k} for _, _, k, _ in group],
                {"age": [30] * len(group)},
                [p for _, _, _, p in group],
            )
            for (t, v), grouped in groups
            for group in [list(grouped)]
        )
    return b"".join(
        orjson.dumps(
            {
                "time": (BASE + timedelta(seconds=t)).timestamp(),
                "version": v,
                "keys": {"rider_id": k},
                "features": {"age": 30},
                "prediction": p,
            }
        )
        + b"\n"
        for t, v, k, p in rows
    )


def _brute_force(path: Path, files: int, since: int, until: int) -> list[Logged]:
    """Every row of version 1.0 in [since, until] (microseconds) in the files on disk,
    oldest file first, each file read whole with the standard library's parser."""
    found = []
    for name in [*(f"{path.name}.{i}" for i in range(files - 1, 0, -1)), path.name]:
        file = path.with_name(name)
        if not file.exists():
            continue
        for line in file.read_text().splitlines():
            entry = json.loads(line)
            moment = round(entry["time"] * 1_000_000)
            if entry["version"] != "1.0" or not since <= moment <= until:
                continue
            if isinstance(entry["keys"], list):  # a request's rows
                for keys, prediction in zip(entry["keys"], entry["prediction"], strict=True):
                    found.append(Logged(moment, (keys["rider_id"],), prediction))
            else:  # one row
                found.append(Logged(moment, (entry["keys"]["rider_id"],), entry["prediction"]))
    return found


def _micros(seconds: int) -> int:
    return round((BASE + timedelta(seconds=seconds)).timestamp() * 1_000_000)


batches = st.lists(
    st.tuples(
        st.integers(0, 40),
        st.sampled_from(["1.0", "1.0", "2.0"]),
        st.sampled_from(KEYS),
        st.sampled_from([0.1, 0.4, 0.6, 0.9]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(
        st.tuples(batches, st.booleans(), st.booleans(), st.integers(0, 40), st.integers(0, 40)),
        min_size=1,
        max_size=12,
    ),
    max_bytes=st.integers(150, 1500),
    files=st.integers(1, 4),
    labels=st.lists(
        st.tuples(st.integers(0, 45), st.sampled_from(KEYS), st.sampled_from([0, 1])),
        max_size=20,
    ),
)
def test_rotated_log_read_incrementally_equals_a_brute_force_read_of_what_is_kept(
    steps: list[tuple[list[tuple[int, str, str, float]], bool, bool, int, int]],
    max_bytes: int,
    files: int,
    labels: list[tuple[int, str, int]],
) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        path = folder / "requests.jsonl"
        log = RequestLog(path, max_bytes, files)
        reader = LogReader(path, files, "1.0", ["rider_id"])
        # Bounded, asked the same windows (`since` going back and forth: read again) ...
        bounded = LogReader(path, files, "1.0", ["rider_id"], bounded=True)
        # ... and as a rollout asks, from a start that only moves on.
        stepping = LogReader(path, files, "1.0", ["rider_id"], bounded=True)
        start = _micros(0)
        appended: list[bytes] = []
        largest = 0
        for batch, per_request, poll, a, b in steps:
            lines = _lines(batch, per_request)  # a log may hold lines of both shapes
            log.append(lines)
            appended.extend(line + b"\n" for line in lines.splitlines())
            largest = max(largest, len(lines))
            kept = [f for f in files_of(path, files) if f.exists()]
            # Never more than `files` files, each within the size but for one batch.
            assert len(kept) <= files
            assert all(f.stat().st_size <= max(max_bytes, largest) for f in kept)
            # What is kept is the newest part of what was logged, whole lines.
            on_disk = b"".join(f.read_bytes() for f in kept)
            assert b"".join(appended).endswith(on_disk)
            if poll:
                since, until = _micros(min(a, b)), _micros(max(a, b))
                expected = _brute_force(path, files, since, until)
                assert reader.rows(since, until) == expected
                assert bounded.rows(since, until) == expected
                # It holds exactly the rows a later ask from `since` on can want.
                assert bounded.kept == len(_brute_force(path, files, since, _micros(100)))
                start = max(start, since)
                assert stepping.rows(start, until) == _brute_force(path, files, start, until)
                assert stepping.kept == len(_brute_force(path, files, start, _micros(100)))
        everything = (_micros(0), _micros(100))
        assert reader.rows(*everything) == _brute_force(path, files, *everything)
        assert bounded.rows(*everything) == _brute_force(path, files, *everything)
        assert bounded.rows(None, None) == reader.rows(None, None)
        # Each byte still on disk was read once, no matter how often it was polled; also by
        # a bounded reader whose `since` never went back.
        assert reader.bytes_read <= len(b"".join(appended))
        assert stepping.bytes_read <= len(b"".join(appended))
        # The live metric over a window is the brute-force one over the rows still kept.
        with (folder / "labels.csv").open("w", newline="") as sink:
            writer = csv.writer(sink)
            writer.writerow(["rider_id", "label_time", "y"])
            for seconds, key, target in labels:
                writer.writerow([key, (BASE + timedelta(seconds=seconds)).isoformat(), target])
        source = LabelsSource.model_validate(
            {
                "file": {"path": "labels.csv", "format": "csv"},
                "timestampColumn": "label_time",
                "target": "y",
            }
        )
        live = LiveLabels(
            source, 5.0, folder, "", path, "1.0", {"rider_id": "string"}, log_files=files
        )
        since = BASE + timedelta(seconds=10)
        found = live.measure("accuracy", since, BASE + timedelta(seconds=35), [0, 1])
        kept_rows = _brute_force(path, files, _micros(10), _micros(35))
        table = _labels_table(labels)
        pairs, count = join(kept_rows, labels_of(table, ["rider_id"], "label_time", "y"), 5_000_000)
        expected = metric_of("accuracy", pairs, count, [0, 1])
        assert (found.requests, found.labelled) == (expected.requests, expected.labelled)
        if expected.value is None:
            assert found.value is None
        else:
            assert found.value == pytest.approx(expected.value)


def _labels_table(labels: list[tuple[int, str, int]]) -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "rider_id": pa.array([k for _, k, _ in labels], pa.string()),
            "label_time": pa.array(
                [BASE + timedelta(seconds=s) for s, _, _ in labels], pa.timestamp("us", tz="UTC")
            ),
            "y": pa.array([y for _, _, y in labels], pa.int64()),
        }
    )


def test_a_poll_after_appends_reads_only_the_new_bytes_also_across_rotation(
    tmp_path: Path,
) -> None:
    path = tmp_path / "requests.jsonl"
    first = _lines([(1, "1.0", "k1", 0.9), (2, "1.0", "k2", 0.1)])
    log = RequestLog(path, len(first) + 10, 3)
    reader = LogReader(path, 3, "1.0", ["rider_id"])
    log.append(first)
    assert len(reader.rows(None, None)) == 2 and reader.bytes_read == len(first)
    # Nothing new: nothing read.
    assert len(reader.rows(None, None)) == 2 and reader.bytes_read == len(first)
    # The next batch rotates the first file away (renamed, not rewritten): only it is read.
    second = _lines([(3, "1.0", "k3", 0.5), (4, "2.0", "k1", 0.5)])
    log.append(second)
    assert path.with_name("requests.jsonl.1").read_bytes() == first
    assert [r.time for r in reader.rows(None, None)] == [_micros(1), _micros(2), _micros(3)]
    assert reader.bytes_read == len(first) + len(second)
    # A torn line is read once and completed by the next append.
    third = _lines([(5, "1.0", "k1", 0.7)])
    with path.open("ab") as sink:
        sink.write(third[:20])
    assert len(reader.rows(None, None)) == 3
    with path.open("ab") as sink:
        sink.write(third[20:])
    assert len(reader.rows(None, None)) == 4
    assert reader.bytes_read == len(first) + len(second) + len(third)


def test_a_truncated_or_replaced_log_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    reader = LogReader(path, 2, "1.0", ["rider_id"])
    assert reader.rows(None, None) == []  # no file yet
    path.write_bytes(_lines([(1, "1.0", "k1", 0.9), (2, "1.0", "k2", 0.1)]))
    assert len(reader.rows(None, None)) == 2
    # Truncated in place (same inode), then one shorter row written.
    with path.open("r+b") as sink:
        sink.truncate(0)
    path.write_bytes(_lines([(7, "1.0", "k3", 0.3)]))
    assert [r.time for r in reader.rows(None, None)] == [_micros(7)]
    # Rewritten in place with as many bytes but other rows: the first bytes differ.
    path.write_bytes(_lines([(8, "1.0", "k3", 0.3)]))
    assert [r.time for r in reader.rows(None, None)] == [_micros(8)]
    # Deleted: no rows, and nothing remembered of it.
    path.unlink()
    assert reader.rows(None, None) == []


def test_a_line_is_one_request_and_both_shapes_read_as_rows_in_log_order(tmp_path: Path) -> None:
    moment = (BASE + timedelta(seconds=1)).timestamp()
    served = datetime(2026, 11, 1, tzinfo=UTC)
    text = request_log.line(
        moment,
        "1.0",
        [{"rider_id": "k1"}, {"rider_id": "k2"}],
        {"age": [30, None], "fare": [float("nan"), 2.5], "seen": [served, served]},
        [[0.1, 0.9], [0.8, 0.2]],
    )
    assert text.endswith(b"\n") and text.count(b"\n") == 1
    assert json.loads(text) == {
        "time": moment,
        "version": "1.0",
        "keys": [{"rider_id": "k1"}, {"rider_id": "k2"}],
        "features": {
            "age": [30, None],
            "fare": [None, 2.5],  # NaN has no JSON: null, as the per-row lines wrote it
            "seen": ["2026-11-01T00:00:00+00:00"] * 2,
        },
        "prediction": [[0.1, 0.9], [0.8, 0.2]],
    }
    path = tmp_path / "requests.jsonl"
    # A row line (an older server on the same volume), this request, a request whose
    # predictions do not match its keys and one with a key missing (both skipped whole),
    # another version's request, then one more request.
    path.write_bytes(
        _lines([(0, "1.0", "k3", 0.5)])
        + text
        + request_log.line(moment, "1.0", [{"rider_id": "k1"}], {}, [0.1, 0.2])
        + request_log.line(moment, "1.0", [{"rider_id": "k1"}, {"id": "k2"}], {}, [0.1, 0.2])
        + _lines([(2, "2.0", "k1", 0.3), (2, "2.0", "k2", 0.4)], per_request=True)
        + _lines([(3, "1.0", "k2", 0.6), (3, "1.0", "k3", 0.7)], per_request=True)
    )
    expected = [
        Logged(_micros(0), ("k3",), 0.5),
        Logged(_micros(1), ("k1",), [0.1, 0.9]),
        Logged(_micros(1), ("k2",), [0.8, 0.2]),
        Logged(_micros(3), ("k2",), 0.6),
        Logged(_micros(3), ("k3",), 0.7),
    ]
    assert LogReader(path, 1, "1.0", ["rider_id"]).rows(None, None) == expected
    assert (
        LogReader(path, 1, "1.0", ["rider_id"], bounded=True).rows(_micros(1), None)
        == (expected[1:])
    )


def test_rotation_is_configured_in_the_server_config() -> None:
    from lykeion.serving.config import ServerConfig

    base = {"name": "x", "version": "1.0", "model_uri": "runs:/r/model", "online_store": "s"}
    config = ServerConfig.model_validate(base)
    assert (config.request_log_max_bytes, config.request_log_files) == (16 * 1024 * 1024, 4)
    for bad in ({"request_log_max_bytes": 0}, {"request_log_files": 0}):
        with pytest.raises(ValueError):
            ServerConfig.model_validate({**base, **bad})
    with pytest.raises(ValueError):
        RequestLog(Path("/nonexistent/x"), 0, 1)


def test_a_file_read_in_chunks_smaller_than_a_line_gives_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "requests.jsonl"
    rows = [(t, "1.0" if t % 3 else "2.0", KEYS[t % 3], 0.1 * (t % 10)) for t in range(40)]
    path.write_bytes(_lines(rows))
    whole = LogReader(path, 1, "1.0", ["rider_id"]).rows(None, None)
    assert whole == _brute_force(path, 1, _micros(0), _micros(100)) and len(whole) == 26
    # Chunks of 7 bytes: every line spans several; the torn last line waits for its end.
    monkeypatch.setattr(request_log, "CHUNK_BYTES", 7)
    chunked = LogReader(path, 1, "1.0", ["rider_id"], bounded=True)
    assert chunked.rows(None, None) == whole
    assert chunked.bytes_read == path.stat().st_size
    torn = _lines([(50, "1.0", "k1", 0.5)])
    with path.open("ab") as sink:
        sink.write(torn[:30])
    assert chunked.rows(_micros(20), None) == [r for r in whole if r.time >= _micros(20)]
    with path.open("ab") as sink:
        sink.write(torn[30:])
    assert [r.time for r in chunked.rows(_micros(20), None)][-1] == _micros(50)
    assert chunked.kept == len(_brute_force(path, 1, _micros(20), _micros(100)))


def test_a_bounded_reader_keeps_rows_whose_key_cannot_be_hashed(tmp_path: Path) -> None:
    """A key logged as a list (JSON arrays) is kept as the unbounded reader keeps it, also
    when a later `since` drops the older rows."""
    log = tmp_path / "requests.log"
    rows = [
        {"version": "1.0", "time": t, "keys": {"k": [1, 2]}, "prediction": 1.0}
        for t in (1.0, 2.0, 3.0)
    ]
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    counts = {}
    for bounded in (False, True):
        reader = LogReader(log, 1, "1.0", ["k"], bounded=bounded)
        counts[bounded] = [len(reader.rows(since, None)) for since in (None, 2_000_000, 2_500_000)]
    assert counts[True] == counts[False] == [3, 2, 1]


def _write_from_a_process(path: str, writer: int, batches: int, max_bytes: int) -> None:
    """A replica of a version on the shared volume: its own RequestLog on the same path."""
    log = RequestLog(Path(path), max_bytes, 50)
    for i in range(batches):
        log.append(_lines([(i, f"w{writer}", f"k{i % 3 + 1}", float(i))] * (1 + i % 3)))
    log.close()


def test_writers_in_processes_share_one_log_losing_and_splitting_nothing(tmp_path: Path) -> None:
    # Each writer keeps its file open between appends; a rotation by one moves the file
    # the others hold, and each then appends to the new current file, never the renamed one.
    import multiprocessing

    path = tmp_path / "requests.jsonl"
    batches, writers, max_bytes = 150, 3, 4000
    context = multiprocessing.get_context("fork")
    started = [
        context.Process(target=_write_from_a_process, args=(str(path), w, batches, max_bytes))
        for w in range(writers)
    ]
    for process in started:
        process.start()
    for process in started:
        process.join(60)
        assert process.exitcode == 0
    kept = [f for f in files_of(path, 50) if f.exists()]
    assert len(kept) > 3, "the writers rotated the log"
    lines = b"".join(f.read_bytes() for f in kept).splitlines()
    rows = [json.loads(line) for line in lines]  # every line whole
    assert len(rows) == writers * sum(1 + i % 3 for i in range(batches))
    for w in range(writers):
        # Each writer's rows in the order it appended them.
        mine = [int(r["prediction"]) for r in rows if r["version"] == f"w{w}"]
        assert mine == sorted(mine)
    assert all(f.stat().st_size <= max_bytes for f in kept)


def test_an_append_after_the_file_was_removed_creates_it_again(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path, 1 << 20, 2)
    first, second = _lines([(1, "1.0", "k1", 0.9)]), _lines([(2, "1.0", "k2", 0.1)])
    log.append(first)
    path.unlink()
    log.append(second)
    assert path.read_bytes() == second
    log.close()
    log.append(first)  # opens again after close
    assert path.read_bytes() == second + first


def test_a_writer_whose_lock_file_was_removed_counts_rotations_in_the_new_one(
    tmp_path: Path,
) -> None:
    # Readers name files by the rotation count in `P.lock`; a writer that keeps counting in
    # a removed lock file (and locking it) is invisible to readers and to other writers.
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path, 100, 3)
    batch = _lines([(1, "1.0", "k1", 0.9)] * 2)
    log.append(batch)
    lock_of(path).unlink()
    log.append(batch)  # rotates
    assert lock_of(path).exists() and lock_of(path).read_text() == "1"


def _append_after_fork(log: RequestLog, writer: str, batches: int) -> None:
    for i in range(batches):
        log.append(_lines([(i, writer, "k1", float(i))]))


def test_a_fork_after_an_append_still_serialises_the_two_processes(tmp_path: Path) -> None:
    # After a fork both processes hold the same open lock file: `flock` on it then excludes
    # neither, and their rotations race (renames of files the other just moved).
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path, 400, 5000)
    log.append(_lines([(0, "parent", "k1", 0.0)]))
    batches = 800
    pid = os.fork()
    if pid == 0:
        try:
            _append_after_fork(log, "child", batches)
        except OSError:
            os._exit(1)
        os._exit(0)
    failure = None
    try:
        _append_after_fork(log, "parent", batches)
    except OSError as exc:
        failure = exc
    _, status = os.waitpid(pid, 0)
    assert failure is None and os.waitstatus_to_exitcode(status) == 0
    kept = [f for f in files_of(path, 5000) if f.exists()]
    lines = b"".join(f.read_bytes() for f in kept).splitlines()
    assert len(lines) == 2 * batches + 1


# -- the server's queued writer ----------------------------------------------------------


def _metric(registry: CollectorRegistry, name: str) -> float:
    value = registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_a_replica_holding_the_lock_never_blocks_put_and_a_full_queue_drops_counted(
    tmp_path: Path,
) -> None:
    """Another writer of the shared log holds its lock (as while it rotates): `put` still
    returns at once; past the queue's capacity lines are dropped and counted, and once the
    lock is free the accepted lines are appended in order, none split."""
    path = tmp_path / "requests.jsonl"
    registry = CollectorRegistry()
    queued = QueuedLog(RequestLog(path, 1 << 20, 2), 3, registry)
    lines = [_lines([(i, "1.0", f"k{i}", 0.5)], per_request=True) for i in range(10)]
    fd = os.open(lock_of(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        accepted = []
        for line in lines:
            begun = time.monotonic()
            if queued.put(line):
                accepted.append(line)
            assert time.monotonic() - begun < 0.5  # never waits for the lock
            time.sleep(0.02)  # the writer takes what is queued, then waits for the lock
        assert queued.flush(0.2) is False  # the writer is waiting for the lock
        # 3 queued, and what the writer took before it blocked (up to 3 more).
        assert 3 <= len(accepted) <= 6 and accepted == lines[: len(accepted)]
        assert queued.dropped == len(lines) - len(accepted) > 0
        assert _metric(registry, "lykeion_request_log_dropped_total") == queued.dropped
        assert not path.exists() or path.read_bytes() == b""
    finally:
        os.close(fd)  # releases the lock
    assert queued.flush(5.0)
    assert path.read_bytes() == b"".join(accepted)
    queued.close()


def test_queued_lines_of_many_threads_are_all_appended_whole_and_close_writes_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "requests.jsonl"
    queued = QueuedLog(RequestLog(path, 1 << 20, 2), 10_000, CollectorRegistry())

    def put(thread: int) -> None:
        for i in range(200):
            assert queued.put(_lines([(i, f"t{thread}", "k1", float(i))] * 3, per_request=True))

    threads = [threading.Thread(target=put, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queued.put(_lines([(300, "t0", "k1", 1.0)]))
    queued.close()  # writes what is still queued
    assert queued.put(_lines([(301, "t0", "k1", 1.0)])) is False  # closed: dropped
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(written) == 4 * 200 + 1
    for thread in range(4):
        mine = [entry for entry in written if entry["version"] == f"t{thread}"]
        assert [entry["prediction"] for entry in mine][:200] == [[float(i)] * 3 for i in range(200)]


def test_a_failing_append_is_counted_and_the_log_goes_on_when_it_heals(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    registry = CollectorRegistry()
    queued = QueuedLog(RequestLog(path, 1 << 20, 2), 10, registry)
    path.mkdir()  # the log's path cannot be opened as a file: appends fail (OSError)
    lost = _lines([(1, "1.0", "k1", 0.5), (2, "1.0", "k2", 0.5)])
    assert queued.put(lost)
    assert queued.flush(5.0)
    assert queued.failed == 1 and _metric(registry, "lykeion_request_log_failed_total") == 1
    path.rmdir()
    kept = _lines([(3, "1.0", "k3", 0.5)], per_request=True)
    assert queued.put(kept) and queued.flush(5.0)
    assert path.read_bytes() == kept and queued.failed == 1
    queued.close()


class _CountingLog(RequestLog):
    """A real `RequestLog` that counts its appends (the writer thread's batches)."""

    appends = 0

    def append(self, lines: bytes) -> None:
        self.appends += 1
        super().append(lines)


def test_the_writer_appends_a_batch_per_linger_not_a_line_and_flush_or_close_hurry_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "requests.jsonl"
    log = _CountingLog(path, 1 << 20, 2)
    # A linger far longer than the test: only a hurry can make the thread append.
    queued = QueuedLog(log, 1000, CollectorRegistry(), linger=600.0)
    lines = [_lines([(i, "1.0", f"k{i}", 0.5)], per_request=True) for i in range(50)]
    for line in lines:
        assert queued.put(line)
    time.sleep(0.3)
    assert log.appends == 0 and not path.exists()  # lingering for more lines
    assert queued.flush(5.0)  # hurried: the 50 lines at once
    assert log.appends == 1 and path.read_bytes() == b"".join(lines)
    # A queue half full does not wait for the linger either.
    small = _CountingLog(tmp_path / "small.jsonl", 1 << 20, 2)
    hurried = QueuedLog(small, 8, CollectorRegistry(), linger=600.0)
    for line in lines[:4]:
        assert hurried.put(line)
    deadline = time.monotonic() + 5.0
    while small.appends == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert small.appends == 1 and (tmp_path / "small.jsonl").read_bytes() == b"".join(lines[:4])
    # close writes what lingers, without waiting for the linger.
    assert queued.put(lines[0])
    started = time.monotonic()
    queued.close(timeout=5.0)
    hurried.close(timeout=5.0)
    assert time.monotonic() - started < 5.0
    assert path.read_bytes() == b"".join(lines) + lines[0] and log.appends == 2


@pytest.mark.parametrize("linger", [-1.0, float("inf"), float("nan")])
def test_a_linger_that_is_negative_or_not_finite_is_refused(tmp_path: Path, linger: float) -> None:
    with pytest.raises(ValueError, match="linger"):
        QueuedLog(RequestLog(tmp_path / "r.jsonl", 1 << 20, 2), 10, CollectorRegistry(), linger)
