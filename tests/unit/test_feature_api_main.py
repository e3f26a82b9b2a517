"""`python -m lykeion.feature_api --online ...` opens every online store the chart passes it
(`charts/lykeion/templates/featureapi.yaml`: `sqlite://<path>`, or
`bigtable://<project>/<instance>` with `stores.online.type: bigtable`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lykeion.feature_api.__main__ import open_online_store
from lykeion.stores.online.bigtable import BigtableOnlineStore
from lykeion.stores.online.sqlite import SqliteOnlineStore


def test_the_chart_s_bigtable_store_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator's address: the clients need no credentials (nothing is connected yet).
    monkeypatch.setenv("BIGTABLE_EMULATOR_HOST", "127.0.0.1:1")
    store = open_online_store("bigtable://acme-ml/features")
    try:
        assert isinstance(store, BigtableOnlineStore)
        assert (store.project, store.instance) == ("acme-ml", "features")
    finally:
        store.close()


def test_the_chart_s_sqlite_store_opens(tmp_path: Path) -> None:
    store = open_online_store(f"sqlite://{tmp_path / 'online.db'}")
    try:
        assert isinstance(store, SqliteOnlineStore)
    finally:
        store.close()


@pytest.mark.parametrize("url", ["redis://host/0", "bigtable://acme-ml", "sqlite://"])
def test_another_store_is_refused_naming_what_is_supported(url: str) -> None:
    with pytest.raises(SystemExit, match="bigtable://project/instance"):
        open_online_store(url)
