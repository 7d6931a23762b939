"""Steps the tests send to Dask workers and worker processes (a module light to import in a worker process)."""

from __future__ import annotations

import sys

import pandas as pd


def tag_rows(part: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """Add the user id with a suffix: one result per row, in the part's order."""
    return part.assign(tagged=part["user_id"] + suffix)


def drop_first_row(part: pd.DataFrame) -> pd.DataFrame:
    """A faulty step: one row fewer than it was given."""
    return part.iloc[1:]


def imported(module: str) -> bool:
    """Whether the process this runs in has imported the module."""
    return module in sys.modules
