"""Expected loss by vintage: EL = PD x LGD x EAD, set beside the realised net charge-offs.

- PD: probability that a booked loan is charged off within the loss window (a LightGBM model on the
  application's features);
- EAD: exposure at default per unit of principal: the balance of the charged_off statement / principal,
  averaged over the development window's charge-offs;
- LGD: loss given default: 1 - recovered / balance at charge-off, over the same charge-offs (recoveries come
  from the collections source's write_off rows).
Realised loss of a loan = balance at charge-off - recovered, counted when the charge-off falls inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from orchard.credit.model import CreditModel
from orchard.errors import OrchardError
from orchard.months import timestamp_months

PRINCIPAL = "requested_amount"


def realised_losses(repayments: pd.DataFrame, collections: pd.DataFrame) -> pd.DataFrame:
    """Return one row per charged-off loan: charge-off month index, exposure, recovery and net loss."""
    off = repayments.loc[repayments["status"] == "charged_off", ["application_id", "event_ts", "balance"]]
    off = off.drop_duplicates("application_id", keep="first")
    written = collections.loc[collections["action"] == "write_off", ["application_id", "recovered_amount"]]
    written = written.groupby("application_id", as_index=False)[["recovered_amount"]].sum()
    out = off.merge(written, on="application_id", how="left").fillna({"recovered_amount": 0.0})
    out["chargeoff_index"] = timestamp_months(out["event_ts"])
    out["recovered_amount"] = np.minimum(out["recovered_amount"], out["balance"])
    out["net_loss"] = out["balance"] - out["recovered_amount"]
    return out[["application_id", "chargeoff_index", "balance", "recovered_amount", "net_loss"]]


def loss_parameters(loans: pd.DataFrame, losses: pd.DataFrame) -> tuple[float, float, int]:
    """Return (LGD, EAD per unit of principal, charge-offs used) from the charged-off loans among `loans`."""
    used = losses.merge(loans[["application_id", PRINCIPAL]], on="application_id", how="inner")
    used = used[used["balance"] > 0]
    if used.empty:
        raise OrchardError("no charged-off loan with a balance in the window: cannot estimate LGD and EAD")
    lgd = float(used["net_loss"].sum() / used["balance"].sum())
    ead = float((used["balance"] / used[PRINCIPAL].clip(lower=1.0)).mean())
    return lgd, ead, len(used)


@dataclass(eq=False)
class LossForecastModel:
    """The registered `loss_forecast` model: charge-off PD model + LGD + EAD ratio."""

    name: str
    pd_model: CreditModel
    lgd: float
    ead_ratio: float
    kind: str = "expected_loss"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return self.pd_model.features

    @property
    def categorical(self) -> list[str]:
        return self.pd_model.categorical

    @property
    def estimator(self) -> Any:
        return self.pd_model.estimator

    def predict_pd(self, df: pd.DataFrame) -> np.ndarray:
        """Return the probability of a charge-off within the loss window."""
        return self.pd_model.predict_pd(df)

    def score(self, df: pd.DataFrame) -> np.ndarray:
        return self.pd_model.score(df)

    def expected_loss(self, df: pd.DataFrame) -> np.ndarray:
        """Return PD x LGD x EAD per loan (EAD = ead_ratio x principal)."""
        principal = pd.to_numeric(df[PRINCIPAL], errors="coerce").to_numpy(dtype=float)
        return self.predict_pd(df) * self.lgd * self.ead_ratio * principal


def loss_by_vintage(
    loans: pd.DataFrame, expected: np.ndarray, losses: pd.DataFrame, as_of_index: int, window: int
) -> pd.DataFrame:
    """Return per vintage: loans, expected loss, realised net charge-offs within the window, and maturity.

    loans: booked loans with application_id, vintage and obs_index (booking month index).
    """
    frame = loans[["application_id", "vintage", "obs_index"]].assign(expected_loss=np.asarray(expected))
    joined = frame.merge(
        losses[["application_id", "chargeoff_index", "net_loss"]], on="application_id", how="left"
    )
    inside = (joined["chargeoff_index"] - joined["obs_index"] <= window) & (
        joined["chargeoff_index"] <= as_of_index
    )
    joined["realised_loss"] = np.where(inside, joined["net_loss"].fillna(0.0), 0.0)
    out = joined.groupby("vintage").agg(
        loans=("application_id", "size"),
        expected_loss=("expected_loss", "sum"),
        realised_loss=("realised_loss", "sum"),
        obs_index=("obs_index", "max"),
    )
    out["mature"] = out["obs_index"] + window <= as_of_index
    return out.drop(columns="obs_index").reset_index()
