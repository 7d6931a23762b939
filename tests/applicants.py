"""Synthetic applicants shared by the unit tests of the credit models and statistics (one seeded generator)."""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["missed_payments_12m", "income", "employment", "noise"]
"""A typical model's candidates: two risk drivers, a categorical and a column without signal."""
CATEGORICAL = ["employment"]


def applicant_log_odds(frame: pd.DataFrame) -> np.ndarray:
    """Return the true log-odds of bad: up with missed payments and late bills, down with income and age, up
    for gig work; 'noise' carries none (a missing income counts as the median)."""
    income = np.log(frame["income"].fillna(np.exp(8.0)).to_numpy(dtype=float))
    return (
        -3.0
        + 0.3 * frame["missed_payments_12m"].to_numpy(dtype=float)
        + 0.25 * frame["late_bill_payments_12m"].to_numpy(dtype=float)
        - 0.8 * (income - 8.0)
        + np.where(frame["employment"].to_numpy() == "gig", 0.8, 0.0)
        - 0.02 * (frame["age"].to_numpy(dtype=float) - 40.0)
    )


def applicants(n: int, seed: int = 0, *, shift: float = 0.0, missing_income: float = 0.05) -> pd.DataFrame:
    """Return n applicants with a `bad` label drawn from their true log-odds plus `shift` (a shock, if > 0).

    A share `missing_income` of incomes is missing (after the label is drawn from the true income).
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "missed_payments_12m": rng.integers(0, 12, n),
            "late_bill_payments_12m": rng.integers(0, 8, n),
            "income": rng.lognormal(8.0, 0.5, n),
            "employment": rng.choice(["salaried", "self_employed", "gig"], n, p=[0.6, 0.25, 0.15]),
            "age": rng.integers(18, 70, n),
            "noise": rng.normal(size=n),
        }
    )
    frame["bad"] = (rng.random(n) < 1 / (1 + np.exp(-(applicant_log_odds(frame) + shift)))).astype(int)
    if missing_income > 0:
        frame.loc[rng.random(n) < missing_income, "income"] = np.nan
    return frame
