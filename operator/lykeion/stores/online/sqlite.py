"""The embedded online store: one SQLite table per view, one row per entity key.

Columns: the key, `event_time` (microseconds), one per feature holding its value at the
event time, and `_steps`: the aggregations' later values (`codec.encode_steps`: a BLOB of
records per window, null when none; see `OnlineRow`). A read at `t` takes each window's
last record at or before `t`. Rows written by earlier versions hold JSON text there,
which reads as before (`codec.step_values`); the column of tables created by them is
declared TEXT, which keeps a BLOB as it is.

SQLite stores a bound NaN as NULL, so a float64 NaN is stored as the text 'NaN' (a REAL
column keeps text it cannot read as a number) and read back as NaN; ±Inf are REALs.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lykeion.features.view import EVENT_TIME, KEY, FeatureView, is_list
from lykeion.stores.online.base import OnlineRow, StoreUnavailable
from lykeion.stores.online.codec import (
    MICROSECOND,
    checked_features,
    checked_table,
    checked_values,
    encode_steps,
    from_json,
    normalize_key,
    step_values,
    to_json,
    to_micros,
)

if TYPE_CHECKING:
    # pyarrow only for columnar writes: the Feature API reads without it.
    import pyarrow as pa

# SQLite's default limit on bound parameters is 32766 in recent versions, 999 in old ones.
READ_CHUNK = 500

_COLUMN_TYPES = {
    "int64": "INTEGER",
    "float64": "REAL",
    "string": "TEXT",
    "bool": "INTEGER",
    "timestamp": "INTEGER",
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _column_type(type_: str) -> str:
    return "TEXT" if is_list(type_) else _COLUMN_TYPES[type_]


STEPS = "_steps"
_NAN = "NaN"


def _to_column(type_: str, value: Any) -> Any:
    """A JSON-compatible value as SQLite stores it: lists as JSON text, NaN as 'NaN',
    other scalars as is."""
    if value is not None and is_list(type_):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float) and math.isnan(value):
        return _NAN
    return value


def _column_values(type_: str, column: pa.ChunkedArray) -> list[Any]:
    """A column of `codec.checked_table` as SQLite stores it: per value what
    `_to_column(type_, to_json(type_, value))` gives, converted a column at a time."""
    import pyarrow as pa

    if is_list(type_):
        return [_to_column(type_, to_json(type_, value)) for value in column.to_pylist()]
    if type_ == "timestamp":
        # Microseconds since the epoch, as `to_micros` counts them.
        return column.cast(pa.int64()).to_pylist()
    if type_ == "float64":
        return [_to_column(type_, value) for value in column.to_pylist()]
    # int64 -> int, string -> str, bool -> bool: what to_json returns.
    return column.to_pylist()


def _from_column(type_: str, value: Any) -> Any:
    if value is not None and is_list(type_):
        value = json.loads(value)
    elif value == _NAN and type_ == "float64":
        return math.nan
    return from_json(type_, value)


def _upsert_sql(view: FeatureView) -> str:
    table = _quote(view.table)
    names = [KEY, EVENT_TIME, *view.feature_names, STEPS]
    columns = ", ".join(_quote(n) for n in names)
    params = ", ".join("?" for _ in names)
    assignments = ", ".join(f"{_quote(n)} = excluded.{_quote(n)}" for n in names[1:])
    # Equal event times replace only when a value differs: a re-run with the same rows
    # changes nothing (and counts 0), a corrected re-run at the same time still lands.
    differs = " OR ".join(f"{table}.{_quote(n)} IS NOT excluded.{_quote(n)}" for n in names[2:])
    newer = f"excluded.{EVENT_TIME} > {table}.{EVENT_TIME}"
    same_time = f"excluded.{EVENT_TIME} = {table}.{EVENT_TIME}"
    condition = f"{newer} OR ({same_time} AND ({differs}))" if differs else newer
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({params}) "
        f"ON CONFLICT({KEY}) DO UPDATE SET {assignments} WHERE {condition}"
    )


class SqliteOnlineStore:
    """Thread-safe: each thread gets its own connection, and WAL lets readers run while a
    pipeline writes (also from other processes opening the same file)."""

    reads_inline = True

    def __init__(self, path: str | os.PathLike[str], busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._columns: dict[str, set[str]] = {}
        self._identity: tuple[int, int] | None = None
        self._epoch = 0
        """Bumped when the file is replaced: connections of an older epoch reopen."""
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"online store {self.path}: {exc}") from exc

    # -- connections -------------------------------------------------------------------

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _connect(self) -> sqlite3.Connection:
        # Only the first open may create the file: once the store has existed, SQLite
        # would otherwise answer (and write) from a new, empty file in its place.
        opened = self._identity is not None
        conn = sqlite3.connect(
            f"{self.path.absolute().as_uri()}?mode=rw" if opened else self.path,
            uri=opened,
            timeout=self._busy_timeout,
            isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE below)
            check_same_thread=False,  # close() runs on whichever thread shuts down
        )
        self._enable_wal(conn)
        # WAL + NORMAL never corrupts; a power cut may lose the last commits, which the
        # next materialization run rewrites from the offline store.
        conn.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            if self._closed:
                conn.close()
                raise StoreUnavailable(f"online store {self.path} is closed")
            self._connections.append(conn)
            if self._identity is None:
                self._identity = self._file_identity()
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """WAL persists in the file, so only its first opener switches. Switching bypasses
        the busy handler, so two processes opening a new file at once retry here."""
        deadline = time.monotonic() + self._busy_timeout
        while conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection; SQLite errors that mean 'cannot reach the file' or
        'busy for too long' become StoreUnavailable."""
        if self._closed:
            raise StoreUnavailable(f"online store {self.path} is closed")
        try:
            # Every use, not only ping(): an open connection keeps reading a deleted
            # file's inode, so reads would go on answering from data that went away.
            if self._identity is not None:
                current = self._file_identity()
                if current is None:
                    raise StoreUnavailable(f"online store {self.path} was deleted")
                if current != self._identity:
                    # Another file took its place (restored from a copy, rebuilt): serve
                    # that one; every thread reopens on its next use.
                    with self._lock:
                        if self._identity != current:
                            self._identity = current
                            self._epoch += 1
                            self._columns.clear()
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is not None and getattr(self._local, "epoch", -1) != self._epoch:
                with self._lock:
                    if conn in self._connections:
                        self._connections.remove(conn)
                conn.close()
                conn = None
            if conn is None:
                conn = self._local.conn = self._connect()
                self._local.epoch = self._epoch
            yield conn
        except sqlite3.OperationalError as exc:
            # Schema mistakes are OperationalErrors too; those are bugs, not outages.
            text = str(exc)
            if "no such" in text or "syntax error" in text or "has no column" in text:
                raise
            raise StoreUnavailable(f"online store {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"online store {self.path}: {exc}") from exc

    # -- schema ------------------------------------------------------------------------

    def _ensure_table(self, conn: sqlite3.Connection, view: FeatureView) -> None:
        """Create the view's table, or add the columns of features it gained. Idempotent
        across threads and processes (a concurrent ADD COLUMN is tolerated)."""
        known = self._columns.get(view.table)
        if known is not None and known.issuperset(view.feature_names):
            return
        for reserved in (KEY, EVENT_TIME, STEPS):
            if reserved in view.feature_names:
                raise ValueError(f"{view.name}: feature name {reserved!r} is reserved")
        table = _quote(view.table)
        key_type = "INTEGER" if view.key_type == "int64" else "TEXT"
        # Text keys cluster better without the hidden rowid; integer keys are the rowid.
        rowid = "" if view.key_type == "int64" else " WITHOUT ROWID"
        features = "".join(f", {_quote(f.name)} {_column_type(f.type)}" for f in view.features)
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ({KEY} {key_type} PRIMARY KEY NOT NULL, "
            f"{EVENT_TIME} INTEGER NOT NULL{features}, {STEPS} BLOB){rowid}"
        )
        existing = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        wanted = [(f.name, _column_type(f.type)) for f in view.features] + [(STEPS, "BLOB")]
        for name, type_ in wanted:
            if name not in existing:
                try:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(name)} {type_}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):
                        raise
                existing.add(name)
        with self._lock:
            self._columns[view.table] = existing

    # -- the contract ------------------------------------------------------------------

    def write(self, view: FeatureView, rows: Iterable[OnlineRow]) -> int:
        """Upsert rows in one transaction. A row replaces the stored one when its event
        time is newer, or equal with a differing value or step; so late data never
        overwrites newer values, and writing the same rows twice leaves the store as it
        was and returns 0. Returns the number of rows inserted or replaced."""
        types = [feature.type for feature in view.features]
        params = [
            (
                normalize_key(view, row.key),
                to_micros(row.event_time),
                *(
                    _to_column(type_, value)
                    for type_, value in zip(
                        types, checked_values(view, row.values).values(), strict=True
                    )
                ),
                encode_steps(view, row.steps, row.values),
            )
            for row in rows
        ]
        return self._upsert(view, params) if params else 0

    def write_table(self, view: FeatureView, table: pa.Table) -> int:
        """`write` for an Arrow table: the same stored values and upsert, converted a
        column at a time instead of a value at a time."""
        checked = checked_table(view, table)
        if not checked.num_rows:
            return 0
        types = [view.key_type, "timestamp", *(feature.type for feature in view.features)]
        columns = [
            _column_values(type_, column)
            for type_, column in zip(types, checked.columns, strict=True)
        ]
        columns.append([None] * checked.num_rows)  # no steps
        return self._upsert(view, zip(*columns, strict=True))

    def _upsert(self, view: FeatureView, params: Iterable[Sequence[Any]]) -> int:
        """One transaction of upserts (see `write`); the number of rows it changed."""
        with self._conn() as conn:
            self._ensure_table(conn, view)
            before = conn.total_changes
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_upsert_sql(view), params)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return conn.total_changes - before

    def read(
        self,
        view: FeatureView,
        keys: Sequence[str | int],
        features: Sequence[str],
        now: datetime | None = None,
    ) -> list[dict[str, Any] | None]:
        names = checked_features(view, features)
        types = [view.feature(name).type for name in names]
        wanted = [normalize_key(view, key) for key in keys]
        at = to_micros(now or datetime.now(UTC))
        cutoff = at - view.ttl // MICROSECOND
        expiring = [view.feature(name).aggregation is None for name in names]
        # Only aggregations step: a read of row-level features leaves the steps unread.
        stepped = STEPS if not all(expiring) else "NULL"
        columns = "".join(f", {_quote(name)}" for name in names)
        found: dict[str | int, dict[str, Any]] = {}
        with self._conn() as conn:
            self._ensure_table(conn, view)
            unique = list(dict.fromkeys(wanted))
            for start in range(0, len(unique), READ_CHUNK):
                chunk = unique[start : start + READ_CHUNK]
                marks = ", ".join("?" for _ in chunk)
                cursor = conn.execute(
                    f"SELECT {KEY}, {EVENT_TIME}, {stepped}{columns} FROM {_quote(view.table)} "
                    f"WHERE {KEY} IN ({marks})",
                    chunk,
                )
                for key, event_time, steps, *values in cursor:
                    expired = event_time < cutoff
                    later = step_values(view, steps, at, names)
                    if later is None:
                        entry = {
                            name: None if expired and expires else _from_column(type_, value)
                            for name, type_, value, expires in zip(
                                names, types, values, expiring, strict=True
                            )
                        }
                    else:
                        # A value from the steps: its column is not decoded.
                        entry = {
                            name: later[name]
                            if name in later
                            else None
                            if expired and expires
                            else _from_column(type_, value)
                            for name, type_, value, expires in zip(
                                names, types, values, expiring, strict=True
                            )
                        }
                    found[key] = entry
        # Each entry gets its own dict, so callers may mutate one without touching another.
        return [dict(found[key]) if key in found else None for key in wanted]

    def drop(self, view: FeatureView) -> None:
        with self._conn() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {_quote(view.table)}")
        with self._lock:
            self._columns.pop(view.table, None)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the file this store opened is still there (checked
        by `_conn` on every use) and readable."""
        with self._conn() as conn:
            # Reads the schema page, unlike `SELECT 1`, which never touches the file.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
