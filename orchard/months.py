"""Calendar months as 'YYYY-MM' strings: parsing, ranges and arithmetic."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from orchard.errors import OrchardError

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_month(text: str) -> str:
    """Return the month unchanged if it is a valid 'YYYY-MM', else raise a clear error."""
    if not isinstance(text, str) or not _MONTH.match(text):
        raise OrchardError(f"invalid month {text!r}: expected YYYY-MM, e.g. 2020-02")
    return text


def add_months(month: str, n: int) -> str:
    """Return the month n months after (or before, if negative) the given month."""
    year, mon = (int(p) for p in parse_month(month).split("-"))
    index = year * 12 + (mon - 1) + n
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(start: str, end: str) -> list[str]:
    """Return every month from start to end inclusive."""
    parse_month(start)
    parse_month(end)
    if end < start:
        raise OrchardError(f"month range is empty: {start} is after {end}")
    months = [start]
    while months[-1] < end:
        months.append(add_months(months[-1], 1))
    return months


def months_between(start: str, end: str) -> int:
    """Return the number of months from start to end (negative when end is earlier)."""
    y1, m1 = (int(p) for p in parse_month(start).split("-"))
    y2, m2 = (int(p) for p in parse_month(end).split("-"))
    return (y2 - y1) * 12 + (m2 - m1)


def month_start(month: str, timezone: str = "UTC") -> pd.Timestamp:
    """Return the first instant of the month in a time zone, as a UTC timestamp."""
    return pd.Timestamp(f"{parse_month(month)}-01", tz=timezone).tz_convert("UTC")


def month_end(month: str, timezone: str = "UTC") -> pd.Timestamp:
    """Return the first instant of the next month (as UTC): the month is [start, end)."""
    return month_start(add_months(month, 1), timezone)


def month_index(month: str) -> int:
    """Return a month as a running integer (year * 12 + month - 1), so month arithmetic is integer arithmetic."""
    year, mon = (int(p) for p in parse_month(month).split("-"))
    return year * 12 + mon - 1


def utc_timestamps(ts: pd.Series) -> pd.Series:
    """Return the values as UTC timestamps (naive taken as UTC), as `pd.to_datetime(ts, utc=True)` does.

    A column that holds timestamps already is converted by its dtype alone: to_datetime visits every value of one
    (building a Timestamp object each) to decide whether to cache, about 1 s per million rows.
    """
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        return ts.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(ts.dtype):
        return ts.dt.tz_localize("UTC")
    return pd.to_datetime(ts, utc=True)


def timestamp_months(ts: pd.Series) -> pd.Series:
    """Return each timestamp's month as a running integer (year * 12 + month - 1; naive taken as UTC)."""
    ts = utc_timestamps(ts)
    return (ts.dt.year * 12 + ts.dt.month - 1).astype("int64")


def timestamp_month_labels(ts: pd.Series) -> pd.Series:
    """Return each timestamp's 'YYYY-MM' (naive taken as UTC; missing stays missing), formatting each distinct
    month once instead of every value."""
    ts = utc_timestamps(ts)
    known = ts.notna().to_numpy()
    index = np.full(len(ts), -1, dtype=np.int64)
    index[known] = (ts[known].dt.year * 12 + ts[known].dt.month - 1).to_numpy(dtype=np.int64)
    codes, months = pd.factorize(index)
    labels = np.array([f"{m // 12:04d}-{m % 12 + 1:02d}" if m >= 0 else None for m in months], dtype=object)
    return pd.Series(labels[codes] if len(ts) else labels[:0], index=ts.index, name=ts.name)
