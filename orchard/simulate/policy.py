"""The incumbent decision policy: a legacy rule score with a fixed cut-off (no statistical model)."""

from __future__ import annotations

import numpy as np

LEGACY_CUTOFF = 5.0
"""Points a legacy score needs for approval; approves ~58% of applicants in normal times."""


def age_points(age: np.ndarray) -> np.ndarray:
    """Return the legacy rule's points for age: young applicants lose points, mid-career gain."""
    return np.select([age < 25, age < 35, age < 55], [-10.0, 0.0, 8.0], default=3.0)


def legacy_score(
    income_declared: np.ndarray,
    late_bill_payments_12m: np.ndarray,
    age: np.ndarray,
    requested_amount: np.ndarray,
) -> np.ndarray:
    """Return the legacy rule score: points for declared income and age, minus late bills and leverage."""
    income = np.maximum(income_declared, 1.0)
    return (
        50.0 * np.log(income / 1000.0)
        - 15.0 * late_bill_payments_12m
        + age_points(age)
        - 10.0 * np.minimum(requested_amount / income, 10.0)
    )


def legacy_decision(score: np.ndarray, cutoff: float = LEGACY_CUTOFF) -> np.ndarray:
    """Return 'approved'/'declined' for each legacy score against the cut-off."""
    return np.where(score >= cutoff, "approved", "declined").astype(object)
