"""Collections: the action taken on every delinquent or charged-off statement, its contact result and the
recovery at write-off."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from orchard.months import month_end

if TYPE_CHECKING:
    from orchard.simulate.lender import Columns

COLLECTIONS_STREAM = 102
"""Second word of the collections' private seed: np.random.default_rng([seed, COLLECTIONS_STREAM])."""
COLLECTED_STATUSES = ("delinquent", "charged_off")
CONTACT_RESULTS = ("no_contact", "promise_to_pay", "refused", "dispute")
"""The contact results in the demo portfolio's order (the columns of contact_probabilities)."""
MAX_ACTION_DELAY_DAYS = 10
LAST_ACTION_BEFORE_MONTH_END = pd.Timedelta(hours=1)
RECOVERY_MEAN_AT_Z0 = 0.35
RECOVERY_CONCENTRATION = 6.0
"""a + b of the recovery-rate Beta: its spread around the mean (sd ~0.18 at mean 0.35)."""


def collections_generator(seed: int) -> np.random.Generator:
    """Return the generator private to the collections source."""
    return np.random.default_rng([seed, COLLECTIONS_STREAM])


def collection_action(dpd: np.ndarray, status: np.ndarray) -> np.ndarray:
    """Return the action for each statement: sms at 30 dpd, call at 60, field visit at 90-120, agency from
    150, write-off for a charged-off statement."""
    return np.select(
        [status == "charged_off", dpd <= 30, dpd <= 60, dpd <= 120],
        ["write_off", "sms", "call", "field_visit"],
        default="agency",
    ).astype(object)


def contact_probabilities(creditworthiness: np.ndarray, dpd: np.ndarray, stress: float) -> np.ndarray:
    """Return P(contact result) per row, columns in CONTACT_RESULTS order: better z promises to pay more,
    stress and deeper arrears leave more borrowers out of reach."""
    z = creditworthiness
    logits = np.column_stack(
        [
            1.0 * stress + 0.15 * (dpd / 30.0 - 1.0),
            0.3 + 1.5 * z - 0.6 * stress,
            -0.6 - 0.5 * z,
            np.full_like(z, -2.2),
        ]
    )
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def recovery_rate_mean(creditworthiness: np.ndarray, stress: float) -> np.ndarray:
    """Return the mean recovery rate on a written-off balance: 0.35 at z = 0, more for better z, less
    under stress."""
    return expit(logit(RECOVERY_MEAN_AT_Z0) + 0.5 * creditworthiness - 0.8 * stress)


def collection_actions(
    statements: Columns, creditworthiness: np.ndarray, stress: float, month: str, rng: np.random.Generator
) -> Columns:
    """Return one collections row per delinquent or charged-off statement of the month.

    creditworthiness is the borrower's z per statement row. The contact result and the recovery are drawn
    from rng and only read the statement: they never change what the borrower pays.
    """
    rows = np.flatnonzero(np.isin(statements["status"], COLLECTED_STATUSES))
    k = len(rows)
    z = creditworthiness[rows]
    dpd = statements["dpd"][rows]
    status = statements["status"][rows]
    balance = statements["balance"][rows]
    delay = rng.integers(1, MAX_ACTION_DELAY_DAYS, k, endpoint=True) * pd.Timedelta(days=1).value
    last = (month_end(month) - LAST_ACTION_BEFORE_MONTH_END).value
    ts = np.minimum(statements["event_ts"][rows] + delay, last)
    cumulative = contact_probabilities(z, dpd, stress).cumsum(axis=1)
    # clip so a rounding shortfall in the last cumulative probability cannot index past the end
    picked = np.minimum((rng.random(k)[:, None] > cumulative).sum(axis=1), len(CONTACT_RESULTS) - 1)
    action = collection_action(dpd, status)
    mean = recovery_rate_mean(z, stress)
    rate = rng.beta(mean * RECOVERY_CONCENTRATION, (1.0 - mean) * RECOVERY_CONCENTRATION)
    recovered = np.where(action == "write_off", np.minimum(np.round(balance * rate, 2), balance), 0.0)
    overdue = statements["amount_due"][rows] - statements["amount_paid"][rows]
    return {
        "application_id": statements["application_id"][rows],
        "event_ts": ts,
        "user_id": statements["user_id"][rows],
        "months_on_book": statements["months_on_book"][rows],
        "dpd": dpd,
        "amount_overdue": np.round(np.maximum(overdue, 0.0), 2),
        "action": action,
        "contact_result": np.array(CONTACT_RESULTS, dtype=object)[picked],
        "recovered_amount": recovered,
    }
