"""Unit tests of the retraining policy: first fit, breach thresholds (strict), cooldown, approval."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from monitoring.policy import Adaptation, Drift, ModelHistory, PolicyDecision, decide
from orchard.errors import OrchardError
from orchard.portfolio.spec import MonitoringDef

CALM = Drift(0.05, {"a": 0.01, "b": 0.02})
DRIFT = Drift(0.5, {"a": 0.01})
NEW = ModelHistory()
CHAMPION = ModelHistory(champion=1, last_trained="2020-01")


LIMITS = MonitoringDef(
    score_psi_breach=0.25, feature_psi_breach=0.2, max_feature_breaches=2, retrain_cooldown_months=3
)
NO_COOLDOWN = LIMITS.model_copy(update={"retrain_cooldown_months": 0})


@pytest.mark.parametrize(
    ("case", "month", "history", "drift", "ready", "action", "breach", "reason"),
    [
        ("first fit", "2020-03", NEW, None, True, "first_fit", False, "first fit: no champion yet"),
        ("no champion, labels immature", "2020-03", NEW, None, False, "hold", False, "not enough mature"),
        ("no breach", "2020-03", CHAMPION, CALM, True, "hold", False, "no breach: score PSI 0.0500 <= 0.25"),
        (
            "breach inside the cooldown",
            "2020-03",
            CHAMPION,
            DRIFT,
            True,
            "hold",
            True,
            "retrain held: 2 month(s) since last retrain 2020-01 < retrain_cooldown_months 3",
        ),
        (
            "breach after the cooldown",
            "2020-04",
            CHAMPION,
            DRIFT,
            True,
            "retrain",
            True,
            "retrain: 3 month(s) since last retrain 2020-01 >= retrain_cooldown_months 3",
        ),
        (
            "breach, never trained",
            "2020-03",
            ModelHistory(champion=1),
            DRIFT,
            True,
            "retrain",
            True,
            "retrain: no earlier retrain",
        ),
        (
            "first-fit version pending, auto approval",
            "2020-03",
            ModelHistory(awaiting_approval=1),
            None,
            True,
            "first_fit",
            False,
            "first fit",
        ),
    ],
)
def test_the_policy_table(
    case: str,
    month: str,
    history: ModelHistory,
    drift: Drift | None,
    ready: bool,
    action: str,
    breach: bool,
    reason: str,
) -> None:
    # Given the recorded history and the month's drift / When decided / Then the action, the breach, the reason
    decision = decide(month, history, LIMITS, "policy", drift, labels_ready=ready)
    assert (decision.action, decision.breach) == (action, breach), (case, decision)
    assert any(reason in r for r in decision.reasons), (case, decision.reasons)
    assert decision.train == (action != "hold") and decision.retrain == (action == "retrain")
    assert decision.approval == "policy", "auto_approve is on by default: the policy approves"


def test_approval_by_a_person_holds_while_a_version_awaits_it() -> None:
    # Given no champion and nothing pending / Then the first fit is approved by a person
    first = decide("2020-03", NEW, NO_COOLDOWN, "person", labels_ready=True)
    assert (first.action, first.approval) == ("first_fit", "person")
    # Given v1 awaiting a person's approval / Then nothing new is trained, with or without a champion
    waiting = decide(
        "2020-04",
        ModelHistory(last_trained="2020-03", awaiting_approval=1),
        NO_COOLDOWN,
        "person",
        labels_ready=True,
    )
    assert waiting.action == "hold" and "v1 awaits a person's approval" in waiting.reasons[0]
    pending = ModelHistory(champion=1, last_trained="2020-03", awaiting_approval=2)
    held = decide("2020-05", pending, NO_COOLDOWN, "person", DRIFT)
    assert (held.action, held.breach) == ("hold", True) and "v2 awaits" in held.reasons[-1], held.reasons
    # Given the same breach once v2 is decided / Then the retrain goes ahead (cooldown 0)
    decided = decide(
        "2020-05", ModelHistory(champion=1, last_trained="2020-03"), NO_COOLDOWN, "person", DRIFT
    )
    assert decided.action == "retrain" and decided.approval == "person"


def test_calm_month_is_no_breach() -> None:
    decision = decide("2020-03", CHAMPION, LIMITS, "policy", CALM)
    assert decision == PolicyDecision("hold", False, "policy", decision.reasons, "2020-03")
    assert "no breach" in decision.reasons[0] and "0.25" in decision.reasons[0]


def test_score_psi_breach_is_strict() -> None:
    # Given a score PSI exactly at the limit / Then no breach; just above / Then a breach naming metric and limit
    at_limit = Drift(0.25, CALM.feature_psi)
    assert not decide("2020-06", CHAMPION, LIMITS, "policy", at_limit).breach, (
        "equal to the limit is no breach"
    )
    decision = decide("2020-06", CHAMPION, LIMITS, "policy", Drift(0.31, CALM.feature_psi))
    assert decision.breach and decision.retrain, "a breach after the cooldown retrains"
    assert any("score PSI 0.3100 > score_psi_breach 0.25" in r for r in decision.reasons), decision.reasons


def test_feature_breach_needs_more_than_the_allowed_count() -> None:
    # Given exactly max_feature_breaches (2) drifting features / Then tolerated
    two = {"a": 0.3, "b": 0.4, "c": 0.2, "d": 0.0}
    assert not decide("2020-06", CHAMPION, LIMITS, "policy", Drift(0.0, two)).breach, "2 over 0.2 allowed"
    # Given 3 drifting features / Then a breach that names them and the thresholds
    decision = decide("2020-06", CHAMPION, LIMITS, "policy", Drift(0.0, {**two, "c": 0.21}))
    assert decision.breach
    reason = decision.reasons[0]
    assert "3 features" in reason and "a=0.3000" in reason and "c=0.2100" in reason
    assert "feature_psi_breach 0.2" in reason and "max_feature_breaches 2" in reason


def test_zero_cooldown_retrains_the_month_after() -> None:
    history = ModelHistory(champion=1, last_trained="2020-02")
    assert decide("2020-03", history, NO_COOLDOWN, "policy", Drift(0.9)).retrain, (
        "cooldown 0 allows back-to-back retrains"
    )


@pytest.mark.parametrize(
    ("month", "history", "drift", "match"),
    [
        ("2020-3", NEW, None, "invalid month"),
        ("2020-03", CHAMPION, Drift(math.nan), "score PSI"),
        ("2020-03", CHAMPION, Drift(0.1, {"income": -0.1}), "income"),
        ("2020-03", ModelHistory(champion=1, last_trained="2020-05"), DRIFT, "after the monitored month"),
        ("2020-03", CHAMPION, None, "champion v1 has no monitoring of 2020-03"),
    ],
)
def test_invalid_inputs_raise(month: str, history: ModelHistory, drift: Drift | None, match: str) -> None:
    # Given a malformed month, a NaN/negative PSI, a training in the future, a champion unmonitored / Then an error
    with pytest.raises(OrchardError, match=match):
        decide(month, history, LIMITS, "policy", drift)


SHOCK = Adaptation(breach_since="2020-03", early_vintages=2, mature_vintages=0, fit_needs=3, needed=3)
"""A breach since 2020-03: no vintage since has mature labels (a fit needs 3), two have mature early labels (a
recalibration needs 3)."""


def test_a_breach_older_than_every_mature_label_is_recalibrated_once_early_labels_mature() -> None:
    # Given a breach whose vintages have no mature labels yet, past the cooldown
    # When only two of the three early-labelled vintages a recalibration needs have matured
    early = decide("2020-05", CHAMPION, LIMITS, "policy", DRIFT, adaptation=SHOCK)
    # Then the retrain happens as for any model, its reason saying what a recalibration waits for
    assert (early.action, early.breach, early.retrain) == ("retrain", True, True), early
    assert early.reasons[-1] == (
        "retrain: 4 month(s) since last retrain 2020-01 >= retrain_cooldown_months 3; no recalibration: "
        "2 vintage(s) since 2020-03 have mature early labels, a recalibration needs 3"
    ), early.reasons
    # When the third matures, the champion is recalibrated instead (a training, not a retrain on mature labels)
    ready = decide("2020-06", CHAMPION, LIMITS, "policy", DRIFT, adaptation=replace(SHOCK, early_vintages=3))
    assert (ready.action, ready.train, ready.retrain) == ("recalibrate", True, False), ready
    assert ready.reasons[-1] == (
        "recalibrate: 0 vintage(s) since the breach of 2020-03 have mature labels, a fit needs 3; "
        "3 vintage(s) since 2020-03 have mature early labels, a recalibration needs 3"
    ), ready.reasons
    # And the retrain cooldown does not hold it (a refused one is tried again the next month)
    cooling = ModelHistory(champion=1, last_trained="2020-05")
    ready_again = replace(SHOCK, early_vintages=3)
    assert decide("2020-06", cooling, LIMITS, "policy", DRIFT, adaptation=ready_again).action == "recalibrate"
    # But a champion that is already a recalibration for this breach is not recalibrated again
    answered = replace(SHOCK, early_vintages=4, answered=True)
    again = decide("2020-07", CHAMPION, LIMITS, "policy", DRIFT, adaptation=answered)
    assert again.action == "retrain", again
    assert "already a recalibration for the breach since 2020-03" in again.reasons[-1], again.reasons
    assert decide("2020-07", CHAMPION, LIMITS, "policy", CALM, adaptation=answered).action == "hold"
    # And a pending approval holds it as it holds a retrain
    pending = ModelHistory(champion=1, last_trained="2020-01", awaiting_approval=2)
    assert (
        decide(
            "2020-06", pending, LIMITS, "person", DRIFT, adaptation=replace(SHOCK, early_vintages=3)
        ).action
        == "hold"
    )
    # And while fewer vintages since the breach than a fit needs have mature labels, it may still recalibrate
    partly = replace(SHOCK, early_vintages=5, mature_vintages=2)
    assert decide("2020-08", CHAMPION, LIMITS, "policy", DRIFT, adaptation=partly).action == "recalibrate"
    # And once enough have, a breach retrains as usual
    fit = decide(
        "2020-09",
        CHAMPION,
        LIMITS,
        "policy",
        DRIFT,
        adaptation=replace(SHOCK, early_vintages=6, mature_vintages=3),
    )
    assert fit.action == "retrain" and fit.reasons[-1].endswith(">= retrain_cooldown_months 3"), fit
    # And a month below the limits still recalibrates while the breach is open (its vintages unlearnt)
    quiet = decide("2020-07", CHAMPION, LIMITS, "policy", CALM, adaptation=replace(SHOCK, early_vintages=3))
    assert (quiet.action, quiet.breach) == ("recalibrate", False), quiet
    # but holds when no breach was ever recorded, or the breach's vintages have labels, whatever the early labels
    calm = decide("2020-06", CHAMPION, LIMITS, "policy", CALM, adaptation=Adaptation(None, early_vintages=3))
    assert calm.action == "hold" and not calm.breach, calm
    learnt = replace(SHOCK, early_vintages=3, mature_vintages=3)
    assert decide("2020-09", CHAMPION, LIMITS, "policy", CALM, adaptation=learnt).action == "hold"


def test_a_recalibrated_champion_is_refit_once_labels_since_its_breach_mature() -> None:
    # Given a recalibrated champion whose breach is over, and enough vintages since it with mature labels
    why = "v1 is a recalibration: vintages since its breach now have mature labels to fit on"
    ready = Adaptation(None, refit_ready=True, refit_why=why)
    # When a calm month is decided
    refit = decide("2020-12", CHAMPION, LIMITS, "policy", CALM, adaptation=ready)
    # Then a fit is due without a breach, saying why
    assert (refit.action, refit.breach) == ("retrain", False), refit
    assert any("v1 is a recalibration" in r for r in refit.reasons), refit.reasons
    # And the cooldown still holds it
    recent = ModelHistory(champion=1, last_trained="2020-11")
    assert decide("2020-12", recent, LIMITS, "policy", CALM, adaptation=ready).action == "hold"


def test_a_recalibration_waits_while_its_vintages_hold_too_few_events() -> None:
    # Given enough early-labelled vintages since the breach, but too few events among them to fit a line
    short = replace(SHOCK, early_vintages=3, shortfall="the early labels of 2020-03..2020-04 hold 4 events")
    # When decided / Then it retrains as any model would, naming the shortfall
    decision = decide("2020-06", CHAMPION, LIMITS, "policy", DRIFT, adaptation=short)
    assert decision.action == "retrain" and decision.reasons[-1].endswith("hold 4 events"), decision


def test_a_refit_due_comes_before_a_recalibration_for_a_later_breach() -> None:
    # Given a recalibrated champion whose breach can now be learnt, and a later breach open with early labels
    why = "v1 is a recalibration: vintages since its breach now have mature labels to fit on"
    both = Adaptation("2020-08", early_vintages=3, needed=3, fit_needs=3, refit_ready=True, refit_why=why)
    # When decided / Then the fit replaces the stopgap first
    decision = decide("2020-12", CHAMPION, LIMITS, "policy", DRIFT, adaptation=both)
    assert decision.action == "retrain" and any("is a recalibration" in r for r in decision.reasons), decision
