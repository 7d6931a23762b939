"""Synthetic applicants shared by the unit tests of the credit models (one generator, seeded)."""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ["missed_payments_12m", "income", "employment", "noise"]
CATEGORICAL = ["employment"]


def applicant_log_odds(frame: pd.DataFrame) -> np.ndarray:
    """Return the true log-odds of bad: rising with missed payments, falling with income, higher for gig work."""
    income = np.log(frame["income"].fillna(np.exp(8.0)).to_numpy(dtype=float))
    return (
        -2.8
        + 0.3 * frame["missed_payments_12m"].to_numpy(dtype=float)
        - 0.9 * (income - 8.0)
        + np.where(frame["employment"].to_numpy() == "gig", 0.8, 0.0)
    )


def applicants(n: int, seed: int = 0, *, shift: float = 0.0) -> pd.DataFrame:
    """Return n applicants with a `bad` label drawn from their true log-odds plus `shift` (a shock, if > 0).

    'noise' carries no signal; 5 % of incomes are missing.
    """
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "missed_payments_12m": rng.integers(0, 12, n),
            "income": rng.lognormal(8.0, 0.5, n),
            "employment": rng.choice(["salaried", "self_employed", "gig"], n, p=[0.6, 0.25, 0.15]),
            "noise": rng.normal(size=n),
        }
    )
    frame.loc[rng.random(n) < 0.05, "income"] = np.nan
    frame["bad"] = (rng.random(n) < 1 / (1 + np.exp(-(applicant_log_odds(frame) + shift)))).astype(int)
    return frame
