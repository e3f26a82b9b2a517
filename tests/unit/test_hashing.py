from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from lykeion.features.hashing import table_hash


def _table(**columns: list[object]) -> pa.Table:
    return pa.table(columns)


def test_equal_content_equal_hash_regardless_of_chunking() -> None:
    whole = _table(k=["a", "b", "c"], v=[1.5, None, 3.0])
    chunked = pa.concat_tables([whole.slice(0, 1), whole.slice(1)])
    assert table_hash(whole) == table_hash(chunked)


def test_any_change_changes_the_hash() -> None:
    base = _table(
        k=["a", "b"], v=[1, 2], t=[datetime(2026, 1, 1, tzinfo=UTC)] * 2, l=[[1, 2], None]
    )
    variants = [
        _table(k=["a", "b"], v=[1, 3], t=[datetime(2026, 1, 1, tzinfo=UTC)] * 2, l=[[1, 2], None]),
        _table(k=["b", "a"], v=[2, 1], t=[datetime(2026, 1, 1, tzinfo=UTC)] * 2, l=[None, [1, 2]]),
        _table(
            k=["a", "b"], v=[1, None], t=[datetime(2026, 1, 1, tzinfo=UTC)] * 2, l=[[1, 2], None]
        ),
        _table(k=["a", "b"], v=[1, 2], t=[datetime(2026, 1, 2, tzinfo=UTC)] * 2, l=[[1, 2], None]),
        _table(k=["a", "b"], v=[1, 2], t=[datetime(2026, 1, 1, tzinfo=UTC)] * 2, l=[[2, 1], None]),
        _table(k=["a", "b"], w=[1, 2], t=[datetime(2026, 1, 1, tzinfo=UTC)] * 2, l=[[1, 2], None]),
    ]
    hashes = {table_hash(base), *(table_hash(v) for v in variants)}
    assert len(hashes) == 1 + len(variants)
    assert table_hash(_table(v=pa.array([1, 2], pa.int64()))) != table_hash(
        _table(v=pa.array([1, 2], pa.int32()))
    )
