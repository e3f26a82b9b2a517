"""The online store contract. Implementations: `sqlite.py` (embedded), `bigtable.py`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from lykeion.features.view import FeatureView

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class OnlineRow:
    """The latest values of one entity: written whole, with the event time they hold at."""

    key: str | int
    event_time: datetime
    """Timezone-aware UTC event time of the values (drives TTL and late-data handling)."""
    values: dict[str, Any]
    """Feature name -> Python value typed by the manifest (int, float, str, bool,
    datetime, or a list of those); None for a null value."""


class StoreUnavailable(RuntimeError):
    """The store cannot be reached; callers answer 503 / retry, never 500."""


class OnlineStore(Protocol):
    reads_inline: bool
    """True when a read is a local lookup of microseconds (SQLite): servers call it on the
    event loop, where a thread hop would cost more than the read. False: network reads."""

    def write(self, view: FeatureView, rows: Iterable[OnlineRow]) -> int:
        """Upsert rows; a row older than what is stored for its key is ignored (late data
        never overwrites newer values), and writing the same rows twice changes nothing.
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
        """One batched read. For each key, in order: feature name -> value, or None for
        the whole entry when the key is unknown or its values are older than the view's
        TTL at `now` (default: the current time)."""
        ...

    def drop(self, view: FeatureView) -> None:
        """Remove the view's table (of its generation) and every value in it; nothing
        when there is none. Readers of another generation are not affected."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable when the store does not answer."""
        ...

    def close(self) -> None: ...
