"""Tests of the simulator's lender hook: who decides, what the lender is shown, and the counterfactual truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchard.errors import OrchardError
from orchard.months import add_months, month_start
from orchard.simulate.lender import Columns
from orchard.simulate.lifecycle import COUNTERFACTUAL, engine_months

START, END, BURN_IN = "2019-01", "2019-12", 6
FIRST = add_months(START, -BURN_IN)


class RecordingLender:
    """Declines every application from `decline_from`, else books what the legacy rule approves; records calls."""

    def __init__(self, decline_from: str = "9999-12") -> None:
        self.decline_from = decline_from
        self.calls: list[tuple[str, str, int]] = []

    def decide(self, month: str, applications: Columns, snapshot: Columns, legacy: np.ndarray) -> np.ndarray:
        assert "decision" not in applications, "the lender is asked before anything is decided"
        assert (snapshot["event_ts"] == month_start(month).value).all(), "the snapshot is dated the 1st"
        self.calls.append(("decide", month, len(applications["application_id"])))
        return np.zeros_like(legacy) if month >= self.decline_from else legacy

    def observe(self, month: str, sources: dict[str, Columns]) -> None:
        self.calls.append(("observe", month, len(sources["applications"]["application_id"])))


def _months(lender: object) -> dict[str, dict[str, Columns]]:
    return {m: c for m, c, _ in engine_months(3_000, FIRST, END, "2019-09", 5, lender)}  # type: ignore[arg-type]


def test_the_lender_decides_each_month_before_it_is_shown_it() -> None:
    # Given a lender that records its calls
    lender = RecordingLender()
    months = _months(lender)
    # Then every month, burn-in included, is decided and then shown, in order, with the same applications
    expected = [
        (kind, m, len(months[m]["applications"]["application_id"]))
        for m in months
        for kind in ("decide", "observe")
    ]
    assert lender.calls == expected


def test_a_declined_application_is_not_booked_but_gets_its_counterfactual_statements() -> None:
    # Given a lender that declines everything from 2019-06
    months = _months(RecordingLender(decline_from="2019-06"))
    booked: set[str] = set()
    declined: set[str] = set()
    for month, columns in months.items():
        apps = pd.DataFrame(columns["applications"])
        if month >= "2019-06":
            assert (apps["decision"] == "declined").all(), f"{month}: the lender's answer is the decision"
        declined |= set(apps.loc[apps["decision"] == "declined", "application_id"])
        booked |= set(apps.loc[apps["decision"] == "approved", "application_id"])
    real = pd.concat([pd.DataFrame(c["repayments"]) for c in months.values()])
    truth = pd.concat([pd.DataFrame(c[COUNTERFACTUAL]).assign(month=m) for m, c in months.items()])
    # Then real statements are only ever of booked loans, counterfactual ones only of declined applications
    assert set(real["application_id"]) <= booked
    assert set(truth["application_id"]) <= declined and not set(truth["application_id"]) & booked
    # And a declined application of 2019-06 has its first counterfactual statement in 2019-07, months_on_book 1
    june = pd.DataFrame(months["2019-06"]["applications"])["application_id"]
    first = truth[truth["application_id"].isin(set(june))].groupby("application_id")["month"].min()
    assert len(first) > 0 and (first == "2019-07").all()
    assert (truth.loc[truth["month"] == "2019-07", "months_on_book"] >= 1).all()


def test_declined_applicants_would_have_gone_bad_more_often_than_the_booked() -> None:
    # Given the legacy rule deciding (the engine's default lender)
    months = {m: c for m, c, _ in engine_months(6_000, FIRST, END, "2030-01", 11)}
    apps = pd.concat([pd.DataFrame(c["applications"]).assign(month=m) for m, c in months.items()])
    apps = apps[apps["month"].between(START, "2019-06")]

    def bad_rate(frames: list[pd.DataFrame], ids: set[str]) -> float:
        rows = pd.concat(frames)
        rows = rows[rows["application_id"].isin(ids) & (rows["months_on_book"] <= 6)]
        bad = rows.groupby("application_id")["dpd"].max() >= 90
        return float(bad.reindex(sorted(ids), fill_value=False).mean())

    booked = set(apps.loc[apps["decision"] == "approved", "application_id"])
    declined = set(apps.loc[apps["decision"] == "declined", "application_id"])
    real = bad_rate([pd.DataFrame(c["repayments"]) for c in months.values()], booked)
    truth = bad_rate([pd.DataFrame(c[COUNTERFACTUAL]) for c in months.values()], declined)
    # Then the rule declines the riskier applicants: their true 6-month 90+ dpd rate is well above the booked one
    assert truth > 1.3 * real, (truth, real)


def test_a_lender_answer_of_the_wrong_shape_is_named() -> None:
    class Broken:
        def decide(
            self, month: str, applications: Columns, snapshot: Columns, legacy: np.ndarray
        ) -> np.ndarray:
            return legacy[:-1]

        def observe(self, month: str, sources: dict[str, Columns]) -> None:
            pass

    with pytest.raises(
        OrchardError, match=r"lender must answer \d{4}-\d{2}'s \d+ applications with \d+ booleans"
    ):
        _months(Broken())
