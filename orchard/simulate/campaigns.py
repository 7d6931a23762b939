"""Campaigns: each month's pre-approved offers to platform users without credit, and who answered them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from orchard.months import month_start

if TYPE_CHECKING:
    from orchard.simulate.lender import Columns

CAMPAIGNS_STREAM = 101
"""Second word of the campaigns' private seed: np.random.default_rng([seed, CAMPAIGNS_STREAM])."""
OFFER_SHARE = 0.30
"""Share of the eligible snapshot users who get an offer each month."""
OFFER_CHANNELS = ("push", "sms", "in_app")
OFFER_CHANNEL_WEIGHTS = (0.5, 0.3, 0.2)
"""Share of offers sent by each of OFFER_CHANNELS (push, sms, in_app)."""
OFFER_INCOME_MULTIPLE = 1.5
"""The pre-approved amount shown is this multiple of the platform's income estimate."""
MIN_OFFER, MAX_OFFER = 100.0, 100_000.0
SEND_START = pd.Timedelta(hours=9)
SEND_WINDOW = pd.Timedelta(hours=8)


def campaign_id(month: str) -> str:
    """Return the id of a month's campaign."""
    return f"CMP-{month}"


def offer_amounts(income_estimate: np.ndarray) -> np.ndarray:
    """Return the pre-approved amount shown: 1.5x the income estimate, rounded to 50, within 100..100000."""
    amount = np.round(OFFER_INCOME_MULTIPLE * income_estimate / 50.0) * 50.0
    return np.clip(amount, MIN_OFFER, MAX_OFFER)


class CampaignStream:
    """The campaigns of consecutive months, drawn from a generator private to them (plus the offer counter).

    Offers are read from the engine's output and never written back: who applies is the engine's
    decision alone, so the offer has no uplift and the applications source is the same with or without it.
    """

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, CAMPAIGNS_STREAM])
        self._next_offer = 0

    def offers(self, month: str, snapshot: Columns, eligible: np.ndarray, applications: Columns) -> Columns:
        """Return the month's offers: a random OFFER_SHARE of the eligible snapshot rows, sent on the 1st
        between 09:00 and 17:00 UTC; responded = the user applied in the month (that application's id)."""
        rng = self._rng
        rows = np.flatnonzero(eligible)
        rows = rows[rng.random(len(rows)) < OFFER_SHARE]
        k = len(rows)
        sent = month_start(month).value + SEND_START.value
        # whole seconds, as every other source's event time
        second = pd.Timedelta(seconds=1)
        ts = sent + rng.integers(0, SEND_WINDOW // second, k, endpoint=True) * second.value
        channel = rng.choice(np.array(OFFER_CHANNELS, dtype=object), size=k, p=OFFER_CHANNEL_WEIGHTS)
        # ids follow send time
        order = np.argsort(ts, kind="stable")
        rows, ts, channel = rows[order], ts[order], channel[order]
        ids = np.array([f"O{self._next_offer + i:09d}" for i in range(k)], dtype=object)
        self._next_offer += k
        users = snapshot["user_id"][rows]
        # the engine draws at most one application per user and month (get_indexer raises otherwise);
        # -1 (did not apply) picks the None appended after the ids
        position = pd.Index(applications["user_id"]).get_indexer(pd.Index(users))
        application_id = np.append(applications["application_id"], np.array([None], dtype=object))[position]
        return {
            "offer_id": ids,
            "event_ts": ts,
            "user_id": users,
            "campaign_id": np.full(k, campaign_id(month), dtype=object),
            "offer_channel": channel,
            "offer_amount": offer_amounts(snapshot["income_est_monthly"][rows]),
            "responded": (position >= 0).astype(np.int64),
            "application_id": application_id,
        }
