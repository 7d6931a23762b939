"""The profile of one batch, computed in one pass with pandas: what the history-based contract checks compare.

Per column: completeness (null share), distinct count and unique ratio; for numbers the mean, standard deviation,
fourth central moment (the sampling error of the deviation), quantiles and the count of non-zero values; for
categories the share of each value. Per batch: the row count. Great Expectations computes it as one metric
(orchard.contracts.expectations) and the accepted batches' profiles are the history the next batches are held to.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from orchard.sources import BATCH_ID, EVENT_TIME, SourceSpec

ProfileKind = Literal["number", "category", "text"]
QUANTILES = {"p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95}


def profile_columns(spec: SourceSpec) -> list[list[str]]:
    """Return [column, kind] of every column the history checks profile (not the event time or batch id)."""
    ignored = {EVENT_TIME, BATCH_ID, *spec.contract.ignore_columns}
    out: list[list[str]] = []
    for col in spec.columns:
        if col.name in ignored or col.dtype == "timestamp":
            continue
        if col.dtype in ("int", "float"):
            kind: ProfileKind = "number"
        elif col.categories is not None:
            kind = "category"
        else:
            kind = "text"
        out.append([col.name, kind])
    return out


def format_profile_columns(columns: list[list[str]]) -> str:
    """Return [column, kind] pairs as compact text ('age:number,city_tier:category')."""
    return ",".join(f"{name}:{kind}" for name, kind in columns)


def parse_profile_columns(text: str) -> list[list[str]]:
    """Return the [column, kind] pairs of format_profile_columns' text."""
    return [item.rsplit(":", 1) for item in text.split(",") if item]


def _number_profile(series: pd.Series) -> dict[str, Any]:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    values = values[np.isfinite(values)]
    out: dict[str, Any] = {"values": int(values.size), "nonzero": int(np.count_nonzero(values))}
    if values.size < 2:
        return out
    mean = float(values.mean())
    centred = values - mean
    out["mean"] = mean
    out["std"] = float(np.sqrt((centred**2).sum() / (values.size - 1)))
    out["m4"] = float((centred**4).mean())
    for name, q in zip(QUANTILES, np.quantile(values, list(QUANTILES.values())), strict=True):
        out[name] = float(q)
    return out


def column_profile(series: pd.Series, kind: str) -> dict[str, Any]:
    """Return the profile of one column of a batch."""
    n = len(series)
    present = series.dropna()
    distinct = int(present.nunique())
    out: dict[str, Any] = {
        "null_share": float(1.0 - len(present) / n) if n else 0.0,
        "distinct": distinct,
        "unique_ratio": float(distinct / len(present)) if len(present) else 1.0,
    }
    if kind == "number":
        out.update(_number_profile(present))
    elif kind == "category" and len(present):
        shares = present.astype(str).value_counts(normalize=True)
        out["shares"] = {str(k): float(v) for k, v in shares.sort_index().items()}
    return out


def batch_profile(df: pd.DataFrame, columns: list[list[str]]) -> dict[str, Any]:
    """Return the profile of a batch over the given [column, kind] pairs (columns it lacks are left out)."""
    return {
        "rows": len(df),
        "columns": {name: column_profile(df[name], kind) for name, kind in columns if name in df.columns},
    }
