"""Content hash of a table, the same whichever store produced it."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value != value:  # NaN
        return "NaN"
    return value


def table_hash(table: pa.Table) -> str:
    """sha256 over column names, type names and values, row by row, in table order."""
    digest = hashlib.sha256()
    digest.update(json.dumps([(f.name, str(f.type)) for f in table.schema]).encode())
    for batch in table.to_batches(max_chunksize=65536):
        columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        for row in zip(*columns, strict=True):
            digest.update(json.dumps([_plain(v) for v in row], default=str).encode())
            digest.update(b"\n")
    return digest.hexdigest()
