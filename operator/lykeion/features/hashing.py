"""Content hash of a table, the same whichever store produced it.

Stores cast their results to one canonical Arrow schema first; the hash then covers the
column names and types and, row by row in table order, the values (pandas' vectorized
per-row hash, so a million rows cost tens of milliseconds rather than seconds).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa


def table_hash(table: pa.Table) -> str:
    import pandas as pd
    import pyarrow as pa

    digest = hashlib.sha256()
    digest.update(json.dumps([(f.name, str(f.type)) for f in table.schema]).encode())
    digest.update(str(table.num_rows).encode())
    if table.num_rows == 0:
        return digest.hexdigest()
    columns = {}
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            # Lists are not hashable by pandas: their JSON text is.
            column = pa.array(
                [None if v is None else json.dumps(v, default=str) for v in column.to_pylist()],
                pa.string(),
            )
        columns[f"c{index}"] = column
    frame = pa.table(columns).to_pandas()
    rows = pd.util.hash_pandas_object(frame, index=False, categorize=False)
    digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()
