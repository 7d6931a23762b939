"""Unit tests of the promotion gate: a pure comparison of two evaluations on the same window."""

from __future__ import annotations

import math

import pytest

from model_registry.gates import GateResult, gate_dict, promotion_gate
from orchard.errors import OrchardError

WINDOW = "2020-01..2020-02"


def evaluation(auc: float, ks: float = 0.40, n: int = 1000, window: str = WINDOW) -> dict[str, object]:
    """Build an evaluation dict like the training flow's."""
    return {"auc": auc, "ks": ks, "n": n, "window": window}


def test_challenger_clearly_better_passes_with_an_exact_reason() -> None:
    # given a challenger 0.009 AUC better than the champion, margin 0.005
    # when the gate compares them
    result = promotion_gate(evaluation(0.772), evaluation(0.781), margin_auc=0.005)
    # then it passes and the reason says exactly what was compared
    assert result.passed, f"expected pass: {result.reasons}"
    assert result.reasons[0] == (
        "challenger AUC 0.781 vs champion 0.772 on 2020-01..2020-02: +0.009 >= margin 0.005"
    ), result.reasons[0]
    assert math.isclose(result.figures["delta_auc"], 0.009), result.figures


def test_challenger_below_margin_fails() -> None:
    # given a challenger only 0.002 better, margin 0.005
    result = promotion_gate(evaluation(0.772), evaluation(0.774), margin_auc=0.005)
    # then it fails and says the gain is below the margin
    assert not result.passed, "a gain below the margin must not pass"
    assert result.reasons[0].endswith("+0.002 < margin 0.005"), result.reasons[0]


def test_worse_challenger_fails() -> None:
    # given a challenger worse than the champion, margin 0
    result = promotion_gate(evaluation(0.80), evaluation(0.75), margin_auc=0.0)
    # then it fails with a negative difference
    assert not result.passed, "a worse challenger must not pass"
    assert "-0.050 < margin 0.000" in result.reasons[0], result.reasons[0]


def test_gain_exactly_at_the_margin_passes_despite_float_noise() -> None:
    # given 0.563 - 0.558, which is 0.0049999... in binary floating point
    assert 0.563 - 0.558 < 0.005, "precondition: the raw float difference is below the margin"
    # when the gate compares them with margin 0.005
    result = promotion_gate(evaluation(0.558), evaluation(0.563), margin_auc=0.005)
    # then the boundary counts as reaching the margin (>=)
    assert result.passed, f"a gain equal to the margin must pass: {result.reasons}"


def test_gain_just_below_the_margin_fails() -> None:
    # given a gain of 0.0049
    result = promotion_gate(evaluation(0.772), evaluation(0.7769), margin_auc=0.005)
    # then it fails
    assert not result.passed, f"0.0049 < 0.005 must fail: {result.reasons}"


def test_no_champion_passes_as_first_model() -> None:
    # given no champion yet
    result = promotion_gate(None, evaluation(0.70), margin_auc=0.005)
    # then the challenger passes and the reason says why
    assert result.passed, "the first model has nothing to beat"
    assert "no champion yet" in result.reasons[0], result.reasons


def test_different_windows_are_refused() -> None:
    # given evaluations on different out-of-time windows
    # when/then the gate refuses to compare them, naming both windows
    with pytest.raises(OrchardError, match=r"2019-11\.\.2019-12 vs 2020-01\.\.2020-02"):
        promotion_gate(evaluation(0.77, window="2019-11..2019-12"), evaluation(0.79), margin_auc=0.005)


def test_different_populations_fail_even_with_better_auc() -> None:
    # given the same window but a different number of scored rows
    result = promotion_gate(evaluation(0.70, n=1000), evaluation(0.80, n=900), margin_auc=0.005)
    # then the gate fails and says the populations differ
    assert not result.passed, "different populations are not comparable"
    assert any("not the same population" in r for r in result.reasons), result.reasons


@pytest.mark.parametrize(
    ("champion", "challenger", "message"),
    [
        ({"ks": 0.3}, {"auc": 0.8}, "champion evaluation lacks 'auc'"),
        ({"auc": 0.8}, {"auc": float("nan")}, "challenger evaluation 'auc' is not finite"),
        ({"auc": 0.8}, {"auc": "high"}, "challenger evaluation 'auc' is not a number"),
    ],
)
def test_bad_evaluations_raise_naming_the_key(
    champion: dict[str, object], challenger: dict[str, object], message: str
) -> None:
    # given a malformed evaluation dict
    # when/then the gate raises a user error naming the problem
    with pytest.raises(OrchardError, match=message):
        promotion_gate(champion, challenger, margin_auc=0.005)


def test_negative_margin_is_refused() -> None:
    # given a negative margin
    # when/then the gate refuses it
    with pytest.raises(OrchardError, match="non-negative"):
        promotion_gate(evaluation(0.7), evaluation(0.8), margin_auc=-0.01)


def test_gate_dict_is_json_ready() -> None:
    # given a gate result
    result = promotion_gate(evaluation(0.772), evaluation(0.781), margin_auc=0.005)
    # when turned into a dict
    data = gate_dict(result)
    # then it carries the outcome, reasons and figures
    assert isinstance(result, GateResult)
    assert data["passed"] is True and data["reasons"] == result.reasons, data
    assert data["figures"]["champion_auc"] == 0.772, data["figures"]


def test_window_can_be_given_to_the_gate_and_must_match_the_evaluations() -> None:
    # given evaluations without a window key, and the window passed to the gate
    champion, challenger = {"auc": 0.772, "n": 10}, {"auc": 0.781, "n": 10}
    # when the gate compares them
    result = promotion_gate(champion, challenger, margin_auc=0.005, window="2020-01..2020-02")
    # then the reason names that window
    assert "on 2020-01..2020-02:" in result.reasons[0], result.reasons[0]
    # and a window that contradicts an evaluation's own window is refused
    with pytest.raises(OrchardError, match="different windows"):
        promotion_gate(evaluation(0.772), evaluation(0.781), margin_auc=0.005, window="2019-01..2019-02")
