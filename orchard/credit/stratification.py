"""Pre-credit stratification: response probability x expected risk -> marketing tiers A-D.

A prospect's tier combines two axes: how likely they are to respond to an offer and be approved (the response
model), and how risky they would be as a borrower (a pre-credit PD from the platform's data alone, trained on
booked loans' 90+ DPD outcomes). The cuts are fixed at training: `response_cut` is the median response
probability of the development offers, `max_pd` the decision API's approve cut-off (settings.serving.approve_max_pd).

    tier A  likely to respond, low risk    -> target first
    tier B  less likely to respond, low risk -> nurture (reminders, better terms)
    tier C  likely to respond, high risk   -> smaller or secured offers only
    tier D  less likely to respond, high risk -> do not target
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.model import CreditModel, pd_to_score

TIERS = ("A", "B", "C", "D")


def tiers(response: np.ndarray, risk_pd: np.ndarray, response_cut: float, max_pd: float) -> np.ndarray:
    """Return the tier of each prospect from its response probability and pre-credit PD."""
    high = np.asarray(response, dtype=float) >= response_cut
    safe = np.asarray(risk_pd, dtype=float) <= max_pd
    return np.select([high & safe, safe, high], ["A", "B", "C"], default="D").astype(object)


def tier_counts(values: np.ndarray) -> dict[str, int]:
    """Return how many prospects fall in each tier (every tier present, zero included)."""
    found = pd.Series(values).value_counts()
    return {t: int(found.get(t, 0)) for t in TIERS}


@dataclass(eq=False)
class PrecreditModel:
    """The registered `precredit_response` model: response model + pre-credit risk model + the tier cuts.

    predict_pd returns the probability of the modelled event (responded and approved), so every gate, monitor
    and metric of the registry applies to the response axis; `risk_pd` and `tier` give the stratification.
    """

    name: str
    response: CreditModel
    risk: CreditModel
    response_cut: float
    max_pd: float
    kind: str = "precredit_tiers"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """Return every input the two models need (response features first)."""
        return list(dict.fromkeys([*self.response.features, *self.risk.features]))

    @property
    def categorical(self) -> list[str]:
        return list(dict.fromkeys([*self.response.categorical, *self.risk.categorical]))

    def predict_pd(self, df: pd.DataFrame) -> np.ndarray:
        """Return the probability of responding and being approved."""
        return self.response.predict_pd(df)

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """Return response score points (600 at odds 50:1 against responding; higher = less likely)."""
        return pd_to_score(self.predict_pd(df))

    def risk_pd(self, df: pd.DataFrame) -> np.ndarray:
        """Return the pre-credit probability of 90+ DPD if the prospect were booked."""
        return self.risk.predict_pd(df)

    def tier(self, df: pd.DataFrame) -> np.ndarray:
        """Return the marketing tier A-D of each prospect."""
        return tiers(self.predict_pd(df), self.risk_pd(df), self.response_cut, self.max_pd)
