"""The feature stores: online (`online/`: latest values per entity, for serving) and
offline (`offline/`: the full history, for training sets), each named by URI so that a
pipeline worker opens the same store as the operator.

sqlite:///abs/path/online.db        bigtable://project/instance
duckdb:///abs/path/offline.duckdb   bigquery://project/dataset
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from lykeion.stores.offline.base import OfflineStore
    from lykeion.stores.online.base import OnlineStore


def open_online(uri: str) -> OnlineStore:
    """The online store `uri` names (`sqlite:///path` or `bigtable://project/instance`);
    ValueError for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        from lykeion.stores.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(parsed.path)
    if parsed.scheme == "bigtable":
        from lykeion.stores.online.bigtable import BigtableOnlineStore

        return BigtableOnlineStore(parsed.netloc, parsed.path.strip("/"))
    raise ValueError(
        f"unknown online store {uri!r}: use sqlite:///path or bigtable://project/instance"
    )


def open_offline(uri: str) -> OfflineStore:
    """The offline store `uri` names (`duckdb:///path` or `bigquery://project/dataset`);
    ValueError for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme == "duckdb":
        from lykeion.stores.offline.duckdb import DuckDBOfflineStore

        return DuckDBOfflineStore(parsed.path)
    if parsed.scheme == "bigquery":
        from lykeion.stores.offline.bigquery import BigQueryOfflineStore

        return BigQueryOfflineStore(parsed.netloc, parsed.path.strip("/"))
    raise ValueError(
        f"unknown offline store {uri!r}: use duckdb:///path or bigquery://project/dataset"
    )
