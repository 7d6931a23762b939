"""Turn the engine's column arrays into DataFrames with exactly a source spec's columns and dtypes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchard.errors import OrchardError
from orchard.sources import BATCH_ID, SourceSpec, batch_id


def cast_column(values: np.ndarray, dtype: str) -> pd.Series:
    """Return values as a Series of the spec dtype: str objects, int64, float64 or datetime64[ns, UTC]."""
    if dtype in ("string", "category"):
        return pd.Series(np.asarray(values, dtype=object), dtype=object)
    if dtype == "int":
        return pd.Series(np.asarray(values, dtype=np.int64))
    if dtype == "float":
        return pd.Series(np.asarray(values, dtype=np.float64))
    if dtype == "timestamp":
        return pd.Series(pd.to_datetime(np.asarray(values, dtype=np.int64), unit="ns", utc=True))
    raise OrchardError(f"unsupported column dtype {dtype!r}")


def typed_frame(columns: dict[str, np.ndarray], spec: SourceSpec) -> pd.DataFrame:
    """Return the given columns (a subset of the spec's, in the given order) typed as the spec says."""
    dtypes = {c.name: c.dtype for c in spec.columns}
    return pd.DataFrame({name: cast_column(values, dtypes[name]) for name, values in columns.items()})


def to_spec_frame(columns: dict[str, np.ndarray], spec: SourceSpec, month: str) -> pd.DataFrame:
    """Return a frame with the spec's columns in spec order, typed, and the batch id filled in."""
    n = len(next(iter(columns.values()))) if columns else 0
    values = {**columns, BATCH_ID: np.full(n, batch_id(spec.name, month), dtype=object)}
    missing = [c for c in spec.column_names if c not in values]
    extra = [c for c in values if c not in spec.column_names]
    if missing or extra:
        raise OrchardError(
            f"{spec.name} columns do not match its spec: missing {missing}, unexpected {extra}"
        )
    return typed_frame({name: values[name] for name in spec.column_names}, spec)
