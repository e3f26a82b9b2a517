"""The production online store: Cloud Bigtable, one table per view, one row per entity key.

Row key `str(key)`; family `f` keeps one version; one column per feature holding the
value at the event time as JSON (see codec.py; NaN and ±Inf as JSON's NaN/Infinity
tokens), `_event_time` holding the event time in microseconds, and `_steps` the
aggregations' later values (`codec.encode_steps`, binary; absent when none; rows of
earlier versions hold JSON text there, which reads as before). A read at `t` takes each
window's last record at or before `t` (see `OnlineRow`).
Cells carry the event time (truncated to milliseconds, Bigtable's granularity) as their
timestamp, so even two writers racing past the late-data check (a read, then a write)
leave the newest values on top, to the millisecond.

The table admin API (create tables and families) goes through the classic
`google.cloud.bigtable.Client`; reads and writes go through the data client, the only
one whose read timeouts can be bounded, so that a store that is down fails in seconds.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import google.auth.exceptions
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry, if_exception_type
from google.cloud import bigtable
from google.cloud.bigtable.data import (
    BigtableDataClient,
    DeleteRangeFromColumn,
    FailedMutationEntryError,
    ReadRowsQuery,
    RowMutationEntry,
    SetCell,
    Table,
)
from google.cloud.bigtable.data.row_filters import (
    CellsColumnLimitFilter,
    ColumnQualifierRegexFilter,
    FamilyNameRegexFilter,
    RowFilterChain,
)
from google.cloud.bigtable_admin_v2.types import ColumnFamily, GcRule, ModifyColumnFamiliesRequest
from google.cloud.bigtable_admin_v2.types import Table as TableSchema

from lykeion.features.view import EVENT_TIME, KEY, FeatureView
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
    to_micros,
)

if TYPE_CHECKING:
    import pyarrow as pa

FAMILY = "f"
EVENT_TIME_COLUMN = b"_event_time"
STEPS_COLUMN = b"_steps"
MAX_TABLE_ID = 50
"""Bigtable's limit on table IDs."""
MAX_MUTATIONS = 100_000
"""Bigtable's limit on mutations in one MutateRows request."""
WRITE_CHUNK = 500

_EMULATOR_WARNING = "Connecting to Bigtable emulator"

# What a retry (of the caller, later) can heal; anything else is a bug or a config error.
_TRANSIENT = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.ResourceExhausted,
    api_exceptions.Aborted,
    api_exceptions.RetryError,
    google.auth.exceptions.TransportError,
)


def table_id(prefix: str, view: FeatureView) -> str:
    """`<prefix>-<view.table>` (namespace, manifest, generation and a hash of them and the
    object's UID), shortened with a hash suffix past 50 characters so that long names stay
    distinct and deterministic."""
    name = f"{prefix}-{view.table}"
    if len(name) <= MAX_TABLE_ID:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_TABLE_ID - len(digest) - 1]}-{digest}"


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The underlying errors of the data client's exception groups and wrappers."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    elif isinstance(exc, FailedMutationEntryError) and exc.__cause__ is not None:
        yield from _leaves(exc.__cause__)
    else:
        yield exc


