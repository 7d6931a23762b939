"""The one scoring implementation: identical to the model's own predict_pd, reasons, bands and the policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchard.credit.model import CreditModel, train_lightgbm
from orchard.errors import OrchardError
from orchard.serving.scoring import (
    UNKNOWN_CUSTOMER,
    DecisionPolicy,
    ServedModel,
    decide,
    decision_rules,
    pd_band,
    score_frame,
    score_row,
)

FEATURES = ["late_bill_payments_12m", "income_est_monthly", "city_tier"]


def _data(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    late = rng.integers(0, 12, n)
    income = rng.gamma(2.0, 800.0, n)
    tier = rng.choice(["tier1", "tier2", "rural"], n)
    logit = -2.5 + 0.35 * late - income / 2_000 + (tier == "rural") * 0.8
    bad = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame(
        {"late_bill_payments_12m": late, "income_est_monthly": income, "city_tier": tier, "bad": bad}
    )


@pytest.fixture(scope="module")
def served() -> ServedModel:
    model = train_lightgbm(_data(), "bad", FEATURES, ["city_tier"], seed=1, name="toy")
    return ServedModel.build("toy", 3, model)


def test_batch_scores_equal_the_models_own_predictions_exactly(served: ServedModel) -> None:
    # Given rows with a missing number, a missing category and a level never seen in training
    frame = _data(60, seed=9).drop(columns="bad")
    frame.loc[0, "income_est_monthly"] = np.nan
    frame.loc[1, "city_tier"] = None
    frame.loc[2, "city_tier"] = "moon"
    # When the serving code scores the frame
    scored = score_frame(served, frame)
    # Then PD and score are bit-for-bit the CreditModel's own
    model: CreditModel = served.model
    np.testing.assert_array_equal(scored.pd, model.predict_pd(frame))
    np.testing.assert_array_equal(scored.score, model.score(frame))


def test_one_row_scores_equal_its_batch_row(served: ServedModel) -> None:
    # Given a frame and its rows as plain dicts (what the API builds from Feast + the request)
    frame = _data(20, seed=5).drop(columns="bad")
    batch = score_frame(served, frame)
    for i, row in enumerate(frame.to_dict("records")):
        # When one row is scored alone
        one = score_row(served, row)
        # Then it is the same PD, score, band and reasons as in the batch
        assert one.pd[0] == batch.pd[i] and one.score[0] == batch.score[i] and one.band[0] == batch.band[i]
        assert one.reasons[0] == batch.reasons[i], i


def test_reasons_are_risk_raising_features_largest_first(served: ServedModel) -> None:
    # Given a risky applicant (many late payments, low income, rural)
    row = {"late_bill_payments_12m": 11, "income_est_monthly": 300.0, "city_tier": "rural"}
    # When scored
    reasons = score_row(served, row).reasons[0]
    # Then up to 4 reasons, codes RC_<FEATURE>, positive points lost, largest first, value in the text
    assert 1 <= len(reasons) <= 4, reasons
    assert all(r["code"].startswith("RC_") and r["points_lost"] > 0 for r in reasons), reasons
    assert [r["points_lost"] for r in reasons] == sorted((r["points_lost"] for r in reasons), reverse=True)
    assert "RC_LATE_BILL_PAYMENTS_12M" in [r["code"] for r in reasons], reasons
    assert any("(11)" in r["text"] for r in reasons), reasons


def test_more_late_payments_do_not_lower_risk_on_this_toy_model(served: ServedModel) -> None:
    # Given the same applicant with few and with many late bill payments
    base = {"income_est_monthly": 1_500.0, "city_tier": "tier2"}
    low = score_row(served, {**base, "late_bill_payments_12m": 0}).pd[0]
    high = score_row(served, {**base, "late_bill_payments_12m": 11}).pd[0]
    # Then the PD with more late payments is not lower
    assert high >= low, (low, high)


def test_missing_feature_column_and_non_numeric_value_are_named(served: ServedModel) -> None:
    # Given a frame without a feature, and a row with text in a numeric feature
    with pytest.raises(OrchardError, match="income_est_monthly"):
        score_frame(served, pd.DataFrame({"late_bill_payments_12m": [1], "city_tier": ["rural"]}))
    with pytest.raises(OrchardError, match="income_est_monthly"):
        score_row(served, {"late_bill_payments_12m": 1, "income_est_monthly": "lots", "city_tier": "rural"})


def test_bands_cut_at_their_upper_pd_bounds() -> None:
    # Given PDs on and around the band edges
    pds = np.array([0.0, 0.02, 0.0201, 0.05, 0.07, 0.10, 0.2, 0.21, 1.0])
    # Then each lands in its band (upper bound inclusive)
    assert pd_band(pds).tolist() == ["A", "A", "B", "B", "C", "C", "D", "E", "E"]


def _policy(pd_value: float) -> DecisionPolicy:
    return DecisionPolicy(approve_max_pd=pd_value, decline_min_pd=pd_value, fraud_refer_min=1.0)


def test_decision_follows_the_cut_offs(served: ServedModel) -> None:
    row = {"late_bill_payments_12m": 5, "income_est_monthly": 1_000.0, "city_tier": "tier1"}
    pd_value = float(score_row(served, row).pd[0])
    # Given cut-offs just above, around and below this applicant's PD
    approve = decide(served, None, row, DecisionPolicy(pd_value, min(1.0, pd_value + 0.1), 1.0))
    decline = decide(served, None, row, DecisionPolicy(0.0, pd_value, 1.0))
    refer = decide(served, None, row, DecisionPolicy(pd_value / 2, min(1.0, pd_value * 2), 1.0))
    # Then approve at PD <= approve_max_pd, decline at PD >= decline_min_pd, refer in between
    assert (approve.decision, decline.decision, refer.decision) == ("approve", "decline", "refer")
    # And without a fraud champion the decision says it used the PD model only
    assert approve.fraud_pd is None and approve.model_versions == {"toy": 3, "application_fraud": None}
    assert "no champion for application_fraud" in approve.notes[0]


def test_fraud_score_above_its_cut_off_refers(served: ServedModel) -> None:
    row = {"late_bill_payments_12m": 1, "income_est_monthly": 3_000.0, "city_tier": "tier1"}
    fraud = ServedModel.build("application_fraud", 7, served.model)
    # Given a fraud model whose score is above the fraud cut-off, and a PD that would approve
    outcome = decide(served, fraud, row, DecisionPolicy(1.0, 1.0, 0.0))
    # Then the application is referred, first reason RC_FRAUD_SUSPECTED, at most 4 reasons
    assert outcome.decision == "refer" and outcome.rule.startswith("fraud_pd")
    assert outcome.reasons[0]["code"] == "RC_FRAUD_SUSPECTED" and len(outcome.reasons) <= 4
    assert outcome.model_versions["application_fraud"] == 7


def test_the_batch_rule_decides_each_row_as_the_cut_offs_say() -> None:
    # Given PDs and fraud PDs on and around the cut-offs (0.10 approve, 0.30 decline, 0.20 fraud)
    policy = DecisionPolicy(0.10, 0.30, 0.20)
    pd_values = np.array([0.05, 0.10, 0.1001, 0.29, 0.30, 0.50, 0.05, 0.30])
    fraud = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.20, 0.20])
    decisions, rules = decision_rules(pd_values, fraud, policy)
    # Then approve up to 0.10, refer between, decline from 0.30 (before a fraud referral), refer a fraud from 0.20
    assert decisions.tolist() == [
        "approve",
        "approve",
        "refer",
        "refer",
        "decline",
        "decline",
        "refer",
        "decline",
    ]
    assert rules[6] == "fraud_pd >= fraud_refer_min" and rules[2] == "approve_max_pd < pd < decline_min_pd"
    # And without a fraud model no fraud referral is made
    assert decision_rules(pd_values, None, policy)[0][6] == "approve"


def test_unknown_customer_is_referred_without_a_score(served: ServedModel) -> None:
    # Given no online features for the customer
    outcome = decide(served, None, None, _policy(0.5))
    # Then refer with RC_UNKNOWN_CUSTOMER and no PD
    assert outcome.decision == "refer" and outcome.pd is None and outcome.score is None
    assert [r["code"] for r in outcome.reasons] == [UNKNOWN_CUSTOMER]


def test_a_scorecard_model_is_served_through_its_own_reason_codes() -> None:
    from orchard.credit.scorecard import train_scorecard

    # Given a WOE scorecard (not LightGBM): no tree fast path
    card = train_scorecard(_data(600), "bad", FEATURES, ["city_tier"], seed=1, name="card")
    served = ServedModel.build("card", 1, card)
    frame = _data(10, seed=8).drop(columns="bad")
    # When scored by the serving code
    scored = score_frame(served, frame)
    # Then PD and score are the scorecard's own, and reasons are scorecard reason codes
    assert served.encoder is None
    np.testing.assert_array_equal(scored.pd, card.predict_pd(frame))
    np.testing.assert_array_equal(scored.score, card.score(frame))
    assert all(r["code"].startswith("RC_") for rows in scored.reasons for r in rows)
