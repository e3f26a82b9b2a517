"""Stores named by URI, so that a pipeline worker can open the same store as the operator.

sqlite:///abs/path/online.db        bigtable://project/instance
duckdb:///abs/path/offline.duckdb   bigquery://project/dataset
"""

from __future__ import annotations

from urllib.parse import urlparse

from lykeion.features.offline.base import OfflineStore
from lykeion.features.online.base import OnlineStore


def open_online(uri: str) -> OnlineStore:
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        from lykeion.features.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(parsed.path)
    if parsed.scheme == "bigtable":
        from lykeion.features.online.bigtable import BigtableOnlineStore

        return BigtableOnlineStore(parsed.netloc, parsed.path.strip("/"))
    raise ValueError(
        f"unknown online store {uri!r}: use sqlite:///path or bigtable://project/instance"
    )


def open_offline(uri: str) -> OfflineStore:
    parsed = urlparse(uri)
    if parsed.scheme == "duckdb":
        from lykeion.features.offline.duckdb import DuckDBOfflineStore

        return DuckDBOfflineStore(parsed.path)
    if parsed.scheme == "bigquery":
        from lykeion.features.offline.bigquery import BigQueryOfflineStore

        return BigQueryOfflineStore(parsed.netloc, parsed.path.strip("/"))
    raise ValueError(
        f"unknown offline store {uri!r}: use duckdb:///path or bigquery://project/dataset"
    )