def _all(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    return all(isinstance(leaf, kinds) for leaf in _leaves(exc))


class _TableMissing(Exception):
    """The table went away (deleted, or an in-memory emulator restarted)."""


@contextmanager
def _errors(what: str, table_may_be_missing: bool = False) -> Iterator[None]:
    """Transient errors -> StoreUnavailable; NotFound -> _TableMissing where that is what
    it means (data calls on one table); anything else propagates as the client raised it."""
    try:
        yield
    except (api_exceptions.GoogleAPIError, google.auth.exceptions.GoogleAuthError) as exc:
        if isinstance(exc, _TRANSIENT):
            raise StoreUnavailable(f"bigtable {what}: {exc}") from exc
        if table_may_be_missing and isinstance(exc, api_exceptions.NotFound):
            raise _TableMissing(str(exc)) from exc
        raise
    except BaseExceptionGroup as group:
        if _all(group, _TRANSIENT):
            raise StoreUnavailable(f"bigtable {what}: {group}") from group
        if table_may_be_missing and _all(group, (api_exceptions.NotFound,)):
            raise _TableMissing(str(group)) from group
        raise


@dataclass(frozen=True)
class _Cells:
    """One entity's row as stored: qualifier -> latest value."""

    values: dict[bytes, bytes]

    @property
    def event_time(self) -> int | None:
        raw = self.values.get(EVENT_TIME_COLUMN)
        return int(raw) if raw is not None else None

    def replaced_by(self, new: _Cells) -> bool:
        """The late-data rule: newer replaces; equal replaces only when a value (or a
        step) differs."""
        old_time, new_time = self.event_time, new.event_time
        if old_time is None or new_time is None or new_time > old_time:
            return True
        if new_time != old_time:
            return False
        differs = any(self.values.get(q) != v for q, v in new.values.items())
        return differs or (STEPS_COLUMN in self.values and STEPS_COLUMN not in new.values)


class BigtableOnlineStore:
    reads_inline = False  # every read is a network call: servers make it off the loop

    def __init__(
        self,
        project: str,
        instance: str,
        table_prefix: str = "lykeion",
        timeout: float = 5.0,
    ) -> None:
        self.project = project
        self.instance = instance
        self.table_prefix = table_prefix
        self.timeout = timeout
        with warnings.catch_warnings():
            # Both clients warn once per construction that they talk to the emulator.
            warnings.filterwarnings("ignore", _EMULATOR_WARNING)
            self._admin = bigtable.Client(project=project, admin=True)
            self._data = BigtableDataClient(project=project)
        self._instance_name = f"projects/{project}/instances/{instance}"
        self._admin_retry = Retry(
            predicate=if_exception_type(
                api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded
            ),
            initial=0.1,
            maximum=1.0,
            timeout=timeout,
        )
        self._lock = threading.Lock()
        self._tables: dict[str, Table] = {}
        self._ensured: set[str] = set()
        self._opened: dict[str, Any] = {}
        """The classic client's gapic clients this store made it open, to close them."""

    def _admin_client(self) -> Any:
        with self._lock:
            client = self._opened["admin"] = self._admin.table_admin_client
        return client

    def _ping_client(self) -> Any:
        with self._lock, warnings.catch_warnings():
            warnings.filterwarnings("ignore", _EMULATOR_WARNING)
            client = self._opened["data"] = self._admin.table_data_client
        return client

    # -- tables ------------------------------------------------------------------------

    def _table(self, view: FeatureView) -> Table:
        name = table_id(self.table_prefix, view)
        with self._lock:
            table = self._tables.get(name)
            if table is None:
                # Attempts get half the budget so that one hung call leaves room for a retry.
                table = self._tables[name] = self._data.get_table(
                    self.instance,
                    name,
                    default_read_rows_operation_timeout=self.timeout,
                    default_read_rows_attempt_timeout=self.timeout / 2,
                    default_mutate_rows_operation_timeout=self.timeout,
                    default_mutate_rows_attempt_timeout=self.timeout / 2,
                    default_operation_timeout=self.timeout,
                    default_attempt_timeout=self.timeout / 2,
                )
            return table

    def _ensure_table(self, view: FeatureView) -> None:
        """Create the table and its family when missing; a concurrent creator is fine."""
        name = table_id(self.table_prefix, view)
        if name in self._ensured:
            return
        admin = self._admin_client()
        path = f"{self._instance_name}/tables/{name}"
        family = ColumnFamily(gc_rule=GcRule(max_num_versions=1))
        call: dict[str, Any] = {"timeout": self.timeout, "retry": self._admin_retry}
        with _errors(f"create table {name}"):
            try:
                schema = admin.get_table(
                    request={"name": path, "view": TableSchema.View.SCHEMA_VIEW}, **call
                )
            except api_exceptions.NotFound:
                # Another writer may have created it since get_table.
                with suppress(api_exceptions.AlreadyExists):
                    admin.create_table(
                        request={
                            "parent": self._instance_name,
                            "table_id": name,
                            "table": TableSchema(column_families={FAMILY: family}),
                        },
                        **call,
                    )
            else:
                if FAMILY not in schema.column_families:
                    modification = ModifyColumnFamiliesRequest.Modification(
                        id=FAMILY, create=family
                    )
                    admin.modify_column_families(
                        request={"name": path, "modifications": [modification]}, **call
                    )
        with self._lock:
            self._ensured.add(name)

    def _forget_table(self, view: FeatureView) -> None:
        with self._lock:
            self._ensured.discard(table_id(self.table_prefix, view))

    # -- rows --------------------------------------------------------------------------

    def _stored(
        self, table: Table, keys: Sequence[bytes], qualifiers: Sequence[bytes] | None = None
    ) -> dict[bytes, _Cells]:
        """The latest cells of `keys` (only `qualifiers` when given), in one read_rows."""
        filters: list[Any] = [FamilyNameRegexFilter(FAMILY)]
        if qualifiers is not None:
            # Qualifiers are identifiers ([a-z0-9_]): no regex metacharacters to escape.
            filters.append(ColumnQualifierRegexFilter(b"^(" + b"|".join(qualifiers) + b")$"))
        # The family keeps one version, but garbage collection runs lazily.
        filters.append(CellsColumnLimitFilter(1))
        row_keys: list[str | bytes] = list(keys)
        query = ReadRowsQuery(row_keys=row_keys, row_filter=RowFilterChain(filters))
        return {
            row.row_key: _Cells({cell.qualifier: cell.value for cell in row})
            for row in table.read_rows(query)
        }

    def _new_cells(self, view: FeatureView, rows: Iterable[OnlineRow]) -> dict[bytes, _Cells]:
        """Encoded rows by row key; of several rows for one key, the one the late-data rule
        keeps (the newest; the last of equals)."""
        latest: dict[bytes, _Cells] = {}
        for row in rows:
            key = str(normalize_key(view, row.key)).encode()
            values = {
                name.encode(): json.dumps(value, separators=(",", ":")).encode()
                for name, value in checked_values(view, row.values).items()
            }
            values[EVENT_TIME_COLUMN] = str(to_micros(row.event_time)).encode()
            steps = encode_steps(view, row.steps, row.values)
            if steps is not None:
                values[STEPS_COLUMN] = steps
            cells = _Cells(values)
            previous = latest.get(key)
            if previous is None or previous.replaced_by(cells):
                latest[key] = cells
        return latest

    @staticmethod
    def _mutation(key: bytes, cells: _Cells) -> RowMutationEntry:
        micros = cells.event_time or 0
        # Bigtable tables count time in milliseconds; event times before 1970 clamp to 0.
        stamp = max(0, micros - micros % 1000)
        mutations: list[Any] = [
            SetCell(FAMILY, q, v, timestamp_micros=stamp) for q, v in cells.values.items()
        ]
        if STEPS_COLUMN not in cells.values:
            # A row without steps replaces one that had them.
            mutations.insert(0, DeleteRangeFromColumn(FAMILY, STEPS_COLUMN))
        return RowMutationEntry(key, mutations)

    def _write_cells(self, view: FeatureView, latest: dict[bytes, _Cells]) -> int:
        table = self._table(view)
        items = list(latest.items())
        chunk = max(1, min(WRITE_CHUNK, MAX_MUTATIONS // (len(view.features) + 1)))
        changed = 0
        for start in range(0, len(items), chunk):
            batch = items[start : start + chunk]
            with _errors(f"read {table.table_id}", table_may_be_missing=True):
                stored = self._stored(table, [key for key, _ in batch])
            entries = []
            for key, cells in batch:
                old = stored.get(key)
                if old is None or old.replaced_by(cells):
                    entries.append(self._mutation(key, cells))
            if entries:
                with _errors(f"write {table.table_id}", table_may_be_missing=True):
                    table.bulk_mutate_rows(entries)
            changed += len(entries)
        return changed

    # -- the contract ------------------------------------------------------------------

    def write(self, view: FeatureView, rows: Iterable[OnlineRow]) -> int:
        """Upsert rows: one batched read of the stored rows, then one batched mutation of
        those that the late-data rule lets through (newer event time, or equal with a
        differing value). Writing the same rows twice returns 0 the second time. A write
        that fails with StoreUnavailable may have landed in part; re-running it is safe.
        Returns the number of rows written."""
        latest = self._new_cells(view, rows)
        if not latest:
            return 0
        self._ensure_table(view)
        try:
            return self._write_cells(view, latest)
        except _TableMissing:
            # Created once, deleted since: create again and write everything.
            self._forget_table(view)
            self._ensure_table(view)
            try:
                return self._write_cells(view, latest)
            except _TableMissing as exc:
                raise StoreUnavailable(f"bigtable table vanished again: {exc}") from exc

    def write_table(self, view: FeatureView, table: pa.Table) -> int:
        """`write` for an Arrow table. Bigtable's cost is the round trips (one read and one
        MutateRows per chunk), not the conversion, so the rows take `write`'s path."""
        checked = checked_table(view, table)
        keys = checked.column(KEY).to_pylist()
        times = checked.column(EVENT_TIME).to_pylist()
        values = [checked.column(name).to_pylist() for name in view.feature_names]
        rows = (
            OnlineRow(key, moment, dict(zip(view.feature_names, entry, strict=True)))
            for key, moment, *entry in zip(keys, times, *values, strict=True)
        )
        return self.write(view, rows)

    def read(
        self,
        view: FeatureView,
        keys: Sequence[str | int],
        features: Sequence[str],
        now: datetime | None = None,
    ) -> list[dict[str, Any] | None]:
        names = checked_features(view, features)
        types = [view.feature(name).type for name in names]
        wanted = [str(normalize_key(view, key)).encode() for key in keys]
        if not wanted:
            # An empty row set would read the whole table.
            return []
        at = to_micros(now or datetime.now(UTC))
        cutoff = at - view.ttl // MICROSECOND
        # Only aggregations step: a read of row-level features leaves the steps unread.
        stepping = any(view.feature(name).aggregation is not None for name in names)
        qualifiers = [EVENT_TIME_COLUMN, *(name.encode() for name in names)]
        if stepping:
            qualifiers.append(STEPS_COLUMN)
        table = self._table(view)
        try:
            with _errors(f"read {table.table_id}", table_may_be_missing=True):
                stored = self._stored(table, list(dict.fromkeys(wanted)), qualifiers)
        except _TableMissing:
            return [None] * len(wanted)
        out: list[dict[str, Any] | None] = []
        for key in wanted:
            cells = stored.get(key)
            event_time = cells.event_time if cells is not None else None
            if cells is None or event_time is None:
                out.append(None)
                continue
            expired = event_time < cutoff
            later = step_values(view, cells.values.get(STEPS_COLUMN), at, names) or {}
            entry: dict[str, Any] = {}
            for name, type_ in zip(names, types, strict=True):
                if name in later:
                    entry[name] = later[name]
                    continue
                raw = cells.values.get(name.encode())
                if expired and view.feature(name).aggregation is None:
                    entry[name] = None
                    continue
                # A feature added to the view after this row was written has no cell.
                entry[name] = from_json(type_, json.loads(raw)) if raw is not None else None
            out.append(entry)
        return out

    def drop(self, view: FeatureView) -> None:
        name = table_id(self.table_prefix, view)
        call: dict[str, Any] = {"timeout": self.timeout, "retry": self._admin_retry}
        with _errors(f"delete table {name}"), suppress(api_exceptions.NotFound):
            self._admin_client().delete_table(
                request={"name": f"{self._instance_name}/tables/{name}"}, **call
            )
        self._forget_table(view)
        with self._lock:
            self._tables.pop(name, None)

    def ping(self) -> None:
        """PingAndWarm on the instance: the data API's own liveness call, one attempt."""
        with _errors("ping"):
            self._ping_client().ping_and_warm(
                request={"name": self._instance_name}, timeout=self.timeout, retry=None
            )

    def close(self) -> None:
        self._data.close()
        # The classic client has no close(); the channels it opened are closed one by one.
        with self._lock:
            opened, self._opened = self._opened, {}
        for client in opened.values():
            client.transport.close()
