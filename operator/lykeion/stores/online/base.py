"""The online store contract. Implementations: `sqlite.py` (embedded), `bigtable.py`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from lykeion.features.view import FeatureView

if TYPE_CHECKING:
    import pyarrow as pa


Step = tuple[datetime, dict[str, Any]]
"""(from when, aggregation name -> value): the aggregations' values from that time on. The
materializer's steps give every aggregation; the stores read one a step leaves out as
keeping its value from before (`codec.encode_steps`)."""


@dataclass(frozen=True)
class OnlineRow:
    """One entity's values from its newest event on: written whole.

    At a time `t >= event_time` a row-level feature is `values[name]` while
    `t - TTL <= event_time`, null after; an aggregation is its value in the last step at
    or before `t`, else `values[name]` (TTL does not apply: a window decays by steps)."""

    key: str | int
    event_time: datetime
    """Timezone-aware UTC time of the entity's newest event (drives TTL and late data)."""
    values: dict[str, Any]
    """Feature name -> Python value typed by the manifest (int, float, str, bool,
    datetime, or a list of those) at `event_time`; None for a null value."""
    steps: tuple[Step, ...] = ()
    """Later values of the aggregations if no event comes: each time an event leaves a
    window, strictly after `event_time` and increasing (see `windows.online_sql`); a
    write of steps out of time order raises ValueError (of steps at one time, the last
    holds)."""


class StoreUnavailable(RuntimeError):
    """The store cannot be reached; callers answer 503 / retry, never 500."""


class OnlineStore(Protocol):
    reads_inline: bool
    """True when a read is a local lookup of microseconds (SQLite): servers call it on the
    event loop, where a thread hop would cost more than the read. False: network reads."""

    def write(self, view: FeatureView, rows: Iterable[OnlineRow]) -> int:
        """Upsert rows: a row replaces the stored one of its key when its event time is
        the same or newer (a re-run with late rows updates same-time rows); an older one
        is ignored (late data never overwrites newer values), and writing the same rows
        twice changes nothing. NaN and ±Inf float64 values are kept as they are.
        Returns the number of rows that changed the store."""
        ...

    def write_table(self, view: FeatureView, table: pa.Table) -> int:
        """`write` for columnar data, the fast path of materialization: one row per row of
        `table`, whose columns are the key (`entity_key`), the timezone-aware event time
        (`event_time`) and features of the view by name (a missing one is null). Column
        types are held to the manifest's as `write` holds values (see
        `codec.checked_table`); the upsert rule and the count are `write`'s."""
        ...

    def read(
        self,
        view: FeatureView,
        keys: Sequence[str | int],
        features: Sequence[str],
        now: datetime | None = None,
    ) -> list[dict[str, Any] | None]:
        """One batched read of the values at time `now` (default: the current time).
        For each key, in order: feature name -> value, or None when the key is unknown.
        A row-level feature is null when the entity's newest event is older than the
        view's TTL at `now`; an aggregation is its value at `now` (its step, see
        `OnlineRow`), also long after the newest event: a trailing window decays to
        count 0 / null without a new run. The store holds the values from the newest
        event on: a read at a time before it gets the values at that event."""
        ...

    def drop(self, view: FeatureView) -> None:
        """Remove the view's table (of its generation) and every value in it; nothing
        when there is none. Readers of another generation are not affected."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable when the store does not answer."""
        ...

    def close(self) -> None: ...
