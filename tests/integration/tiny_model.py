"""A tiny picklable model following the registry's protocol, for the registry and governance tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

FEATURES = ["income", "utilization"]


def training_frame(seed: int, rows: int = 60) -> pd.DataFrame:
    """Build a small frame where high utilization and low income make bads likelier."""
    rng = np.random.default_rng(seed)
    income = rng.normal(3.0, 1.0, rows)
    utilization = rng.uniform(0, 1, rows)
    bad = (utilization - 0.3 * income + rng.normal(0, 0.3, rows) > -0.4).astype(int)
    return pd.DataFrame(
        {"application_id": range(rows), "income": income, "utilization": utilization, "bad": bad}
    )


class TinyPd:
    """A logistic regression on FEATURES, fitted on training_frame(seed, rows)."""

    def __init__(self, name: str, seed: int, rows: int = 60) -> None:
        self.name = name
        self.kind = "logistic"
        self.features = list(FEATURES)
        frame = training_frame(seed, rows)
        self.estimator = LogisticRegression().fit(frame[FEATURES], frame["bad"])

    def predict_pd(self, df: pd.DataFrame) -> np.ndarray:
        """Return the probability of default of every row."""
        return self.estimator.predict_proba(df[self.features])[:, 1]
