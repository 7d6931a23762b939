"""Unit tests of reason codes: stable codes, the points lost versus the best bin, vectorised and per row."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from orchard.credit.model import CreditModel
from orchard.credit.reason_codes import (
    points_lost,
    reason_catalog,
    reason_code,
    reason_codes,
    reason_records,
    reason_text,
)
from orchard.credit.scorecard import scorecard_of, train_scorecard
from orchard.errors import OrchardError
from tests.applicants import applicants

FEATURES = ["late_bill_payments_12m", "missed_payments_12m", "income", "employment", "age"]


@pytest.fixture(scope="module")
def model() -> CreditModel:
    return train_scorecard(applicants(6000), "bad", FEATURES, ["employment"], seed=1)


def test_codes_are_stable_upper_snake_case() -> None:
    assert reason_code("late_bill_payments_12m") == "RC_LATE_BILL_PAYMENTS_12M"
    assert reason_code("Debt-to income %") == "RC_DEBT_TO_INCOME"
    assert reason_text("late_bill_payments_12m") == "Late bill payments in the last 12 months"
    assert reason_text("some_new_column") == "Some new column", "unknown features read as their name"
    with pytest.raises(OrchardError, match="empty reason code"):
        reason_code("__")


def test_worst_case_gets_four_reasons_ordered_by_points_lost(model: CreditModel) -> None:
    # Given a risky applicant on every feature
    worst = pd.DataFrame(
        {
            "late_bill_payments_12m": [7],
            "missed_payments_12m": [5],
            "income": [800.0],
            "employment": ["gig"],
            "age": [19],
        }
    )
    reasons = reason_codes(model, worst)
    lost = points_lost(model, worst).iloc[0].sort_values(ascending=False)
    # Then the four reasons are the four largest losses, largest first, with their points
    codes = [reasons.loc[0, f"reason_code_{i}"] for i in range(1, 5)]
    assert codes == [reason_code(f) for f in lost.index[:4]], (codes, lost.to_dict())
    losses = [reasons.loc[0, f"points_lost_{i}"] for i in range(1, 5)]
    assert losses == sorted(losses, reverse=True) and losses[-1] > 0
    assert reasons.loc[0, "reason_text_1"].startswith(reason_text(lost.index[0]))


def test_best_case_gets_no_reason(model: CreditModel) -> None:
    # Given an applicant in the best bin of every feature (read from the points table)
    table = scorecard_of(model).points_table()
    seen = table[table["count"] > 0]
    best_rows = seen.loc[seen.groupby("feature")["points"].idxmax()]
    assert set(best_rows["feature"]) == set(model.features)
    best = pd.DataFrame(
        {
            "late_bill_payments_12m": [0],
            "missed_payments_12m": [0],
            "income": [20_000.0],
            "employment": ["salaried"],
            "age": [69],
        }
    )
    lost = points_lost(model, best).iloc[0]
    reasons = reason_codes(model, best)
    # Then nothing is lost where the bin is the best one, and only real losses become reasons
    n_losses = int((lost > 1e-9).sum())
    given = [c for c in (reasons.loc[0, f"reason_code_{i}"] for i in range(1, 5)) if c is not None]
    assert len(given) == min(n_losses, 4), (lost.to_dict(), given)


def test_vectorised_reasons_equal_a_row_by_row_computation(model: CreditModel) -> None:
    sample = applicants(200, seed=3)
    reasons = reason_codes(model, sample)
    lost = points_lost(model, sample)
    for i in range(len(sample)):
        row = lost.iloc[i]
        expected = [
            reason_code(f) for f, v in row.sort_values(ascending=False, kind="stable").items() if v > 1e-9
        ][:4]
        got = [c for c in reasons.iloc[i][[f"reason_code_{k}" for k in range(1, 5)]] if c is not None]
        assert got == expected, f"row {i}: {got} != {expected}"


def test_records_are_json_ready(model: CreditModel) -> None:
    records = reason_records(reason_codes(model, applicants(5, seed=4)))
    assert len(records) == 5 and all(len(r) <= 4 for r in records)
    text = json.dumps(records)
    assert "RC_" in text and all({"code", "text", "points_lost"} == set(item) for r in records for item in r)


def test_catalog_lists_every_feature(model: CreditModel) -> None:
    catalog = reason_catalog(model)
    assert list(catalog["feature"]) == model.features and catalog["code"].is_unique


def test_bad_requests_are_named(model: CreditModel) -> None:
    with pytest.raises(OrchardError, match="top_n"):
        reason_codes(model, applicants(2), top_n=0)
    with pytest.raises(OrchardError, match="not a scorecard"):
        reason_codes(object(), applicants(2))  # type: ignore[arg-type]
