"""Unit tests of the stage labels: event within a window, first payment default, charge-off; tiers; expected loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchard.credit.expected_loss import loss_by_vintage, loss_parameters, realised_losses
from orchard.credit.stratification import tier_counts, tiers
from orchard.errors import OrchardError
from orchard.labels import charge_off_labels, event_within, first_payment_default_labels
from orchard.months import month_index


def test_event_within_counts_only_statements_after_the_observation_inside_the_window() -> None:
    # Given four cases observed in month 100 and event statements before, inside, beyond the window, unseen yet
    cases = pd.DataFrame({"application_id": ["same", "inside", "beyond", "future"], "obs_index": [100] * 4})
    events = pd.DataFrame(
        {"application_id": ["same", "inside", "beyond", "future"], "stmt_index": [100, 102, 104, 103]}
    )
    # When labelled with a 3-month window as of month 102
    label, mature = event_within(cases, events, as_of=102, window_months=3)
    # Then only 'inside' is an event; nobody is mature (100 + 3 > 102); the rest is unknown
    assert label[1] == 1.0
    assert np.isnan(label[[0, 2, 3]]).all()
    assert not mature.any()
    # And as of 103 every case is mature: the event at 104 is past the window, the one at 103 inside it
    label, mature = event_within(cases, events, as_of=103, window_months=3)
    assert mature.all() and label.tolist() == [0.0, 1.0, 0.0, 1.0]


def _apps() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "application_id": ["paid", "fpd", "late_fpd", "declined", "young"],
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "event_ts": pd.to_datetime(
                ["2019-01-10", "2019-01-11", "2019-01-12", "2019-01-13", "2019-03-02"], utc=True
            ),
            "decision": ["approved", "approved", "approved", "declined", "approved"],
        }
    )


def _repayments() -> pd.DataFrame:
    rows = [
        ("paid", 1, 100.0, 100.0, 0, "current"),
        ("paid", 2, 100.0, 0.0, 30, "delinquent"),
        ("fpd", 1, 100.0, 0.0, 30, "delinquent"),
        ("late_fpd", 1, 100.0, 100.0, 0, "current"),
        ("late_fpd", 2, 100.0, 0.0, 30, "delinquent"),
        ("late_fpd", 7, 0.0, 0.0, 180, "charged_off"),
    ]
    return pd.DataFrame(
        rows, columns=["application_id", "months_on_book", "amount_due", "amount_paid", "dpd", "status"]
    )


def test_first_payment_default_is_the_first_statement_unpaid() -> None:
    labels = first_payment_default_labels(_apps(), _repayments(), "2019-03").set_index("application_id")
    # a missed second payment is not a first payment default; declined applications have no label
    assert (
        labels.loc["fpd", "bad"] == 1
        and labels.loc["paid", "bad"] == 0
        and labels.loc["late_fpd", "bad"] == 0
    )
    assert "declined" not in labels.index
    # a loan booked in 2019-03 has its first statement in 2019-04: immature and unknown at 2019-03
    assert not labels.loc["young", "mature"] and np.isnan(labels.loc["young", "bad"])


def test_charge_off_counts_inside_the_loss_window_only() -> None:
    inside = charge_off_labels(_apps(), _repayments(), "2020-01", 12).set_index("application_id")
    assert inside.loc["late_fpd", "bad"] == 1 and inside.loc["paid", "bad"] == 0
    # the charge-off at statement 7 is outside a 6-month window
    outside = charge_off_labels(_apps(), _repayments(), "2019-12", 6).set_index("application_id")
    assert outside.loc["late_fpd", "bad"] == 0


def test_window_must_be_positive() -> None:
    with pytest.raises(OrchardError, match="window_months"):
        charge_off_labels(_apps(), _repayments(), "2019-12", 0)


def test_tiers_combine_response_and_risk() -> None:
    response = np.array([0.9, 0.1, 0.9, 0.1])
    risk = np.array([0.02, 0.02, 0.5, 0.5])
    assert tiers(response, risk, response_cut=0.5, max_pd=0.1).tolist() == ["A", "B", "C", "D"]
    assert tier_counts(np.array(["A", "A", "D"])) == {"A": 2, "B": 0, "C": 0, "D": 1}


def _losses() -> tuple[pd.DataFrame, pd.DataFrame]:
    repayments = pd.DataFrame(
        {
            "application_id": ["x", "x", "y", "z"],
            "event_ts": pd.to_datetime(["2019-07-03", "2019-08-03", "2019-09-03", "2020-09-03"], utc=True),
            "balance": [500.0, 480.0, 1000.0, 200.0],
            "status": ["delinquent", "charged_off", "charged_off", "charged_off"],
        }
    )
    collections = pd.DataFrame(
        {
            "application_id": ["x", "y", "y"],
            "action": ["write_off", "call", "write_off"],
            "recovered_amount": [80.0, 0.0, 300.0],
        }
    )
    return repayments, collections


def test_realised_losses_are_balance_at_charge_off_minus_recoveries() -> None:
    losses = realised_losses(*_losses()).set_index("application_id")
    assert losses.loc["x", "net_loss"] == pytest.approx(400.0)
    assert losses.loc["y", "net_loss"] == pytest.approx(700.0)
    assert losses.loc["z", "net_loss"] == pytest.approx(200.0)  # no recovery recorded: the whole balance


def test_lgd_and_ead_and_loss_by_vintage() -> None:
    losses = realised_losses(*_losses())
    loans = pd.DataFrame(
        {
            "application_id": ["x", "y", "z", "w"],
            "requested_amount": [1000.0, 2000.0, 400.0, 500.0],
            "vintage": ["2019-01", "2019-01", "2019-10", "2019-10"],
            "obs_index": [month_index("2019-01")] * 2 + [month_index("2019-10")] * 2,
        }
    )
    lgd, ead, used = loss_parameters(loans, losses)
    assert used == 3
    assert lgd == pytest.approx((400 + 700 + 200) / (480 + 1000 + 200))
    assert ead == pytest.approx(np.mean([480 / 1000, 1000 / 2000, 200 / 400]))
    table = loss_by_vintage(loans, np.array([100.0, 200.0, 50.0, 50.0]), losses, month_index("2020-06"), 12)
    rows = table.set_index("vintage")
    assert rows.loc["2019-01", "expected_loss"] == 300.0 and rows.loc["2019-01", "realised_loss"] == 1100.0
    # z's charge-off (2020-09) is not observable at 2020-06 and the vintage is still open
    assert rows.loc["2019-10", "realised_loss"] == 0.0 and not rows.loc["2019-10", "mature"]
    assert rows.loc["2019-01", "mature"]
