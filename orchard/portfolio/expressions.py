"""Row expressions of a portfolio (filters, label events, rules), evaluated over a frame's columns by pandas."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from orchard.errors import OrchardError

# column names, numbers, quoted strings, comparisons, boolean words, arithmetic and lists: nothing that calls,
# imports or reaches attributes (a portfolio is configuration, not code)
_FORBIDDEN = re.compile(r"__|@|\bimport\b|\blambda\b|[;{}]")


def check_expression(expression: str) -> str:
    """Return the expression if it only uses what row expressions may use, else raise naming it."""
    if _FORBIDDEN.search(expression):
        raise OrchardError(f"expression {expression!r} may only compare and combine columns")
    return expression


def row_mask(frame: pd.DataFrame, expression: str, what: str) -> np.ndarray:
    """Return the rows where a boolean expression over the frame's columns holds (NaN counts as false)."""
    check_expression(expression)
    if frame.empty:
        return np.zeros(0, dtype=bool)
    try:
        result = frame.eval(expression, engine="python")
    except Exception as exc:  # pandas raises many kinds (UndefinedVariableError, SyntaxError, TypeError)
        raise OrchardError(f"{what}: cannot evaluate {expression!r}: {exc}") from None
    values = np.asarray(result)
    if values.shape != (len(frame),):
        raise OrchardError(f"{what}: {expression!r} must give one true/false value per row")
    if values.dtype != bool:
        values = pd.Series(values).fillna(False).astype(bool).to_numpy()
    return values
