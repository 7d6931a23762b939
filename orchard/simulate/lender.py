"""Who decides the simulated applications: the lender's policy, plugged into the engine month by month.

The engine draws each month's applicants and asks its lender which to book. The lender sees the month's
partner snapshot and the applications (without a decision) as they stand at the start of the month, and
is shown every source of the month once the month is over, so a lender that learns (Orchard's champion,
orchard.lifecycle.lender) can decide with what it knew. The legacy rule is the incumbent policy; it is also
what the engine hands the lender as its fallback.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from orchard.errors import OrchardError

Columns = dict[str, np.ndarray]

SNAPSHOT_SOURCE = "partner_users"
"""The source the engine's monthly snapshot is written as (the one a lender is shown when it decides)."""


class Lender(Protocol):
    """The simulated lender's decision policy."""

    def decide(self, month: str, applications: Columns, snapshot: Columns, legacy: np.ndarray) -> np.ndarray:
        """Return a boolean mask of the applications to book (aligned with the application columns).

        `legacy` is the legacy rule's mask for the same applications; `snapshot` is the month's partner
        snapshot (dated the 1st: what the lender knew when the month began).
        """
        ...

    def observe(self, month: str, sources: dict[str, Columns]) -> None:
        """Learn a finished month's sources (burn-in months included)."""
        ...


class LegacyLender:
    """The incumbent policy alone: the legacy rule score against its fixed cut-off (see policy.py)."""

    def decide(self, month: str, applications: Columns, snapshot: Columns, legacy: np.ndarray) -> np.ndarray:
        """Book what the legacy rule approves."""
        return legacy

    def observe(self, month: str, sources: dict[str, Columns]) -> None:
        """Remember nothing: the rule does not learn."""


def checked_decisions(month: str, approved: object, n: int) -> np.ndarray:
    """Return a lender's answer as a boolean mask of n applications, or say what is wrong with it."""
    mask = np.asarray(approved)
    if mask.dtype != bool or mask.shape != (n,):
        raise OrchardError(
            f"the simulated lender must answer {month}'s {n} applications with {n} booleans; "
            f"it gave an array of dtype {mask.dtype} and shape {mask.shape}"
        )
    return mask
