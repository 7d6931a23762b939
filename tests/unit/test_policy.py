"""Unit tests of the drift policy: breach thresholds (strict), feature-breach count, retrain cooldown."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from monitoring.policy import PolicyDecision, decide
from orchard.errors import OrchardError
from orchard.settings import Settings
from tests.conftest import make_settings

CALM = {"a": 0.01, "b": 0.02}


@pytest.fixture
def policy_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        score_psi_breach=0.25,
        feature_psi_breach=0.2,
        max_feature_breaches=2,
        retrain_cooldown_months=3,
    )


def test_calm_month_is_no_breach(policy_settings: Settings) -> None:
    # Given small PSIs / When decided / Then no breach, no retrain, and a reason saying why
    decision = decide("2020-03", 0.05, CALM, policy_settings, None)
    assert decision == PolicyDecision(breach=False, retrain=False, reasons=decision.reasons, month="2020-03")
    assert "no breach" in decision.reasons[0] and "0.25" in decision.reasons[0]


def test_score_psi_breach_is_strict(policy_settings: Settings) -> None:
    # Given a score PSI exactly at the limit / Then no breach; just above / Then a breach naming metric and limit
    assert not decide("2020-03", 0.25, CALM, policy_settings, None).breach, (
        "equal to the limit is not a breach"
    )
    decision = decide("2020-03", 0.31, CALM, policy_settings, None)
    assert decision.breach and decision.retrain, "first breach with no earlier retrain retrains"
    assert any("score PSI 0.3100 > score_psi_breach 0.25" in r for r in decision.reasons), decision.reasons


def test_feature_breach_needs_more_than_the_allowed_count(policy_settings: Settings) -> None:
    # Given exactly max_feature_breaches (2) drifting features / Then tolerated
    two = {"a": 0.3, "b": 0.4, "c": 0.2, "d": 0.0}
    assert not decide("2020-03", 0.0, two, policy_settings, None).breach, "2 features over 0.2 are allowed"
    # Given 3 drifting features / Then a breach that names them and the thresholds
    three = {**two, "c": 0.21}
    decision = decide("2020-03", 0.0, three, policy_settings, None)
    assert decision.breach
    reason = decision.reasons[0]
    assert "3 features" in reason and "a=0.3000" in reason and "c=0.2100" in reason
    assert "feature_psi_breach 0.2" in reason and "max_feature_breaches 2" in reason


def test_cooldown_holds_then_allows_retrain(policy_settings: Settings) -> None:
    # Given a breach 2 months after the last retrain (cooldown 3) / Then breach but retrain held
    held = decide("2020-03", 0.5, CALM, policy_settings, "2020-01")
    assert held.breach and not held.retrain, "inside the cooldown"
    assert any("retrain held" in r and "retrain_cooldown_months 3" in r for r in held.reasons), held.reasons
    # Given the same breach 3 months after / Then retrain
    allowed = decide("2020-04", 0.5, CALM, policy_settings, "2020-01")
    assert allowed.breach and allowed.retrain, "cooldown elapsed (3 >= 3)"


def test_zero_cooldown_retrains_in_the_same_month(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, retrain_cooldown_months=0)
    assert decide("2020-03", 0.9, {}, settings, "2020-03").retrain, "cooldown 0 allows back-to-back retrains"


@pytest.mark.parametrize(
    ("month", "score_psi", "feature_psi", "last", "match"),
    [
        ("2020-3", 0.1, {}, None, "invalid month"),
        ("2020-03", math.nan, {}, None, "score PSI"),
        ("2020-03", 0.1, {"income": -0.1}, None, "income"),
        ("2020-03", 0.9, {}, "2020-05", "after the monitored month"),
    ],
)
def test_invalid_inputs_raise(
    policy_settings: Settings,
    month: str,
    score_psi: float,
    feature_psi: dict[str, float],
    last: str | None,
    match: str,
) -> None:
    # Given a malformed month, a NaN/negative PSI or a retrain in the future / Then a clear error
    with pytest.raises(OrchardError, match=match):
        decide(month, score_psi, feature_psi, policy_settings, last)
