"""A model's input frame: the training set's columns as pandas gets them from Arrow.

The MLflow project reads the training set's Parquet files with `pandas.read_parquet`,
which is Arrow's `Table.to_pandas`. The evaluation gate (from the held-out Arrow table)
and the model server (from the values the online store returns) build their frames the
same way, from the same Arrow type of each declared feature type, so a model is called
with what it was trained on, type for type:

| declared | pandas column |
| --- | --- |
| `int64` | `int64`; `float64` with NaN where a value is null |
| `float64` | `float64`, NaN and ±inf kept (a null is NaN too) |
| `string` | pandas' string dtype (`str`; `object` before pandas 3) |
| `bool` | `bool`; `object` with None where a value is null |
| `timestamp` | `datetime64[us, UTC]` (NaT where null) |
| `list<T>` | `object`: one numpy array per row (None where null) |

`tests/unit/test_model_frames.py` holds the three to equal frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lykeion.stores.online.codec import arrow_type

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def typed_table(columns: Mapping[str, Sequence[Any]], types: Mapping[str, str]) -> pa.Table:
    """Python values (what the online store returns: int, float, str, bool, aware
    datetime, lists of those, None) as an Arrow table of the declared types, columns in
    the given order. A float NaN stays NaN (it is not a null). Raises KeyError for a
    column without a declared type, and pyarrow's ArrowInvalid/ArrowTypeError for a
    value that is not of its column's type."""
    import pyarrow as pa

    return pa.table(
        {name: pa.array(values, arrow_type(types[name])) for name, values in columns.items()}
    )


def model_frame(table: pa.Table) -> pd.DataFrame:
    """The frame a model is called with, for an Arrow table of declared types: exactly
    what `pandas.read_parquet` gives the project for the same columns (see the table in
    the module docstring)."""
    frame: pd.DataFrame = table.to_pandas()
    return frame
